"""Split ("patch-based") execution (toolchain/compile/patch.py): schedule, plan, bit-exactness.

Randomised chains of convolutions / depthwise convolutions (kernel sizes, strides, SAME/VALID
padding, dilation, depth multipliers, odd sizes) are compiled whole and split into row bands
of several heights, with the reference-order and the fast kernels, built with the host gcc
and run on random inputs: the outputs must be identical. The schedule is checked by
simulating its band buffers row by row; the reference models' plans must get smaller.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tests.conftest import REFERENCE
from tests.support.tflite_build import T, chain
from toolchain.compile import compile_model, lower_and_plan
from toolchain.compile import hostrun as compiled
from toolchain.compile import patch as patch_mod
from toolchain.compile.ir import Graph
from toolchain.errors import UsageError
from toolchain.tflite_model import TFLiteModel

REF = REFERENCE
VWW = REF / "mlperf_tiny" / "vww" / "vww_96_int8.tflite"
PERSON = REF / "tflm_models" / "person_detection" / "person_detect.tflite"
KWS = REF / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"

N_CHAINS = 14
BANDS = (1, 2, 3)
INPUTS = 3


@dataclass
class Chain:
    name: str
    model: bytes
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def _out(n: int, k: int, s: int, d: int, same: bool) -> int:
    return (n + s - 1) // s if same else (n - (k - 1) * d - 1) // s + 1


def _chain(rng: np.random.Generator, i: int) -> Chain:
    h, w = int(rng.integers(9, 21)), int(rng.integers(5, 15))
    c = int(rng.choice([1, 3, 4, 8]))
    in_s = float(rng.uniform(0.02, 0.1))
    x = T((1, h, w, c), "int8", (in_s,), (int(rng.integers(-128, 128)),))
    layers = []
    for _ in range(int(rng.integers(2, 5))):
        kind = str(rng.choice(["conv", "dw", "pw"]))
        k = 1 if kind == "pw" else int(rng.choice([3, 3, 5]))
        kw = 1 if kind == "pw" else int(rng.choice([1, 3]))
        s = int(rng.choice([1, 1, 2]))
        d = 2 if s == 1 and k > 1 and rng.random() < 0.25 else 1
        same = bool(rng.random() < 0.6)
        oh, ow = _out(h, k, s, d, same), _out(w, kw, s, d, same)
        if oh < 1 or ow < 1:
            kind, k, kw, s, d, same = "pw", 1, 1, 1, 1, True
            oh, ow = h, w
        if kind == "dw":
            oc = c * int(rng.choice([1, 1, 2]))
            wshape, qdim, fan = (1, k, kw, oc), 3, k * kw
            o = schema.DepthwiseConv2DOptionsT()
            o.depthMultiplier = oc // c
            otype, op = schema.BuiltinOptions.DepthwiseConv2DOptions, "DEPTHWISE_CONV_2D"
        else:
            oc = int(rng.integers(2, 13))
            wshape, qdim, fan = (oc, k, kw, c), 0, k * kw * c
            o = schema.Conv2DOptionsT()
            otype, op = schema.BuiltinOptions.Conv2DOptions, "CONV_2D"
        o.padding = schema.Padding.SAME if same else schema.Padding.VALID
        o.strideH = o.strideW = s
        o.dilationHFactor = o.dilationWFactor = d
        o.fusedActivationFunction = int(rng.choice([0, 1, 3]))
        w_s = tuple(float(v) for v in rng.uniform(0.002, 0.02, oc))
        wt = T(
            wshape, "int8", w_s, (0,) * oc, rng.integers(-127, 128, wshape).astype(np.int8), qdim
        )
        b = T((oc,), "int32", tuple(in_s * v for v in w_s), (0,) * oc,
              rng.integers(-3000, 3000, oc).astype(np.int32))  # fmt: skip
        out_s = in_s * float(np.mean(w_s)) * 40 * float(np.sqrt(fan))
        y = T((1, oh, ow, oc), "int8", (out_s,), (int(rng.integers(-100, 100)),))
        layers.append((op, [wt, b], y, otype, o))
        h, w, c, in_s = oh, ow, oc, out_s
    return Chain(f"chain{i}", chain(x, layers), x.shape, (1, h, w, c))


def chains() -> list[Chain]:
    rng = np.random.default_rng(zlib.crc32(b"patch-chains"))
    return [_chain(rng, i) for i in range(N_CHAINS)]


def _simulate(graph: Graph) -> None:
    """Walk the split's steps with band buffers of row numbers: every row a kernel reads must
    be held, nothing is computed twice, buffers stay within their capacity."""
    sp = graph.split
    assert sp is not None
    m = len(sp.ops)
    held: list[list[int]] = [[] for _ in range(m - 1)]
    done: list[list[int]] = [[] for _ in range(m)]
    for band in sp.steps:
        for k, st in enumerate(band):
            op = graph.ops[sp.ops[k]]
            if k < m - 1:
                buf = held[k][st.keep_from : st.keep_from + st.keep_rows]
                assert len(buf) == st.keep_rows
                assert st.out_row == len(buf)
            if st.oy_hi > st.oy_lo:
                lo, hi = patch_mod.input_rows(op, st.oy_lo, st.oy_hi)
                if k > 0:
                    have = held[k - 1]
                    assert have[0] == st.in_row0
                    assert set(range(lo, hi)) <= set(have), (k, lo, hi, have)
            new = list(range(st.oy_lo, st.oy_hi))
            done[k] += new
            if k < m - 1:
                held[k] = buf + new
                assert held[k] == list(range(held[k][0], held[k][-1] + 1)) if held[k] else True
                assert len(held[k]) <= sp.buffer_rows[k]
    for k in range(m):
        assert len(done[k]) == len(set(done[k])), "a row computed twice"
    last = graph.ops[sp.last]
    assert done[-1] == list(range(last.fields["out_h"]))  # type: ignore[arg-type]


def test_schedule_simulated(monkeypatch: pytest.MonkeyPatch) -> None:
    for c in chains():
        m = TFLiteModel.from_bytes(c.model, source=f"{c.name}.tflite")
        for h in (1, 2, 3, 5):
            monkeypatch.setattr(patch_mod, "BAND_ROWS", (h,))
            graph, p = lower_and_plan(m, patch="on")
            if graph.split is None:
                continue
            assert p.split["applied"] and graph.split.band_rows <= h
            _simulate(graph)


def test_input_rows_receptive_field() -> None:
    graph, _ = lower_and_plan(_chain_model_3x3s2(), patch="off")
    op = graph.ops[0]  # 3x3 stride 2, SAME on 12 rows: pad_h 0 (TFLM), rows 2r..2r+2
    assert (op.fields["stride_h"], op.fields["pad_h"], op.fields["k_h"]) == (2, 0, 3)
    assert patch_mod.input_rows(op, 0, 1) == (0, 3)
    assert patch_mod.input_rows(op, 2, 4) == (4, 9)
    assert patch_mod.input_rows(op, 5, 6) == (10, 12)  # clamped: the last row is padding


def _chain_model_3x3s2() -> TFLiteModel:
    x = T((1, 12, 6, 2), "int8", (0.05,), (3,))
    o = schema.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = schema.Padding.SAME, 2, 2
    o.dilationHFactor = o.dilationWFactor = 1
    rng = np.random.default_rng(1)
    layers = []
    c = 2
    for oc, hw in ((4, 6), (3, 3)):
        wt = T((oc, 3, 3, c), "int8", (0.01,) * oc, (0,) * oc,
               rng.integers(-127, 128, (oc, 3, 3, c)).astype(np.int8), 0)  # fmt: skip
        b = T((oc,), "int32", (0.0005,) * oc, (0,) * oc, np.zeros(oc, np.int32))
        y = T((1, hw, hw // 2 if hw == 6 else 2, oc), "int8", (0.05,), (0,))
        layers.append(("CONV_2D", [wt, b], y, schema.BuiltinOptions.Conv2DOptions, o))
        c = oc
    return TFLiteModel.from_bytes(chain(x, layers), source="s2.tflite")


@pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")
def test_split_bit_exact_random_chains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cms, pairs = [], []
    for c in chains():
        m = TFLiteModel.from_bytes(c.model, source=f"{c.name}.tflite")
        for kernels in ("ref", "fast"):
            whole = compile_model(m, out_dir=tmp_path / f"{c.name}_{kernels}", kernels=kernels,
                                  name=f"{c.name}_{kernels}", patch="off")  # fmt: skip
            cms.append(whole)
            assert whole.plan["split"]["applied"] is False
            for h in BANDS:
                monkeypatch.setattr(patch_mod, "BAND_ROWS", (h,))
                name = f"{c.name}_{kernels}_b{h}"
                cm = compile_model(m, out_dir=tmp_path / name, name=name, kernels=kernels,
                                   patch="on")  # fmt: skip
                assert cm.plan["split"]["applied"] is True
                assert cm.plan["split"]["band_rows"] <= h
                cms.append(cm)
                pairs.append((c, whole.name, name))
    lib = compiled.build_unity(cms, tmp_path / "patch.so")
    runners = {cm.name: compiled.Runner(lib, cm.name) for cm in cms}
    rng = np.random.default_rng(7)
    checked = 0
    for c, whole, split in pairs:
        for _ in range(INPUTS):
            x = rng.integers(-128, 128, c.in_shape).astype(np.int8)
            a = runners[whole]([x], [(c.out_shape, np.int8)])[0]
            b = runners[split]([x], [(c.out_shape, np.int8)])[0]
            np.testing.assert_array_equal(a, b, err_msg=f"{split} differs from {whole}")
            checked += 1
    assert checked == N_CHAINS * 2 * len(BANDS) * INPUTS


def test_policy_checked() -> None:
    with pytest.raises(UsageError, match="patch policy"):
        lower_and_plan(_chain_model_3x3s2(), patch="sometimes")


@pytest.mark.skipif(
    not VWW.is_file() or not PERSON.is_file(),
    reason="needs ../shared/reference (EDGEDEPLOY_REFERENCE)",
)
@pytest.mark.parametrize(
    ("path", "target", "whole", "split_at_most"),
    [
        (VWW, None, 55_296, 42_240),
        (VWW, "mps2-an386", 55_312, 42_336),
        (PERSON, None, 55_296, 36_864),
        (PERSON, "mps2-an386", 55_312, 36_928),
    ],
)
def test_reference_model_plans(
    path: Path, target: str | None, whole: int, split_at_most: int
) -> None:
    g0, p0 = lower_and_plan(path, target=target, patch="off")
    assert g0.split is None and p0.arena_bytes == whole
    g, p = lower_and_plan(path, target=target)  # auto
    s = p.split
    assert s["applied"] and g.split is not None
    assert s["unsplit_arena_bytes"] == whole and s["unsplit_lower_bound_bytes"] == whole
    assert p.arena_bytes == s["split_arena_bytes"] <= split_at_most < whole
    assert p.arena_bytes <= 1.01 * p.lower_bound_bytes
    _simulate(g)


@pytest.mark.skipif(not KWS.is_file(), reason="needs ../shared/reference (EDGEDEPLOY_REFERENCE)")
def test_auto_keeps_whole_layers_when_no_gain() -> None:
    _, off = lower_and_plan(KWS, target="mps2-an386", patch="off")
    g, auto = lower_and_plan(KWS, target="mps2-an386")
    assert g.split is None and not auto.split["applied"]
    assert auto.arena_bytes == off.arena_bytes
    assert auto.split["split_arena_bytes"] >= off.arena_bytes


@pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")
@pytest.mark.skipif(
    not VWW.is_file() or not PERSON.is_file(),
    reason="needs ../shared/reference (EDGEDEPLOY_REFERENCE)",
)
def test_reference_models_split_bit_exact(tmp_path: Path) -> None:
    cms = []
    for key, path, kernels in (("vww", VWW, "fast"), ("pd", PERSON, "ref")):
        for patch in ("off", "auto"):
            cms.append(compile_model(path, out_dir=tmp_path / f"{key}_{patch}",
                                     name=f"{key}_{patch}", kernels=kernels, patch=patch))  # fmt: skip
    lib = compiled.build(cms, tmp_path / "models.so")
    rng = np.random.default_rng(3)
    for whole, split in ((cms[0], cms[1]), (cms[2], cms[3])):
        assert split.arena_bytes < whole.arena_bytes
        spec = [(tuple(o["shape"]), np.int8) for o in whole.outputs]
        rw, rs = compiled.Runner(lib, whole.name), compiled.Runner(lib, split.name)
        for _ in range(2):
            x = rng.integers(-128, 128, whole.inputs[0]["shape"]).astype(np.int8)
            for a, b in zip(rw([x], spec), rs([x], spec), strict=True):
                np.testing.assert_array_equal(a, b)


def test_cli_patch_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from toolchain.cli import main

    model = tmp_path / "s2.tflite"
    model.write_bytes(_chain_model_3x3s2().data)
    for patch, applied in (("off", False), ("on", True)):
        rc = main(
            ["compile", str(model), "--out", str(tmp_path / patch), "--patch", patch, "--json"]
        )
        assert rc == 0
        d = json.loads(capsys.readouterr().out)
        assert d["plan"]["split"]["applied"] is applied
        assert ("edc_conv_s8_rows(" in (tmp_path / patch / "s2.c").read_text()) is applied
