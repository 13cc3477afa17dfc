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

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tests.support import compiled
from tests.support.tflite_build import T, single_op
from toolchain.compile import compile_model
from toolchain.tflite_model import TFLiteModel

INPUTS_PER_MODEL = 12
ACTS = (0, 1, 2, 3)  # NONE, RELU, RELU_N1_TO_1, RELU6

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")


@dataclass
class Case:
    name: str
    model: bytes
    inputs: list[tuple[tuple[int, ...], str]]  # shape, dtype per graph input
    output: tuple[tuple[int, ...], str]


def _q(rng: np.random.Generator) -> tuple[float, int]:
    return float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))


def _out_size(pad_same: bool, n: int, k: int, s: int, d: int) -> int:
    eff = (k - 1) * d + 1
    return (n + s - 1) // s if pad_same else (n - eff + s) // s


def _pick_out_scale(rng: np.random.Generator, in_s: float, w_s: float, n: int) -> float:
    return float(125 * math.sqrt(max(n, 1)) * in_s * w_s * rng.uniform(0.2, 3.0))


def _conv_like(rng: np.random.Generator, i: int, depthwise: bool) -> Case:
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
    bias = None
    if depthwise or rng.random() < 0.85:  # TFLM's interpreter crashes on a bias-less depthwise
        bias = T((oc,), "int32", tuple(in_s * s for s in w_scales), (0,) * nsc,
                 rng.integers(-3000, 3000, size=oc).astype(np.int32))  # fmt: skip
    x = T((b, h, w, ic), "int8", (in_s,), (in_zp,))
    wt = T(wshape, "int8", w_scales, (0,) * nsc, wdata, qdim)
    y = T((b, oh, ow, oc), "int8", (out_s,), (out_zp,))
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
    return Case(f"{kind.lower()}_{i}", model, [(x.shape, "int8")], (y.shape, "int8"))


def _conv(rng: np.random.Generator, i: int) -> Case:
    return _conv_like(rng, i, depthwise=False)


def _dwconv(rng: np.random.Generator, i: int) -> Case:
    return _conv_like(rng, i, depthwise=True)


def _fc(rng: np.random.Generator, i: int) -> Case:
    b, n, m = int(rng.integers(1, 4)), int(rng.integers(1, 65)), int(rng.integers(1, 33))
    in_s, in_zp = _q(rng)
    per_channel = rng.random() < 0.3
    nsc = m if per_channel else 1
    w_scales = tuple(float(v) for v in rng.uniform(0.002, 0.05, nsc))
    out_s = _pick_out_scale(rng, in_s, float(np.mean(w_scales)), n)
    x = T((b, n), "int8", (in_s,), (in_zp,))
    wt = T((m, n), "int8", w_scales, (0,) * nsc, rng.integers(-127, 128, (m, n)).astype(np.int8))
    bias = None
    if rng.random() < 0.85:
        bias = T((m,), "int32", tuple(in_s * s for s in w_scales), (0,) * nsc,
                 rng.integers(-3000, 3000, size=m).astype(np.int32))  # fmt: skip
    y = T((b, m), "int8", (out_s,), (int(rng.integers(-128, 128)),))
    o = schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = int(rng.choice(ACTS))
    model = single_op("FULLY_CONNECTED", [x, wt, bias], [y],
                      schema.BuiltinOptions.FullyConnectedOptions, o)  # fmt: skip
    return Case(f"fully_connected_{i}", model, [(x.shape, "int8")], (y.shape, "int8"))


def _pool(kind: str) -> Callable[[np.random.Generator, int], Case]:
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
        x = T((b, h, w, c), "int8", (s,), (zp,))
        y = T((b, oh, ow, c), "int8", (s,), (zp,))
        o = schema.Pool2DOptionsT()
        o.padding = schema.Padding.SAME if same else schema.Padding.VALID
        o.strideH, o.strideW, o.filterHeight, o.filterWidth = sh, sw, kh, kw
        o.fusedActivationFunction = int(rng.choice(ACTS))
        model = single_op(kind, [x], [y], schema.BuiltinOptions.Pool2DOptions, o)
        return Case(f"{kind.lower()}_{i}", model, [(x.shape, "int8")], (y.shape, "int8"))

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


