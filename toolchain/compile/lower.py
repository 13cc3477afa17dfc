"""Lowering: an int8 .tflite graph → :class:`~toolchain.compile.ir.Graph`.

Every operator becomes one kernel call whose shapes, strides, paddings, zero points and
fixed-point multipliers are computed here, in Python, the way TFLM's kernels compute them in
their Prepare step (see :mod:`.quant`), so the generated code is bit-exact with TFLM's
reference kernels. Weights are re-laid out the way our kernels read them (depthwise filters
channel-major; FC biases with the input zero point folded in).

An operator we have no kernel for raises :class:`~toolchain.errors.CompileError` naming it,
its index and its output tensor, and saying that ``--runtime tflm`` runs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.compile import quant
from toolchain.compile.ir import CTYPES, ConstArray, FieldValue, Graph, Op, Tensor
from toolchain.convert.flatbuf import unpack
from toolchain.errors import CompileError
from toolchain.tflite_model import TFLiteModel

_TYPE_NAMES = {
    v: k.lower()
    for k, v in vars(schema.TensorType).items()
    if not k.startswith("_") and isinstance(v, int)
}
_BUILTIN_NAMES = {
    v: k
    for k, v in vars(schema.BuiltinOperator).items()
    if not k.startswith("_") and isinstance(v, int)
}
_ACT_NAMES = {0: "", 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
#: operators whose output is a view of their first input (no copy, no kernel)
ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
ACTIVATION_TYPES = frozenset({"int8", "int16"})
#: operators with int16x8 kernels (int16 activations, int8 weights); the rest are int8 only
INT16_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "AVERAGE_POOL_2D",
        "MAX_POOL_2D",
        "ADD",
        "SUB",
        "MUL",
        "SQUARED_DIFFERENCE",
        "RSQRT",
        "BATCH_MATMUL",
        "MEAN",
        "SUM",
        "SOFTMAX",
        "LOGISTIC",
        "TANH",
        "QUANTIZE",
        "RELU",
        "RELU6",
        "TRANSPOSE",
        "CONCATENATION",
        "PAD",
        "PADV2",
        "STRIDED_SLICE",
        "SPLIT",
        "SPLIT_V",
        "RESIZE_NEAREST_NEIGHBOR",
    }
    | ALIAS_OPS
)


class Unsupported(Exception):
    """Raised inside a lowering function: this op (as configured) has no kernel. ``hint``
    replaces the default "`--runtime tflm` runs this model" advice where that is untrue."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class _Ctx:
    """What lowering functions need: the model's object tree and the tensors made so far."""

    model: Any
    sg: Any
    tensors: dict[int, Tensor]

    def t(self, i: int) -> Any:
        return self.sg.tensors[i]

    def dtype(self, i: int) -> str:
        return _TYPE_NAMES.get(int(self.t(i).type), f"type{self.t(i).type}")

    def shape(self, i: int) -> tuple[int, ...]:
        s = self.t(i).shape
        return tuple(int(x) for x in s) if s is not None else ()

    def is_const(self, i: int) -> bool:
        buf = self.model.buffers[self.t(i).buffer]
        return buf.data is not None and len(buf.data) > 0

    def const(self, i: int, dtype: str) -> np.ndarray:
        if not self.is_const(i):
            raise Unsupported(f"tensor {self.name(i)!r} must be a constant")
        if self.dtype(i) != dtype:
            raise Unsupported(f"constant {self.name(i)!r} is {self.dtype(i)}, expected {dtype}")
        raw = np.asarray(self.model.buffers[self.t(i).buffer].data, dtype=np.uint8).tobytes()
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(self.shape(i)).copy()

    def name(self, i: int) -> str:
        n = self.t(i).name
        return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")

    def scales(self, i: int) -> tuple[tuple[float, ...], tuple[int, ...]]:
        q = self.t(i).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return (), ()
        zps = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
        return tuple(float(s) for s in q.scale), tuple(int(z) for z in zps)

    def act(self, i: int) -> Tensor:
        """The activation tensor ``i`` (created on first use); must be quantized int8."""
        if i in self.tensors:
            return self.tensors[i]
        if self.is_const(i):
            raise Unsupported(f"constant tensor {self.name(i)!r} used as an activation")
        dt = self.dtype(i)
        if dt not in ACTIVATION_TYPES:
            raise Unsupported(f"tensor {self.name(i)!r} is {dt}; int8 or int16 activations only")
        scales, zps = self.scales(i)
        if len(scales) != 1:
            raise Unsupported(f"tensor {self.name(i)!r} is not quantized per-tensor")
        shape = self.shape(i)
        if any(d <= 0 for d in shape):
            raise Unsupported(f"tensor {self.name(i)!r} has a dynamic shape {shape}")
        t = Tensor(i, self.name(i), shape, dt, scales[0], zps[0])
        self.tensors[i] = t
        return t


def _operands(
    ctx: _Ctx, op: Any
) -> tuple[Tensor, Tensor, tuple[int, int], list[ConstArray | None]]:
    """The two operands of a binary operator, either of which may be a constant (then a
    tensor description that is not in the graph, and its data as a ConstArray); the tensor
    indices the kernel call passes (the activation twice when one operand is constant) and
    the [const1, const2] fields."""
    ts: list[Tensor] = []
    consts: list[ConstArray | None] = []
    for i in (int(op.inputs[0]), int(op.inputs[1])):
        if not ctx.is_const(i):
            ts.append(ctx.act(i))
            consts.append(None)
            continue
        dt = ctx.dtype(i)
        if dt not in ACTIVATION_TYPES:
            raise Unsupported(f"constant operand {ctx.name(i)!r} is {dt}")
        scales, zps = ctx.scales(i)
        if len(scales) != 1:
            raise Unsupported(f"constant operand {ctx.name(i)!r} is not quantized per-tensor")
        ts.append(Tensor(i, ctx.name(i), ctx.shape(i), dt, scales[0], zps[0]))
        consts.append(ConstArray(CTYPES[dt], ctx.const(i, dt), "constant operand"))
    if consts[0] is not None and consts[1] is not None:
        raise Unsupported("both operands are constants")
    live = ts[1] if consts[0] is not None else ts[0]
    idx = (live.index if consts[0] is not None else ts[0].index,
           live.index if consts[1] is not None else ts[1].index)  # fmt: skip
    return ts[0], ts[1], idx, consts


def _i32(values: Any) -> ConstArray:
    arr = np.asarray(values, dtype=np.int64)
    if arr.size and (arr.min() < quant.INT32_MIN or arr.max() > quant.INT32_MAX):
        raise Unsupported("a precomputed constant does not fit in int32")
    return ConstArray("int32_t", arr.astype(np.int32), "")


def _shifts(values: list[int]) -> ConstArray:
    """Per-channel shifts fit in int8 (QuantizeMultiplier gives -31..30)."""
    arr = np.asarray(values, dtype=np.int64)
    if arr.size and (arr.min() < -128 or arr.max() > 127):
        raise Unsupported("a requantization shift does not fit in int8")
    return ConstArray("int8_t", arr.astype(np.int8), "shift")


def _named(arr: ConstArray, what: str) -> ConstArray:
    return ConstArray(arr.ctype, arr.values, what)


def _act_range(act: int, out: Tensor) -> tuple[int, int]:
    if act not in _ACT_NAMES:
        raise Unsupported(f"fused activation {act} is not supported")
    return quant.activation_range(act, out.scale, out.zero_point, out.dtype)


def _padding(kind: int, in_size: int, k: int, stride: int, dil: int, out_size: int) -> int:
    eff = (k - 1) * dil + 1
    if kind == schema.Padding.SAME:
        expect = (in_size + stride - 1) // stride
    else:
        expect = (in_size - eff + stride) // stride
    if expect != out_size:
        raise Unsupported(f"output size {out_size} does not match the padding (expected {expect})")
    total = (out_size - 1) * stride + eff - in_size
    return max(total, 0) // 2


def _pad_name(kind: int) -> str:
    return "SAME" if kind == schema.Padding.SAME else "VALID"


