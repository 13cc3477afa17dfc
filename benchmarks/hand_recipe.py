"""The hand recipe edgedeploy is measured against: what a user does without edgedeploy.

Three steps, each the usual tool in its usual form:

1. ``torch.onnx.export`` (legacy exporter, opset 17) in this process;
2. the ``onnx2tf`` command line → a float SavedModel with signatures (``-osd``), in its own
   process (it imports TensorFlow);
3. a separate TFLiteConverter script in its own process (imports TensorFlow again):
   full-integer PTQ, ``TFLITE_BUILTINS_INT8`` only, int8 input and output, representative
   dataset = the calibration array transposed to channels-last (onnx2tf's input layout).

Usage::

    python -m benchmarks.hand_recipe MODULE:FACTORY --weights W.pt --calib calib.npy --out DIR
    python -m benchmarks.hand_recipe --quantize SAVED_MODEL calib.npy OUT.tflite   # step 3

Writes ``DIR/model.onnx``, ``DIR/saved_model/`` and ``DIR/model_int8.tflite``; prints the
seconds each step took as one JSON line. It checks nothing (no fidelity, no graph lint):
that is the point of the comparison.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VENV_BIN = Path(sys.executable).parent
# onnx2tf downloads sample images unless this file sits in its working folder.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def export(spec: str, weights: str | None, onnx_path: Path) -> None:
    import torch

    module_name, _, factory = spec.partition(":")
    model = getattr(importlib.import_module(module_name), factory)()
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    torch.onnx.export(model, model.example_inputs, str(onnx_path), opset_version=17, dynamo=False)


def quantize(saved_model: str, calib: str, out: str) -> None:
    import tensorflow as tf

    data = np.load(calib).astype(np.float32)
    if data.ndim == 4:
        data = data.transpose(0, 2, 3, 1)

    def representative():
        for sample in data:
            yield [sample[None]]

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    Path(out).write_bytes(converter.convert())


def run(spec: str, weights: str | None, calib: Path, out: Path, timeout_s: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    times: dict[str, float] = {}
    t = time.perf_counter()
    export(spec, weights, out / "model.onnx")
    times["export"] = time.perf_counter() - t
    np.save(out / ONNX2TF_SAMPLE, np.zeros((20, 128, 128, 3), np.float32))
    t = time.perf_counter()
    cmd = [str(VENV_BIN / "onnx2tf"), "-i", "model.onnx", "-o", "saved_model", "-osd", "-n"]
    subprocess.run(cmd, cwd=out, env=env, check=True, timeout=timeout_s, capture_output=True)
    times["onnx2tf"] = time.perf_counter() - t
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "benchmarks.hand_recipe", "--quantize",
           str(out / "saved_model"), str(calib), str(out / "model_int8.tflite")]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, timeout=timeout_s, capture_output=True)
    times["tfliteconverter"] = time.perf_counter() - t
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hand_recipe", description=__doc__)
    p.add_argument("model", nargs="?", help="MODULE:FACTORY")
    p.add_argument("--weights")
    p.add_argument("--calib")
    p.add_argument("--out")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--quantize", nargs=3, metavar=("SAVED_MODEL", "CALIB", "OUT"))
    a = p.parse_args(argv)
    if a.quantize:
        quantize(*a.quantize)
        return 0
    if not (a.model and a.calib and a.out):
        p.error("MODEL, --calib and --out are required")
    times = run(a.model, a.weights, Path(a.calib), Path(a.out), a.timeout)
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
