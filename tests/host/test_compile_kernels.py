"""Every compiled kernel is bit-exact with TFLM's reference kernel on randomised single-op models.

Single-operator int8 models are built directly as flatbuffers (tests/support/tflite_build.py;
~1 ms each instead of ~1 s through TFLiteConverter) with random shapes, strides, paddings,
dilations, depth multipliers, per-channel/per-tensor weights, zero points, scales and fused
activations. All of them are compiled, built into ONE shared library (one translation unit)
with the host gcc, and each is run on several random inputs against the tflite-micro Python
interpreter: every output byte must match. Seeds are fixed, so a failure reproduces.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tests.support.tflite_build import T, single_op
from toolchain.compile import compile_model
from toolchain.compile import hostrun as compiled
from toolchain.tflite_model import TFLiteModel

INPUTS_PER_MODEL = 12
#: operators TFLM has no kernel for: checked against LiteRT's reference kernels instead
LITERT_ONLY = frozenset({"RELU_0_TO_1", "RELU_N1_TO_1", "GATHER_I64"})
ACTS = (0, 1, 2, 3)  # NONE, RELU, RELU_N1_TO_1, RELU6

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")


@dataclass
class Case:
    name: str
    model: bytes
    inputs: list[tuple[tuple[int, ...], str]]  # shape, dtype per graph input
    outputs: list[tuple[tuple[int, ...], str]]
    #: smallest input code to feed (RSQRT: TFLM fails the invoke below the zero point)
    input_min: int | None = None


def _q(rng: np.random.Generator) -> tuple[float, int]:
    return float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))


def _out_size(pad_same: bool, n: int, k: int, s: int, d: int) -> int:
    eff = (k - 1) * d + 1
    return (n + s - 1) // s if pad_same else (n - eff + s) // s


def _pick_out_scale(rng: np.random.Generator, in_s: float, w_s: float, n: int) -> float:
    return float(125 * math.sqrt(max(n, 1)) * in_s * w_s * rng.uniform(0.2, 3.0))


def _conv_like(rng: np.random.Generator, i: int, depthwise: bool, dt: str = "int8") -> Case:
    while True:
        b = int(rng.integers(1, 3))
        h, w = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dil = int(rng.choice([1, 1, 1, 2, 3]))
        dh, dw = (dil, dil) if rng.random() < 0.7 else (1, dil)
        if dh * dw > 1:
            sh, sw = 1, 1  # TFLite requires stride 1 with dilation
        same = bool(rng.integers(0, 2))
        oh, ow = _out_size(same, h, kh, sh, dh), _out_size(same, w, kw, sw, dw)
        if oh > 0 and ow > 0:
            break
    act = int(rng.choice(ACTS))
    in_s, in_zp = _q(rng)
    if dt == "int16":
        in_s, in_zp = in_s / 256, 0
    if depthwise:
        ic = int(rng.integers(1, 9))
        dm = int(rng.choice([1, 1, 2, 3]))
        oc = ic * dm
        wshape: tuple[int, ...] = (1, kh, kw, oc)
        qdim, fan_in = 3, kh * kw
    else:
        groups = int(rng.choice([1, 1, 1, 2]))
        fic = int(rng.integers(1, 9))
        ic = fic * groups
        oc = groups * int(rng.integers(1, 7))
        wshape = (oc, kh, kw, fic)
        qdim, fan_in = 0, kh * kw * fic
    per_channel = bool(rng.integers(0, 2))
    nsc = oc if per_channel else 1
    w_scales = tuple(float(x) for x in rng.uniform(0.002, 0.05, nsc))
    wdata = rng.integers(-127, 128, size=wshape).astype(np.int8)
    out_s = _pick_out_scale(rng, in_s, float(np.mean(w_scales)), fan_in)
    out_zp = int(rng.integers(-128, 128))
    bias_t, bias_hi = "int32", 3000
    if dt == "int16":
        out_s, out_zp, bias_t, bias_hi = out_s / 256, 0, "int64", 3000 * 256
    bias = None
    if depthwise or rng.random() < 0.85:  # TFLM's interpreter crashes on a bias-less depthwise
        bias = T((oc,), bias_t, tuple(in_s * s for s in w_scales), (0,) * nsc,
                 rng.integers(-bias_hi, bias_hi, size=oc))  # fmt: skip
    x = T((b, h, w, ic), dt, (in_s,), (in_zp,))
    wt = T(wshape, "int8", w_scales, (0,) * nsc, wdata, qdim)
    y = T((b, oh, ow, oc), dt, (out_s,), (out_zp,))
    pad = schema.Padding.SAME if same else schema.Padding.VALID
    if depthwise:
        o = schema.DepthwiseConv2DOptionsT()
        o.depthMultiplier = oc // ic
        otype = schema.BuiltinOptions.DepthwiseConv2DOptions
        kind = "DEPTHWISE_CONV_2D"
    else:
        o = schema.Conv2DOptionsT()
        otype = schema.BuiltinOptions.Conv2DOptions
        kind = "CONV_2D"
    o.padding, o.strideH, o.strideW = pad, sh, sw
    o.dilationHFactor, o.dilationWFactor, o.fusedActivationFunction = dh, dw, act
    model = single_op(kind, [x, wt, bias], [y], otype, o)
    suffix = "_s16" if dt == "int16" else ""
    return Case(f"{kind.lower()}{suffix}_{i}", model, [(x.shape, dt)], [(y.shape, dt)])


def _conv(rng: np.random.Generator, i: int) -> Case:
    return _conv_like(rng, i, depthwise=False)


def _dwconv(rng: np.random.Generator, i: int) -> Case:
    return _conv_like(rng, i, depthwise=True)


def _fc(rng: np.random.Generator, i: int, dt: str = "int8") -> Case:
    b, n, m = int(rng.integers(1, 4)), int(rng.integers(1, 65)), int(rng.integers(1, 33))
    in_s, in_zp = _q(rng)
    per_channel = rng.random() < 0.3
    nsc = m if per_channel else 1
    w_scales = tuple(float(v) for v in rng.uniform(0.002, 0.05, nsc))
    out_s = _pick_out_scale(rng, in_s, float(np.mean(w_scales)), n)
    out_zp, bias_t, bias_hi = int(rng.integers(-128, 128)), "int32", 3000
    if dt == "int16":
        in_zp, out_zp, bias_t, bias_hi = 0, 0, "int64", 3000 * 256
    x = T((b, n), dt, (in_s,), (in_zp,))
    wt = T((m, n), "int8", w_scales, (0,) * nsc, rng.integers(-127, 128, (m, n)).astype(np.int8))
    bias = None
    if rng.random() < 0.85:
        bias = T((m,), bias_t, tuple(in_s * s for s in w_scales), (0,) * nsc,
                 rng.integers(-bias_hi, bias_hi, size=m))  # fmt: skip
    y = T((b, m), dt, (out_s,), (out_zp,))
    o = schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = int(rng.choice(ACTS))
    model = single_op("FULLY_CONNECTED", [x, wt, bias], [y],
                      schema.BuiltinOptions.FullyConnectedOptions, o)  # fmt: skip
    suffix = "_s16" if dt == "int16" else ""
    return Case(f"fully_connected{suffix}_{i}", model, [(x.shape, dt)], [(y.shape, dt)])


def _pool(kind: str, dt: str = "int8") -> Callable[[np.random.Generator, int], Case]:
    def make(rng: np.random.Generator, i: int) -> Case:
        while True:
            b, c = int(rng.integers(1, 3)), int(rng.integers(1, 9))
            h, w = int(rng.integers(1, 13)), int(rng.integers(1, 13))
            kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
            sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            same = bool(rng.integers(0, 2))
            oh, ow = _out_size(same, h, kh, sh, 1), _out_size(same, w, kw, sw, 1)
            if oh > 0 and ow > 0:
                break
        s, zp = _q(rng)
        if dt == "int16":
            s, zp = s / 256, 0
        x = T((b, h, w, c), dt, (s,), (zp,))
        y = T((b, oh, ow, c), dt, (s,), (zp,))
        o = schema.Pool2DOptionsT()
        o.padding = schema.Padding.SAME if same else schema.Padding.VALID
        o.strideH, o.strideW, o.filterHeight, o.filterWidth = sh, sw, kh, kw
        o.fusedActivationFunction = int(rng.choice(ACTS))
        model = single_op(kind, [x], [y], schema.BuiltinOptions.Pool2DOptions, o)
        suffix = "_s16" if dt == "int16" else ""
        return Case(f"{kind.lower()}{suffix}_{i}", model, [(x.shape, dt)], [(y.shape, dt)])

    return make


def _broadcast_shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    nd = int(rng.integers(1, 5))
    out = tuple(int(rng.integers(1, 6)) for _ in range(nd))
    if rng.random() < 0.5:
        return out, out, out
    a = tuple(d if rng.random() < 0.6 else 1 for d in out)
    b = tuple(d if rng.random() < 0.6 else 1 for d in out)
    if rng.random() < 0.3:  # lower rank
        b = b[int(rng.integers(0, nd)) :]
    full = tuple(max(x, y) for x, y in zip(a[-len(b) :] if len(b) else a, b, strict=False))
    out = a[: len(a) - len(full)] + full if len(b) else a
    return a, b, out


def _binary(
    kind: str, dt: str = "int8", const: bool = False
) -> Callable[[np.random.Generator, int], Case]:
    """``const``: one operand (either) is a constant tensor in the model, as converters emit
    for a multiplication or shift by a fixed tensor."""

    def make(rng: np.random.Generator, i: int) -> Case:
        sa, sb, so = _broadcast_shapes(rng)
        if not sb:
            sb = (1,)
        (s1, z1), (s2, z2) = _q(rng), _q(rng)
        if kind == "MUL":
            s_out = s1 * s2 * 128 * float(rng.uniform(0.2, 3.0))
        elif kind == "SQUARED_DIFFERENCE":  # (255 max(s))^2 over 255 codes, roughly
            s_out = max(s1, s2) ** 2 * float(rng.uniform(10.0, 400.0))
        else:
            s_out = max(s1, s2) * float(rng.uniform(0.5, 3.0))
        zo = int(rng.integers(-128, 128))
        if dt == "int16":
            s1, s2, s_out, z1, z2, zo = s1 / 256, s2 / 256, s_out / 256, 0, 0, 0
            if kind == "SQUARED_DIFFERENCE":
                s_out = max(s1, s2) ** 2 * float(rng.uniform(2e3, 1e5))
        a = T(sa, dt, (s1,), (z1,))
        b = T(sb, dt, (s2,), (z2,))
        y = T(so, dt, (s_out,), (zo,))
        if const:
            info = np.iinfo(np.dtype(dt))
            k = int(rng.integers(0, 2))
            c = (a, b)[k]
            c.data = rng.integers(info.min, info.max + 1, size=c.shape).astype(dt)
        opts = {"ADD": (schema.AddOptionsT, schema.BuiltinOptions.AddOptions),
                "SUB": (schema.SubOptionsT, schema.BuiltinOptions.SubOptions),
                "MUL": (schema.MulOptionsT, schema.BuiltinOptions.MulOptions),
                "SQUARED_DIFFERENCE": (None, None)}[kind]  # fmt: skip
        if kind == "SQUARED_DIFFERENCE":  # no options, no fused activation
            model = single_op(kind, [a, b], [y])
        else:
            o = opts[0]()
            o.fusedActivationFunction = int(rng.choice(ACTS))
            model = single_op(kind, [a, b], [y], opts[1], o)
        suffix = ("_const" if const else "") + ("_s16" if dt == "int16" else "")
        live = [(t.shape, dt) for t in (a, b) if t.data is None]
        return Case(f"{kind.lower()}{suffix}_{i}", model, live, [(so, dt)])

    return make


def _softmax(rng: np.random.Generator, i: int, dt: str = "int8") -> Case:
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 40)))
    s, zp = float(rng.uniform(0.01, 0.6)), int(rng.integers(-128, 128))
    x = T(shape, dt, (s,), (zp,))
    y = T(shape, dt, (1 / 256,), (-128,))
    if dt == "int16":
        x = T(shape, dt, (s / 256,), (0,))
        y = T(shape, dt, (1 / 32768,), (0,))
    o = schema.SoftmaxOptionsT()
    o.beta = float(rng.choice([1.0, 1.0, 0.5, 2.0]))
    model = single_op("SOFTMAX", [x], [y], schema.BuiltinOptions.SoftmaxOptions, o)
    suffix = "_s16" if dt == "int16" else ""
    return Case(f"softmax{suffix}_{i}", model, [(shape, dt)], [(shape, dt)])


def _unary(kind: str) -> Callable[[np.random.Generator, int], Case]:
    def make(rng: np.random.Generator, i: int) -> Case:
        shape = tuple(int(d) for d in rng.integers(1, 7, size=int(rng.integers(1, 5))))
        s, zp = float(rng.uniform(0.005, 0.3)), int(rng.integers(-128, 128))
        if kind == "LOGISTIC":
            so, zo = 1 / 256, -128
        elif kind == "TANH":
            so, zo = 1 / 128, 0
        else:
            so, zo = float(s * rng.uniform(0.3, 3.0)), int(rng.integers(-128, 128))
        x, y = T(shape, "int8", (s,), (zp,)), T(shape, "int8", (so,), (zo,))
        if kind == "LEAKY_RELU":
            o = schema.LeakyReluOptionsT()
            o.alpha = float(rng.choice([0.01, 0.1, 0.2, 0.5, -0.3]))
            model = single_op(kind, [x], [y], schema.BuiltinOptions.LeakyReluOptions, o)
        else:
            model = single_op(kind, [x], [y])
        return Case(f"{kind.lower()}_{i}", model, [(shape, "int8")], [(shape, "int8")])

    return make


def _rand_shape(rng: np.random.Generator, lo: int = 1, hi: int = 5) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(lo, hi))))


def _same_q(rng: np.random.Generator, dt: str = "int8") -> tuple[tuple[float], tuple[int]]:
    s, zp = _q(rng)
    if dt == "int16":
        return (s / 256,), (0,)
    return (s,), (zp,)


def _sfx(dt: str) -> str:
    return "_s16" if dt == "int16" else ""


def _i32(v: list[int]) -> np.ndarray:
    return np.asarray(v, np.int32)


def _transpose(rng: np.random.Generator, i: int, dt: str = "int8") -> Case:
    shape = _rand_shape(rng, 2, 6)
    perm = [int(p) for p in rng.permutation(len(shape))]
    sc, zp = _same_q(rng, dt)
    x = T(shape, dt, sc, zp)
    out = tuple(shape[p] for p in perm)
    y = T(out, dt, sc, zp)
    model = single_op("TRANSPOSE", [x, T((len(perm),), "int32", data=_i32(perm))], [y])
    return Case(f"transpose{_sfx(dt)}_{i}", model, [(shape, dt)], [(out, dt)])


def _concat(rng: np.random.Generator, i: int, dt: str = "int8", const: bool = False) -> Case:
    """``const``: one input (not all) is a constant tensor, like a ViT's class token."""
    base = list(_rand_shape(rng, 1, 5))
    axis = int(rng.integers(0, len(base)))
    n = int(rng.integers(2 if const else 1, 4))
    sc, zp = _same_q(rng, dt)
    shapes = []
    for _ in range(n):
        sh = list(base)
        sh[axis] = int(rng.integers(1, 5))
        shapes.append(tuple(sh))
    out = list(base)
    out[axis] = sum(sh[axis] for sh in shapes)
    xs = [T(sh, dt, sc, zp) for sh in shapes]
    if const:
        c = xs[int(rng.integers(0, n))]
        info = np.iinfo(np.dtype(dt))
        c.data = rng.integers(info.min, info.max + 1, size=c.shape).astype(dt)
    y = T(tuple(out), dt, sc, zp)
    o = schema.ConcatenationOptionsT()
    o.axis = axis - len(base) if rng.random() < 0.3 else axis
    model = single_op("CONCATENATION", list(xs), [y],
                      schema.BuiltinOptions.ConcatenationOptions, o)  # fmt: skip
    name = f"concatenation{'_const' if const else ''}{_sfx(dt)}_{i}"
    return Case(name, model, [(x.shape, dt) for x in xs if x.data is None],
                [(tuple(out), dt)])  # fmt: skip


