"""``--cmsis-nn-ops auto``: the per-layer choice between our kernels and CMSIS-NN's
(toolchain/compile/perlayer.py), with recorded count tables standing in for QEMU.

The choice logic runs on the real lowered KWS / IC graphs; the measurer is a fake that returns
a recorded per-operator table (and counts its calls), so these run without QEMU or CMSIS-NN.
The end-to-end test (generated kernels follow the cached table) needs a CMSIS-NN checkout in
``$EDGEDEPLOY_CMSIS_NN`` and skips without one; the measured run in QEMU is
tests/emulated/test_compile_cmsisnn_qemu.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from toolchain.compile import compile_model, lower_or_problems
from toolchain.compile import perlayer as pl
from toolchain.compile.cmsisnn import Checkout
from toolchain.compile.ir import Graph
from toolchain.errors import CompileError
from toolchain.targets import load_target

KWS = "mlperf_tiny/kws/kws_ref_model.tflite"
IC = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
FAKE = Checkout(
    path=Path("/nonexistent/CMSIS-NN"), revision="19.1.0", describe="v7.0.0-33-g4ab83cc3"
)


def _graph(reference_dir: Path, rel: str = KWS) -> Graph:
    g = lower_or_problems(reference_dir / rel)
    assert isinstance(g, Graph)
    return g


class Recorded:
    """A measurer replaying recorded per-op tables: ``tables[(board, kernel)]``."""

    def __init__(self, tables: dict[tuple[str, str], Sequence[float]]) -> None:
        self.tables = tables
        self.calls: list[tuple[str, str]] = []

    def __call__(self, board: str, kernel: str) -> Sequence[float]:
        self.calls.append((board, kernel))
        return self.tables[(board, kernel)]


# KWS on mps2-an386, patch off (recorded from measure_layers): conv, 4x (dw, conv), pool,
# reshape, FC, softmax
KWS_OWN = [867840, 524760, 1046400, 526200, 1046760, 527240, 1044240, 524360, 1046680,
           28000, 0, 1840, 1300]  # fmt: skip
KWS_CMSIS = [1118240, 561040, 1069080, 561040, 1069080, 561040, 1069080, 561040, 1069080,
             16000, 0, 2240, 1200]  # fmt: skip


def test_layers_go_where_they_measured_cheaper_and_the_cache_answers_next_time(
    reference_dir: Path, tmp_path: Path
) -> None:
    g = _graph(reference_dir)
    assert [op.kind for op in g.ops][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert len(g.ops) == len(KWS_OWN)
    own = list(KWS_OWN)
    own[3] = 500000.0 + KWS_CMSIS[3]  # make one depthwise layer lose to CMSIS-NN
    rec = Recorded({("mps2-an386", "own"): own, ("mps2-an386", "cmsis-nn"): KWS_CMSIS})
    cache = tmp_path / "c.json"
    t = load_target("mps2-an386")
    c = pl.choose(g, target=t, checkout=FAKE, model=None, cache_path=cache, measure=rec)
    assert c.how == "measured" and c.board == "mps2-an386"
    assert sorted(rec.calls) == [("mps2-an386", "cmsis-nn"), ("mps2-an386", "own")]
    # the slow dw layer and the pooling; the softmax saves 100 < MIN_GAIN: stays ours
    assert c.indices == {3, 9}
    assert c.counts[0] == {"own": 867840.0, "cmsis-nn": 1118240.0}
    assert 10 not in c.counts  # RESHAPE: no candidate
    data = json.loads(cache.read_text())
    assert data["schema"] == pl.SCHEMA and len(data["counts"]) == 2 * len(c.counts)

    # the same layers again: nothing measured, same answer
    rec2 = Recorded({})
    c2 = pl.choose(_graph(reference_dir), target=t, checkout=FAKE, model=None,
                   cache_path=cache, measure=rec2)  # fmt: skip
    assert rec2.calls == [] and c2.how == "cached" and c2.indices == c.indices

    # another core or another CMSIS-NN revision is another key: measured again
    m3 = load_target("lm3s6965evb")
    rec3 = Recorded({("lm3s6965evb", "own"): KWS_CMSIS, ("lm3s6965evb", "cmsis-nn"): own})
    c3 = pl.choose(g, target=m3, checkout=FAKE, model=None, cache_path=cache, measure=rec3)
    assert c3.how == "measured" and len(rec3.calls) == 2
    # the mirror image; ties and the FC's 400-instruction gain stay ours
    assert c3.indices == {0, 1, 2, 4, 5, 6, 7, 8}
    other = Checkout(path=FAKE.path, revision="19.1.0", describe="v7.0.0-34-gdeadbee")
    rec4 = Recorded({("mps2-an386", "own"): own, ("mps2-an386", "cmsis-nn"): KWS_CMSIS})
    pl.choose(g, target=t, checkout=other, model=None, cache_path=cache, measure=rec4)
    assert len(rec4.calls) == 2


def test_signature_follows_shape_and_constants(reference_dir: Path) -> None:
    g = _graph(reference_dir)
    sig = [pl.layer_signature(g, op) for op in g.ops]
    # KWS's four pointwise convs have one shape but their own weights
    assert len({sig[i] for i in (2, 4, 6, 8)}) == 4
    assert sig == [pl.layer_signature(g, op) for op in _graph(reference_dir).ops]
    # one weight value of op 2 changed (tensor shapes and scales the same): a new signature
    op = g.ops[2]
    w = op.fields["weights"]
    values = np.array(w.values, copy=True)
    values.flat[0] = values.flat[0] + 1 if values.flat[0] < 127 else values.flat[0] - 1
    op.fields["weights"] = dataclasses.replace(w, values=values)
    assert pl.layer_signature(g, op) != sig[2]
    op.fields["weights"] = w
    assert pl.layer_signature(g, op) == sig[2]
    op.fields["stride_h"] += 1  # a field that is no constant
    assert pl.layer_signature(g, op) != sig[2]


def test_without_a_measurer_the_static_rule_of_the_core_applies(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = _graph(reference_dir, IC)
    kinds = {op.index: op.kind for op in g.ops}
    cache = tmp_path / "c.json"
    m4 = pl.choose(g, target=load_target("mps2-an386"), checkout=FAKE, model=None,
                   cache_path=cache)  # fmt: skip
    assert m4.how == "static" and "not a file" in m4.reason
    assert {kinds[i] for i in m4.indices} == {"ADD", "AVERAGE_POOL_2D"}
    m3 = pl.choose(g, target=load_target("lm3s6965evb"), checkout=FAKE, model=None,
                   cache_path=cache)  # fmt: skip
    assert "CONV_2D" in {kinds[i] for i in m3.indices}
    # measuring switched off: static too, even for a model file
    monkeypatch.setenv(pl.MEASURE_ENV, "0")
    off = pl.choose(g, target=load_target("mps2-an386"), checkout=FAKE,
                    model=reference_dir / IC, cache_path=cache)  # fmt: skip
    assert off.how == "static" and pl.MEASURE_ENV in off.reason
    # a core no QEMU board stands in for
    pico = pl.choose(g, target=load_target("rpi-pico"), checkout=FAKE, model=None,
                     cache_path=cache)  # fmt: skip
    assert pico.how == "static" and pico.board is None


def test_a_short_table_is_an_error_and_a_broken_cache_is_ignored(
    reference_dir: Path, tmp_path: Path
) -> None:
    g = _graph(reference_dir)
    cache = tmp_path / "c.json"
    cache.write_text("{not json")
    t = load_target("mps2-an386")
    bad = Recorded({("mps2-an386", "own"): KWS_OWN[:5], ("mps2-an386", "cmsis-nn"): KWS_CMSIS})
    with pytest.raises(CompileError, match="operator counts for a graph of 13"):
        pl.choose(g, target=t, checkout=FAKE, model=None, cache_path=cache, measure=bad)
    ok = Recorded({("mps2-an386", "own"): KWS_OWN, ("mps2-an386", "cmsis-nn"): KWS_CMSIS})
    c = pl.choose(g, target=t, checkout=FAKE, model=None, cache_path=cache, measure=ok)
    assert c.indices == {9}
    assert json.loads(cache.read_text())["schema"] == pl.SCHEMA


def test_compile_follows_the_cached_table(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.environ.get("EDGEDEPLOY_CMSIS_NN")
    if not path:
        pytest.skip("no CMSIS-NN checkout: set EDGEDEPLOY_CMSIS_NN=/path/to/CMSIS-NN (4ab83cc3)")
    from toolchain.compile.cmsisnn import open_checkout

    co = open_checkout(path)
    monkeypatch.setenv("EDGEDEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(pl.MEASURE_ENV, "0")  # a cache miss would fall back to the static rule
    own = list(KWS_OWN)
    own[1] = 600000.0  # the first depthwise layer now loses to CMSIS-NN
    rec = Recorded({("mps2-an386", "own"): own, ("mps2-an386", "cmsis-nn"): KWS_CMSIS})
    pl.choose(_graph(reference_dir), target=load_target("mps2-an386"), checkout=co,
              model=None, measure=rec)  # fmt: skip
    cm = compile_model(reference_dir / KWS, out_dir=tmp_path / "kws", target="mps2-an386",
                       cmsis_nn=path, cmsis_nn_ops="auto")  # fmt: skip
    kernels = [r["kernel"] for r in cm.layers]
    assert kernels[0] == "edc_conv_fast_s8" and kernels[2] == "edc_conv_fast_s8"
    assert kernels[1] == "edc_cmsis_dwconv_s8" and kernels[3] == "edc_dwconv_fast_s8"
    assert kernels[9] == "edc_cmsis_avgpool_s8" and kernels[12] == "edc_softmax_s8"
    assert cm.cmsis_nn is not None and cm.cmsis_nn["choice"]["how"] == "cached"
    assert cm.cmsis_nn["ops"] == [1, 9]
