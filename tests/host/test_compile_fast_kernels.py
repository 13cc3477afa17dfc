"""The fast kernels (toolchain/compile/select.py, edc_*_fast.c) are bit-exact with TFLM.

Same randomised single-op models as tests/host/test_compile_kernels.py (conv, depthwise, FC:
strides, dilation, padding, per-channel, activations, odd channel counts), plus the layer
shapes of the MLPerf Tiny models, compiled with ``kernels="fast"``. On the host the SIMD steps
of edc_simd.h are its portable C forms; the emulated test
(tests/emulated/test_compile_fast_qemu.py) runs the same kernel sources with the real DSP
instructions in QEMU.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tests.host.test_compile_kernels import Case, _conv, _dwconv, _fc
from tests.support.tflite_build import T, single_op
from toolchain.compile import compile_model
from toolchain.compile import hostrun as compiled
from toolchain.tflite_model import TFLiteModel

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")

INPUTS_PER_MODEL = 6
COUNTS = {"conv": 60, "dw": 50, "fc": 40}

#: (name, kind, in HWC, kernel HW, stride, out channels, SAME padding): the layer shapes of
#: KWS DS-CNN, IC ResNet-8, VWW MobileNetV1-0.25 and AD (scaled down where they are large).
MLPERF_SHAPES = [
    ("kws_conv1", "conv", (49, 10, 1), (10, 4), 2, 64, True),
    ("kws_dw", "dw", (25, 5, 64), (3, 3), 1, 64, True),
    ("kws_pw", "conv", (25, 5, 64), (1, 1), 1, 64, False),
    ("ic_conv3x3", "conv", (16, 16, 16), (3, 3), 1, 16, True),
    ("ic_conv3x3_s2", "conv", (16, 16, 16), (3, 3), 2, 32, True),
    ("ic_shortcut_1x1_s2", "conv", (16, 16, 16), (1, 1), 2, 32, False),
    ("vww_conv1", "conv", (24, 24, 3), (3, 3), 2, 8, True),
    ("vww_dw_s2", "dw", (12, 12, 16), (3, 3), 2, 16, True),
    ("vww_pw", "conv", (6, 6, 24), (1, 1), 1, 48, False),
    ("ad_fc", "fc", (640,), (0, 0), 0, 128, False),
    # person_detect's stem: depthwise, one input channel, depth multiplier 8 (runs as a conv)
    ("pd_stem", "dw", (24, 24, 1), (3, 3), 2, 8, True),
    # biases near 2^30 (as in some VWW layers): the compiler cannot prove the accumulators
    # small, so these layers take the general requantization path
    ("kws_pw_bigbias", "conv", (5, 5, 64), (1, 1), 1, 16, False),
    ("kws_dw_bigbias", "dw", (6, 5, 16), (3, 3), 1, 16, True),
    ("ad_fc_bigbias", "fc", (64,), (0, 0), 0, 12, False),
    # dead filters (all-zero weights, as 971 of VWW's 2,738 conv filters): only the live
    # channels are computed (edc_conv_fast_live_s8), the others are constants; an odd number
    # of live channels, a 3x3 layer with an odd channel count, and a layer with no live filter
    ("vww_pw_dead", "conv", (6, 6, 24), (1, 1), 1, 48, False),
    ("vww_conv3x3_dead", "conv", (7, 7, 8), (3, 3), 2, 13, True),
    ("vww_pw_alldead", "conv", (3, 3, 16), (1, 1), 1, 8, False),
    # person_detect's second layer (48x48x8 scaled down): two 4-channel groups per pixel in
    # the 3x3 depthwise kernel's full-window row loop
    ("pd_dw8", "dw", (10, 9, 8), (3, 3), 1, 8, True),
    # an FC with row and depth tails (15 rows, 330 deep) big enough (4,950 weights) that
    # `--kernels auto` keeps the fast kernel on a device (smaller ones get the plain one)
    ("fc_rowtail", "fc", (330,), (0, 0), 0, 15, False),
]


def _dead_rows(name: str, oc: int) -> np.ndarray:
    """Which output channels of a ``*_dead`` layer have all-zero filters: every other one
    and the last (an odd number live when oc is even), all of them for ``*_alldead``."""
    if name.endswith("_alldead"):
        return np.ones(oc, bool)
    dead = np.zeros(oc, bool)
    if name.endswith("_dead"):
        dead[1::2] = True
        dead[-1] = True
    return dead


def _bias(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    b = rng.integers(-5000, 5000, n).astype(np.int32)
    if name.endswith("_bigbias"):
        b[0], b[-1] = 2**30 - 7, -(2**30) + 3
    return b


def _layer(rng: np.random.Generator, name: str, kind: str, hwc: tuple[int, ...],
           k: tuple[int, int], s: int, oc: int, same: bool) -> Case:  # fmt: skip
    in_s, in_zp = float(rng.uniform(0.01, 0.1)), int(rng.integers(-128, 128))
    out_zp = int(rng.integers(-128, 128))
    if kind == "fc":
        n = hwc[0]
        w_s = tuple(float(v) for v in rng.uniform(0.002, 0.02, 1))
        x = T((1, n), "int8", (in_s,), (in_zp,))
        wt = T((oc, n), "int8", w_s, (0,), rng.integers(-127, 128, (oc, n)).astype(np.int8))
        b = T((oc,), "int32", (in_s * w_s[0],), (0,), _bias(rng, name, oc))
        y = T((1, oc), "int8", (in_s * w_s[0] * 125 * float(np.sqrt(n)),), (out_zp,))
        o = schema.FullyConnectedOptionsT()
        o.fusedActivationFunction = 1
        m = single_op("FULLY_CONNECTED", [x, wt, b], [y],
                      schema.BuiltinOptions.FullyConnectedOptions, o)  # fmt: skip
        return Case(name, m, [(x.shape, "int8")], [(y.shape, "int8")])
    h, w, c = hwc
    kh, kw = k
    oh = (h + s - 1) // s if same else (h - kh + s) // s
    ow = (w + s - 1) // s if same else (w - kw + s) // s
    dead = _dead_rows(name, oc)
    w_s = tuple(float(v) for v in rng.uniform(0.002, 0.02, oc))
    if dead.any():
        # like VWW's dead filters: half of them with a vanishing scale (the multiplier
        # underflows to 0) and a bias near +-2^30, the others ordinary
        w_s = tuple(
            1e-12 if d and c % 4 == 1 else v for c, (d, v) in enumerate(zip(dead, w_s, strict=True))
        )
    if kind == "dw":
        wshape, qdim, fan = (1, kh, kw, oc), 3, kh * kw
        o = schema.DepthwiseConv2DOptionsT()
        o.depthMultiplier = oc // c
        otype, op = schema.BuiltinOptions.DepthwiseConv2DOptions, "DEPTHWISE_CONV_2D"
    else:
        wshape, qdim, fan = (oc, kh, kw, c), 0, kh * kw * c
        o = schema.Conv2DOptionsT()
        otype, op = schema.BuiltinOptions.Conv2DOptions, "CONV_2D"
    o.padding = schema.Padding.SAME if same else schema.Padding.VALID
    o.strideH = o.strideW = s
    o.dilationHFactor = o.dilationWFactor = 1
    o.fusedActivationFunction = 0 if name.endswith("_bigbias") else 3
    x = T((1, h, w, c), "int8", (in_s,), (in_zp,))
    wdata = rng.integers(-127, 128, wshape).astype(np.int8)
    bdata = _bias(rng, name, oc)
    if dead.any():
        wdata[dead] = 0
        tiny = np.asarray(w_s) < 1e-9
        bdata[tiny] = np.where(np.arange(oc)[tiny] % 8 == 1, 2**30 - 9, -(2**30) + 5)
    wt = T(wshape, "int8", w_s, (0,) * oc, wdata, qdim)
    b = T((oc,), "int32", tuple(in_s * v for v in w_s), (0,) * oc, bdata)
    y = T((1, oh, ow, oc), "int8", (in_s * float(np.mean(w_s)) * 60 * float(np.sqrt(fan)),),
          (out_zp,))  # fmt: skip
    m = single_op(op, [x, wt, b], [y], otype, o)
    return Case(name, m, [(x.shape, "int8")], [(y.shape, "int8")])


def cases() -> list[Case]:
    """The randomised cases and the MLPerf layer shapes (also used by the QEMU test)."""
    out: list[Case] = []
    for key, gen in (("conv", _conv), ("dw", _dwconv), ("fc", _fc)):
        rng = np.random.default_rng(zlib.crc32(f"fast-{key}".encode()))
        out += [gen(rng, i) for i in range(COUNTS[key])]
    rng = np.random.default_rng(13)
    out += [_layer(rng, *spec) for spec in MLPERF_SHAPES]
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Case], object, list]:
    root = tmp_path_factory.mktemp("fast-kernels")
    cs = cases()
    cms = []
    for c in cs:
        m = TFLiteModel.from_bytes(c.model, source=f"{c.name}.tflite")
        # every other random depthwise case compiled for the M7: its 3x3 windows run unrolled
        # (rolled = 0, select.ROLLED_DW_CORES); the rest row by row (no target: rolled = 1)
        odd_dw = c.name.startswith("depthwise") and int(c.name.rsplit("_", 1)[1]) % 2 == 1
        cms.append(compile_model(m, out_dir=root / c.name, name=c.name, kernels="fast",
                                 target="mps2-an500" if odd_dw else None))  # fmt: skip
    lib = compiled.build_unity(cms, root / "fast.so")
    return cs, lib, cms


def test_both_depthwise_window_forms_are_built(built: tuple[list[Case], object, list]) -> None:
    _, _, cms = built
    text = "".join(
        (cm.out_dir / f"{cm.name}.c").read_text() for cm in cms if cm.name.startswith("depthwise")
    )
    assert ".rolled = 1" in text and ".rolled = 0" in text


def test_fast_kernels_chosen(built: tuple[list[Case], object, list]) -> None:
    cs, _, cms = built
    fast = {k for cm in cms for k in cm.kernels if k.endswith("_fast")}
    assert fast == {"edc_conv_fast", "edc_dwconv_fast", "edc_fc_fast"}
    # every conv with one group and every depth-multiplier-1 depthwise took a fast kernel
    for c, cm in zip(cs, cms, strict=True):
        if c.name.startswith(("kws_", "ic_", "vww_", "ad_", "pd_")):
            assert all(k.endswith("_fast") for k in cm.kernels if k != "edc_lut"), cm.kernels


def test_requantization_path_per_layer(built: tuple[list[Case], object, list]) -> None:
    """Layers with ordinary biases get the short requantization, the big-bias ones not."""
    from toolchain.compile import lower_and_plan
    from toolchain.tflite_model import TFLiteModel

    for c in cases():
        if not c.name.startswith(("kws_", "ad_")):
            continue
        g, _ = lower_and_plan(TFLiteModel.from_bytes(c.model), kernels="fast")
        (op,) = g.ops
        assert op.fields["small_acc"] == (0 if c.name.endswith("_bigbias") else 1), c.name


def test_dead_filters_dropped() -> None:
    """Conv layers with all-zero filters keep only their live channels' constants."""
    from toolchain.compile import lower_and_plan

    for c in cases():
        if not c.name.endswith(("_dead", "_alldead")):
            continue
        g, _ = lower_and_plan(TFLiteModel.from_bytes(c.model), kernels="fast")
        (op,) = g.ops
        f = op.fields
        oc = int(f["out_c"])  # type: ignore[arg-type]
        n_live = oc - int(_dead_rows(c.name, oc).sum())
        assert op.func == "edc_conv_fast_live_s8", c.name
        assert f["live_c"] == max(n_live, 1), c.name
        assert f["fill"].values.size == oc  # type: ignore[union-attr]
        assert f["mult"].values.size == max(n_live, 1)  # type: ignore[union-attr]
        assert f["weights"].values.size == (max(n_live, 1) + 1) // 2 * 2 * f["k4"]  # type: ignore[union-attr, operator]
    # a layer without dead filters keeps the dense kernel
    g, _ = lower_and_plan(TFLiteModel.from_bytes(_case("vww_pw").model), kernels="fast")
    assert g.ops[0].func == "edc_conv_fast_s8"