def _pad(kind: str, dt: str = "int8") -> Callable[[np.random.Generator, int], Case]:
    def make(rng: np.random.Generator, i: int) -> Case:
        shape = _rand_shape(rng, 1, 5)
        pads = rng.integers(0, 3, size=(len(shape), 2))
        out = tuple(int(d + a + b) for d, (a, b) in zip(shape, pads, strict=True))
        sc, zp = _same_q(rng, dt)
        ins: list[T | None] = [
            T(shape, dt, sc, zp),
            T(pads.shape, "int32", data=pads.astype(np.int32)),
        ]
        if kind == "PADV2":
            info = np.iinfo(np.dtype(dt))
            value = np.asarray([rng.integers(info.min, info.max + 1)], np.dtype(dt))
            ins.append(T((1,), dt, sc, zp, value))
        model = single_op(kind, ins, [T(out, dt, sc, zp)])
        return Case(f"{kind.lower()}{_sfx(dt)}_{i}", model, [(shape, dt)], [(out, dt)])

    return make


def _slice(rng: np.random.Generator, i: int, dt: str = "int8") -> Case:
    shape = _rand_shape(rng, 1, 5)
    begin, end, strides, counts = [], [], [], []
    bm = em = sm = 0
    for k, n in enumerate(shape):
        st = int(rng.choice([1, 1, 2, 3, -1, -2]))
        b, e = sorted(int(v) for v in rng.integers(0, n + 1, size=2))
        if st < 0:
            b, e = e - 1, b - 1
            if b < 0:
                b, e = n - 1, -1
        if e == -1 and st < 0:
            em |= 1 << k
        if rng.random() < 0.15:
            bm |= 1 << k
            b = 0 if st > 0 else n - 1
        cnt = len(range(b, e, st))
        if cnt == 0:
            b, e, st, cnt = 0, n, 1, n
        if rng.random() < 0.1:
            sm |= 1 << k
            b = min(max(b, 0), n - 1)
            e, cnt, st = b + 1, 1, 1
            b = b - n if rng.random() < 0.5 else b  # negative index
        begin.append(b)
        end.append(e if not em >> k & 1 else 0)
        strides.append(st)
        counts.append(cnt)
    out = tuple(c for k, c in enumerate(counts) if not sm >> k & 1)
    sc, zp = _same_q(rng, dt)
    o = schema.StridedSliceOptionsT()
    o.beginMask, o.endMask, o.shrinkAxisMask = bm, em, sm
    r = len(shape)
    model = single_op("STRIDED_SLICE", [T(shape, dt, sc, zp), T((r,), "int32", data=_i32(begin)),
                      T((r,), "int32", data=_i32(end)), T((r,), "int32", data=_i32(strides))],
                      [T(out, dt, sc, zp)], schema.BuiltinOptions.StridedSliceOptions, o)  # fmt: skip
    return Case(f"strided_slice{_sfx(dt)}_{i}", model, [(shape, dt)], [(out, dt)])


