"""Lean model bytes: the flatbuffer TFLM needs, without what its reader never looks at.

:func:`lean_model` rewrites a .tflite for the flash of an MCU. Every rule below comes from
reading tflite-micro's source at commit 90b983c2 (2026-08-20): the allocator
(``micro_allocator.cc``, ``micro_allocation_info.cc``, ``micro_interpreter_graph.cc``), the
kernel helpers (``tensorflow/lite/kernels/kernel_util.cc``) and every CONV_2D,
DEPTHWISE_CONV_2D, TRANSPOSE_CONV and FULLY_CONNECTED kernel (reference, CMSIS-NN, Xtensa,
ARC MLI, CEVA); the tests (``tests/host/test_emit_lean.py``) check each on many models.

1. **Names** of tensors and subgraphs: TFLM never reads ``Tensor.name`` or
   ``SubGraph.name``. They move to a side file (:func:`names_json`, ``<name>_tensors.json``);
   tensor and operator indices are unchanged, so per-layer tables and the profiler still
   name layers.
2. **Signature defs, description, metadata**: TFLM reads metadata by name only for
   ``OfflineMemoryAllocation`` (its offline memory plan) and ``COMPRESSION_METADATA``; those
   two are kept with their buffers, every other entry (``min_runtime_version``,
   ``CONVERSION_METADATA``…) and the deprecated ``metadata_buffer`` list go.
3. **Fields TFLM does not read**: ``Tensor.shape_signature`` and ``has_rank``, the
   quantization ``min`` / ``max`` / ``details`` and ``Operator.mutating_variable_inputs``.
   (``shape``, ``type``, ``buffer``, ``is_variable``, ``scale``, ``zero_point``,
   ``quantized_dimension`` and operators' ``intermediates`` are read and kept.)
4. **Zero points**: the allocator fills a tensor's per-channel ``zero_point`` array with
   ``zero_point[i]`` when the flatbuffer vector has as many entries as ``scale``, and with
   ``zero_point[0]`` otherwise (its comment: "As a space-saving optimization, zero point
   arrays for weights can be reduced to a single value"). So a vector whose values are all
   equal is written with one entry: the kernels see the same array. (It must keep at least
   one entry: without a zero point the allocator ignores the scales too.)
5. **Bias quantization of convolutions**: CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV
   compute their multipliers from the input, filter and output scales
   (``PopulateConvolutionQuantizationParams``); the bias scale is read only for uint8
   inputs (``GetQuantizedConvolutionMultipler``). So the quantization of a bias tensor
   (input 2, or 3 for TRANSPOSE_CONV, whose data input is 2) of an int8/int16 convolution goes, when the tensor is
   constant and no other operator or subgraph input/output uses it. FULLY_CONNECTED keeps
   its bias scale: its per-tensor path (and every path of the Xtensa kernel) checks
   ``|input scale × filter scale − bias scale| / output scale ≤ 0.02``.
6. **Buffers**: every tensor without data points at the empty buffer 0 (the converter
   gives each activation an empty buffer of its own), byte-identical constant buffers are
   shared (TFLM maps constant tensors read-only, ``kTfLiteMmapRo``; variable tensors keep
   their own buffers), and buffers nothing uses are dropped — unless the model carries
   ``COMPRESSION_METADATA``, which names buffers by index. Data stays 16-byte aligned
   (:func:`toolchain.convert.flatbuf.pack`).
7. **Shared tables**: tensors with equal shapes point at one shape vector, tensors with
   equal quantization at one ``QuantizationParameters`` table, and those tables at shared
   ``scale`` / ``zero_point`` vectors when the values are equal. A flatbuffer may reference
   an object from several places; TFLM only reads through the offsets (it copies
   quantization into its own structs, and ``shape`` is read-only: TFLM never reshapes a
   tensor in place).

The result must give bit-identical TFLM outputs; :func:`toolchain.emit.emit` checks that on
its golden inputs for every model it emits lean.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.convert import flatbuf
from toolchain.errors import TFLiteModelError
from toolchain.tflite_model import TFLiteModel

#: Metadata entries TFLM reads (micro_allocation_info.cc, compression.h).
TFLM_METADATA = ("OfflineMemoryAllocation", "COMPRESSION_METADATA")

#: op name → (index of its data input, index of its bias input), for the ops whose kernels
#: never read bias quantization for int8/int16 inputs (rule 5 of the module docstring).
_CONV_BIAS = {"CONV_2D": (0, 2), "DEPTHWISE_CONV_2D": (0, 2), "TRANSPOSE_CONV": (2, 3)}
_INT8_INT16 = (schema.TensorType.INT8, schema.TensorType.INT16)


@dataclass(frozen=True)
class LeanStats:
    """What :func:`lean_model` removed (counts) and the sizes before and after (bytes)."""

    bytes_before: int
    bytes_after: int
    names_removed: int
    metadata_removed: tuple[str, ...]
    signature_defs_removed: int
    zero_points_reduced: int
    bias_quantization_removed: int
    buffers_deduplicated: int
    buffers_removed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "names_removed": self.names_removed,
            "metadata_removed": list(self.metadata_removed),
            "signature_defs_removed": self.signature_defs_removed,
            "zero_points_reduced": self.zero_points_reduced,
            "bias_quantization_removed": self.bias_quantization_removed,
            "buffers_deduplicated": self.buffers_deduplicated,
            "buffers_removed": self.buffers_removed,
        }


@dataclass(frozen=True)
class LeanModel:
    """The lean flatbuffer, the names it no longer carries, and what was removed."""

    data: bytes
    names: dict[str, Any]
    stats: LeanStats


def _s(v: Any) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def names_json(model: TFLiteModel) -> dict[str, Any]:
    """The names a lean model drops, by index: ``subgraphs[s].tensors[t]`` is tensor ``t``'s
    name, ``subgraphs[s].operators[o]`` gives operator ``o``'s op and output tensor names
    (what per-layer tables and the profiler print)."""
    return {
        "schema": 1,
        "source_sha256": model.sha256,
        "subgraphs": [
            {
                "index": sg.index,
                "name": sg.name,
                "tensors": [t.name for t in sg.tensors],
                "operators": [
                    {
                        "index": op.index,
                        "op": op.name,
                        "outputs": [sg.tensors[i].name for i in op.outputs if i >= 0],
                    }
                    for op in sg.operators
                ],
            }
            for sg in model.subgraphs
        ],
    }


def lean_model(model: TFLiteModel, *, reduce_zero_points: bool = True) -> LeanModel:
    """Rewrite ``model`` without what TFLM never reads (rules in the module docstring).

    ``reduce_zero_points=False`` skips rule 4: LiteRT rejects a zero-point vector shorter
    than its scales ("QuantizationParam has 1 zero_point values and 64 scale values"), so
    only without it does LiteRT run the lean model too.

    Raises :class:`TFLiteModelError` for a model whose buffers live outside the flatbuffer
    (models over 2 GB): nothing an MCU runs.
    """
    m = flatbuf.unpack(model.data)
    for buf in m.buffers or []:
        if buf.offset and buf.offset > 1:
            raise TFLiteModelError(
                f"{model.source}: buffers stored outside the flatbuffer are not supported",
                hint="emit it with --no-lean",
            )
    names_removed = 0
    zp_reduced = 0
    bias_removed = 0

    # 2. signature defs, description, metadata TFLM does not read
    sigs = len(m.signatureDefs or [])
    m.signatureDefs = None
    m.description = None
    m.metadataBuffer = None
    kept_md: list[Any] = []
    dropped_md: list[Any] = []
    for md in m.metadata or []:
        (kept_md if _s(md.name) in TFLM_METADATA else dropped_md).append(md)
    m.metadata = kept_md or None

    codes = [
        flatbuf._BUILTIN_NAMES.get(max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), "")
        for oc in m.operatorCodes or []
    ]
    for sg in m.subgraphs or []:
        # 1. names
        if sg.name:
            names_removed += 1
        sg.name = None
        tensors = sg.tensors or []
        for t in tensors:
            if t.name:
                names_removed += 1
            t.name = None
            # 3. fields TFLM never reads
            t.shapeSignature = None
            t.hasRank = False
            t.__class__ = _SharedTensorT
            q = t.quantization
            if q is not None:
                q.min = q.max = None
                q.details, q.detailsType = None, 0
                # 4. one zero point when all are equal
                if reduce_zero_points and q.zeroPoint is not None and len(q.zeroPoint) > 1:
                    zps = [int(z) for z in q.zeroPoint]
                    if all(z == zps[0] for z in zps):
                        q.zeroPoint = [zps[0]]
                        zp_reduced += 1
        # 5. bias quantization of int8/int16 convolutions
        users: dict[int, list[tuple[str, int]]] = {}
        for op in sg.operators or []:
            op.mutatingVariableInputs = None
            name = codes[op.opcodeIndex]
            for pos, ti in enumerate(_ints(op.inputs)):
                if ti >= 0:
                    users.setdefault(int(ti), []).append((name, pos))
            for ti in _ints(op.outputs) + _ints(op.intermediates):
                users.setdefault(int(ti), []).append(("<written>", -1))
        io = set(_ints(sg.inputs)) | set(_ints(sg.outputs))
        for op in sg.operators or []:
            name = codes[op.opcodeIndex]
            slots = _CONV_BIAS.get(name)
            ins = _ints(op.inputs)
            if slots is None or len(ins) <= slots[1] or ins[slots[1]] < 0 or ins[slots[0]] < 0:
                continue
            bpos, bi = slots[1], ins[slots[1]]
            bias, x = tensors[bi], tensors[ins[slots[0]]]
            if (
                bias.quantization is not None
                and x.type in _INT8_INT16
                and bi not in io
                and not bias.isVariable
                and _has_data(m, bias)
                and all(u == (name, bpos) for u in users.get(bi, []))
            ):
                bias.quantization = None
                bias_removed += 1

    # 6. buffers: empty ones → 0, identical constant data shared, unused dropped
    n_before = len(m.buffers or [])
    deduped = 0
    if not any(_s(md.name) == "COMPRESSION_METADATA" for md in kept_md):
        # (TFLM's compression metadata names buffers by index inside its own blob: with it,
        # buffers keep their numbers)
        deduped = _share_buffers(m)
        _drop_unused_buffers(m)
    try:
        data = flatbuf.pack(m)
    finally:
        _MEMO.builder = _MEMO.offsets = None
    stats = LeanStats(
        bytes_before=model.size,
        bytes_after=len(data),
        names_removed=names_removed,
        metadata_removed=tuple(_s(md.name) for md in dropped_md),
        signature_defs_removed=sigs,
        zero_points_reduced=zp_reduced,
        bias_quantization_removed=bias_removed,
        buffers_deduplicated=deduped,
        buffers_removed=n_before - len(m.buffers or []),
    )
    names = names_json(model)
    names["lean_sha256"] = hashlib.sha256(data).hexdigest()
    return LeanModel(data=data, names=names, stats=stats)


_MEMO = threading.local()  # offsets of shared objects, for the builder being packed


class _SharedTensorT(schema.TensorT):
    """A TensorT that shares equal shape vectors and quantization tables (rule 7)."""

    def Pack(self, builder: Any) -> int:
        if self.sparsity is not None or self.variantTensors is not None or self.name is not None:
            return int(super().Pack(builder))
        if getattr(_MEMO, "builder", None) is not builder:
            _MEMO.builder, _MEMO.offsets = builder, {}
        memo: dict[Any, int] = _MEMO.offsets
        shape = None
        if self.shape is not None:
            dims = tuple(int(x) for x in self.shape)
            shape = memo.get(("shape", dims))
            if shape is None:
                schema.TensorStartShapeVector(builder, len(dims))
                for d in reversed(dims):
                    builder.PrependInt32(d)
                shape = memo[("shape", dims)] = builder.EndVector()
        quant = None
        if self.quantization is not None:
            q = self.quantization
            key = (
                "quant",
                None if q.scale is None else np.asarray(q.scale, np.float32).tobytes(),
                None if q.zeroPoint is None else tuple(int(z) for z in q.zeroPoint),
                int(q.quantizedDimension),
                q.min is None and q.max is None and q.details is None,
            )
            quant = memo.get(key)
            if quant is None:
                quant = memo[key] = _pack_quantization(builder, q, memo)
        schema.TensorStart(builder)
        if shape is not None:
            schema.TensorAddShape(builder, shape)
        schema.TensorAddType(builder, self.type)
        schema.TensorAddBuffer(builder, self.buffer)
        if quant is not None:
            schema.TensorAddQuantization(builder, quant)
        schema.TensorAddIsVariable(builder, self.isVariable)
        if self.shapeSignature is not None:
            sig = builder.CreateNumpyVector(np.asarray(self.shapeSignature, np.int32))
            schema.TensorAddShapeSignature(builder, sig)
        schema.TensorAddHasRank(builder, self.hasRank)
        schema.TensorAddExternalBuffer(builder, self.externalBuffer)
        return int(schema.TensorEnd(builder))


def _pack_quantization(builder: Any, q: Any, memo: dict[Any, int]) -> int:
    """A QuantizationParameters table whose scale and zero-point vectors are shared with
    every other table that has the same values (rule 7); min/max/details are packed as
    usual when present (they are not, after the lean rules)."""
    if q.min is not None or q.max is not None or q.details is not None:
        return int(q.Pack(builder))
    scale = zps = None
    if q.scale is not None:
        arr = np.asarray(q.scale, np.float32)
        key = ("scale", arr.tobytes())
        scale = memo.get(key)
        if scale is None:
            scale = memo[key] = builder.CreateNumpyVector(arr)
    if q.zeroPoint is not None:
        zarr = np.asarray(q.zeroPoint, np.int64)
        key = ("zp", zarr.tobytes())
        zps = memo.get(key)
        if zps is None:
            zps = memo[key] = builder.CreateNumpyVector(zarr)
    schema.QuantizationParametersStart(builder)
    if scale is not None:
        schema.QuantizationParametersAddScale(builder, scale)
    if zps is not None:
        schema.QuantizationParametersAddZeroPoint(builder, zps)
    schema.QuantizationParametersAddQuantizedDimension(builder, q.quantizedDimension)
    return int(schema.QuantizationParametersEnd(builder))


def _ints(v: Any) -> list[int]:
    return [] if v is None else [int(x) for x in v]


def _has_data(m: Any, t: Any) -> bool:
    b = m.buffers[t.buffer] if t.buffer < len(m.buffers or []) else None
    return b is not None and b.data is not None and len(b.data) > 0


def _share_buffers(m: Any) -> int:
    """Point empty-buffer tensors at buffer 0 and tensors with identical constant data at
    one buffer. Returns how many tensors were moved to a shared copy."""
    pinned = {int(md.buffer) for md in m.metadata or []}
    for sg in m.subgraphs or []:
        pinned |= {int(t.buffer) for t in sg.tensors or [] if t.isVariable}
    first: dict[bytes, int] = {}
    moved = 0
    for sg in m.subgraphs or []:
        for t in sg.tensors or []:
            b = int(t.buffer)
            if b in pinned:
                continue
            buf = m.buffers[b] if b < len(m.buffers or []) else None
            if buf is None or buf.data is None or len(buf.data) == 0:
                t.buffer = 0
                continue
            raw = bytes(bytearray(buf.data))
            key = hashlib.sha256(raw).digest() + len(raw).to_bytes(8, "little")
            keep = first.setdefault(key, b)
            if keep != b:
                t.buffer = keep
                moved += 1
    return moved


def _drop_unused_buffers(m: Any) -> None:
    used = {0} | {int(md.buffer) for md in m.metadata or []}
    for sg in m.subgraphs or []:
        used |= {int(t.buffer) for t in sg.tensors or []}
    keep = sorted(b for b in used if b < len(m.buffers or []))
    remap = {old: new for new, old in enumerate(keep)}
    m.buffers = [m.buffers[i] for i in keep]
    if m.buffers and m.buffers[0].data is not None and len(m.buffers[0].data):
        raise TFLiteModelError("buffer 0 of the model holds data; it must be the empty buffer")
    for sg in m.subgraphs or []:
        for t in sg.tensors or []:
            t.buffer = remap[int(t.buffer)]
    for md in m.metadata or []:
        md.buffer = remap[int(md.buffer)]