def _case(name: str) -> Case:
    return next(c for c in cases() if c.name == name)


@pytest.mark.parametrize(
    ("target", "fast"),
    [("mps2-an386", True), ("mps2-an500", True), ("mps2-an505", True),
     ("lm3s6965evb", True), ("rpi-pico", False), ("host-compiled", False), (None, False)],
)  # fmt: skip
def test_auto_policy_by_target(target: str | None, fast: bool) -> None:
    from toolchain.compile.select import wants_fast

    assert wants_fast(target) is fast


def test_fast_kernels_bit_exact_with_tflm(built: tuple[list[Case], object, list]) -> None:
    from tflite_micro.python.tflite_micro import runtime

    cs, lib, _ = built
    rng = np.random.default_rng(11)
    checked = 0
    for c in cs:
        interp = runtime.Interpreter.from_bytes(c.model, arena_size=1 << 21)
        run = compiled.Runner(lib, c.name)  # type: ignore[arg-type]
        for _ in range(INPUTS_PER_MODEL):
            xs = [rng.integers(-128, 128, size=s, dtype=np.int8) for s, _ in c.inputs]
            for k, x in enumerate(xs):
                interp.set_input(x, k)
            interp.invoke()
            want = interp.get_output(0)
            got = run(xs, [(c.outputs[0][0], np.dtype(np.int8))])[0]
            if not np.array_equal(want, got):
                diff = np.abs(want.astype(int) - got.astype(int))
                pytest.fail(f"{c.name}: {int((diff > 0).sum())} of {diff.size} values differ "
                            f"(max {int(diff.max())})")  # fmt: skip
            checked += 1
    assert checked == len(cs) * INPUTS_PER_MODEL