def _gather(rng: np.random.Generator, i: int, pdt: str = "int32") -> Case:
    """Constant positions (repeats allowed) along any axis; sometimes batch_dims 1. int64
    positions (TFLiteConverter's channel shuffles) only run on LiteRT's reference kernel."""
    shape = _rand_shape(rng, 1, 5)
    axis = int(rng.integers(0, len(shape)))
    bd = 1 if axis >= 1 and rng.random() < 0.25 else 0
    pshape = tuple(shape[:bd]) + tuple(int(d) for d in rng.integers(1, 5, int(rng.integers(1, 3))))
    pos = rng.integers(0, shape[axis], size=pshape).astype(pdt)
    out = tuple(shape[:axis]) + pshape[bd:] + tuple(shape[axis + 1 :])
    sc, zp = _same_q(rng)
    o = schema.GatherOptionsT()
    o.axis = axis - len(shape) if rng.random() < 0.3 else axis
    o.batchDims = bd
    model = single_op("GATHER", [T(shape, "int8", sc, zp), T(pshape, pdt, data=pos)],
                      [T(out, "int8", sc, zp)], schema.BuiltinOptions.GatherOptions, o)  # fmt: skip
    name = "gather" if pdt == "int32" else "gather_i64"
    return Case(f"{name}_{i}", model, [(shape, "int8")], [(out, "int8")])


