"""Emulated tier: a model compiled with ``--cmsis-nn`` (the user's CMSIS-NN checkout in
``$EDGEDEPLOY_CMSIS_NN``) builds into the mps2-an386 firmware with the checkout's sources,
passes its init check (every planned scratch buffer at least what the library asks for on
the Cortex-M4F) and is bit-exact with the tflite-micro interpreter in QEMU.

Skips without a checkout (CI has none; nothing downloads at run time). The whole-model
figures are benchmarks/cmsisnn_qemu.py's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.host.test_compile_fast_kernels import cases
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.compile.perlayer import MIN_GAIN
from toolchain.firmware import make_firmware
from toolchain.targets import load_target

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and arm-none-eabi-gcc (scripts/install-system-deps.sh)",
)

TARGET = "mps2-an386"
ENV = "EDGEDEPLOY_CMSIS_NN"
KWS = "mlperf_tiny/kws/kws_ref_model.tflite"
#: odd shapes: channel tails, dilation, strides, FC row tails
RANDOM = ("conv_2d_9", "depthwise_conv_2d_5", "fully_connected_3")


@pytest.fixture(scope="module")
def checkout() -> Path:
    path = os.environ.get(ENV)
    if not path:
        pytest.skip(f"no CMSIS-NN checkout: set {ENV}=/path/to/CMSIS-NN (4ab83cc3) to run this")
    return Path(path)


def _run(model: Path, out: Path, checkout: Path) -> tuple[dict, object]:
    res = make_firmware(target=TARGET, out_dir=out, model=model, runtime="compiled",
                        build=True, cmsis_nn=checkout)  # fmt: skip
    assert res.build is not None and res.project.compiled is not None
    r = run_bench(load_target(TARGET), model,
                  BenchOptions(runs=1, warmup=0, firmware=res.build.elf, timeout_s=120.0))  # fmt: skip
    return res.project.compiled, r


def test_kws_with_cmsis_nn_is_bit_exact_in_qemu(
    reference_dir: Path, tmp_path: Path, checkout: Path
) -> None:
    compiled, r = _run(reference_dir / KWS, tmp_path / "fw", checkout)
    assert compiled["kernels"] == ["edc_cmsisnn"]
    assert len(compiled["cmsis_nn"]["ops"]) == 12  # every op but the RESHAPE alias
    check = r.output_check  # type: ignore[attr-defined]
    assert check is not None and check.bit_exact and check.compared_values > 0
    # the same model with our kernels on this core: 7.24 M; CMSIS-NN's are within 10 % above
    assert 5_000_000 < r.samples[0] < 9_000_000  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", [c for c in cases() if c.name in RANDOM], ids=lambda c: c.name)
def test_odd_shapes_with_cmsis_nn_are_bit_exact_in_qemu(
    case, tmp_path: Path, checkout: Path
) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / f"{case.name}.tflite"
    model.write_bytes(case.model)
    compiled, r = _run(model, tmp_path / "fw", checkout)
    assert compiled["cmsis_nn"]["ops"], compiled
    check = r.output_check  # type: ignore[attr-defined]
    assert check is not None and check.bit_exact and check.compared_values > 0


def test_auto_measures_per_layer_and_runs_the_cheaper_kernel_bit_exact(
    reference_dir: Path, tmp_path: Path, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--cmsis-nn-ops auto`` with an empty cache: both candidates measured in QEMU per layer
    (toolchain/compile/perlayer.py), each layer gets the cheaper, and the mixed firmware is
    bit-exact and spends about the cheaper count on every layer."""
    monkeypatch.setenv("EDGEDEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEDEPLOY_CMSIS_NN_MEASURE", raising=False)
    model = reference_dir / KWS
    res = make_firmware(target=TARGET, out_dir=tmp_path / "fw", model=model, runtime="compiled",
                        build=True, cmsis_nn=checkout, cmsis_nn_ops="auto")  # fmt: skip
    assert res.build is not None and res.project.compiled is not None
    cn = res.project.compiled["cmsis_nn"]
    choice = cn["choice"]
    assert choice["how"] == "measured" and choice["board"] == TARGET
    assert (tmp_path / "cache" / "cmsisnn-layers.json").is_file()
    layers = {int(i): c for i, c in choice["layers"].items()}
    assert len(layers) == 12  # every op but the RESHAPE alias was a candidate
    cheaper = sorted(i for i, c in layers.items() if c["own"] - c["cmsis-nn"] >= MIN_GAIN)
    assert cn["ops"] == cheaper
    r = run_bench(load_target(TARGET), model,
                  BenchOptions(runs=1, warmup=0, firmware=res.build.elf, timeout_s=120.0))  # fmt: skip
    check = r.output_check
    assert check is not None and check.bit_exact and check.compared_values > 0
    for i, c in layers.items():
        best = c["cmsis-nn"] if i in cheaper else c["own"]
        assert abs(r.per_op[i].per_inference - best) <= 0.02 * best + 200, (i, c)
    assert r.samples[0] <= sum(min(c.values()) for c in layers.values()) + 2_000 + MIN_GAIN * 12
