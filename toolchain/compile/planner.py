"""The static memory planner: one arena, an offset per activation tensor, decided offline.

Each tensor's storage (aliases such as RESHAPE share their source's) lives from the operator
that writes it to the last operator that reads it; graph inputs from the start, graph outputs
to the end. Two tensors may share bytes only when their lifetimes are disjoint. Placement is
greedy first-fit (lowest offset that fits among the already placed tensors that are live at
the same time) under several orderings; the smallest arena wins. :func:`plan` also reports
the lower bound (the largest sum of sizes live at any one operator) and the figure TFLM's own
greedy planner gets for the same tensors (its order, its 16-byte alignment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from toolchain.compile.ir import Graph

ALIGN = 4
TFLM_ALIGN = 16


@dataclass(frozen=True)
class Buffer:
    tensor: int  # the storage root
    size: int
    first: int
    last: int

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Plan:
    """Offsets (by storage-root tensor index), the arena size and the figures around it."""

    offsets: dict[int, int]
    arena_bytes: int
    lower_bound_bytes: int
    tflm_greedy_bytes: int
    heuristic: str
    tried: dict[str, int] = field(default_factory=dict)
    #: split execution figures (:func:`toolchain.compile.patch.choose`); empty when not searched
    split: dict[str, object] = field(default_factory=dict)

    def offset(self, graph: Graph, tensor: int) -> int:
        return self.offsets[graph.storage(tensor)]

    def report(self) -> dict[str, object]:
        return {
            "arena_bytes": self.arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "tflm_greedy_bytes": self.tflm_greedy_bytes,
            "heuristic": self.heuristic,
            "tried": dict(self.tried),
            "split": dict(self.split),
        }


def _up(n: int, align: int) -> int:
    return -(-n // align) * align


def buffers(graph: Graph, align: int = ALIGN) -> list[Buffer]:
    """The storage roots with their aligned sizes and lifetimes [first, last] in op indices.

    With split blocks (``graph.splits()``, :mod:`.patch`) the outputs of a block's operators
    but the last are replaced by their band buffers, and everything the block touches, its
    scratch too, lives through the whole block (its operators run interleaved, band by band)."""
    n = len(graph.ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    blocks = graph.splits()
    inner: set[int] = set()
    for sp in blocks:
        inner |= {graph.storage(graph.ops[i].outputs[0]) for i in sp.ops[:-1]}
    span = {i: (sp.first, sp.last) for sp in blocks for i in range(sp.first, sp.last + 1)}

    def touch(t: int, at: int) -> None:
        s = graph.storage(t)
        if s in inner:
            return
        lo, hi = span.get(at, (at, at))
        size[s] = max(size.get(s, 0), graph.tensors[t].nbytes)
        first[s] = min(first.get(s, lo), lo)
        last[s] = max(last.get(s, hi), hi)

    for t in graph.inputs:
        touch(t, 0)
        if graph.keep_inputs:
            touch(t, max(n - 1, 0))
    for op in graph.ops:
        for t in op.inputs + op.outputs:
            touch(t, op.index if op.index < n else n - 1)
    for t in graph.outputs:
        touch(t, max(n - 1, 0))
    out = [Buffer(s, _up(size[s], align), first[s], last[s]) for s in sorted(size)]
    # kernel scratch: live during its operator only, keyed by scratch_key(op index); a split
    # block shares one scratch (the largest) over all of its operators
    in_block = {i for sp in blocks for i in sp.ops}
    out += [
        Buffer(scratch_key(op.index), _up(op.scratch_bytes, align), op.index, op.index)
        for op in graph.ops
        if op.scratch_bytes and op.index not in in_block
    ]
    for sp in blocks:
        scratch = max(graph.ops[i].scratch_bytes for i in sp.ops)
        if scratch:
            out.append(Buffer(scratch_key(sp.first), _up(scratch, align), sp.first, sp.last))
        out += [
            Buffer(band_key(i), _up(sp.buffer_bytes(k), align), sp.first, sp.last)
            for k, i in enumerate(sp.ops[:-1])
        ]
    return out


def band_key(op_index: int) -> int:
    """The key of a split block's band buffer for ``op_index``'s output in :attr:`Plan.offsets`."""
    return -(1 << 20) - op_index


def scratch_key(op_index: int) -> int:
    """The key of an operator's scratch buffer in :attr:`Plan.offsets` (negative: no tensor)."""
    return -1 - op_index


def _place(
    bufs: list[Buffer], order: Callable[[Buffer], tuple[int, ...]]
) -> tuple[dict[int, int], int]:
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[int, int] = {}
    for b in sorted(bufs, key=order):
        busy = sorted((o, p.size) for o, p in placed if p.overlaps(b))
        at = 0
        for o, sz in busy:
            if at + b.size <= o:
                break
            at = max(at, o + sz)
        offsets[b.tensor] = at
        placed.append((at, b))
    top = max((o + b.size for o, b in placed), default=0)
    return offsets, top


HEURISTICS: dict[str, Callable[[Buffer], tuple[int, ...]]] = {
    "size": lambda b: (-b.size, b.first, b.tensor),
    "lifetime": lambda b: (-(b.last - b.first), -b.size, b.tensor),
    "first_use": lambda b: (b.first, -b.size, b.tensor),
    "size_x_lifetime": lambda b: (-b.size * (b.last - b.first + 1), b.tensor),
    "last_use_desc": lambda b: (-b.last, -b.size, b.tensor),
}


def lower_bound(bufs: list[Buffer]) -> int:
    if not bufs:
        return 0
    lo = min(b.first for b in bufs)
    hi = max(b.last for b in bufs)
    return max(sum(b.size for b in bufs if b.first <= i <= b.last) for i in range(lo, hi + 1))


def search(bufs: list[Buffer]) -> tuple[dict[int, int], int, str, dict[str, int]]:
    """First-fit placement of ``bufs`` under every ordering of :data:`HEURISTICS`: the
    offsets, the top and the heuristic of the smallest (ties: the first listed), and every
    heuristic's top."""
    best: tuple[int, str, dict[int, int]] | None = None
    tried: dict[str, int] = {}
    for name, order in HEURISTICS.items():
        offsets, top = _place(bufs, order)
        tried[name] = top
        if best is None or top < best[0]:
            best = (top, name, offsets)
    assert best is not None
    top, name, offsets = best
    return offsets, top, name, tried


def plan(graph: Graph) -> Plan:
    """The smallest arena over :data:`HEURISTICS` (:func:`search`)."""
    bufs = buffers(graph)
    offsets, top, name, tried = search(bufs)
    _, tflm = _place(buffers(graph, TFLM_ALIGN), HEURISTICS["size"])
    return Plan(offsets, max(_up(top, 16), 16), lower_bound(bufs), tflm, name, tried)


def check(graph: Graph, p: Plan) -> None:
    """Raise AssertionError when two tensors live at the same time share bytes (a self-check)."""
    bufs = buffers(graph)
    for i, a in enumerate(bufs):
        for b in bufs[i + 1 :]:
            if a.overlaps(b):
                oa, ob = p.offsets[a.tensor], p.offsets[b.tensor]
                if oa < ob + b.size and ob < oa + a.size:
                    raise AssertionError(f"tensors {a.tensor} and {b.tensor} overlap in the arena")
