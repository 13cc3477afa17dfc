"""Split ("patch-based") execution of a run of spatial operators, MCUNetV2-style, in row bands.

In MobileNet-like models the arena's peak sits in the first layers, where two large feature
maps are live at once (VWW: 48×48×8 + 48×48×16 = 55,296 B). A *split block* is a run of
consecutive convolution / depthwise operators, each feeding only the next one; the last
one's output is made a band of ``band_rows`` rows at a time. For each band the compiler
works out, stride-, padding- and dilation-aware, which rows every earlier operator's output
must hold (its receptive field), so each of those outputs needs only a small *band buffer*
instead of a whole tensor. Rows that two consecutive bands both need (the halo) are kept:
moved to the buffer's start (a ``memmove`` of a few rows), never recomputed, so the extra
work is that copy plus one kernel call per stage and band. The block's input stays whole;
its output is written in place, row by row.

The kernels compute an output row range from an input window (``*_rows`` entry points of
``edc_conv``, ``edc_conv_fast``, ``edc_dwconv``, ``edc_dwconv_fast``) with the same per-pixel
arithmetic: outputs are bit-exact with the whole-tensor run. Every step is planned here; the
generated code only walks a constant table.

:func:`choose` searches blocks (every run that covers a peak operator, up to
:data:`MAX_STAGES` long) and band heights (:data:`BAND_ROWS`), plans each with
:func:`toolchain.compile.planner.plan` and keeps the smallest arena (ties: fewest kernel
calls). Policy ``auto`` applies it only when the arena gets smaller than the unsplit plan's,
``on`` whenever a block exists, ``off`` never.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from toolchain.compile.ir import Graph, Op, Split, SplitStep
from toolchain.compile.planner import Plan, buffers, lower_bound, plan
from toolchain.errors import UsageError

#: ``patch=`` values
POLICIES = ("auto", "on", "off")

#: the whole-tensor kernel → its row-range entry point
ROWS_FUNCS = {
    "edc_conv_s8": "edc_conv_s8_rows",
    "edc_conv_fast_s8": "edc_conv_fast_s8_rows",
    "edc_dwconv_s8": "edc_dwconv_s8_rows",
    "edc_dwconv_fast_s8": "edc_dwconv_fast_s8_rows",
}

#: longest block searched, and the band heights (output rows of the last stage) tried
MAX_STAGES = 8
BAND_ROWS = (1, 2, 3, 4, 6, 8)


def check_policy(patch: str) -> None:
    if patch not in POLICIES:
        raise UsageError(
            f"unknown patch policy {patch!r}",
            hint=f"use one of: {', '.join(POLICIES)}",
        )


def _int(op: Op, name: str) -> int:
    v = op.fields[name]
    assert isinstance(v, int), (op.index, name)
    return v


def bandable(op: Op) -> bool:
    """Whether ``op`` can run as a stage: a single-call int8 conv/depthwise of batch 1."""
    return (
        op.func in ROWS_FUNCS
        and not op.parts
        and len(op.inputs) == 1
        and len(op.outputs) == 1
        and op.fields.get("batches") == 1
    )


def input_rows(op: Op, lo: int, hi: int) -> tuple[int, int]:
    """The input rows [first, end) that output rows [lo, hi) of ``op`` read (clamped to the
    input: rows outside are padding)."""
    s, p, k, d = (_int(op, n) for n in ("stride_h", "pad_h", "k_h", "dil_h"))
    in_h = _int(op, "in_h")
    first = lo * s - p
    end = (hi - 1) * s - p + (k - 1) * d + 1
    return max(first, 0), min(end, in_h)


def _row_bytes(graph: Graph, op: Op) -> int:
    t = graph.tensors[op.outputs[0]]
    return t.nbytes // _int(op, "out_h")


class NotBandable(ValueError):
    """A block cannot run in bands of this height (the rows a band needs move backwards)."""


def schedule(graph: Graph, ops: tuple[int, ...], band_rows: int) -> Split:
    """The band-by-band steps for the block ``ops`` (see :class:`~.ir.Split`); raises
    :class:`NotBandable` when bands of ``band_rows`` rows cannot be scheduled."""
    stages = [graph.ops[i] for i in ops]
    m = len(stages)
    height = _int(stages[-1], "out_h")
    held = [(0, 0)] * (m - 1)  # rows [lo, hi) each band buffer holds now
    cap = [0] * (m - 1)
    steps: list[tuple[SplitStep, ...]] = []
    for j0 in range(0, height, band_rows):
        need = [(0, 0)] * m
        need[-1] = (j0, min(height, j0 + band_rows))
        for k in range(m - 2, -1, -1):
            need[k] = input_rows(stages[k + 1], *need[k + 1])
        band: list[SplitStep] = []
        for k in range(m):
            lo, hi = need[k]
            in_row0 = 0 if k == 0 else need[k - 1][0]
            if k == m - 1:
                band.append(SplitStep(0, 0, lo, hi, in_row0, lo))
                continue
            plo, phi = held[k]
            if lo < plo or hi < phi:
                raise NotBandable(f"band rows not monotone at op {ops[k]}")
            keep = max(0, phi - lo)
            c_lo = max(lo, phi)
            band.append(SplitStep(lo - plo if keep else 0, keep, c_lo, hi, in_row0, c_lo - lo))
            held[k] = (lo, hi)
            cap[k] = max(cap[k], hi - lo)
        steps.append(tuple(band))
    return Split(
        ops=ops,
        band_rows=band_rows,
        buffer_rows=tuple(cap),
        row_bytes=tuple(_row_bytes(graph, op) for op in stages),
        steps=tuple(steps),
    )


def blocks(graph: Graph) -> list[tuple[int, ...]]:
    """Every run of at least two consecutive bandable operators where each one's output feeds
    only the next (no other reader, no alias, not a graph output), up to MAX_STAGES long."""
    readers: dict[int, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            s = graph.storage(t)
            readers[s] = readers.get(s, 0) + 1
    outs = {graph.storage(t) for t in graph.outputs}
    aliased = {graph.storage(t.index) for t in graph.tensors.values() if t.alias_of is not None}

    def links(a: Op, b: Op) -> bool:
        y = a.outputs[0]
        s = graph.storage(y)
        return (
            bandable(b)
            and b.index == a.index + 1
            and b.inputs == (y,)
            and s == y
            and s not in outs
            and s not in aliased
            and readers.get(s, 0) == 1
        )

    found = []
    for op in graph.ops:
        if not bandable(op):
            continue
        run = [op.index]
        while len(run) < MAX_STAGES and run[-1] + 1 < len(graph.ops):
            if not links(graph.ops[run[-1]], graph.ops[run[-1] + 1]):
                break
            run.append(run[-1] + 1)
            found.append(tuple(run))
    return found


def _calls(sp: Split) -> int:
    return len(sp.steps) * len(sp.ops)


def _split_fields(sp: Split, sp_plan: Plan) -> dict[str, Any]:
    """The report fields that describe a chosen split and the plan it gives."""
    return {
        "ops": list(sp.ops),
        "band_rows": sp.band_rows,
        "bands": len(sp.steps),
        "buffer_bytes": [sp.buffer_bytes(k) for k in range(len(sp.ops) - 1)],
        "split_arena_bytes": sp_plan.arena_bytes,
        "split_lower_bound_bytes": sp_plan.lower_bound_bytes,
    }


def choose(graph: Graph, unsplit: Plan, patch: str = "auto") -> tuple[Split | None, Plan]:
    """The split to use (or None) and its plan; ``graph.split`` is left as chosen.

    The returned plan's ``split`` figures hold both plans and lower bounds (unsplit and best
    split found) and whether the split was applied."""
    check_policy(patch)
    graph.split = None
    graph.more_splits = ()
    info: dict[str, Any] = {
        "policy": patch,
        "applied": False,
        "unsplit_arena_bytes": unsplit.arena_bytes,
        "unsplit_lower_bound_bytes": unsplit.lower_bound_bytes,
    }
    if patch == "off":
        return None, replace(unsplit, split=info)
    bufs = buffers(graph)
    live = [sum(b.size for b in bufs if b.first <= i <= b.last) for i in range(len(graph.ops))]
    peak = max(live, default=0)
    peaks = {i for i, v in enumerate(live) if v == peak}
    best: tuple[tuple[int, int, int], Split, Plan] | None = None
    for ops in blocks(graph):
        if not peaks & set(ops):
            continue  # a block away from the peak cannot lower the arena
        height = _int(graph.ops[ops[-1]], "out_h")
        for h in sorted({min(b, height) for b in BAND_ROWS}):
            try:
                sp = schedule(graph, ops, h)
            except NotBandable:
                continue
            graph.split = sp
            lb = lower_bound(buffers(graph))
            if best is not None and lb > best[0][0]:
                continue
            p = plan(graph)
            key = (p.arena_bytes, _calls(sp), len(ops))
            if best is None or key < best[0]:
                best = (key, sp, p)
    graph.split = None
    if best is None:
        info["reason"] = "no run of conv/depthwise operators through the peak"
        return None, replace(unsplit, split=info)
    _, sp, sp_plan = best
    info.update(
        _split_fields(sp, sp_plan),
        kept_row_bytes=sum(
            st.keep_rows * sp.row_bytes[k]
            for band in sp.steps
            for k, st in enumerate(band)
            if st.keep_from
        ),
    )
    pair = _pair(graph, sp_plan.arena_bytes) if graph.keep_inputs else None
    if pair is not None:
        sp, more, sp_plan = pair
        info.update(
            _split_fields(sp, sp_plan),
            more=[{"ops": list(more.ops), "band_rows": more.band_rows, "bands": len(more.steps)}],
        )
    if patch == "on" or sp_plan.arena_bytes < unsplit.arena_bytes:
        graph.split = sp
        graph.more_splits = (pair[1],) if pair is not None else ()
        info["applied"] = True
        return sp, replace(sp_plan, split=info, tflm_greedy_bytes=unsplit.tflm_greedy_bytes)
    info["reason"] = "the split does not make the arena smaller"
    return None, replace(unsplit, split=info)


#: band heights tried for each block of a pair (fewer than :data:`BAND_ROWS`: pairs are many)
PAIR_BAND_ROWS = (1, 2)


def _live(graph: Graph) -> list[int]:
    bufs = buffers(graph)
    return [sum(b.size for b in bufs if b.first <= i <= b.last) for i in range(len(graph.ops))]


def _pair(graph: Graph, bar: int) -> tuple[Split, Split, Plan] | None:
    """Two disjoint split blocks whose plan is smaller than ``bar`` (the best single block's
    arena), or None. Tried only with kept inputs (``graph.keep_inputs``): a kept input raises
    every later operator's live bytes, so after the first block a second peak remains (VWW:
    blocks 0..3 and 4..7). The first block covers the unsplit peak, the second the peak left
    by the first; pairs whose lower bound is not below the best found are not planned."""
    graph.split, graph.more_splits = None, ()
    live = _live(graph)
    peak = max(live, default=0)
    peaks = {i for i, v in enumerate(live) if v == peak}
    runs = blocks(graph)
    best: tuple[tuple[int, int], Split, Split, Plan] | None = None
    for a in runs:
        if not peaks & set(a):
            continue
        for ha in sorted({min(b, _int(graph.ops[a[-1]], "out_h")) for b in PAIR_BAND_ROWS}):
            try:
                spa = schedule(graph, a, ha)
            except NotBandable:
                continue
            graph.split, graph.more_splits = spa, ()
            live_a = _live(graph)
            peak_a = max(live_a, default=0)
            peaks_a = {i for i, v in enumerate(live_a) if v == peak_a}
            for b in runs:
                if set(b) & set(a) or not peaks_a & set(b):
                    continue
                for hb in sorted({min(x, _int(graph.ops[b[-1]], "out_h")) for x in PAIR_BAND_ROWS}):
                    try:
                        spb = schedule(graph, b, hb)
                    except NotBandable:
                        continue
                    graph.more_splits = (spb,)
                    lb = lower_bound(buffers(graph))
                    if lb >= bar or (best is not None and lb > best[0][0]):
                        continue
                    p = plan(graph)
                    key = (p.arena_bytes, _calls(spa) + _calls(spb))
                    if p.arena_bytes < bar and (best is None or key < best[0]):
                        best = (key, spa, spb, p)
    graph.split, graph.more_splits = None, ()
    if best is None:
        return None
    return best[1], best[2], best[3]