def _split(kind: str, dt: str = "int8") -> Callable[[np.random.Generator, int], Case]:
    def make(rng: np.random.Generator, i: int) -> Case:
        base = list(_rand_shape(rng, 1, 5))
        axis = int(rng.integers(0, len(base)))
        n = int(rng.integers(1, 4))
        if kind == "SPLIT":
            sizes = [int(rng.integers(1, 4))] * n
        else:
            sizes = [int(v) for v in rng.integers(1, 5, size=n)]
        base[axis] = sum(sizes)
        sc, zp = _same_q(rng, dt)
        outs = []
        for sz in sizes:
            sh = list(base)
            sh[axis] = sz
            outs.append(T(tuple(sh), dt, sc, zp))
        x = T(tuple(base), dt, sc, zp)
        ax = T((1,), "int32", data=_i32([axis]))
        if kind == "SPLIT":
            o = schema.SplitOptionsT()
            o.numSplits = n
            model = single_op("SPLIT", [ax, x], outs, schema.BuiltinOptions.SplitOptions, o)
        else:
            o = schema.SplitVOptionsT()
            o.numSplits = n
            model = single_op("SPLIT_V", [x, T((n,), "int32", data=_i32(sizes)), ax], outs,
                              schema.BuiltinOptions.SplitVOptions, o)  # fmt: skip
        return Case(f"{kind.lower()}{_sfx(dt)}_{i}", model, [(tuple(base), dt)],
                    [(t.shape, dt) for t in outs])  # fmt: skip

    return make


