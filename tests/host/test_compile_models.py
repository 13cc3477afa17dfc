"""Compiled models (edgedeploy compile) built with the host gcc are bit-exact with TFLM.

The MLPerf Tiny reference models (KWS DS-CNN, IC ResNet-8, VWW MobileNet, AD autoencoder,
and the streaming wake-word model) and the demo's digits CNN are compiled, built into one
shared library and run through ctypes on random and extreme inputs; every output byte must
equal the tflite-micro Python interpreter's (its reference kernels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolchain.compile import CompiledModel, compile_model
from toolchain.compile import hostrun as compiled

MLPERF = {
    "kws": "mlperf_tiny/kws/kws_ref_model.tflite",
    "ic": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "vww": "mlperf_tiny/vww/vww_96_int8.tflite",
    "ad": "mlperf_tiny/ad/ad01_int8.tflite",
    "sww": "mlperf_tiny/sww/str_ww_ref_model.tflite",
}
TRIALS = 4

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")


def _inputs(shape: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.integers(-128, 128, size=shape, dtype=np.int8),
        rng.integers(-128, 128, size=shape, dtype=np.int8),
        np.full(shape, -128, np.int8),
        np.full(shape, 127, np.int8),
    ][:TRIALS]


def _assert_bit_exact(path: Path, cm: CompiledModel, lib: object, seed: int) -> None:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(path), arena_size=8 << 20)
    run = compiled.Runner(lib, cm.name)  # type: ignore[arg-type]
    shape = tuple(int(d) for d in interp.get_input_details(0)["shape"])
    od = interp.get_output_details(0)
    rng = np.random.default_rng(seed)
    for k, x in enumerate(_inputs(shape, rng)):
        interp.set_input(x, 0)
        interp.invoke()
        want = interp.get_output(0)
        got = run([x], [(tuple(int(d) for d in od["shape"]), np.int8)])[0]
        assert np.array_equal(want, got), (
            f"{cm.name} input {k}: {want.ravel()[:8]} vs {got.ravel()[:8]}"
        )


@pytest.fixture(scope="module")
def mlperf(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("compiled-mlperf")
    cms = {
        k: compile_model(reference_dir / rel, out_dir=out / k, name=k) for k, rel in MLPERF.items()
    }
    lib = compiled.build(list(cms.values()), out / "models.so")
    return {"cms": cms, "lib": lib}


@pytest.mark.parametrize("key", sorted(MLPERF))
def test_mlperf_reference_is_bit_exact(key: str, mlperf: dict, reference_dir: Path) -> None:
    _assert_bit_exact(reference_dir / MLPERF[key], mlperf["cms"][key], mlperf["lib"], seed=len(key))


@pytest.mark.parametrize("key", sorted(MLPERF))
def test_plan_is_never_worse_than_tflm_greedy(key: str, mlperf: dict) -> None:
    cm: CompiledModel = mlperf["cms"][key]
    plan = cm.plan
    assert plan["lower_bound_bytes"] <= cm.arena_bytes
    assert cm.arena_bytes <= max(plan["tflm_greedy_bytes"], 16) + 15
    # constants as C arrays are smaller than the flatbuffer they came from
    assert 0 < cm.weights_bytes < cm.model_bytes


def test_demo_digits_cnn_is_bit_exact(tmp_path: Path) -> None:
    from toolchain.cli import main

    conv = tmp_path / "digits"
    argv = ["-q", "convert", "toolchain.zoo.digits:model", "--calib", "toolchain.zoo.digits:calibration",
            "--out", str(conv)]  # fmt: skip
    assert main(argv) == 0
    model = conv / "model_int8.tflite"
    cm = compile_model(model, out_dir=tmp_path / "c", name="digits", target="mps2-an386")
    assert set(cm.ops) >= {"CONV_2D", "FULLY_CONNECTED"}
    lib = compiled.build([cm], tmp_path / "digits.so")
    _assert_bit_exact(model, cm, lib, seed=7)
