"""The MLPerf Tiny ports with the reference trained weights agree with the reference models.

This is the proof that a port is right: same structure, same padding, kernel layouts mapped
correctly. Inputs are real where the reference folder has them (see toolchain.zoo.mlperf_data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain.zoo import mlperf_data, mlperf_tiny

RTOL = 1e-4  # max |port - reference| / max |reference|


def run_litert(path: Path, x_nchw: np.ndarray) -> np.ndarray:
    """Run a float .tflite (NHWC input) one sample at a time; returns stacked outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]
    x = x_nchw.transpose(0, 2, 3, 1) if x_nchw.ndim == 4 else x_nchw
    results = []
    for sample in np.ascontiguousarray(x, dtype=np.float32):
        interp.set_tensor(inp, sample[None])
        interp.invoke()
        results.append(interp.get_tensor(out)[0].copy())
    return np.stack(results)


def run_port(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def mlperf(reference_dir: Path) -> Path:
    return reference_dir / "mlperf_tiny"


@pytest.mark.parametrize(
    ("factory", "h5", "float_tflite", "inputs"),
    [
        ("resnet8", "ic/pretrainedResnet.h5", "ic/pretrainedResnet.tflite", "ic_images"),
        ("mobilenet_v1_025", "vww/vww_96.h5", "vww/vww_96_float.tflite", "vww_images"),
    ],
)
def test_image_ports_match_reference_float_tflite(
    reference_dir: Path, mlperf: Path, factory: str, h5: str, float_tflite: str, inputs: str
) -> None:
    x = getattr(mlperf_data, inputs)(reference_dir, count=12, seed=1)
    model = getattr(mlperf_tiny, factory)(weights=mlperf / h5)
    ours, ref = run_port(model, x), run_litert(mlperf / float_tflite, x)
    assert rel_err(ours, ref) < RTOL
    assert (ours.argmax(1) == ref.argmax(1)).all()
    # The outputs are not trivially saturated: the check above has something to compare.
    assert ref.max(1).min() < 0.999


def test_ad_port_matches_reference_float_tflite(reference_dir: Path, mlperf: Path) -> None:
    x = mlperf_data.ad_windows(reference_dir)[::4]
    ref = run_litert(mlperf / "ad/ad01_fp32.tflite", x)
    # Weights taken from the float TFLite itself (BatchNorm folded): exact.
    from_tflite = mlperf_tiny.fc_autoencoder(weights=mlperf / "ad/ad01_fp32.tflite")
    assert rel_err(run_port(from_tflite, x), ref) < RTOL
    # ad01.h5: the reference TFLite models dropped the bias of every Dense layer that feeds a
    # BatchNorm (their folded bias is beta - mean·gamma/sqrt(var+eps)). With those biases
    # zeroed, the .h5 port is the reference; with them kept it is measurably different.
    from_h5 = mlperf_tiny.fc_autoencoder(weights=mlperf / "ad/ad01.h5")
    assert rel_err(run_port(from_h5, x), ref) > 1e-2
    linears = [m for m in from_h5.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin in linears[:-1]:
            lin.bias.zero_()
    assert rel_err(run_port(from_h5, x), ref) < RTOL


@pytest.fixture(scope="module")
def kws_inputs(reference_dir: Path) -> np.ndarray:
    return mlperf_data.kws_features(reference_dir, count=16, seed=1)


def test_kws_port_matches_savedmodel(mlperf: Path, kws_inputs: np.ndarray) -> None:
    tf = pytest.importorskip("tensorflow")
    saved = mlperf / "kws/kws_ref_model_savedmodel"
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    x_nhwc = kws_inputs.transpose(0, 2, 3, 1)
    ref = next(iter(serve(input_1=tf.constant(x_nhwc)).values())).numpy()
    ours = run_port(mlperf_tiny.ds_cnn(weights=saved), kws_inputs)
    assert rel_err(ours, ref) < RTOL


def test_kws_port_with_float_tflite_weights(mlperf: Path, kws_inputs: np.ndarray) -> None:
    # kws_ref_model_float32.tflite is a *different training run* than the SavedModel (the int8
    # reference was made from it) and stores its CONV_2D filters as int8 (hybrid), so LiteRT
    # quantizes activations on the fly: agreement is close, not exact.
    path = mlperf / "kws/kws_ref_model_float32.tflite"
    ref = run_litert(path, kws_inputs)
    ours = run_port(mlperf_tiny.ds_cnn(weights=path), kws_inputs)
    assert np.abs(ours - ref).max() < 0.05
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_kws_front_end_and_port_recognise_real_words(reference_dir: Path, mlperf: Path) -> None:
    clips = dict(mlperf_data.kws_clips(reference_dir))
    x = np.stack([mlperf_data.mfcc(clips[n]) for n in ("yes_1000ms", "silence_1000ms")])[:, None]
    for weights in ("kws_ref_model_float32.tflite", "kws_ref_model.tflite"):
        probs = run_port(mlperf_tiny.ds_cnn(weights=mlperf / "kws" / weights), x)
        words = [mlperf_data.KWS_LABELS[i] for i in probs.argmax(1)]
        assert words == ["yes", "silence"], weights