def _resize(kind: str, rng: np.random.Generator, i: int, dt: str = "int8") -> Case:
    b, c = int(rng.integers(1, 3)), int(rng.integers(1, 5))
    ih, iw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    oh, ow = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    sc, zp = _same_q(rng, dt)
    o = (
        schema.ResizeNearestNeighborOptionsT()
        if kind == "RESIZE_NEAREST_NEIGHBOR"
        else schema.ResizeBilinearOptionsT()
    )
    o.alignCorners = bool(rng.random() < 0.3)
    o.halfPixelCenters = bool(rng.random() < 0.5) and not o.alignCorners
    model = single_op(kind,
                      [T((b, ih, iw, c), dt, sc, zp), T((2,), "int32", data=_i32([oh, ow]))],
                      [T((b, oh, ow, c), dt, sc, zp)],
                      getattr(schema.BuiltinOptions, "ResizeNearestNeighborOptions" if kind == "RESIZE_NEAREST_NEIGHBOR" else "ResizeBilinearOptions"), o)  # fmt: skip
    return Case(f"{kind.lower()}{_sfx(dt)}_{i}", model, [((b, ih, iw, c), dt)],
                [((b, oh, ow, c), dt)])  # fmt: skip


def _resize_nn(rng: np.random.Generator, i: int) -> Case:
    return _resize("RESIZE_NEAREST_NEIGHBOR", rng, i)


def _resize_bilinear(rng: np.random.Generator, i: int) -> Case:
    return _resize("RESIZE_BILINEAR", rng, i)


def _mean(rng: np.random.Generator, i: int, dt: str = "int8", kind: str = "MEAN") -> Case:
    shape = _rand_shape(rng, 1, 5)
    r = len(shape)
    axes = sorted({int(a) for a in rng.integers(0, r, size=int(rng.integers(1, r + 1)))})
    keep = bool(rng.integers(0, 2))
    out = (
        tuple(1 if k in axes else d for k, d in enumerate(shape))
        if keep
        else tuple(d for k, d in enumerate(shape) if k not in axes)
    )
    s, zp = _q(rng)
    so, zo = float(s * rng.uniform(0.3, 3.0)), int(rng.integers(-128, 128))
    if kind == "SUM":
        # a sum grows with the count: output scales from well below to above count * s
        count = math.prod(shape[a] for a in axes)
        so, zo = float(s * count * 2.0 ** rng.uniform(-1.5, 1.5)), int(rng.integers(-64, 64))
    if dt == "int16":
        s, zp, so, zo = s / 256, 0, so / 256, 0
    ax = [a - r if rng.random() < 0.3 else a for a in axes]
    o = schema.ReducerOptionsT()
    o.keepDims = keep
    model = single_op(kind, [T(shape, dt, (s,), (zp,)), T((len(ax),), "int32", data=_i32(ax))],
                      [T(out, dt, (so,), (zo,))], schema.BuiltinOptions.ReducerOptions, o)  # fmt: skip
    suffix = "_s16" if dt == "int16" else ""
    return Case(f"{kind.lower()}{suffix}_{i}", model, [(shape, dt)], [(out, dt)])


def _act16(kind: str) -> Callable[[np.random.Generator, int], Case]:
    """int16 LOGISTIC / TANH: general input scales, and the power-of-two ones TFLM takes a
    shortcut for (2^-12, and 2^-11 for TANH); output scale 2^-15."""

    def make(rng: np.random.Generator, i: int) -> Case:
        shape = _rand_shape(rng, 1, 5)
        r = rng.random()
        if r < 0.15:
            s = 2.0**-12
        elif r < 0.3:
            s = 2.0 ** int(rng.choice([-11, -13, -10]))
        else:
            s = float(rng.uniform(1.0, 16.0)) / 32768  # inputs up to +-1..16
        x, y = T(shape, "int16", (s,), (0,)), T(shape, "int16", (2.0**-15,), (0,))
        return Case(f"{kind.lower()}_s16_{i}", single_op(kind, [x], [y]), [(shape, "int16")],
                    [(shape, "int16")])  # fmt: skip

    return make


