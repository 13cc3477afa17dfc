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
    "ic_large": "mlperf_tiny/ic/pretrainedResnet_large_int8.tflite",
    # Arm's model zoo and TFLM's examples: what else compiles, checked the same way
    "arm_ad_small": "armzoo/anomaly_detection_micronet_small/ad_small_int8.tflite",
    "arm_ad_large": "armzoo/anomaly_detection_micronet_large/ad_large_int8.tflite",
    "arm_kws_ds_cnn_s": "armzoo/keyword_spotting_ds_cnn_small/ds_cnn_s_quantized.tflite",
    "arm_vww2": "armzoo/visual_wake_words_micronet_vww2/vww2_50_50_INT8.tflite",
    "hello_world": "tflm_models/hello_world/hello_world_int8.tflite",
    "simple_add": "tflm_models/memory_footprint/simple_add_model.tflite",
    "micro_speech": "tflm_models/micro_speech/micro_speech_quantized.tflite",
    "person_detect": "tflm_models/person_detection/person_detect.tflite",
    "mobilenet_v2_224": "tflm_models/pytorch_to_tflite/mobilenet_v2_quantized_1x3x224x224.tflite",
}
TRIALS = 4

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")


def _inputs(shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> list[np.ndarray]:
    lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    return [
        rng.integers(lo, hi + 1, size=shape, dtype=dtype),
        rng.integers(lo, hi + 1, size=shape, dtype=dtype),
        np.full(shape, lo, dtype),
        np.full(shape, hi, dtype),
    ][:TRIALS]


def _assert_bit_exact(path: Path, cm: CompiledModel, lib: object, seed: int) -> None:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(path), arena_size=16 << 20)
    run = compiled.Runner(lib, cm.name)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    per_input = [_inputs(tuple(t["shape"]), rng, np.dtype(t["dtype"])) for t in cm.inputs]
    outs = [(tuple(t["shape"]), np.dtype(t["dtype"])) for t in cm.outputs]
    for k in range(TRIALS):
        xs = [p[k] for p in per_input]
        for i, x in enumerate(xs):
            interp.set_input(x, i)
        interp.invoke()
        for i, got in enumerate(run(xs, outs)):
            want = interp.get_output(i)
            assert np.array_equal(want, got), (
                f"{cm.name} input {k} output {i}: {want.ravel()[:8]} vs {got.ravel()[:8]}"
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
def test_reference_model_is_bit_exact(key: str, mlperf: dict, reference_dir: Path) -> None:
    _assert_bit_exact(reference_dir / MLPERF[key], mlperf["cms"][key], mlperf["lib"], seed=len(key))


@pytest.mark.parametrize("key", sorted(MLPERF))
def test_plan_is_never_worse_than_tflm_greedy(key: str, mlperf: dict) -> None:
    cm: CompiledModel = mlperf["cms"][key]
    plan = cm.plan
    assert plan["lower_bound_bytes"] <= cm.arena_bytes
    assert cm.arena_bytes <= max(plan["tflm_greedy_bytes"], 16) + 15
    # constants as C arrays are smaller than the flatbuffer they came from
    assert 0 <= cm.weights_bytes < cm.model_bytes


@pytest.mark.parametrize("activations", ["int8", "int16"])
def test_demo_digits_cnn_is_bit_exact(tmp_path: Path, activations: str) -> None:
    from toolchain.cli import main

    conv = tmp_path / "digits"
    argv = ["-q", "convert", "toolchain.zoo.digits:model", "--calib", "toolchain.zoo.digits:calibration",
            "--activations", activations, "--out", str(conv)]  # fmt: skip
    assert main(argv) == 0
    model = conv / "model_int8.tflite"
    cm = compile_model(model, out_dir=tmp_path / "c", name="digits", target="mps2-an386")
    assert set(cm.ops) >= {"CONV_2D", "FULLY_CONNECTED"}
    lib = compiled.build([cm], tmp_path / "digits.so")
    _assert_bit_exact(model, cm, lib, seed=7)


def test_int16x8_resnet8_port_is_bit_exact(tmp_path: Path) -> None:
    """The zoo's IC ResNet-8 port (seeded random weights) converted with int16 activations:
    int16 CONV_2D, ADD, AVERAGE_POOL_2D, FULLY_CONNECTED and SOFTMAX in a converter-made graph."""
    import torch

    from toolchain.convert import QuantOptions, convert
    from toolchain.zoo import mlperf_tiny

    torch.manual_seed(0)
    model = mlperf_tiny.resnet8().eval()
    calib = np.random.default_rng(0).uniform(0, 255, size=(16, 3, 32, 32)).astype(np.float32)
    res = convert(model, calib=calib, input_shapes=[(1, 3, 32, 32)], out_dir=tmp_path / "ic16",
                  options=QuantOptions(activations="int16"))  # fmt: skip
    path = tmp_path / "ic16" / "model_int8.tflite"
    assert res is not None and path.is_file()
    cm = compile_model(path, out_dir=tmp_path / "c", name="ic16")
    assert {"ADD", "SOFTMAX", "AVERAGE_POOL_2D"} <= set(cm.ops)
    assert cm.inputs[0]["dtype"] == "int16"
    lib = compiled.build([cm], tmp_path / "ic16.so")
    _assert_bit_exact(path, cm, lib, seed=3)
