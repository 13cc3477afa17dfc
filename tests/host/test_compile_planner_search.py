"""The planner on the MLPerf Tiny models with the fast kernels' scratch buffers and in-place
element-wise operators: no two live buffers overlap, the arena is the lower bound (the
largest sum of sizes live at once; the issue's target was within 5 %) up to the 16-byte
rounding, never above the plan without in-place operators, and below TFLM's own greedy plan
where that one is known to waste (VWW); on a constructed set of buffers where greedy
first-fit by size is known to be worse, the search finds the optimum."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.compile import lower_and_plan
from toolchain.compile.planner import HEURISTICS, Buffer, _place, check, lower_bound, search

MODELS = (
    "mlperf_tiny/kws/kws_ref_model.tflite",
    "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "mlperf_tiny/vww/vww_96_int8.tflite",
    "mlperf_tiny/ad/ad01_int8.tflite",
    "tflm_models/person_detection/person_detect.tflite",
)


@pytest.mark.parametrize("rel", MODELS, ids=lambda r: Path(r).stem)
@pytest.mark.parametrize("kernels", ["ref", "fast"])
def test_plan_against_bounds(reference_dir: Path, rel: str, kernels: str) -> None:
    path = reference_dir / rel
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    graph, p = lower_and_plan(path, kernels=kernels)
    check(graph, p)
    # every one of these models is planned at its lower bound (no plan can be smaller)
    assert p.lower_bound_bytes <= p.arena_bytes < p.lower_bound_bytes + 16, p.report()
    if "vww" in rel:  # TFLM's greedy order (by size) wastes 9 KiB here; the search does not
        assert p.tried["size"] > p.arena_bytes and p.tflm_greedy_bytes > p.arena_bytes
    # in-place element-wise operators never make the plan worse
    _, without = lower_and_plan(path, kernels=kernels, in_place=False)
    assert p.arena_bytes <= without.arena_bytes
    if rel.startswith("mlperf_tiny/ic/"):  # the residual ADDs write over a dying operand
        assert sum(1 for op in graph.ops if op.kind == "ADD"
                   and graph.storage(op.outputs[0]) in {graph.storage(t) for t in op.inputs}) == 3  # fmt: skip
    if kernels == "fast" and any(op.kind == "CONV_2D" for op in graph.ops):
        assert any(op.scratch_bytes for op in graph.ops)  # im2col scratch is planned too


def test_search_beats_greedy_by_size_where_it_is_known_worse() -> None:
    """Four buffers (size, live from..to): 12 B 1..1, 8 B 1..2, 8 B 2..4, 12 B 4..4. First-fit
    by size (TFLM's order) puts both 12 B buffers at 0 and then stacks the 8 B ones above
    them: 28 B. The lower bound is 20 B (12 + 8 live at op 1) and is reachable (first-fit by
    first use); the search must find it."""
    bufs = [Buffer(0, 8, 2, 4), Buffer(1, 12, 4, 4), Buffer(2, 8, 1, 2), Buffer(3, 12, 1, 1)]
    assert lower_bound(bufs) == 20
    assert _place(bufs, HEURISTICS["size"])[1] == 28
    offsets, top, name, tried = search(bufs)
    assert top == 20 and tried[name] == 20 and tried["size"] == 28
    for i, a in enumerate(bufs):  # a real placement: live buffers never share bytes
        for b in bufs[i + 1 :]:
            oa, ob = offsets[a.tensor], offsets[b.tensor]
            assert not (a.overlaps(b) and oa < ob + b.size and ob < oa + a.size)