def _rsqrt(dt: str) -> Callable[[np.random.Generator, int], Case]:
    """RSQRT on codes at or above the input zero point (TFLM fails the invoke below it); the
    output scale so that 1/sqrt of the range's typical values lands inside it."""

    def make(rng: np.random.Generator, i: int) -> Case:
        shape = _rand_shape(rng, 1, 5)
        s, zp = float(rng.uniform(0.002, 0.5)), int(rng.integers(-128, 100))
        so, zo = float(rng.uniform(0.2, 3.0)) / math.sqrt(s * 40) / 128, int(rng.integers(-128, 0))
        if dt == "int16":
            s, zp = s / 256, 0  # TFLM's int16 RSQRT takes zero points 0 only
            so, zo = so / 256 * float(rng.uniform(1.0, 16.0)), 0
        x, y = T(shape, dt, (s,), (zp,)), T(shape, dt, (so,), (zo,))
        return Case(f"rsqrt{_sfx(dt)}_{i}", single_op("RSQRT", [x], [y]), [(shape, dt)],
                    [(shape, dt)], input_min=zp)  # fmt: skip

    return make


def _batch_matmul(dt: str, const: bool = False) -> Callable[[np.random.Generator, int], Case]:
    """BATCH_MATMUL: ranks 2..5, adj_x / adj_y, broadcast batch dimensions; ``const``: the
    right operand is a constant tensor (attention's projections are FCs, but a converter may
    emit x @ W)."""

    def make(rng: np.random.Generator, i: int) -> Case:
        m, k, n = (int(v) for v in rng.integers(1, 9, size=3))
        nb = int(rng.integers(0, 4))
        out_b = [int(v) for v in rng.integers(1, 4, size=nb)]
        ba = [d if rng.random() < 0.7 else 1 for d in out_b]
        bb = [d if rng.random() < 0.7 else 1 for d in out_b]
        if nb and rng.random() < 0.3:
            bb = bb[int(rng.integers(0, nb + 1)) :]
        out_b = [max(x, y) for x, y in zip(ba, [1] * (len(ba) - len(bb)) + bb, strict=True)]
        adj_x, adj_y = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        sa = (*ba, *((k, m) if adj_x else (m, k)))
        sb = (*bb, *((n, k) if adj_y else (k, n)))
        so = (*out_b, m, n)
        (s1, z1), (s2, z2) = _q(rng), _q(rng)
        s_out = s1 * s2 * 128 * math.sqrt(k) * float(rng.uniform(0.2, 3.0))
        zo = int(rng.integers(-128, 128))
        if dt == "int16":
            s1, s2, s_out, z1, z2, zo = s1 / 256, s2 / 256, s_out / 256, 0, 0, 0
        a, b, y = T(sa, dt, (s1,), (z1,)), T(sb, dt, (s2,), (z2,)), T(so, dt, (s_out,), (zo,))
        if const:
            info = np.iinfo(np.dtype(dt))
            b.data = rng.integers(info.min, info.max + 1, size=sb).astype(dt)
        o = schema.BatchMatMulOptionsT()
        o.adjX, o.adjY = adj_x, adj_y
        model = single_op("BATCH_MATMUL", [a, b], [y], schema.BuiltinOptions.BatchMatMulOptions, o)
        live = [(t.shape, dt) for t in (a, b) if t.data is None]
        name = f"batch_matmul{'_const' if const else ''}{_sfx(dt)}_{i}"
        return Case(name, model, live, [(so, dt)])

    return make


def _relu16(kind: str) -> Callable[[np.random.Generator, int], Case]:
    """int16 RELU (requantizing) and RELU6 (a clamp of the input codes)."""

    def make(rng: np.random.Generator, i: int) -> Case:
        shape = _rand_shape(rng, 1, 5)
        s = float(rng.uniform(0.5, 12.0)) / 32768
        so = s * float(rng.uniform(0.3, 3.0)) if rng.random() < 0.8 else s
        x, y = T(shape, "int16", (s,), (0,)), T(shape, "int16", (so,), (0,))
        model = single_op(kind, [x], [y])
        return Case(f"{kind.lower()}_s16_{i}", model, [(shape, "int16")], [(shape, "int16")])

    return make


def _requant(src: str, dst: str) -> Callable[[np.random.Generator, int], Case]:
    """QUANTIZE between int8 and int16 (and int16 -> int16): TFLM's Requantize."""

    def make(rng: np.random.Generator, i: int) -> Case:
        shape = _rand_shape(rng, 1, 5)
        s, zp = _q(rng)
        si, zi = (s / 256, 0) if src == "int16" else (s, zp)
        ratio = float(rng.uniform(0.3, 3.0)) if rng.random() < 0.8 else 1.0
        so = s * ratio
        so, zo = (so / 256, 0) if dst == "int16" else (so, int(rng.integers(-128, 128)))
        if src == "int8" and dst == "int16" and rng.random() < 0.3:
            zi = int(rng.integers(-128, 128))
        x, y = T(shape, src, (si,), (zi,)), T(shape, dst, (so,), (zo,))
        name = f"quantize_{src[3:]}_{dst[3:]}_{i}"
        return Case(name, single_op("QUANTIZE", [x], [y]), [(shape, src)], [(shape, dst)])

    return make