def _binary(kind: str) -> Callable[[np.random.Generator, int], Case]:
    def make(rng: np.random.Generator, i: int) -> Case:
        sa, sb, so = _broadcast_shapes(rng)
        if not sb:
            sb = (1,)
        (s1, z1), (s2, z2) = _q(rng), _q(rng)
        if kind == "MUL":
            s_out = s1 * s2 * 128 * float(rng.uniform(0.2, 3.0))
        else:
            s_out = max(s1, s2) * float(rng.uniform(0.5, 3.0))
        a = T(sa, "int8", (s1,), (z1,))
        b = T(sb, "int8", (s2,), (z2,))
        y = T(so, "int8", (s_out,), (int(rng.integers(-128, 128)),))
        opts = {"ADD": (schema.AddOptionsT, schema.BuiltinOptions.AddOptions),
                "SUB": (schema.SubOptionsT, schema.BuiltinOptions.SubOptions),
                "MUL": (schema.MulOptionsT, schema.BuiltinOptions.MulOptions)}[kind]  # fmt: skip
        o = opts[0]()
        o.fusedActivationFunction = int(rng.choice(ACTS))
        model = single_op(kind, [a, b], [y], opts[1], o)
        return Case(f"{kind.lower()}_{i}", model, [(sa, "int8"), (sb, "int8")], (so, "int8"))

    return make


def _softmax(rng: np.random.Generator, i: int) -> Case:
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 40)))
    s, zp = float(rng.uniform(0.01, 0.6)), int(rng.integers(-128, 128))
    x = T(shape, "int8", (s,), (zp,))
    y = T(shape, "int8", (1 / 256,), (-128,))
    o = schema.SoftmaxOptionsT()
    o.beta = float(rng.choice([1.0, 1.0, 0.5, 2.0]))
    model = single_op("SOFTMAX", [x], [y], schema.BuiltinOptions.SoftmaxOptions, o)
    return Case(f"softmax_{i}", model, [(shape, "int8")], (shape, "int8"))


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
        model = single_op(kind, [x], [y])
        return Case(f"{kind.lower()}_{i}", model, [(shape, "int8")], (shape, "int8"))

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
}


def _cases() -> list[Case]:
    out = []
    for kind, (gen, n) in sorted(GENERATORS.items()):
        rng = np.random.default_rng(zlib.crc32(kind.encode()))
        out += [gen(rng, i) for i in range(n)]
    return out


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
    from tflite_micro.python.tflite_micro import runtime

    cases, lib, _ = built
    prefix = kind.lower() + "_"
    mine = [c for c in cases if c.name.startswith(prefix) and c.name[len(prefix) :].isdigit()]
    assert len(mine) == GENERATORS[kind][1]
    rng = np.random.default_rng(7)
    checked = 0
    for c in mine:
        interp = runtime.Interpreter.from_bytes(c.model, arena_size=1 << 20)
        run = compiled.Runner(lib, c.name)  # type: ignore[arg-type]
        for _ in range(INPUTS_PER_MODEL):
            xs = [rng.integers(-128, 128, size=s, dtype=np.int8) for s, _ in c.inputs]
            for k, x in enumerate(xs):
                interp.set_input(x, k)
            interp.invoke()
            want = interp.get_output(0)
            got = run(xs, [(c.output[0], np.dtype(np.int8))])[0]
            if not np.array_equal(want, got):
                diff = np.abs(want.astype(int) - got.astype(int))
                pytest.fail(f"{c.name}: {int((diff > 0).sum())} of {diff.size} values differ "
                            f"(max {int(diff.max())}); model saved by the fixture")  # fmt: skip
            checked += 1
    assert checked == len(mine) * INPUTS_PER_MODEL
