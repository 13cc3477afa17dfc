"""Stage 2: ONNX → float TF/Keras model with onnx2tf (runs inside the TF worker process).

onnx2tf is called in-process (``onnx2tf.convert(..., disable_model_save=True)``): it returns
the Keras model without writing a SavedModel or the float32/float16 .tflite files its CLI
always produces, which is most of the CLI's time. It runs on a private copy of the ONNX file
(its onnxsim step rewrites the file in place) in a working folder that holds a placeholder
``calibration_image_sample_data_20x128x128x3_float32.npy``, so it never tries to download
its sample images. onnxsim is found on PATH (the worker puts the environment's ``bin`` first).

:func:`io_layouts` tells, for each input/output, how the TF tensor relates to the PyTorch one
(onnx2tf makes rank-3..5 inputs channels-last and reports which outputs are).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.artifacts import channels_last_perm

log = logging.getLogger(__name__)

PLACEHOLDER = "calibration_image_sample_data_20x128x128x3_float32.npy"


class Onnx2TfFailed(Exception):
    """onnx2tf raised or exited; the message is what it said."""


def prepare_workdir(onnx_path: Path, workdir: Path) -> Path:
    """Copy the ONNX file into ``workdir`` with the placeholder sample data; the copy's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(workdir / PLACEHOLDER, rng.random((20, 128, 128, 3), dtype=np.float32))
    copy = workdir / "model.onnx"
    shutil.copyfile(onnx_path, copy)
    return copy


def run_onnx2tf(onnx_copy: Path, **extra: Any) -> Any:
    """Convert; returns the tf_keras model. Must run with cwd = the copy's folder.

    ``extra``: more ``onnx2tf.convert`` keyword options (chosen by
    :mod:`toolchain.convert.strategy`)."""
    import onnx2tf

    try:
        return onnx2tf.convert(
            input_onnx_file_path=str(onnx_copy),
            output_folder_path=str(onnx_copy.parent / "saved_model"),
            disable_model_save=True,
            non_verbose=True,
            verbosity="warn",
            **extra,
        )
    except SystemExit as exc:  # onnx2tf calls sys.exit(1) after printing its error
        raise Onnx2TfFailed(f"onnx2tf exited with status {exc.code}") from exc


def io_layouts(
    keras_model: Any,
    torch_inputs: Sequence[tuple[str, Sequence[int]]],
    torch_outputs: Sequence[tuple[str, Sequence[int]]],
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The permutation PyTorch layout → TF layout of every input and output, in order.

    Raises Onnx2TfFailed when a TF shape is neither the PyTorch shape nor its channels-last
    form (then we cannot say which bytes to feed).
    """
    out_nhwc = getattr(keras_model, "onnx_output_layouts", None) or {}
    in_perms = [
        _perm(name, shape, [int(s) for s in t.shape], True, "input")
        for (name, shape), t in zip(torch_inputs, keras_model.inputs, strict=True)
    ]
    out_perms = []
    for (name, shape), t, kname in zip(
        torch_outputs, keras_model.outputs, keras_model.output_names, strict=True
    ):
        nhwc = bool(out_nhwc.get(kname, out_nhwc.get(name, len(shape) >= 3)))
        out_perms.append(_perm(name, shape, [int(s) for s in t.shape], nhwc, "output"))
    return in_perms, out_perms


def _perm(
    name: str, torch_shape: Sequence[int], tf_shape: Sequence[int], prefer_last: bool, what: str
) -> tuple[int, ...]:
    ident = tuple(range(len(torch_shape)))
    last = channels_last_perm(len(torch_shape))
    options = [last, ident] if prefer_last else [ident, last]
    for perm in options:
        if len(tf_shape) == len(torch_shape) and [torch_shape[p] for p in perm] == list(tf_shape):
            return perm
    raise Onnx2TfFailed(
        f"{what} {name!r}: onnx2tf made shape {list(tf_shape)} from PyTorch shape "
        f"{list(torch_shape)}; cannot tell its layout"
    )


#: the largest relative difference between onnx2tf's float model and the ONNX model that
#: counts as "the same function" (float32 reordering stays far below it; a layout mix-up
#: inside onnx2tf gives O(1))
FLOAT_TOLERANCE = 1e-3
FLOAT_SAMPLES = 4


def float_check(
    keras_model: Any,
    onnx_path: Path,
    calib: Sequence[np.ndarray],
    in_perms: Sequence[tuple[int, ...]],
    out_perms: Sequence[tuple[int, ...]],
) -> float:
    """Max relative difference (per output, to its largest magnitude) between onnx2tf's
    float Keras model and the ONNX model (onnxruntime) on the first calibration samples.

    onnx2tf can silently compute something else when it mistakes a tensor's layout (seen:
    a permute → LayerNorm → permute-back sandwich came out at −0.2 dB SQNR); this catches it
    before quantization hides it among int8 errors."""
    import onnxruntime as ort

    n = min(FLOAT_SAMPLES, int(calib[0].shape[0]))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {i.name: a[:n] for i, a in zip(sess.get_inputs(), calib, strict=True)}
    worst = 0.0
    for k in range(n):
        ref = sess.run(None, {name: a[k : k + 1] for name, a in feed.items()})
        tf_in = [np.transpose(a[k : k + 1], p) for a, p in zip(calib, in_perms, strict=True)]
        got = keras_model(tf_in if len(tf_in) > 1 else tf_in[0], training=False)
        got = got if isinstance(got, list | tuple) else [got]
        for r, q, p in zip(ref, got, out_perms, strict=True):
            q = np.transpose(np.asarray(q), np.argsort(p))
            if q.shape != r.shape:
                return float("inf")
            scale = max(float(np.max(np.abs(r))), 1e-6)
            worst = max(worst, float(np.max(np.abs(q - r))) / scale)
    return worst