GENERATORS: dict[str, tuple[Callable[[np.random.Generator, int], Case], int]] = {
    "CONV_2D": (_conv, 120),
    "DEPTHWISE_CONV_2D": (_dwconv, 100),
    "FULLY_CONNECTED": (_fc, 60),
    "AVERAGE_POOL_2D": (_pool("AVERAGE_POOL_2D"), 40),
    "MAX_POOL_2D": (_pool("MAX_POOL_2D"), 40),
    "ADD": (_binary("ADD"), 50),
    "SUB": (_binary("SUB"), 40),
    "MUL": (_binary("MUL"), 40),
    "SOFTMAX": (_softmax, 40),
    "QUANTIZE": (_unary("QUANTIZE"), 30),
    "LOGISTIC": (_unary("LOGISTIC"), 30),
    "TANH": (_unary("TANH"), 30),
    "HARD_SWISH": (_unary("HARD_SWISH"), 30),
    "RELU": (_unary("RELU"), 20),
    "RELU6": (_unary("RELU6"), 20),
    "LEAKY_RELU": (_unary("LEAKY_RELU"), 20),
    "RELU_0_TO_1": (_unary("RELU_0_TO_1"), 20),
    "RELU_N1_TO_1": (_unary("RELU_N1_TO_1"), 20),
    "TRANSPOSE": (_transpose, 30),
    "CONCATENATION": (_concat, 30),
    "PAD": (_pad("PAD"), 25),
    "PADV2": (_pad("PADV2"), 25),
    "STRIDED_SLICE": (_slice, 40),
    "SPLIT": (_split("SPLIT"), 20),
    "GATHER": (_gather, 30),
    "GATHER_I64": (lambda rng, i: _gather(rng, i, "int64"), 10),
    "SPLIT_V": (_split("SPLIT_V"), 20),
    "RESIZE_NEAREST_NEIGHBOR": (_resize_nn, 30),
    "RESIZE_BILINEAR": (_resize_bilinear, 30),
    "MEAN": (_mean, 40),
    "CONV_2D_S16": (lambda rng, i: _conv_like(rng, i, False, "int16"), 40),
    "DEPTHWISE_CONV_2D_S16": (lambda rng, i: _conv_like(rng, i, True, "int16"), 30),
    "FULLY_CONNECTED_S16": (lambda rng, i: _fc(rng, i, "int16"), 30),
    "AVERAGE_POOL_2D_S16": (_pool("AVERAGE_POOL_2D", "int16"), 20),
    "MAX_POOL_2D_S16": (_pool("MAX_POOL_2D", "int16"), 20),
    "ADD_S16": (_binary("ADD", "int16"), 30),
    "MEAN_S16": (lambda rng, i: _mean(rng, i, "int16"), 20),
    "SUM": (lambda rng, i: _mean(rng, i, kind="SUM"), 40),
    "SUM_S16": (lambda rng, i: _mean(rng, i, "int16", "SUM"), 20),
    "SOFTMAX_S16": (lambda rng, i: _softmax(rng, i, "int16"), 30),
    "ADD_CONST": (_binary("ADD", const=True), 15),
    "SUB_CONST": (_binary("SUB", const=True), 15),
    "MUL_CONST": (_binary("MUL", const=True), 20),
    "MUL_CONST_S16": (_binary("MUL", "int16", const=True), 15),
    "ADD_CONST_S16": (_binary("ADD", "int16", const=True), 10),
    # the rest of what int16x8 conversions emit
    "SUB_S16": (_binary("SUB", "int16"), 30),
    "MUL_S16": (_binary("MUL", "int16"), 30),
    "LOGISTIC_S16": (_act16("LOGISTIC"), 30),
    "TANH_S16": (_act16("TANH"), 30),
    "RELU_S16": (_relu16("RELU"), 15),
    "RELU6_S16": (_relu16("RELU6"), 15),
    "QUANTIZE_16_16": (_requant("int16", "int16"), 20),
    "QUANTIZE_8_16": (_requant("int8", "int16"), 20),
    "QUANTIZE_16_8": (_requant("int16", "int8"), 20),
    "TRANSPOSE_S16": (lambda rng, i: _transpose(rng, i, "int16"), 15),
    "CONCATENATION_S16": (lambda rng, i: _concat(rng, i, "int16"), 15),
    "PAD_S16": (_pad("PAD", "int16"), 15),
    "PADV2_S16": (_pad("PADV2", "int16"), 15),
    "STRIDED_SLICE_S16": (lambda rng, i: _slice(rng, i, "int16"), 20),
    "SPLIT_S16": (_split("SPLIT", "int16"), 10),
    "SPLIT_V_S16": (_split("SPLIT_V", "int16"), 10),
    # LayerNorm as onnx2tf / TFLiteConverter lower it
    "RSQRT": (_rsqrt("int8"), 60),
    "RSQRT_S16": (_rsqrt("int16"), 40),
    "SQUARED_DIFFERENCE": (_binary("SQUARED_DIFFERENCE"), 50),
    "SQUARED_DIFFERENCE_S16": (_binary("SQUARED_DIFFERENCE", "int16"), 30),
    "BATCH_MATMUL": (_batch_matmul("int8"), 50),
    "CONCATENATION_CONST": (lambda rng, i: _concat(rng, i, const=True), 15),
    "BATCH_MATMUL_CONST": (_batch_matmul("int8", const=True), 15),
    "BATCH_MATMUL_S16": (_batch_matmul("int16"), 25),
    "RESIZE_NEAREST_NEIGHBOR_S16": (
        lambda rng, i: _resize("RESIZE_NEAREST_NEIGHBOR", rng, i, "int16"),
        15,
    ),
}


