"""Emulated tier: the fast kernels with the real DSP instructions (SMLAD, SXTB16, SXTAB16,
SMLABB/SMLATT) in QEMU mps2-an386 (Cortex-M4F) are bit-exact with the tflite-micro interpreter.

Single-operator models with the layer shapes of the MLPerf Tiny models (KWS, IC, VWW, AD) and a
few randomised small shapes (tests/host/test_compile_fast_kernels.py builds them) are each
compiled for mps2-an386 (the target's CPU has the DSP extension, so select.py picks the fast
kernels), built into the compiled-model firmware and run in QEMU on the golden vectors (seeded
random inputs, outputs from the host TFLM interpreter). The whole models run the same kernels
in tests/emulated/test_compiled_runtime.py (KWS) and benchmarks/compiled_qemu.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.host.test_compile_fast_kernels import MLPERF_SHAPES, cases
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.firmware import make_firmware
from toolchain.targets import load_target

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and arm-none-eabi-gcc (scripts/install-system-deps.sh)",
)

TARGET = "mps2-an386"
#: randomised cases taken (by name) besides the MLPerf shapes: odd channel counts, dilation,
#: strides, depthwise tails (FC row tails: fc_rowtail below; the random FC layers are small
#: enough that `--kernels auto` gives them the plain kernel)
RANDOM = ("conv_2d_9", "depthwise_conv_2d_5")


#: MLPerf layer shapes run here (each costs a firmware build and a QEMU boot, ~5-8 s)
SHAPES = ("kws_conv1", "kws_dw", "kws_pw", "ic_conv3x3_s2", "vww_dw_s2", "ad_fc", "pd_stem",
          "kws_pw_bigbias", "kws_dw_bigbias", "vww_pw_dead", "vww_conv3x3_dead",
          "pd_dw8", "fc_rowtail")  # fmt: skip


def _selected() -> list:
    assert set(SHAPES) <= {s[0] for s in MLPERF_SHAPES}
    names = set(SHAPES) | set(RANDOM)
    return [c for c in cases() if c.name in names]


@pytest.mark.parametrize("case", _selected(), ids=lambda c: c.name)
def test_fast_kernel_bit_exact_in_qemu(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / f"{case.name}.tflite"
    model.write_bytes(case.model)
    res = make_firmware(
        target=TARGET, out_dir=tmp_path / "fw", model=model, runtime="compiled", build=True
    )
    assert res.build is not None and res.project.compiled is not None
    kernels = res.project.compiled["kernels"]
    assert any(k.endswith("_fast") for k in kernels), kernels
    r = run_bench(
        load_target(TARGET),
        model,
        BenchOptions(runs=1, warmup=0, firmware=res.build.elf, timeout_s=120.0),
    )
    check = r.output_check
    assert check is not None and check.bit_exact, check
    assert check.compared_values > 0
