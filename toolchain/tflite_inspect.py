"""What is in a .tflite: tensors, operators, sizes, quantization (no TensorFlow import).

:func:`describe` turns a :class:`~toolchain.tflite_model.TFLiteModel` into a JSON-able dict;
``edgedeploy inspect`` prints it as tables or, with ``--json``, as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolchain.convert.graphlint import lint
from toolchain.tflite_budget import byte_budget
from toolchain.tflite_model import TensorInfo, TFLiteModel

MAX_SCALES_SHOWN = 8


def quant_dict(t: TensorInfo) -> dict[str, Any] | None:
    """Quantization of one tensor: per-tensor scale/zero point, or per-channel summary."""
    if not t.is_quantized:
        return None
    if not t.per_channel:
        return {"scale": t.scales[0], "zero_point": t.zero_points[0] if t.zero_points else 0}
    s = np.asarray(t.scales)
    return {
        "per_channel": True,
        "axis": t.quantized_dimension,
        "channels": len(t.scales),
        "scale_min": float(s.min()),
        "scale_max": float(s.max()),
        "scales": [float(x) for x in s[:MAX_SCALES_SHOWN]],
        "zero_points": sorted(set(t.zero_points)),
    }


def tensor_dict(t: TensorInfo) -> dict[str, Any]:
    n = int(np.prod(t.shape)) if t.shape else 1
    try:
        itemsize = np.dtype(t.dtype).itemsize
    except TypeError:
        itemsize = 0
    return {
        "index": t.index,
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "bytes": t.data_bytes if t.is_constant else n * itemsize,
        "constant": t.is_constant,
        "quantization": quant_dict(t),
    }


def describe(model: TFLiteModel) -> dict[str, Any]:
    """Everything ``inspect`` shows, as plain data."""
    report = lint(model)
    subgraphs = []
    for sg in model.subgraphs:
        tensors = [tensor_dict(t) for t in sg.tensors]
        subgraphs.append(
            {
                "index": sg.index,
                "name": sg.name,
                "inputs": [tensors[i] for i in sg.inputs],
                "outputs": [tensors[i] for i in sg.outputs],
                "operators": [
                    {
                        "index": op.index,
                        "name": op.name,
                        "version": op.version,
                        "inputs": list(op.inputs),
                        "outputs": list(op.outputs),
                    }
                    for op in sg.operators
                ],
                "tensors": tensors,
                "activation_bytes_total": int(
                    sum(t["bytes"] for t in tensors if not t["constant"])
                ),
            }
        )
    return {
        "file": model.source,
        "bytes": model.size,
        "sha256": model.sha256,
        "schema_version": model.version,
        "description": model.description,
        "weight_bytes": model.weight_bytes(),
        "budget": byte_budget(model),
        "ops": model.op_histogram(),
        "counts": report.counts,
        "integer_only": report.ok,
        "problems": list(report.problems),
        "subgraphs": subgraphs,
    }
