"""Rewrites of data-movement chains that become layout TRANSPOSEs in an NHWC graph.

* :class:`ChannelPermutation` — a Reshape → Transpose → Reshape chain on an NCHW tensor that
  only permutes channels (ShuffleNet's channel shuffle) → one Gather on the channel axis
  (TFLite GATHER with constant indices, int8; no TRANSPOSE).
* :class:`TokensChannelsLast` — ``x.flatten(2).transpose(1, 2)`` (NCHW map → tokens
  ``(B, HW, C)``) and its inverse → Transpose(0,2,3,1) + Reshape, which onnx2tf sees as
  the NHWC tensor it already holds, so no TRANSPOSE is left.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from toolchain.convert.rewrites.base import Rewrite
from toolchain.convert.rewrites.graph import Graph, attr


def _chain_map(shape: tuple[int, ...], steps: list[tuple[str, Any]]) -> np.ndarray:
    """Where each element of the chain's output comes from (flat source indices)."""
    a = np.arange(int(np.prod(shape))).reshape(shape)
    for kind, arg in steps:
        a = a.reshape(arg) if kind == "reshape" else np.transpose(a, arg)
    return a


class ChannelPermutation(Rewrite):
    name = "channel-shuffle-gather"
    exact = "bit-exact (the same values, moved)"
    purpose = "channel shuffle (reshape/transpose/reshape) -> one channel Gather"
    tolerance = 0.0

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for r1 in g.nodes:
            if r1.op_type != "Reshape":
                continue
            m = self._match(g, r1)
            if m is not None:
                found.append(m)
        return found

    def _match(self, g: Graph, r1: onnx.NodeProto) -> dict[str, Any] | None:
        shape = g.shape(r1.input[0])
        s1 = g.const(r1.input[1])
        if shape is None or len(shape) != 4 or s1 is None:
            return None
        tr = g.only_consumer(r1.output[0])
        if tr is None or tr.op_type != "Transpose":
            return None
        r2 = g.only_consumer(tr.output[0])
        if r2 is None or r2.op_type != "Reshape":
            return None
        s2 = g.const(r2.input[1])
        if s2 is None:
            return None
        try:
            mid = tuple(int(v) for v in _resolve(shape, s1))
            out = tuple(int(v) for v in _resolve(shape, s2))
            src = _chain_map(shape, [("reshape", mid), ("transpose", list(attr(tr, "perm"))),
                                     ("reshape", out)])  # fmt: skip
        except ValueError:
            return None
        if out != shape:
            return None
        n, c, h, w = shape
        hw = h * w
        chan = src // hw % c
        # a pure channel permutation: each output channel copies one whole input channel
        idx = chan[0, :, 0, 0]
        expect = (np.arange(n)[:, None, None, None] * c * hw + idx[None, :, None, None] * hw
                  + np.arange(hw).reshape(1, 1, h, w))  # fmt: skip
        if not np.array_equal(src, expect) or np.array_equal(idx, np.arange(c)):
            return None
        return {"nodes": [r1, tr, r2], "x": r1.input[0], "out": r2.output[0], "idx": idx}

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for m in matches:
            r2 = m["nodes"][-1]
            idx = g.add_const(r2.name + "_perm", m["idx"].astype(np.int64))
            node = helper.make_node("Gather", [m["x"], idx], [m["out"]], name=r2.name + "_gather",
                                    axis=1)  # fmt: skip
            g.replace_nodes(m["nodes"], [node], at=r2)
            done.append(f"{m['nodes'][1].name}: {len(m['idx'])} channels")
        return done


class TokensChannelsLast(Rewrite):
    name = "tokens-channels-last"
    exact = "bit-exact (the same values, moved)"
    purpose = "x.flatten(2).transpose(1,2) and back -> channels-last reshapes (no TRANSPOSE)"
    tolerance = 0.0

    def requires(self, g: Graph) -> list[Any]:
        found: list[Any] = []
        for n in g.nodes:
            if n.op_type == "Reshape":
                m = self._to_tokens(g, n)
            elif n.op_type == "Transpose":
                m = self._to_map(g, n)
            else:
                m = None
            if m is not None:
                found.append(m)
        return found

    def _to_tokens(self, g: Graph, r: onnx.NodeProto) -> dict[str, Any] | None:
        """(B,C,H,W) -Reshape-> (B,C,HW) -Transpose(0,2,1)-> (B,HW,C)."""
        shape, out = g.shape(r.input[0]), g.shape(r.output[0])
        if shape is None or out is None or len(shape) != 4 or len(out) != 3:
            return None
        b, c, h, w = shape
        if out != (b, c, h * w):
            return None
        tr = g.only_consumer(r.output[0])
        if tr is None or tr.op_type != "Transpose" or list(attr(tr, "perm")) != [0, 2, 1]:
            return None
        return {"kind": "tokens", "nodes": [r, tr], "x": r.input[0], "out": tr.output[0],
                "shape": (b, h * w, c), "perm": [0, 2, 3, 1]}  # fmt: skip

    def _to_map(self, g: Graph, tr: onnx.NodeProto) -> dict[str, Any] | None:
        """(B,HW,C) -Transpose(0,2,1)-> (B,C,HW) -Reshape-> (B,C,H,W)."""
        if list(attr(tr, "perm") or []) != [0, 2, 1]:
            return None
        shape = g.shape(tr.input[0])
        r = g.only_consumer(tr.output[0])
        if shape is None or r is None or r.op_type != "Reshape":
            return None
        out = g.shape(r.output[0])
        if out is None or len(out) != 4:
            return None
        b, c, h, w = out
        if shape != (b, h * w, c):
            return None
        return {"kind": "map", "nodes": [tr, r], "x": tr.input[0], "out": r.output[0],
                "shape": (b, h, w, c), "perm": [0, 3, 1, 2]}  # fmt: skip

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        used: set[int] = set()
        for m in matches:
            if any(id(n) in used for n in m["nodes"]):
                continue
            used.update(id(n) for n in m["nodes"])
            first, last = m["nodes"]
            shape_t = g.add_const(last.name + "_shape", np.array(m["shape"], np.int64))
            mid = g.fresh(m["x"] + "_cl")
            if m["kind"] == "tokens":  # transpose to NHWC, then flatten H, W
                new = [helper.make_node("Transpose", [m["x"]], [mid], name=first.name + "_nhwc",
                                        perm=m["perm"]),
                       helper.make_node("Reshape", [mid, shape_t], [m["out"]],
                                        name=last.name + "_tokens")]  # fmt: skip
            else:  # unflatten to NHWC, then to NCHW
                new = [helper.make_node("Reshape", [m["x"], shape_t], [mid],
                                        name=first.name + "_nhwc"),
                       helper.make_node("Transpose", [mid], [m["out"]], name=last.name + "_nchw",
                                        perm=m["perm"])]  # fmt: skip
            g.replace_nodes(m["nodes"], new, at=last)
            done.append(f"{first.name}: {m['kind']}")
        return done


def _resolve(shape: tuple[int, ...], target: np.ndarray) -> list[int]:
    """ONNX Reshape target (0 = keep, -1 = infer) → concrete shape."""
    dims = [int(shape[i]) if int(v) == 0 else int(v) for i, v in enumerate(target.reshape(-1))]
    total = int(np.prod(shape))
    if dims.count(-1) > 1:
        raise ValueError("two -1 dims")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total:
        raise ValueError("size mismatch")
    return dims