def _cases() -> list[Case]:
    out = []
    for kind, (gen, n) in sorted(GENERATORS.items()):
        rng = np.random.default_rng(zlib.crc32(kind.encode()))
        out += [gen(rng, i) for i in range(n)]
    return out


def _rand_input(
    rng: np.random.Generator, shape: tuple[int, ...], dt: str, lo: int | None = None
) -> np.ndarray:
    info = np.iinfo(np.dtype(dt))
    low = info.min if lo is None else max(lo, info.min)
    return rng.integers(low, info.max + 1, size=shape, dtype=np.dtype(dt))


class _Reference:
    """TFLM's Python interpreter, or LiteRT with its reference kernels for LITERT_ONLY ops."""

    def __init__(self, model: bytes, *, litert: bool) -> None:
        if litert:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            self.lite = Interpreter(
                model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
            )
            self.lite.allocate_tensors()
        else:
            from tflite_micro.python.tflite_micro import runtime

            self.lite = None
            self.tflm = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)

    def __call__(self, xs: list[np.ndarray], n_out: int) -> list[np.ndarray]:
        if self.lite is not None:
            ins, outs = self.lite.get_input_details(), self.lite.get_output_details()
            for d, x in zip(ins, xs, strict=True):
                self.lite.set_tensor(d["index"], x)
            self.lite.invoke()
            return [self.lite.get_tensor(outs[k]["index"]) for k in range(n_out)]
        for k, x in enumerate(xs):
            self.tflm.set_input(x, k)
        self.tflm.invoke()
        return [self.tflm.get_output(k) for k in range(n_out)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Case], object, list]:
    root = tmp_path_factory.mktemp("compiled-kernels")
    cases = _cases()
    cms = []
    for c in cases:
        m = TFLiteModel.from_bytes(c.model, source=f"{c.name}.tflite")
        cms.append(compile_model(m, out_dir=root / c.name, name=c.name))
    lib = compiled.build_unity(cms, root / "kernels.so")
    return cases, lib, cms


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_kernel_bit_exact_with_tflm(kind: str, built: tuple[list[Case], object, list]) -> None:
    cases, lib, _ = built
    prefix = kind.lower() + "_"
    mine = [c for c in cases if c.name.startswith(prefix) and c.name[len(prefix) :].isdigit()]
    assert len(mine) == GENERATORS[kind][1]
    rng = np.random.default_rng(7)
    checked = 0
    for c in mine:
        ref = _Reference(c.model, litert=kind in LITERT_ONLY)
        run = compiled.Runner(lib, c.name)  # type: ignore[arg-type]
        for _ in range(INPUTS_PER_MODEL):
            xs = [_rand_input(rng, s, d, c.input_min) for s, d in c.inputs]
            wants = ref(xs, len(c.outputs))
            gots = run(xs, [(shape, np.dtype(d)) for shape, d in c.outputs])
            for k, (want, got) in enumerate(zip(wants, gots, strict=True)):
                if np.array_equal(want, got):
                    continue
                diff = np.abs(want.astype(int) - got.astype(int))
                pytest.fail(f"{c.name} output {k}: {int((diff > 0).sum())} of {diff.size} values "
                            f"differ (max {int(diff.max())})")  # fmt: skip
            checked += 1
    assert checked == len(mine) * INPUTS_PER_MODEL


def test_sum_with_an_unrepresentable_rescale_is_one_clear_error(tmp_path: Path) -> None:
    """A SUM whose s_in / s_out needs a left shift over 30 (TFLM's arithmetic would overflow
    the shift) is refused, naming the operator; nothing is written."""
    from toolchain.errors import CompileError

    o = schema.ReducerOptionsT()
    o.keepDims = True
    model = single_op("SUM", [T((1, 4, 4, 3), "int8", (1.0,), (0,)),
                              T((2,), "int32", data=_i32([1, 2]))],
                      [T((1, 1, 1, 3), "int8", (1e-12,), (0,))],
                      schema.BuiltinOptions.ReducerOptions, o)  # fmt: skip
    m = TFLiteModel.from_bytes(model, source="sum_big.tflite")
    with pytest.raises(CompileError, match=r"SUM.*scale ratio .* too large"):
        compile_model(m, out_dir=tmp_path / "out", name="sum_big")
    assert not (tmp_path / "out").exists()
