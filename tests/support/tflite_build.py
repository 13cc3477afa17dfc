"""Build single-operator int8 .tflite flatbuffers directly (no TFLiteConverter: ~1 ms each).

Uses the object API of the TFLite schema that ships with ai-edge-litert and the project's
own packer (toolchain.convert.flatbuf.pack), so the tflite-micro interpreter reads them like
converter output. Used by the randomised kernel tests of the compiled runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.convert.flatbuf import pack

_TYPES = {"int8": schema.TensorType.INT8, "int32": schema.TensorType.INT32, "int64": schema.TensorType.INT64,
          "int16": schema.TensorType.INT16, "float32": schema.TensorType.FLOAT32}  # fmt: skip


@dataclass
class T:
    """A tensor: shape, dtype, quantization (scales/zero points), constant data or None."""

    shape: tuple[int, ...]
    dtype: str = "int8"
    scales: tuple[float, ...] = (1.0,)
    zero_points: tuple[int, ...] = (0,)
    data: np.ndarray | None = None
    qdim: int = 0


def _add(model: Any, sg: Any, t: T, name: str) -> int:
    """Append tensor ``t`` to subgraph ``sg`` (its constant data, if any, as a new buffer of
    ``model``) and return its index."""
    ten = schema.TensorT()
    ten.shape = list(t.shape)
    ten.type = _TYPES[t.dtype]
    ten.name = name
    q = schema.QuantizationParametersT()
    q.scale = [float(s) for s in t.scales]
    q.zeroPoint = [int(z) for z in t.zero_points]
    q.quantizedDimension = t.qdim
    ten.quantization = q
    ten.buffer = 0
    if t.data is not None:
        buf = schema.BufferT()
        buf.data = np.frombuffer(
            np.ascontiguousarray(t.data.astype(t.dtype)).tobytes(), dtype=np.uint8
        )
        model.buffers.append(buf)
        ten.buffer = len(model.buffers) - 1
    sg.tensors.append(ten)
    return len(sg.tensors) - 1


def single_op(
    op: str,
    inputs: list[T | None],
    outputs: list[T],
    options_type: int = 0,
    options: Any = None,
) -> bytes:
    """One-operator model: graph inputs are the non-constant inputs, outputs the outputs."""
    model = schema.ModelT()
    model.version = 3
    code = getattr(schema.BuiltinOperator, op)
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = 1
    model.operatorCodes = [oc]
    model.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors = []
    graph_inputs: list[int] = []

    in_idx = []
    for k, t in enumerate(inputs):
        if t is None:
            in_idx.append(-1)
            continue
        i = _add(model, sg, t, f"in{k}")
        in_idx.append(i)
        if t.data is None:
            graph_inputs.append(i)
    out_idx = [_add(model, sg, t, f"out{k}") for k, t in enumerate(outputs)]
    o = schema.OperatorT()
    o.opcodeIndex = 0
    o.inputs = in_idx
    o.outputs = out_idx
    o.builtinOptionsType = options_type
    o.builtinOptions = options
    sg.operators = [o]
    sg.inputs = graph_inputs
    sg.outputs = out_idx
    sg.name = "main"
    model.subgraphs = [sg]
    model.description = "single-op test model"
    return pack(model)


def chain(
    x: T,
    layers: list[tuple[str, list[T], T, int, Any]],
) -> bytes:
    """A model of operators in a row: each layer is (op, constant inputs, output, options
    type, options); its activation input is the previous layer's output (``x`` for the first).
    The graph input is ``x``, the graph output the last layer's output."""
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = []
    model.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors = []
    codes: dict[str, int] = {}

    prev = _add(model, sg, x, "input")
    sg.operators = []
    for k, (op, consts, y, options_type, options) in enumerate(layers):
        if op not in codes:
            code = getattr(schema.BuiltinOperator, op)
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            model.operatorCodes.append(oc)
            codes[op] = len(model.operatorCodes) - 1
        ins = [prev] + [_add(model, sg, c, f"l{k}_c{j}") for j, c in enumerate(consts)]
        out = _add(model, sg, y, f"l{k}_out")
        o = schema.OperatorT()
        o.opcodeIndex = codes[op]
        o.inputs = ins
        o.outputs = [out]
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        sg.operators.append(o)
        prev = out
    sg.inputs = [0]
    sg.outputs = [prev]
    sg.name = "main"
    model.subgraphs = [sg]
    model.description = "chain test model"
    return pack(model)