def _shape_s(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _nhwc(t: Tensor) -> tuple[int, int, int, int]:
    if len(t.shape) != 4:
        raise Unsupported(f"tensor {t.name!r} has shape {t.shape}; 4-D NHWC expected")
    b, h, w, c = t.shape
    return b, h, w, c


def _bias(ctx: _Ctx, op: Any, n: int) -> np.ndarray | None:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    b = ctx.const(int(op.inputs[2]), "int32").reshape(-1)
    if b.size != n:
        raise Unsupported(f"bias has {b.size} values for {n} channels")
    return b


def _filter_quant(ctx: _Ctx, fi: int, channels: int) -> tuple[float, ...]:
    scales, zps = ctx.scales(fi)
    if not scales:
        raise Unsupported("the filter is not quantized (float or hybrid model)")
    if any(z != 0 for z in zps):
        raise Unsupported("the filter has a non-zero zero point")
    if len(scales) not in (1, channels):
        raise Unsupported(f"the filter has {len(scales)} scales for {channels} channels")
    return scales


# --- one function per operator ---------------------------------------------------------------


def _bias64(ctx: _Ctx, op: Any, n: int) -> np.ndarray | None:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    bt = ctx.dtype(int(op.inputs[2]))
    if bt != "int64":
        raise Unsupported(f"int16x8 layer with a {bt} bias (TFLM's int32-accumulator variant)")
    b = ctx.const(int(op.inputs[2]), "int64").reshape(-1)
    if b.size != n:
        raise Unsupported(f"bias has {b.size} values for {n} channels")
    return b


def _i64(values: np.ndarray, what: str) -> ConstArray:
    return ConstArray("int64_t", np.asarray(values, np.int64), what)


def _check_int16(x: Tensor, y: Tensor) -> None:
    if x.dtype != "int16" or y.dtype != "int16":
        raise Unsupported(f"mixed {x.dtype} input and {y.dtype} output")
    if x.zero_point != 0 or y.zero_point != 0:
        raise Unsupported("int16 tensors need zero point 0")


def _conv16(ctx: _Ctx, op: Any, index: int, depthwise: bool) -> Op:
    o = op.builtinOptions
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    _check_int16(x, y)
    w = ctx.const(int(op.inputs[1]), "int8")
    b, ih, iw, ic = _nhwc(x)
    _, oh, ow, oc = _nhwc(y)
    if depthwise:
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != oc or oc % ic:
            raise Unsupported(f"filter shape {w.shape} does not match {oc} output channels")
        _, kh, kw, _ = w.shape
        wl = np.ascontiguousarray(w.reshape(kh, kw, oc).transpose(2, 0, 1))
        groups, dm = 1, oc // ic
    else:
        if w.ndim != 4 or w.shape[0] != oc:
            raise Unsupported(f"filter shape {w.shape} does not match {oc} output channels")
        _, kh, kw, fic = w.shape
        if ic % fic or oc % (ic // fic):
            raise Unsupported(f"filter depth {fic} does not divide the input depth {ic}")
        wl, groups, dm = w, ic // fic, 1
    sh, sw = int(o.strideH), int(o.strideW)
    dh, dw = int(o.dilationHFactor) or 1, int(o.dilationWFactor) or 1
    scales = _filter_quant(ctx, int(op.inputs[1]), oc)
    mult, shift = quant.per_channel_multipliers(x.scale, scales, y.scale, oc)
    lo, hi = _act_range(int(o.fusedActivationFunction), y)
    bias = _bias64(ctx, op, oc)
    fields: dict[str, FieldValue] = {
        "batches": b, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc,
        "k_h": kh, "k_w": kw, "groups": groups, "depth_mult": dm,
        "stride_h": sh, "stride_w": sw, "dil_h": dh, "dil_w": dw,
        "pad_h": _padding(o.padding, ih, kh, sh, dh, oh),
        "pad_w": _padding(o.padding, iw, kw, sw, dw, ow),
        "out_offset": y.zero_point, "act_min": lo, "act_max": hi,
        "weights": ConstArray("int8_t", wl, "weights"),
        "bias": None if bias is None else _i64(bias, "bias"),
        "mult": _named(_i32(mult), "mult"),
        "shift": _shifts(shift),
    }  # fmt: skip
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    func = "edc_dwconv_s16" if depthwise else "edc_conv_s16"
    act = _ACT_NAMES[int(o.fusedActivationFunction)]
    summary = (f"int16x8 {kh}x{kw}/{sh}x{sw} {_pad_name(o.padding)}, "
               f"{'depth multiplier ' + str(dm) if depthwise else str(oc) + ' filters'}"
               f"{', ' + act if act else ''}")  # fmt: skip
    return Op(index, kind, "edc_conv16", func, "edc_conv16_params", fields,
              (x.index,), (y.index,), summary)  # fmt: skip


def _fc_multipliers(
    ctx: _Ctx, op: Any, x: Tensor, y: Tensor, n_out: int
) -> tuple[bool, list[int], list[int]]:
    """A fully-connected op's requantisation: (per_channel, multipliers, shifts).

    One multiplier/shift pair per output channel when the filter is quantised per channel,
    else a single pair.
    """
    scales = _filter_quant(ctx, int(op.inputs[1]), n_out)
    per_channel = len(scales) > 1
    mult, shift = quant.per_channel_multipliers(
        x.scale, scales, y.scale, n_out if per_channel else 1
    )
    return per_channel, mult, shift


def _fc16(ctx: _Ctx, op: Any, index: int) -> Op:
    o = op.builtinOptions
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    _check_int16(x, y)
    w = ctx.const(int(op.inputs[1]), "int8")
    if w.ndim != 2:
        raise Unsupported(f"filter shape {w.shape} is not 2-D")
    n_out, depth = w.shape
    n_in = int(np.prod(x.shape)) if x.shape else 1
    if n_in % depth or int(np.prod(y.shape)) != (n_in // depth) * n_out:
        raise Unsupported("input/output sizes do not match the filter")
    per_channel, mult, shift = _fc_multipliers(ctx, op, x, y, n_out)
    act_fn = int(o.fusedActivationFunction) if o is not None else 0
    lo, hi = _act_range(act_fn, y)
    bias = _bias64(ctx, op, n_out)
    fields: dict[str, FieldValue] = {
        "batches": n_in // depth, "in_depth": depth, "out_depth": n_out,
        "per_channel": int(per_channel), "out_offset": y.zero_point,
        "act_min": lo, "act_max": hi,
        "weights": ConstArray("int8_t", w, "weights"),
        "bias": None if bias is None else _i64(bias, "bias"),
        "mult": _named(_i32(mult), "mult"),
        "shift": _shifts(shift),
    }  # fmt: skip
    act = _ACT_NAMES[act_fn]
    return Op(index, "FULLY_CONNECTED", "edc_conv16", "edc_fc_s16", "edc_fc16_params", fields,
              (x.index,), (y.index,), f"int16x8 {depth} -> {n_out}{', ' + act if act else ''}")  # fmt: skip


def _always_inside(i: int, k: int, s: int, d: int, pad: int, o: int) -> bool:
    """True when every output position's filter window lies inside the input (no border)."""
    return pad == 0 and (o - 1) * s + (k - 1) * d + 1 <= i


def _conv_common(
    ctx: _Ctx, op: Any, x: Tensor, y: Tensor, weights: np.ndarray, what: str
) -> tuple[dict[str, FieldValue], str]:
    """The parameters CONV_2D and DEPTHWISE_CONV_2D share, and the op's summary line.

    ``weights`` is the int8 filter as the kernel reads it, output channel first
    (``oc x kh x kw [x depth]``); the returned fields run from ``stride_h`` to ``shift`` in
    the order of the C params structs. ``what`` names the op's channel shape in the summary.
    """
    o = op.builtinOptions
    _, ih, iw, _ = _nhwc(x)
    _, oh, ow, oc = _nhwc(y)
    kh, kw = int(weights.shape[1]), int(weights.shape[2])
    sh, sw = int(o.strideH), int(o.strideW)
    dh, dw = int(o.dilationHFactor) or 1, int(o.dilationWFactor) or 1
    scales = _filter_quant(ctx, int(op.inputs[1]), oc)
    mult, shift = quant.per_channel_multipliers(x.scale, scales, y.scale, oc)
    lo, hi = _act_range(int(o.fusedActivationFunction), y)
    bias = _bias(ctx, op, oc)
    folded = (np.zeros(oc, np.int64) if bias is None else bias.astype(np.int64)) + (
        -x.zero_point
    ) * weights.astype(np.int64).reshape(oc, -1).sum(axis=1)
    pad_h = _padding(o.padding, ih, kh, sh, dh, oh)
    pad_w = _padding(o.padding, iw, kw, sw, dw, ow)
    inside = _always_inside(ih, kh, sh, dh, pad_h, oh) and _always_inside(iw, kw, sw, dw, pad_w, ow)
    fields: dict[str, FieldValue] = {
        "stride_h": sh, "stride_w": sw, "dil_h": dh, "dil_w": dw,
        "pad_h": pad_h, "pad_w": pad_w,
        "in_offset": -x.zero_point, "out_offset": y.zero_point, "act_min": lo, "act_max": hi,
        "weights": ConstArray("int8_t", weights, "weights"),
        # the plain bias is only read at border pixels
        "bias": None if bias is None or inside else _named(_i32(bias), "bias"),
        "bias_folded": _named(_i32(folded), "bias + input offset x weight sums"),
        "mult": _named(_i32(mult), "mult"),
        "shift": _shifts(shift),
    }  # fmt: skip
    act = _ACT_NAMES[int(o.fusedActivationFunction)]
    dil = f" dilation {dh}x{dw}" if dh * dw > 1 else ""
    summary = f"{kh}x{kw}/{sh}x{sw} {_pad_name(o.padding)}{dil}, {what}{', ' + act if act else ''}"
    return fields, summary


def _conv(ctx: _Ctx, op: Any, index: int) -> Op:
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    if x.dtype == "int16":
        return _conv16(ctx, op, index, depthwise=False)
    w = ctx.const(int(op.inputs[1]), "int8")
    b, ih, iw, ic = _nhwc(x)
    _, oh, ow, oc = _nhwc(y)
    if w.ndim != 4 or w.shape[0] != oc:
        raise Unsupported(f"filter shape {w.shape} does not match {oc} output channels")
    _, kh, kw, fic = w.shape
    if ic % fic or oc % (ic // fic):
        raise Unsupported(f"filter depth {fic} does not divide the input depth {ic}")
    common, summary = _conv_common(ctx, op, x, y, w, f"{oc} filters")
    fields: dict[str, FieldValue] = {
        "batches": b, "in_h": ih, "in_w": iw, "in_c": ic,
        "out_h": oh, "out_w": ow, "out_c": oc,
        "k_h": kh, "k_w": kw, "groups": ic // fic,
        **common,
    }  # fmt: skip
    return Op(index, "CONV_2D", "edc_conv", "edc_conv_s8", "edc_conv_s8_params", fields,
              (x.index,), (y.index,), summary)  # fmt: skip


def _dwconv(ctx: _Ctx, op: Any, index: int) -> Op:
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    if x.dtype == "int16":
        return _conv16(ctx, op, index, depthwise=True)
    w = ctx.const(int(op.inputs[1]), "int8")
    b, ih, iw, ic = _nhwc(x)
    _, oh, ow, oc = _nhwc(y)
    if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != oc:
        raise Unsupported(f"filter shape {w.shape} does not match {oc} output channels")
    if oc % ic:
        raise Unsupported(f"{oc} output channels are no multiple of {ic} input channels")
    _, kh, kw, _ = w.shape
    # the kernel reads the filter channel first: oc x kh x kw
    wt = np.ascontiguousarray(w.reshape(kh, kw, oc).transpose(2, 0, 1))
    common, summary = _conv_common(ctx, op, x, y, wt, f"depth multiplier {oc // ic}")
    fields: dict[str, FieldValue] = {
        "batches": b, "in_h": ih, "in_w": iw, "in_c": ic,
        "out_h": oh, "out_w": ow, "depth_mult": oc // ic, "k_h": kh, "k_w": kw,
        **common,
    }  # fmt: skip
    return Op(index, "DEPTHWISE_CONV_2D", "edc_dwconv", "edc_dwconv_s8", "edc_dwconv_s8_params",
              fields, (x.index,), (y.index,), summary)  # fmt: skip


def _fc(ctx: _Ctx, op: Any, index: int) -> Op:
    o = op.builtinOptions
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    if x.dtype == "int16":
        return _fc16(ctx, op, index)
    if o is not None and int(o.weightsFormat) != 0:
        raise Unsupported("shuffled FC weights are not supported")
    w = ctx.const(int(op.inputs[1]), "int8")
    if w.ndim != 2:
        raise Unsupported(f"filter shape {w.shape} is not 2-D")
    n_out, depth = w.shape
    n_in = int(np.prod(x.shape)) if x.shape else 1
    if n_in % depth:
        raise Unsupported(f"input of {n_in} values is no multiple of the depth {depth}")
    batches = n_in // depth
    if int(np.prod(y.shape)) != batches * n_out:
        raise Unsupported(f"output shape {y.shape} does not match {batches}x{n_out}")
    per_channel, mult, shift = _fc_multipliers(ctx, op, x, y, n_out)
    act_fn = int(o.fusedActivationFunction) if o is not None else 0
    lo, hi = _act_range(act_fn, y)
    bias = _bias(ctx, op, n_out)
    folded = (np.zeros(n_out, np.int64) if bias is None else bias.astype(np.int64)) + (
        -x.zero_point
    ) * w.astype(np.int64).sum(axis=1)
    fields: dict[str, FieldValue] = {
        "batches": batches, "in_depth": depth, "out_depth": n_out,
        "per_channel": int(per_channel),
        "out_offset": y.zero_point, "act_min": lo, "act_max": hi,
        "weights": ConstArray("int8_t", w, "weights"),
        "bias": _named(_i32(folded), "bias"),
        "mult": _named(_i32(mult), "mult"),
        "shift": _shifts(shift),
    }  # fmt: skip
    act = _ACT_NAMES[act_fn]
    summary = f"{depth} -> {n_out}{', ' + act if act else ''}"
    return Op(index, "FULLY_CONNECTED", "edc_fc", "edc_fc_s8", "edc_fc_s8_params", fields,
              (x.index,), (y.index,), summary)  # fmt: skip


def _pool(kind: str) -> Callable[[_Ctx, Any, int], Op]:
    def lower_pool(ctx: _Ctx, op: Any, index: int) -> Op:
        o = op.builtinOptions
        x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
        b, ih, iw, c = _nhwc(x)
        _, oh, ow, oc = _nhwc(y)
        if oc != c:
            raise Unsupported("pooling changes the channel count")
        if kind == "AVERAGE_POOL_2D" and (x.scale != y.scale or x.zero_point != y.zero_point):
            raise Unsupported("average pooling with different input and output quantization")
        if kind == "MAX_POOL_2D" and (x.scale != y.scale or x.zero_point != y.zero_point):
            raise Unsupported("max pooling with different input and output quantization")
        kh, kw = int(o.filterHeight), int(o.filterWidth)
        sh, sw = int(o.strideH), int(o.strideW)
        lo, hi = _act_range(int(o.fusedActivationFunction), y)
        fields: dict[str, FieldValue] = {
            "batches": b, "in_h": ih, "in_w": iw, "channels": c,
            "out_h": oh, "out_w": ow, "k_h": kh, "k_w": kw,
            "stride_h": sh, "stride_w": sw,
            "pad_h": _padding(o.padding, ih, kh, sh, 1, oh),
            "pad_w": _padding(o.padding, iw, kw, sw, 1, ow),
            "act_min": lo, "act_max": hi,
        }  # fmt: skip
        func = "edc_avgpool_s8" if kind == "AVERAGE_POOL_2D" else "edc_maxpool_s8"
        if x.dtype != y.dtype:
            raise Unsupported(f"mixed {x.dtype} input and {y.dtype} output")
        if x.dtype == "int16":
            func = func.replace("_s8", "_s16")
        summary = f"{kh}x{kw}/{sh}x{sw} {_pad_name(o.padding)}"
        return Op(index, kind, "edc_pool", func, "edc_pool_params", fields,
                  (x.index,), (y.index,), summary)  # fmt: skip

    return lower_pool


def _broadcast(a: Tensor, b: Tensor, y: Tensor) -> dict[str, FieldValue]:
    if len(y.shape) > 6:
        raise Unsupported("more than 6 dimensions")
    dims = [1] * (6 - len(y.shape)) + list(y.shape)

    def strides(t: Tensor) -> list[int]:
        if len(t.shape) > 6:
            raise Unsupported("more than 6 dimensions")
        shp = [1] * (6 - len(t.shape)) + list(t.shape)
        out, acc = [0] * 6, 1
        for k in range(5, -1, -1):
            if shp[k] not in (1, dims[k]):
                raise Unsupported(f"shapes {a.shape} and {b.shape} do not broadcast to {y.shape}")
            out[k] = acc if shp[k] == dims[k] and dims[k] > 1 else 0
            acc *= shp[k]
        return out

    same = a.shape == b.shape == y.shape
    return {
        "size": int(np.prod(dims)),
        "broadcast": 0 if same else 1,
        "dims": dims,
        "s1": strides(a),
        "s2": strides(b),
    }


def _binary_fields(
    a: Tensor,
    b: Tensor,
    y: Tensor,
    consts: list[ConstArray | None],
    left_shift: int,
    in1: tuple[int, int],
    in2: tuple[int, int],
    out: tuple[int, int],
    act_min: int,
    act_max: int,
) -> dict[str, FieldValue]:
    """The fields of ``edc_binary_params``: broadcast strides, offsets, the two input and the
    output (multiplier, shift) rescales, the activation range and constant operands."""
    fields = _broadcast(a, b, y)
    fields.update({
        "in1_offset": -a.zero_point, "in2_offset": -b.zero_point,
        "out_offset": y.zero_point, "left_shift": left_shift,
        "in1_mult": in1[0], "in1_shift": in1[1], "in2_mult": in2[0], "in2_shift": in2[1],
        "out_mult": out[0], "out_shift": out[1], "act_min": act_min, "act_max": act_max,
        "const1": consts[0], "const2": consts[1],
    })  # fmt: skip
    return fields


def _add_sub(kind: str) -> Callable[[_Ctx, Any, int], Op]:
    def lower_add_sub(ctx: _Ctx, op: Any, index: int) -> Op:
        o = op.builtinOptions
        a, b, idx, consts = _operands(ctx, op)
        y = ctx.act(int(op.outputs[0]))
        s16 = a.dtype == "int16"
        if s16 and (b.dtype != "int16" or y.dtype != "int16"):
            raise Unsupported(f"mixed {a.dtype}/{b.dtype} inputs and {y.dtype} output")
        if s16 and (a.zero_point or b.zero_point or y.zero_point):
            raise Unsupported("int16 tensors need zero point 0")
        # TFLM's int16 ADD/SUB always take the general-scale path (pot_scale_int16 is ignored)
        left_shift = 15 if s16 else 20
        twice_max = 2.0 * float(max(np.float32(a.scale), np.float32(b.scale)))
        m1, s1 = quant.quantize_multiplier(float(np.float32(a.scale)) / twice_max)
        m2, s2 = quant.quantize_multiplier(float(np.float32(b.scale)) / twice_max)
        real_out = twice_max / ((1 << left_shift) * float(np.float32(y.scale)))
        if not 0.0 < real_out < 1.0:
            raise Unsupported("the output scale is too small for TFLM's int8 ADD/SUB")
        mo, so = quant.quantize_multiplier(real_out)
        act_fn = int(o.fusedActivationFunction) if o is not None else 0
        lo, hi = _act_range(act_fn, y)
        fields = _binary_fields(a, b, y, consts, left_shift, (m1, s1), (m2, s2), (mo, so), lo, hi)
        func = f"edc_{kind.lower()}_{'s16' if s16 else 's8'}"
        act = _ACT_NAMES[act_fn]
        summary = f"{_shape_s(a.shape)} {'+' if kind == 'ADD' else '-'} {_shape_s(b.shape)}"
        summary += f", {act}" if act else ""
        return Op(index, kind, "edc_binary", func, "edc_binary_params", fields,
                  idx, (y.index,), summary)  # fmt: skip

    return lower_add_sub


def _same_type_operands(
    ctx: _Ctx, op: Any
) -> tuple[Tensor, Tensor, tuple[int, int], list[ConstArray | None], Tensor, bool]:
    """A two-input op's operands (see :func:`_operands`) and output, all of one type (int16
    ones with zero point 0, as TFLM's int16 kernels take them); the last item: int16."""
    a, b, idx, consts = _operands(ctx, op)
    y = ctx.act(int(op.outputs[0]))
    s16 = a.dtype == "int16"
    if a.dtype != b.dtype or a.dtype != y.dtype:
        raise Unsupported(f"mixed {a.dtype}/{b.dtype} inputs and {y.dtype} output")
    if s16 and (a.zero_point or b.zero_point or y.zero_point):
        raise Unsupported("int16 tensors need zero point 0")
    return a, b, idx, consts, y, s16


def _mul(ctx: _Ctx, op: Any, index: int) -> Op:
    o = op.builtinOptions
    a, b, idx, consts, y, s16 = _same_type_operands(ctx, op)
    real = float(np.float32(a.scale)) * float(np.float32(b.scale)) / float(np.float32(y.scale))
    mo, so = quant.quantize_multiplier(real)
    act_fn = int(o.fusedActivationFunction) if o is not None else 0
    lo, hi = _act_range(act_fn, y)
    fields = _binary_fields(a, b, y, consts, 0, (0, 0), (0, 0), (mo, so), lo, hi)
    act = _ACT_NAMES[act_fn]
    summary = f"{_shape_s(a.shape)} * {_shape_s(b.shape)}" + (f", {act}" if act else "")
    func = "edc_mul_s16" if s16 else "edc_mul_s8"
    return Op(index, "MUL", "edc_binary", func, "edc_binary_params", fields,
              idx, (y.index,), summary)  # fmt: skip


def _squared_difference(ctx: _Ctx, op: Any, index: int) -> Op:
    """(a - b)² as TFLM's SQUARED_DIFFERENCE: both inputs rescaled to twice the larger scale
    after a left shift (7 for int8, 0 for int16), squared in int32, one output rescale."""
    a, b, idx, consts, y, s16 = _same_type_operands(ctx, op)
    left_shift = 0 if s16 else 7
    (m1, s1), (m2, s2), (mo, so) = quant.squared_difference_params(
        a.scale, b.scale, y.scale, left_shift
    )
    lo, hi = _TYPE_RANGE[y.dtype]
    fields = _binary_fields(a, b, y, consts, left_shift, (m1, s1), (m2, s2), (mo, so), lo, hi)
    func = "edc_sqdiff_s16" if s16 else "edc_sqdiff_s8"
    return Op(index, "SQUARED_DIFFERENCE", "edc_binary", func, "edc_binary_params", fields,
              idx, (y.index,), f"({_shape_s(a.shape)} - {_shape_s(b.shape)})^2")  # fmt: skip


def _batch_matmul(ctx: _Ctx, op: Any, index: int) -> Op:
    """BATCH_MATMUL (TFLM's reference: int32 sums for int8, int64 for int16x8, one
    requantization with input_scale·filter_scale as a float product, no fused activation).
    adj_x / adj_y and broadcast batch dimensions become element strides."""
    o = op.builtinOptions
    a, b, idx, consts, y, s16 = _same_type_operands(ctx, op)
    if not (2 <= len(a.shape) <= 5 and 2 <= len(b.shape) <= 5):
        raise Unsupported(f"operand ranks {len(a.shape)} and {len(b.shape)} (2..5 supported)")
    adj_x = bool(o.adjX) if o is not None else False
    adj_y = bool(o.adjY) if o is not None else False
    m, k = (a.shape[-1], a.shape[-2]) if adj_x else (a.shape[-2], a.shape[-1])
    k2, n = (b.shape[-1], b.shape[-2]) if adj_y else (b.shape[-2], b.shape[-1])
    if k != k2:
        raise Unsupported(f"inner dimensions {k} and {k2} differ")
    nb = max(len(a.shape), len(b.shape)) - 2
    if nb > 3:
        raise Unsupported("more than 3 batch dimensions")
    ba = [1] * (3 - (len(a.shape) - 2)) + list(a.shape[:-2])
    bb = [1] * (3 - (len(b.shape) - 2)) + list(b.shape[:-2])
    batch = []
    for da, db in zip(ba, bb, strict=True):
        if da != db and 1 not in (da, db):
            raise Unsupported(f"batch dimensions of {a.shape} and {b.shape} do not broadcast")
        batch.append(max(da, db))
    if tuple(y.shape) != tuple(batch[3 - nb :]) + (m, n):
        raise Unsupported(f"output shape {y.shape} is not {tuple(batch[3 - nb :]) + (m, n)}")

    def batch_strides(dims: list[int], matrix: int) -> list[int]:
        out, acc = [0] * 3, matrix
        for d in range(2, -1, -1):
            out[d] = acc if dims[d] == batch[d] and batch[d] > 1 else 0
            acc *= dims[d]
        return out

    f32 = np.float32
    real = float(f32(a.scale) * f32(b.scale)) / float(f32(y.scale))
    mo, so = quant.quantize_multiplier(real)
    lo, hi = _TYPE_RANGE[y.dtype]
    fields: dict[str, FieldValue] = {
        "batch": batch,
        "a_batch_stride": batch_strides(ba, m * k),
        "b_batch_stride": batch_strides(bb, k * n),
        "rows": m, "depth": k, "cols": n,
        "a_row_stride": 1 if adj_x else k, "a_depth_stride": m if adj_x else 1,
        "b_depth_stride": 1 if adj_y else n, "b_col_stride": k if adj_y else 1,
        "a_offset": -a.zero_point, "b_offset": -b.zero_point, "out_offset": y.zero_point,
        "out_mult": mo, "out_shift": so, "act_min": lo, "act_max": hi,
        "const1": consts[0], "const2": consts[1],
    }  # fmt: skip
    func = "edc_matmul_s16" if s16 else "edc_matmul_s8"
    summary = (f"{_shape_s(a.shape)}{'^T' if adj_x else ''} x "
               f"{_shape_s(b.shape)}{'^T' if adj_y else ''}")  # fmt: skip
    return Op(index, "BATCH_MATMUL", "edc_matmul", func, "edc_matmul_params", fields,
              idx, (y.index,), summary)  # fmt: skip


def _softmax16(ctx: _Ctx, op: Any, index: int, x: Tensor, y: Tensor) -> Op:
    o = op.builtinOptions
    _check_int16(x, y)
    if abs(float(np.float32(y.scale)) - 1.0 / 32768) > 0.001 / 32768:
        raise Unsupported("int16 softmax needs output scale 1/32768")
    if x.shape != y.shape or not x.shape:
        raise Unsupported("softmax input and output shapes differ")
    beta = float(o.beta) if o is not None else 1.0
    mult, shift = quant.softmax16_params(beta, x.scale)
    exp_lut, inv_lut = quant.softmax16_tables()
    depth = x.shape[-1]
    fields: dict[str, FieldValue] = {
        "outer": int(np.prod(x.shape)) // depth, "depth": depth,
        "input_multiplier": mult, "input_shift": shift,
        "exp_lut": ConstArray("int16_t", exp_lut, "exp table"),
        "one_over_one_plus_x_lut": ConstArray("int16_t", inv_lut, "1/(1+x) table"),
    }  # fmt: skip
    return Op(index, "SOFTMAX", "edc_softmax", "edc_softmax_s16", "edc_softmax_s16_params",
              fields, (x.index,), (y.index,), f"int16, beta {beta:g}, over {depth}")  # fmt: skip


def _softmax(ctx: _Ctx, op: Any, index: int) -> Op:
    o = op.builtinOptions
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    if x.dtype == "int16":
        return _softmax16(ctx, op, index, x, y)
    if y.zero_point != -128 or np.float32(y.scale) != np.float32(1.0 / 256):
        raise Unsupported("int8 softmax needs output scale 1/256 and zero point -128")
    if x.shape != y.shape or not x.shape:
        raise Unsupported("softmax input and output shapes differ")
    beta = float(o.beta) if o is not None else 1.0
    mult, left_shift, diff_min = quant.softmax_params(beta, x.scale)
    depth = x.shape[-1]
    fields: dict[str, FieldValue] = {
        "outer": int(np.prod(x.shape)) // depth, "depth": depth,
        "input_multiplier": mult, "input_left_shift": left_shift, "diff_min": diff_min,
    }  # fmt: skip
    return Op(index, "SOFTMAX", "edc_softmax", "edc_softmax_s8", "edc_softmax_s8_params",
              fields, (x.index,), (y.index,), f"beta {beta:g}, over {depth}")  # fmt: skip


def _alias(kind: str) -> Callable[[_Ctx, Any, int], Op]:
    def lower_alias(ctx: _Ctx, op: Any, index: int) -> Op:
        x = ctx.act(int(op.inputs[0]))
        y = ctx.act(int(op.outputs[0]))
        if x.nbytes != y.nbytes or x.dtype != y.dtype:
            raise Unsupported("input and output sizes differ")
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise Unsupported("input and output quantization differ")
        y.alias_of = x.index
        return Op(index, kind, "", "", "", {}, (x.index,), (y.index,),
                  f"{_shape_s(x.shape)} -> {_shape_s(y.shape)} (same memory)")  # fmt: skip

    return lower_alias


def _lut(kind: str) -> Callable[[_Ctx, Any, int], Op]:
    def lower_lut(ctx: _Ctx, op: Any, index: int) -> Op:
        x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
        if x.shape != y.shape and x.nbytes != y.nbytes:
            raise Unsupported("input and output sizes differ")
        if "int16" in (x.dtype, y.dtype):
            return _act16(kind, x, y, index)
        if kind == "QUANTIZE":
            table = quant.lut_requantize_s8(x.scale, x.zero_point, y.scale, y.zero_point)
            what = f"requantize to scale {y.scale:.6g}, zero point {y.zero_point}"
        elif kind == "LOGISTIC":
            if y.zero_point != -128:
                raise Unsupported("int8 LOGISTIC needs output zero point -128")
            table = quant.lut_logistic_s8(x.scale, x.zero_point)
            what = "sigmoid"
        elif kind == "TANH":
            table = quant.lut_tanh_s8(x.scale, x.zero_point)
            what = "tanh"
        elif kind == "RELU":
            table = quant.lut_relu_s8(x.scale, x.zero_point, y.scale, y.zero_point)
            what = "relu"
        elif kind in ("RELU_0_TO_1", "RELU_N1_TO_1"):
            lo_f = 0.0 if kind == "RELU_0_TO_1" else -1.0
            table = quant.lut_relu_s8(x.scale, x.zero_point, y.scale, y.zero_point, lo_f, 1.0)
            what = kind.lower()
        elif kind == "RELU6":
            table = quant.lut_relu6_s8(x.scale, x.zero_point)
            what = "relu6"
        elif kind == "RSQRT":
            table = quant.lut_rsqrt_s8(x.scale, x.zero_point, y.scale, y.zero_point)
            what = "1/sqrt"
        elif kind == "LEAKY_RELU":
            alpha = float(op.builtinOptions.alpha) if op.builtinOptions is not None else 0.0
            table = quant.lut_leaky_relu_s8(x.scale, x.zero_point, y.scale, y.zero_point, alpha)
            what = f"leaky relu, alpha {alpha:g}"
        else:
            try:
                table = quant.lut_hard_swish_s8(x.scale, x.zero_point, y.scale, y.zero_point)
            except ValueError as exc:
                raise Unsupported(str(exc)) from exc
            what = "hard swish"
        fields: dict[str, FieldValue] = {
            "size": int(np.prod(x.shape)) if x.shape else 1,
            "table": ConstArray("int8_t", table, "table"),
        }
        return Op(index, kind, "edc_lut", "edc_lut_s8", "edc_lut_s8_params", fields,
                  (x.index,), (y.index,), f"{what} (256-entry table)")  # fmt: skip

    return lower_lut


_TYPE_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


def _requant(kind: str, x: Tensor, y: Tensor, index: int) -> Op:
    """QUANTIZE to/from int16 and the int16 RELU and RELU6: one fixed-point rescale and a
    clamp (edc_requant_*), with TFLM's Prepare arithmetic. (int16 LEAKY_RELU would be the
    same kernel with a second multiplier below zero, but the tflite-micro interpreter's
    results differ from that by 1 on some negative inputs: not enabled.)"""
    f32 = np.float32
    lo, hi = _TYPE_RANGE[y.dtype]
    in_zp, out_zp = x.zero_point, y.zero_point
    pos = quant.quantize_multiplier(float(f32(x.scale)) / float(f32(y.scale)))
    neg, negate = pos, 0
    if kind == "RELU":  # ReluQuantized: act_min = zp + round(0 / scale)
        pos = neg = quant.quantize_multiplier(float(f32(x.scale) / f32(y.scale)))
        lo = max(lo, out_zp)
        what = "relu"
    elif kind == "RELU6":  # Relu6Quantized: the input codes clamped to [zero, six]
        six = quant._round_half_away(float(f32(6.0) / f32(x.scale))) + in_zp
        six = min(hi, max(lo, six))  # FloatToQuantizedType clamps to the type
        pos = neg = (1 << 30, 1)  # exactly x
        lo, hi, out_zp, in_zp = in_zp, six, 0, 0
        what = "relu6"
    else:
        what = f"requantize to scale {y.scale:.6g}, zero point {y.zero_point}"
    fields: dict[str, FieldValue] = {
        "size": int(np.prod(x.shape)) if x.shape else 1,
        "in_zero_point": in_zp, "out_zero_point": out_zp,
        "pos_mult": pos[0], "pos_shift": pos[1], "neg_mult": neg[0], "neg_shift": neg[1],
        "neg_negate": negate, "out_min": lo, "out_max": hi,
    }  # fmt: skip
    func = f"edc_requant_s{x.dtype[3:]}_s{y.dtype[3:]}"
    return Op(index, kind, "edc_act16", func, "edc_requant_params", fields, (x.index,),
              (y.index,), f"{x.dtype} -> {y.dtype}, {what}")  # fmt: skip


def _rsqrt16(x: Tensor, y: Tensor, index: int) -> Op:
    """int16 RSQRT (TFLM's integer path, zero points 0) in C: edc_rsqrt_s16."""
    if x.dtype != "int16" or y.dtype != "int16":
        raise Unsupported(f"{x.dtype} input and {y.dtype} output")
    if x.zero_point or y.zero_point:
        raise Unsupported("int16 tensors need zero point 0")
    mult, shift = quant.rsqrt_params(x.scale, y.scale)
    lo, hi = _TYPE_RANGE["int16"]
    fields: dict[str, FieldValue] = {
        "size": int(np.prod(x.shape)) if x.shape else 1,
        "in_zero_point": x.zero_point, "out_zero_point": y.zero_point,
        "pos_mult": mult, "pos_shift": shift, "neg_mult": 0, "neg_shift": 0,
        "neg_negate": 0, "out_min": lo, "out_max": hi,
    }  # fmt: skip
    return Op(index, "RSQRT", "edc_act16", "edc_rsqrt_s16", "edc_requant_params", fields,
              (x.index,), (y.index,), "int16 1/sqrt (Newton-Raphson)")  # fmt: skip


def _act16(kind: str, x: Tensor, y: Tensor, index: int) -> Op:
    """The int16x8 element-wise operators: QUANTIZE to/from int16, LOGISTIC, TANH, RELU,
    RELU6."""
    size = int(np.prod(x.shape)) if x.shape else 1
    if kind == "QUANTIZE":
        return _requant(kind, x, y, index)
    if kind in ("RELU", "RELU6"):
        _check_int16(x, y)
        return _requant(kind, x, y, index)
    if kind == "RSQRT":
        return _rsqrt16(x, y, index)
    if kind not in ("LOGISTIC", "TANH"):
        raise _int8_only(kind, "int16")
    _check_int16(x, y)
    if not quant.output_scale_is_q15(y.scale):
        raise Unsupported(f"int16 {kind} needs output scale 2^-15")
    try:
        mult, shift = quant.logistic16_params(x.scale, tanh=kind == "TANH")
    except ValueError as exc:
        raise Unsupported(str(exc)) from exc
    fields: dict[str, FieldValue] = {
        "size": size, "input_multiplier": mult, "input_left_shift": shift,
        "sigmoid": ConstArray("uint16_t", quant.sigmoid_table_u16(), "sigmoid table"),
    }  # fmt: skip
    func = "edc_logistic_s16" if kind == "LOGISTIC" else "edc_tanh_s16"
    return Op(index, kind, "edc_act16", func, "edc_act16_params", fields, (x.index,),
              (y.index,), f"int16 {kind.lower()} (interpolated 256-entry table)")  # fmt: skip


def _contig(shape: tuple[int, ...] | list[int]) -> list[int]:
    out, acc = [0] * len(shape), 1
    for k in range(len(shape) - 1, -1, -1):
        out[k] = acc
        acc *= shape[k]
    return out


def _collapse(
    dims: list[int], si: list[int], so: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """Drop extent-1 dims and merge neighbours that are contiguous in both tensors; pad to 6."""
    d2: list[int] = []
    i2: list[int] = []
    o2: list[int] = []
    for d, a, b in zip(dims, si, so, strict=True):
        if d == 1:
            continue
        if d2 and i2[-1] == a * d and o2[-1] == b * d:
            d2[-1] *= d
            i2[-1], o2[-1] = a, b
            continue
        d2.append(d)
        i2.append(a)
        o2.append(b)
    if len(d2) > 6:
        raise Unsupported("the copy needs more than 6 dimensions")
    pad = 6 - len(d2)
    return [1] * pad + d2, [0] * pad + i2, [0] * pad + o2


def _copy_call(
    index: int, kind: str, x: Tensor, y: Tensor, dims: list[int], si: list[int],
    so: list[int], in_base: int = 0, out_base: int = 0, fill: int | None = None,
    src: ConstArray | None = None,
) -> Op:  # fmt: skip
    d, a, b = _collapse(dims, si, so)
    if x.dtype != y.dtype:
        raise Unsupported(f"mixed {x.dtype} input and {y.dtype} output")
    fields: dict[str, FieldValue] = {
        "fill": int(fill is not None), "fill_value": 0 if fill is None else fill,
        "out_size": int(np.prod(y.shape)) if y.shape else 1,
        "in_base": in_base, "out_base": out_base,
        "dims": d, "in_strides": a, "out_strides": b, "src": src,
    }  # fmt: skip
    func = "edc_copy_s16" if x.dtype == "int16" else "edc_copy_s8"
    return Op(index, kind, "edc_copy", func, "edc_copy_params", fields,
              (x.index,), (y.index,))  # fmt: skip


def _same_quant(*ts: Tensor) -> None:
    for t in ts[1:]:
        if t.scale != ts[0].scale or t.zero_point != ts[0].zero_point:
            raise Unsupported("inputs and outputs must share scale and zero point")


def _axis(axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise Unsupported(f"axis {axis} is out of range for rank {rank}")
    return a


def _transpose(ctx: _Ctx, op: Any, index: int) -> Op:
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    perm = [int(v) for v in ctx.const(int(op.inputs[1]), "int32").reshape(-1)]
    if sorted(perm) != list(range(len(x.shape))):
        raise Unsupported(f"permutation {perm} does not fit rank {len(x.shape)}")
    if tuple(x.shape[p] for p in perm) != y.shape:
        raise Unsupported("output shape does not match the permutation")
    _same_quant(x, y)
    si = _contig(x.shape)
    call = _copy_call(index, "TRANSPOSE", x, y, list(y.shape), [si[p] for p in perm],
                      _contig(y.shape))  # fmt: skip
    call.summary = f"permutation {perm}"
    return call


def _concat(ctx: _Ctx, op: Any, index: int) -> Op:
    o = op.builtinOptions
    xs: list[Tensor] = []
    consts: list[ConstArray | None] = []
    for i in (int(t) for t in op.inputs):
        if ctx.is_const(i):  # e.g. a ViT's class token: copied from flash
            dt = ctx.dtype(i)
            scales, zps = ctx.scales(i)
            if dt not in ACTIVATION_TYPES or len(scales) != 1:
                raise Unsupported(f"constant input {ctx.name(i)!r} is not per-tensor {dt}")
            xs.append(Tensor(i, ctx.name(i), ctx.shape(i), dt, scales[0], zps[0]))
            consts.append(ConstArray(CTYPES[dt], ctx.const(i, dt), "constant input"))
        else:
            xs.append(ctx.act(i))
            consts.append(None)
    live = [x for x, c in zip(xs, consts, strict=True) if c is None]
    if not live:
        raise Unsupported("every input is a constant")
    y = ctx.act(int(op.outputs[0]))
    if o is not None and int(o.fusedActivationFunction) != 0:
        raise Unsupported("a fused activation on CONCATENATION")
    _same_quant(*xs, y)
    rank = len(y.shape)
    axis = _axis(int(o.axis) if o is not None else 0, rank)
    so = _contig(y.shape)
    parts, at = [], 0
    for x, c in zip(xs, consts, strict=True):
        if len(x.shape) != rank:
            raise Unsupported("inputs of different rank")
        part = _copy_call(index, "CONCATENATION", x, y, list(x.shape), _contig(x.shape),
                          so, 0, at * so[axis], src=c)  # fmt: skip
        if c is not None:  # the pointer argument is unused: pass a live input
            part.inputs = (live[0].index,)
        parts.append(part)
        at += x.shape[axis]
    if at != y.shape[axis]:
        raise Unsupported("input sizes do not add up to the output along the axis")
    return Op(index, "CONCATENATION", "edc_copy", "", "", {}, tuple(x.index for x in live),
              (y.index,), f"axis {axis}, {len(xs)} inputs", parts)  # fmt: skip


def _pad(ctx: _Ctx, op: Any, index: int) -> Op:
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    pads = ctx.const(int(op.inputs[1]), ctx.dtype(int(op.inputs[1])))
    pads = pads.astype(np.int64).reshape(-1, 2)
    if pads.shape[0] != len(x.shape) or (pads < 0).any():
        raise Unsupported("paddings do not match the input rank")
    if tuple(int(d + a + b) for d, (a, b) in zip(x.shape, pads, strict=True)) != y.shape:
        raise Unsupported("output shape does not match the paddings")
    _same_quant(x, y)
    value = y.zero_point
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = int(ctx.const(int(op.inputs[2]), y.dtype).reshape(-1)[0])
    so = _contig(y.shape)
    base = sum(int(a) * st for (a, _), st in zip(pads, so, strict=True))
    call = _copy_call(index, ctx_kind(op, ctx), x, y, list(x.shape), _contig(x.shape), so, 0,
                      base, value)  # fmt: skip
    call.summary = (
        "paddings " + " ".join(f"{int(a)}/{int(b)}" for a, b in pads) + f", value {value}"
    )
    return call


def ctx_kind(op: Any, ctx: _Ctx) -> str:
    oc = ctx.model.operatorCodes[op.opcodeIndex]
    return _BUILTIN_NAMES.get(max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), "?")


def _strided_slice(ctx: _Ctx, op: Any, index: int) -> Op:
    o = op.builtinOptions
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    rank = len(x.shape)
    begin = [int(v) for v in ctx.const(int(op.inputs[1]), "int32").reshape(-1)]
    end = [int(v) for v in ctx.const(int(op.inputs[2]), "int32").reshape(-1)]
    strides = [int(v) for v in ctx.const(int(op.inputs[3]), "int32").reshape(-1)]
    if not len(begin) == len(end) == len(strides) == rank:
        raise Unsupported("begin/end/strides do not cover every dimension")
    if o is not None and (int(o.ellipsisMask) or int(o.newAxisMask)):
        raise Unsupported("ellipsis and new-axis masks are not supported")
    bm = int(o.beginMask) if o is not None else 0
    em = int(o.endMask) if o is not None else 0
    sm = int(o.shrinkAxisMask) if o is not None else 0
    if o is not None and getattr(o, "offset", False):
        raise Unsupported("offset mode is not supported")
    starts, counts = [], []
    for k in range(rank):
        n, st = x.shape[k], strides[k]
        if st == 0:
            raise Unsupported("stride 0")
        b = begin[k] + n if begin[k] < 0 else begin[k]
        e = end[k] + n if end[k] < 0 else end[k]
        if bm >> k & 1:
            b = 0 if st > 0 else n - 1
        if em >> k & 1:
            e = n if st > 0 else -1
        if st > 0:
            b, e = min(max(b, 0), n), min(max(e, 0), n)
        else:
            b, e = min(max(b, -1), n - 1), min(max(e, -1), n - 1)
        if sm >> k & 1:
            if st < 0:
                raise Unsupported("a shrink axis with a negative stride")
            e, st = b + 1, 1
            strides[k] = 1
        cnt = max(0, -(-(e - b) // st)) if st > 0 else max(0, -(-(b - e) // -st))
        starts.append(b)
        counts.append(cnt)
    kept = tuple(c for k, c in enumerate(counts) if not sm >> k & 1)
    if kept != y.shape and tuple(counts) != y.shape:
        raise Unsupported(f"computed slice {counts} does not match the output {y.shape}")
    _same_quant(x, y)
    si = _contig(x.shape)
    base = sum(b * s for b, s in zip(starts, si, strict=True))
    call = _copy_call(index, "STRIDED_SLICE", x, y, counts,
                      [s * st for s, st in zip(si, strides, strict=True)], _contig(counts), base)  # fmt: skip
    call.summary = f"begin {starts} strides {strides}"
    return call


def _split(kind: str) -> Callable[[_Ctx, Any, int], Op]:
    def lower_split(ctx: _Ctx, op: Any, index: int) -> Op:
        if kind == "SPLIT":
            axis_t, x_t = int(op.inputs[0]), int(op.inputs[1])
        else:
            x_t, axis_t = int(op.inputs[0]), int(op.inputs[2])
        x = ctx.act(x_t)
        ys = [ctx.act(int(t)) for t in op.outputs]
        _same_quant(x, *ys)
        axis = _axis(int(ctx.const(axis_t, "int32").reshape(-1)[0]), len(x.shape))
        si = _contig(x.shape)
        parts, at = [], 0
        for y in ys:
            if len(y.shape) != len(x.shape):
                raise Unsupported("outputs of different rank")
            parts.append(_copy_call(index, kind, x, y, list(y.shape), si, _contig(y.shape),
                                    at * si[axis]))  # fmt: skip
            at += y.shape[axis]
        if at != x.shape[axis]:
            raise Unsupported("output sizes do not add up to the input along the axis")
        return Op(index, kind, "edc_copy", "", "", {}, (x.index,), tuple(y.index for y in ys),
                  f"axis {axis} into {len(ys)}", parts)  # fmt: skip

    return lower_split


def _gather(ctx: _Ctx, op: Any, index: int) -> Op:
    """GATHER with constant positions (channel shuffles); TFLM's loop order."""
    o = op.builtinOptions
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    pi = int(op.inputs[1])
    if not ctx.is_const(pi):
        raise Unsupported("the positions are not a constant tensor")
    if ctx.dtype(pi) not in ("int32", "int64"):
        raise Unsupported(f"{ctx.dtype(pi)} positions")
    # TFLM takes int32 positions only; int64 ones (what TFLiteConverter writes for a
    # channel shuffle) are checked against LiteRT's reference kernel in the tests
    pos = ctx.const(pi, ctx.dtype(pi)).astype(np.int64)
    rank = len(x.shape)
    axis = _axis(int(o.axis) if o is not None else 0, rank)
    bd = int(o.batchDims) if o is not None else 0
    bd = bd + pos.ndim if bd < 0 else bd
    if not (0 <= bd <= axis and bd <= pos.ndim) or tuple(pos.shape[:bd]) != x.shape[:bd]:
        raise Unsupported(f"batch_dims {bd} does not fit the shapes")
    batches = int(np.prod(x.shape[:bd])) if bd else 1
    outer = int(np.prod(x.shape[bd:axis])) if axis > bd else 1
    inner = int(np.prod(x.shape[axis + 1 :])) if axis + 1 < rank else 1
    n_index = int(np.prod(pos.shape[bd:])) if pos.ndim > bd else 1
    axis_size = x.shape[axis]
    if pos.size and (pos.min() < 0 or pos.max() >= axis_size):
        raise Unsupported(f"a position is outside 0..{axis_size - 1}")
    if int(np.prod(y.shape) if y.shape else 1) != batches * outer * n_index * inner:
        raise Unsupported("output size does not match the gather")
    _same_quant(x, y)
    if x.dtype != y.dtype:
        raise Unsupported(f"mixed {x.dtype} input and {y.dtype} output")
    fields: dict[str, FieldValue] = {
        "batches": batches, "outer": outer, "axis_size": axis_size, "n_index": n_index,
        "inner": inner, "index": _named(_i32(pos.reshape(-1)), "positions"),
    }  # fmt: skip
    return Op(index, "GATHER", "edc_copy", "edc_gather_s8", "edc_gather_params", fields,
              (x.index,), (y.index,), f"axis {axis}, {n_index} positions")  # fmt: skip


def _nn_map(out_size: int, in_size: int, align: bool, half: bool) -> list[int]:
    f32 = np.float32
    if align and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half else f32(0.0)
    out = []
    for v in range(out_size):
        r = (f32(v) + offset) * scale
        if align:
            iv = int(math.floor(abs(float(r)) + 0.5)) * (1 if r >= 0 else -1)
        else:
            iv = int(math.floor(float(r)))
        iv = min(iv, in_size - 1)
        if half:
            iv = max(0, iv)
        out.append(iv)
    return out


@dataclass(frozen=True)
class _Resize:
    """What both resizes read first: the tensors, their NHWC sizes and the two options."""

    x: Tensor
    y: Tensor
    b: int
    ih: int
    iw: int
    c: int
    oh: int
    ow: int
    align: bool
    half: bool

    @classmethod
    def read(cls, ctx: _Ctx, op: Any) -> _Resize:
        o = op.builtinOptions
        x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
        b, ih, iw, c = _nhwc(x)
        _, oh, ow, oc = _nhwc(y)
        if oc != c:
            raise Unsupported("resize changes the channel count")
        align = bool(o.alignCorners) if o is not None else False
        half = bool(o.halfPixelCenters) if o is not None else False
        return cls(x, y, b, ih, iw, c, oh, ow, align, half)

    def op(
        self, index: int, kind: str, func: str, params: str, tables: dict[str, FieldValue]
    ) -> Op:
        fields: dict[str, FieldValue] = {
            "batches": self.b, "in_h": self.ih, "in_w": self.iw, "channels": self.c,
            "out_h": self.oh, "out_w": self.ow, **tables,
        }  # fmt: skip
        return Op(index, kind, "edc_resize", func, params, fields, (self.x.index,),
                  (self.y.index,), f"{self.ih}x{self.iw} -> {self.oh}x{self.ow}")  # fmt: skip


def _resize_nn(ctx: _Ctx, op: Any, index: int) -> Op:
    r = _Resize.read(ctx, op)
    _same_quant(r.x, r.y)
    if r.x.dtype != r.y.dtype:
        raise Unsupported(f"mixed {r.x.dtype} input and {r.y.dtype} output")
    func = "edc_resize_nn_s16" if r.x.dtype == "int16" else "edc_resize_nn_s8"
    return r.op(index, "RESIZE_NEAREST_NEIGHBOR", func, "edc_resize_nn_params", {
        "y_map": _named(_i32(_nn_map(r.oh, r.ih, r.align, r.half)), "rows"),
        "x_map": _named(_i32(_nn_map(r.ow, r.iw, r.align, r.half)), "columns"),
    })  # fmt: skip


def _dims6(dims: list[int], strides: list[int]) -> tuple[list[int], list[int]]:
    d, _, st = _collapse(dims, strides, strides)
    return d, st


def _mean(ctx: _Ctx, op: Any, index: int) -> Op:
    return _reduce(ctx, op, index, "MEAN")


def _sum(ctx: _Ctx, op: Any, index: int) -> Op:
    return _reduce(ctx, op, index, "SUM")


def _reduce(ctx: _Ctx, op: Any, index: int, kind: str) -> Op:
    """MEAN or SUM (TFLM's QuantizedMeanOrSum): int32 sum of the reduced elements minus
    ``zp_in * count``, one requantization by ``s_in / s_out``; MEAN folds ``1 / count`` into
    that multiplier as TFLM does (pre-shifted by floor(log2(count)), clamped), SUM does not.
    The kernel is the same for both."""
    x, y = ctx.act(int(op.inputs[0])), ctx.act(int(op.outputs[0]))
    rank = len(x.shape)
    axes = sorted({_axis(int(a), rank) for a in ctx.const(int(op.inputs[1]), "int32").reshape(-1)})
    keep = [k for k in range(rank) if k not in axes]
    count = int(np.prod([x.shape[k] for k in axes])) if axes else 1
    if int(np.prod([x.shape[k] for k in keep])) != int(np.prod(y.shape) if y.shape else 1):
        raise Unsupported("output size does not match the reduction")
    if count == 0:
        raise Unsupported("empty reduction")
    si = _contig(x.shape)
    kd, ks = _dims6([x.shape[k] for k in keep], [si[k] for k in keep])
    rd, rs = _dims6([x.shape[k] for k in axes], [si[k] for k in axes])
    mult, shift = quant.quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
    if shift > 30:
        raise Unsupported(f"input/output scale ratio 2^{shift - 1} is too large to requantize")
    if kind == "MEAN":
        n = count
        sh = min(n.bit_length() - 1, 32, 31 + shift)
        mult = ((mult << sh) if sh >= 0 else (mult >> -sh)) // n
        shift -= sh
    fields: dict[str, FieldValue] = {
        "keep_dims": kd, "keep_strides": ks, "red_dims": rd, "red_strides": rs,
        "count": count, "in_zero_point": x.zero_point, "out_zero_point": y.zero_point,
        "mult": mult, "shift": shift,
    }  # fmt: skip
    if x.dtype != y.dtype:
        raise Unsupported(f"mixed {x.dtype} input and {y.dtype} output")
    func = "edc_mean_s16" if x.dtype == "int16" else "edc_mean_s8"
    return Op(index, kind, "edc_reduce", func, "edc_mean_s8_params", fields,
              (x.index,), (y.index,), f"over axes {axes}")  # fmt: skip


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _bilinear_tab(out_size: int, in_size: int, align: bool, half: bool) -> list[int]:
    scale = _cdiv((1 << 10) * in_size + out_size // 2, out_size)
    if align and out_size > 1:
        scale = _cdiv((1 << 10) * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
    tab: list[int] = []
    for v in range(out_size):
        scaled = v * scale + _cdiv(scale, 2) - (1 << 9) if half else v * scale
        lo = max(_cdiv(scaled, 1 << 10), 0)
        hi = min(_cdiv(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
        tab += [lo, hi, scaled - (1 << 10) * lo]
    return tab


def _resize_bilinear(ctx: _Ctx, op: Any, index: int) -> Op:
    r = _Resize.read(ctx, op)
    if r.align and r.half:
        raise Unsupported("align_corners together with half_pixel_centers")
    return r.op(index, "RESIZE_BILINEAR", "edc_resize_bilinear_s8", "edc_resize_bilinear_params", {
        "y_tab": _named(_i32(_bilinear_tab(r.oh, r.ih, r.align, r.half)), "rows"),
        "x_tab": _named(_i32(_bilinear_tab(r.ow, r.iw, r.align, r.half)), "columns"),
    })  # fmt: skip


LOWERINGS: dict[str, Callable[[_Ctx, Any, int], Op]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _dwconv,
    "FULLY_CONNECTED": _fc,
    "AVERAGE_POOL_2D": _pool("AVERAGE_POOL_2D"),
    "MAX_POOL_2D": _pool("MAX_POOL_2D"),
    "ADD": _add_sub("ADD"),
    "SUB": _add_sub("SUB"),
    "MUL": _mul,
    "SQUARED_DIFFERENCE": _squared_difference,
    "BATCH_MATMUL": _batch_matmul,
    "SOFTMAX": _softmax,
    **{
        k: _lut(k)
        for k in (
            "QUANTIZE",
            "LOGISTIC",
            "TANH",
            "HARD_SWISH",
            "RELU",
            "RELU6",
            "LEAKY_RELU",
            "RELU_0_TO_1",
            "RELU_N1_TO_1",
            "RSQRT",
        )  # fmt: skip
    },
    "TRANSPOSE": _transpose,
    "CONCATENATION": _concat,
    "PAD": _pad,
    "PADV2": _pad,
    "STRIDED_SLICE": _strided_slice,
    "GATHER": _gather,
    "SPLIT": _split("SPLIT"),
    "SPLIT_V": _split("SPLIT_V"),
    "RESIZE_NEAREST_NEIGHBOR": _resize_nn,
    "MEAN": _mean,
    "SUM": _sum,
    "RESIZE_BILINEAR": _resize_bilinear,
    **{k: _alias(k) for k in sorted(ALIAS_OPS)},
}


# --- the graph ---------------------------------------------------------------------------------


def _op_where(ctx: _Ctx, index: int, kind: str, op: Any) -> str:
    outs = [int(t) for t in (op.outputs if op.outputs is not None else [])]
    out_name = ctx.name(outs[0]) if outs else "?"
    return f"operator {index} ({kind}, output {out_name!r})"


def _tflm_hint() -> str:
    return "`edgedeploy firmware --runtime tflm` runs this model with the TFLM interpreter"


def _check_integer_model(ctx: _Ctx) -> None:
    for i in list(ctx.sg.inputs) + list(ctx.sg.outputs):
        dt = ctx.dtype(int(i))
        if dt not in ACTIVATION_TYPES:
            what = "a float model" if dt.startswith("float") else f"{dt} activations"
            raise CompileError(
                f"model {'input' if i in ctx.sg.inputs else 'output'} {ctx.name(int(i))!r} is "
                f"{dt}: compile takes full-integer models (int8, or int16x8), not {what}",
                hint="convert with int8 activations (`edgedeploy convert` does by default), "
                "or run this model with `--runtime tflm`",
            )


#: int8-only operators that TFLM has no int16 kernel for either (checked in TFLM 90b983c2)
TFLM_INT8_ONLY = frozenset(
    {"HARD_SWISH", "RESIZE_BILINEAR", "RELU_0_TO_1", "RELU_N1_TO_1", "GATHER"}
)


def _int8_only(kind: str, dtype: str) -> Unsupported:
    also, hint = "", None
    if kind in TFLM_INT8_ONLY:
        also = "; TFLM has no int16 kernel for it either: convert with int8 activations"
        hint = ("convert the model with int8 activations (`edgedeploy convert` does by "
                f"default): neither runtime has an int16 {kind} kernel")  # fmt: skip
    return Unsupported(
        f"{dtype} activations: the {kind} kernel is int8 only "
        f"(int16x8: {', '.join(sorted(INT16_OPS))}){also}",
        hint,
    )


def _check_int8(ctx: _Ctx, op: Op) -> None:
    for t in op.inputs + op.outputs:
        if ctx.tensors[t].dtype != "int8":
            raise _int8_only(op.kind, ctx.tensors[t].dtype)


def lower(model: TFLiteModel) -> Graph:
    """Lower a parsed model; raises CompileError for anything without a kernel."""
    problems = _lower(model, collect=False)
    if isinstance(problems, Graph):
        return problems
    raise AssertionError("unreachable")  # pragma: no cover


def unsupported(model: TFLiteModel) -> list[str]:
    """Descriptions of the operators (or model properties) compile cannot handle; [] = none."""
    result = lower_or_problems(model)
    return [] if isinstance(result, Graph) else result


def lower_or_problems(model: TFLiteModel) -> Graph | list[str]:
    """The lowered graph when compile can handle every operator of ``model``, else the
    problems (:func:`unsupported`): one pass answers both "is it supported" and "lower it"."""
    return _lower(model, collect=True)


def _lower(model: TFLiteModel, *, collect: bool) -> Graph | list[str]:
    mt = unpack(model.data)
    if len(mt.subgraphs) != 1:
        msg = f"the model has {len(mt.subgraphs)} subgraphs; compile handles one"
        if collect:
            return [msg]
        raise CompileError(msg, hint=_tflm_hint())
    ctx = _Ctx(mt, mt.subgraphs[0], {})
    try:
        _check_integer_model(ctx)
    except CompileError as exc:
        if collect:
            return [exc.message]
        raise
    ops: list[Op] = []
    problems: list[str] = []
    for index, op in enumerate(ctx.sg.operators or []):
        oc = mt.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        kind = _BUILTIN_NAMES.get(code, f"UNKNOWN_{code}")
        if code == schema.BuiltinOperator.CUSTOM:
            cc = oc.customCode
            kind = f"CUSTOM:{cc.decode() if isinstance(cc, bytes) else cc}"
        fn = LOWERINGS.get(kind)
        where = _op_where(ctx, index, kind, op)
        hint = _tflm_hint()
        if fn is None:
            msg = f"{where}: no compiled kernel for {kind}"
        else:
            try:
                lowered = fn(ctx, op, index)
                if kind not in INT16_OPS:
                    _check_int8(ctx, lowered)
                ops.append(lowered)
                continue
            except Unsupported as exc:
                msg = f"{where}: {exc}"
                hint = exc.hint or hint
        if not collect:
            raise CompileError(msg, hint=hint)
        problems.append(msg)
    if problems:
        return problems
    inputs = tuple(int(i) for i in ctx.sg.inputs)
    outputs = tuple(int(i) for i in ctx.sg.outputs)
    for i in inputs + outputs:
        try:
            ctx.act(i)
        except Unsupported as exc:
            if collect:
                return [str(exc)]
            raise CompileError(str(exc), hint=_tflm_hint()) from exc
    return Graph(ctx.tensors, ops, inputs, outputs, model.sha256, model.size)
