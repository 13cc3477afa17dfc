"""Edit a .tflite flatbuffer without TensorFlow: unpack, change, compact, re-pack.

Uses the object API of the schema that ships with ai-edge-litert. :func:`pack` writes every
buffer's data 16-byte aligned (the schema's ``force_align: 16``, which the generated Python
code ignores), so weights stay aligned for TFLM and CMSIS-NN. :func:`compact` drops
operators' orphans: tensors no operator, subgraph or signature uses, buffers no tensor or
metadata uses, and operator codes no operator uses — renumbering every reference.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.tflite_model import FILE_IDENTIFIER

BUFFER_ALIGNMENT = 16


def unpack(data: bytes) -> Any:
    """The mutable object tree (``schema.ModelT``) of a .tflite flatbuffer."""
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


class _AlignedBufferT(schema.BufferT):
    """A BufferT whose data vector is 16-byte aligned, as the TFLite schema asks."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        data_off = None
        if self.data is not None and len(self.data):
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data_off = builder.EndVector()
        schema.BufferStart(builder)
        if data_off is not None:
            schema.BufferAddData(builder, data_off)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return int(schema.BufferEnd(builder))


def pack(model: Any) -> bytes:
    """Serialise a ``ModelT`` to .tflite bytes (deterministic; buffers 16-byte aligned)."""
    aligned = []
    for buf in model.buffers or []:
        a = _AlignedBufferT()
        a.data, a.offset, a.size = buf.data, buf.offset, buf.size
        aligned.append(a)
    original = model.buffers
    model.buffers = aligned
    try:
        size = sum(len(b.data) for b in aligned if b.data is not None)
        builder = flatbuffers.Builder(size + 4096)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        return bytes(builder.Output())
    finally:
        model.buffers = original


def tensor_users(subgraph: Any) -> dict[int, list[int]]:
    """Tensor index → indices of the operators that read it."""
    users: dict[int, list[int]] = {}
    for i, op in enumerate(subgraph.operators or []):
        for t in op.inputs if op.inputs is not None else []:
            if t >= 0:
                users.setdefault(int(t), []).append(i)
    return users


def op_name(model: Any, op: Any) -> str:
    """Builtin name of an operator (``TRANSPOSE``), ``CUSTOM`` for custom ones."""
    oc = model.operatorCodes[op.opcodeIndex]
    code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    return _BUILTIN_NAMES.get(code, f"UNKNOWN_{code}")


_BUILTIN_NAMES = {
    v: k
    for k, v in vars(schema.BuiltinOperator).items()
    if not k.startswith("_") and isinstance(v, int)
}


def buffer_array(model: Any, tensor: Any) -> np.ndarray:
    """A tensor's constant data as a numpy array of its type and shape (a copy)."""
    dtype = _NUMPY_OF_TYPE[int(tensor.type)]
    raw = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes()
    return np.frombuffer(raw, dtype=dtype).reshape([int(s) for s in tensor.shape]).copy()


def set_buffer_array(model: Any, subgraph: Any, tensor_index: int, value: np.ndarray) -> None:
    """Give tensor ``tensor_index`` new constant data (a fresh buffer if its one is shared)."""
    tensor = subgraph.tensors[tensor_index]
    sharers = sum(
        1 for sg in model.subgraphs for t in sg.tensors or [] if t.buffer == tensor.buffer
    )
    raw = np.frombuffer(np.ascontiguousarray(value).tobytes(), dtype=np.uint8)
    if sharers > 1:
        buf = schema.BufferT()
        model.buffers.append(buf)
        tensor.buffer = len(model.buffers) - 1
    model.buffers[tensor.buffer].data = raw


_NUMPY_OF_TYPE = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT32: np.uint32,
    schema.TensorType.BOOL: np.bool_,
}


def compact(model: Any) -> None:
    """Remove unused tensors, buffers and operator codes in place, renumbering references.

    A tensor is used when an operator reads or writes it, it is a subgraph input or output,
    or a signature names it. Buffer 0 (the empty sentinel) and buffers that metadata points
    at are always kept.
    """
    used_codes: set[int] = set()
    used_buffers: set[int] = {0}
    for md in model.metadata or []:
        used_buffers.add(int(md.buffer))
    sig_by_sg: dict[int, list[Any]] = {}
    for sig in model.signatureDefs or []:
        sig_by_sg.setdefault(int(sig.subgraphIndex), []).append(sig)

    for s, sg in enumerate(model.subgraphs):
        used: set[int] = set()
        for op in sg.operators or []:
            used_codes.add(int(op.opcodeIndex))
            used.update(int(t) for t in (op.inputs if op.inputs is not None else []) if t >= 0)
            used.update(int(t) for t in (op.outputs if op.outputs is not None else []))
            used.update(int(t) for t in (op.intermediates if op.intermediates is not None else []))
        used.update(int(t) for t in sg.inputs if sg.inputs is not None)
        used.update(int(t) for t in sg.outputs if sg.outputs is not None)
        for sig in sig_by_sg.get(s, []):
            used.update(int(m.tensorIndex) for m in (sig.inputs or []) + (sig.outputs or []))
        keep = sorted(used)
        remap = {old: new for new, old in enumerate(keep)}
        sg.tensors = [sg.tensors[i] for i in keep]

        def _re(v: Any, remap: dict[int, int] = remap) -> list[int] | None:
            if v is None:
                return None
            return [remap[int(t)] if t >= 0 else int(t) for t in v]

        for op in sg.operators or []:
            op.inputs = _re(op.inputs)
            op.outputs = _re(op.outputs)
            op.intermediates = _re(op.intermediates)
        sg.inputs = _re(sg.inputs)
        sg.outputs = _re(sg.outputs)
        for sig in sig_by_sg.get(s, []):
            for m in (sig.inputs or []) + (sig.outputs or []):
                m.tensorIndex = remap[int(m.tensorIndex)]
        used_buffers.update(int(t.buffer) for t in sg.tensors)

    keep_b = sorted(b for b in used_buffers if b < len(model.buffers))
    bremap = {old: new for new, old in enumerate(keep_b)}
    model.buffers = [model.buffers[i] for i in keep_b]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = bremap[int(t.buffer)]
    for md in model.metadata or []:
        md.buffer = bremap[int(md.buffer)]

    keep_c = sorted(used_codes)
    cremap = {old: new for new, old in enumerate(keep_c)}
    model.operatorCodes = [model.operatorCodes[i] for i in keep_c]
    for sg in model.subgraphs:
        for op in sg.operators or []:
            op.opcodeIndex = cremap[int(op.opcodeIndex)]
