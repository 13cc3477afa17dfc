"""The convert stage: PyTorch → ONNX → onnx2tf float model → full-integer int8 .tflite.

Public API (keyword-only options; nothing heavy is imported until a conversion runs):

* :func:`convert` — convert and validate; returns a :class:`ConvertResult`.
* :class:`QuantOptions` — how to quantize.
* :func:`run_tflite` — run a .tflite on PyTorch-layout float inputs (quantize, transpose,
  invoke, dequantize); :class:`TensorSpec` does the same for one tensor.

Modules, one per stage: ``export`` (torch → ONNX), ``onnx2tf_stage`` and ``quantize`` (run in
the TF worker process, ``worker``/``tfproc``), ``layout`` (fold layout transposes),
``graphlint``, ``validate``, ``cache``, and ``pipeline`` (the order).
"""

from toolchain.artifacts import ConvertResult, TensorSpec
from toolchain.convert.options import QuantOptions
from toolchain.convert.pipeline import convert
from toolchain.convert.runtime import run_tflite

__all__ = ["ConvertResult", "QuantOptions", "TensorSpec", "convert", "run_tflite"]
