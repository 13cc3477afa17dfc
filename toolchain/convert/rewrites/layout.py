"""Rewrites of data-movement chains that become layout TRANSPOSEs in an NHWC graph.

* :class:`ChannelPermutation` — a Reshape → Transpose → Reshape chain on an NCHW tensor that
  only permutes channels (ShuffleNet's channel shuffle) → one Gather on the channel axis
  (TFLite GATHER with constant indices, int8; no TRANSPOSE).
* :class:`TokensChannelsLast` — ``x.flatten(2).transpose(1, 2)`` (NCHW map → tokens
  ``(B, HW, C)``) and its inverse → Transpose(0,2,3,1) + Reshape, which onnx2tf sees as
  the NHWC tensor it already holds, so no TRANSPOSE is left.
* :class:`PatchesChannelsLast` — MobileViT's patch unfold/fold (v1's ``(P, N, C)`` and
  v2's ``(1, C, P, N)`` layouts) → strided Reshape/Split/Concat on the channels-last map.
* :class:`GroupNormChannelsLast` — ``GroupNorm(1, C)`` (flatten → InstanceNormalization →
  unflatten) → a 4-D mean/variance and a depthwise 1×1 Conv for its affine.
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
        return g.matches("Reshape", self._match)

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
        match = {"Reshape": self._to_tokens, "Transpose": self._to_map}
        return [
            m for n in g.nodes if n.op_type in match and (m := match[n.op_type](g, n)) is not None
        ]

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


class PatchesChannelsLast(Rewrite):
    """MobileViT-style unfold / fold of a feature map into patch sequences, without layout
    TRANSPOSEs.

    Unfold: ``(1, C, H, W)`` → ``(ph·pw, N, C)`` where batch ``k`` holds pixel ``(pi, pj)``
    of every ``ph×pw`` patch and token ``t = hi·(W/pw) + wj`` is the patch position (any
    Reshape/Transpose spelling; the chain's index map is what is matched). In NHWC that is
    two strided de-interleavings: the map, taken channels-last, is reshaped so that ``pi``
    and then ``pj`` become the outer part of the last axis, and split there — Reshape and
    Split only, which onnx2tf maps onto the NHWC tensor it holds. Fold is the inverse:
    Concat along that axis and Reshape. The same values are moved: bit-exact."""

    name = "patches-channels-last"
    exact = "bit-exact (the same values, moved)"
    purpose = "MobileViT unfold/fold (reshape/permute chains) -> Reshape/Split/Concat, no TRANSPOSE"
    tolerance = 0.0
    MAX_CHAIN = 6

    def requires(self, g: Graph) -> list[Any]:
        return g.matches("Reshape", self._match)

    def _match(self, g: Graph, first: onnx.NodeProto) -> dict[str, Any] | None:
        src = g.shape(first.input[0])
        if src is None or len(src) not in (3, 4) or (len(src) == 4 and src[0] != 1):
            return None
        # (a chain may start after another Reshape, e.g. a GroupNorm without affine
        # parameters; overlapping matches are resolved in graph order by :meth:`call`)
        nodes: list[onnx.NodeProto] = []
        steps: list[tuple[str, Any]] = []
        node: onnx.NodeProto | None = first
        while node is not None and len(nodes) < self.MAX_CHAIN:
            if node.op_type not in ("Reshape", "Transpose"):
                return None
            out = g.shape(node.output[0])
            if out is None:
                return None
            if node.op_type == "Reshape":
                steps.append(("reshape", out))
            else:
                steps.append(("transpose", list(attr(node, "perm"))))
            nodes.append(node)
            found = self._patches(src, out, _chain_map(src, steps))
            if found is not None:
                kind, order, ph, pw = found
                return {"kind": kind, "nodes": nodes, "x": first.input[0],
                        "out": node.output[0], "order": order, "ph": ph, "pw": pw,
                        "src": src, "dst": out}  # fmt: skip
            if len(src) == 4 and len(out) == 4 and out[0] == 1:
                found4 = self._patches_cpn(src, out, _chain_map(src, steps))
                if found4 is not None:
                    kind, order, ph, pw = found4
                    return {"kind": kind, "nodes": nodes, "x": first.input[0],
                            "out": node.output[0], "order": order, "ph": ph, "pw": pw,
                            "src": src, "dst": out}  # fmt: skip
            node = g.only_consumer(node.output[0])
        return None

    @staticmethod
    def _patches(
        src: tuple[int, ...], out: tuple[int, ...], a: np.ndarray
    ) -> tuple[str, list[tuple[int, int]], int, int] | None:
        """("unfold"/"fold", patch pixel of each batch index, ph, pw) when the index map
        ``a`` is a patch unfold (4-D → 3-D) or fold (3-D → 4-D); else None."""
        if len(src) == 4 and len(out) == 3:
            kind, (_, c, h, w), (p, n, c2) = "unfold", src, out
            fwd = a  # fwd[k, t, ch] = flat index into the map
        elif len(src) == 3 and len(out) == 4:
            kind, (p, n, c), (_, c2, h, w) = "fold", src, out
            # invert: where each token element ends up in the map
            inv = np.empty(a.size, np.int64)
            inv[a.reshape(-1)] = np.arange(a.size)
            fwd = inv.reshape(src)
        else:
            return None
        if c != c2 or p < 2:
            return None
        for ph in range(1, p + 1):
            if p % ph or h % ph or w % (p // ph):
                continue
            pw = p // ph
            hp, wp = h // ph, w // pw
            if hp * wp != n:
                continue
            grid = np.arange(c * h * w).reshape(c, h, w)
            order = []
            ok = True
            for k in range(p):
                ch0 = int(fwd[k, 0, 0])
                pi, pj = (ch0 % (h * w)) // w, ch0 % w
                if ch0 // (h * w) != 0 or pi >= ph or pj >= pw:
                    ok = False
                    break
                want = grid[:, pi::ph, pj::pw].reshape(c, n).T  # (tokens row-major, C)
                if not np.array_equal(fwd[k], want):
                    ok = False
                    break
                order.append((pi, pj))
            if ok and len(set(order)) == p:
                return kind, order, ph, pw
        return None

    @classmethod
    def _patches_cpn(
        cls, src: tuple[int, ...], out: tuple[int, ...], a: np.ndarray
    ) -> tuple[str, list[tuple[int, int]], int, int] | None:
        """The ``(1, C, P, N)`` layout (MobileViT v2: the patch pixel and token axes after
        the channels): ("unfold-cpn"/"fold-cpn", ...) as :meth:`_patches`, or None.

        The map is matched through its ``(P, N, C)`` view: an unfold ``(1, C, H, W)`` →
        ``(1, C, P, N)`` is tried first, then a fold ``(1, C, P, N)`` → ``(1, C, H, W)``.
        :meth:`_match` takes it only when C, P and N differ: onnx2tf holds the rewritten
        region's tensors in NCHW and pairs them with NHWC ones by their shapes, and with two
        equal dims it picks the wrong permutation (measured: a float model 0.46–1.74 off,
        relative, with C = N = 64 — MobileViT v2's 128 px stage 2 — or P = N = 4); such a
        block keeps its transposes."""
        _, c, d2, d3 = out
        # unfold: a[0, ch, k, t] = flat map index → fwd[k, t, ch]
        fwd = a.reshape(c, d2, d3).transpose(1, 2, 0)
        found = cls._patches(src, (d2, d3, c), fwd)
        if found is not None and found[0] == "unfold":
            return ("unfold-cpn", *found[1:])
        # fold: src = (1, C, P, N); a[0, ch, y, x] = flat index into src (C, P, N)
        _, c1, p, n = src
        if c1 != c:
            return None
        perm = np.arange(c * p * n).reshape(c, p, n).transpose(1, 2, 0).reshape(-1)
        # position in the (P, N, C) view of every src element, read in output order
        pos = np.empty(c * p * n, np.int64)
        pos[perm] = np.arange(c * p * n)
        found = cls._patches((p, n, c), out, pos[a.reshape(-1)].reshape(out))
        if found is not None and found[0] == "fold":
            return ("fold-cpn", *found[1:])
        return None

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        used: set[str] = set()
        for m in matches:
            if any(n.output[0] in used for n in m["nodes"]):
                continue
            used.update(n.output[0] for n in m["nodes"])
            if m["kind"] == "unfold-cpn":
                new = self._unfold_cpn(g, m)
            elif m["kind"] == "fold-cpn":
                new = self._fold_cpn(g, m)
            else:
                new = self._unfold(g, m) if m["kind"] == "unfold" else self._fold(g, m)
            g.replace_nodes(m["nodes"], new, at=m["nodes"][-1])
            done.append(f"{m['nodes'][0].name}: {m['kind']} {m['ph']}x{m['pw']} patches")
        return done

    def _const(self, g: Graph, base: str, v: list[int]) -> str:
        return g.add_const(base, np.array(v, np.int64))

    def _unfold(self, g: Graph, m: dict[str, Any]) -> list[onnx.NodeProto]:
        _, c, h, w = m["src"]
        ph, pw = m["ph"], m["pw"]
        hp, wp = h // ph, w // pw
        base = m["nodes"][0].name + "_patches"
        t = [g.fresh(f"{base}_nhwc"), g.fresh(f"{base}_rows")]
        nodes = [
            helper.make_node("Transpose", [m["x"]], [t[0]], perm=[0, 2, 3, 1], name=f"{base}_nhwc"),
            helper.make_node("Reshape", [t[0], self._const(g, base, [hp, ph * w * c])], [t[1]],
                             name=f"{base}_rows"),
        ]  # fmt: skip
        rows = [g.fresh(f"{base}_r{i}") for i in range(ph)]
        nodes.append(helper.make_node("Split", [t[1], self._const(g, base, [w * c] * ph)], rows,
                                      axis=1, name=f"{base}_split_rows"))  # fmt: skip
        piece: dict[tuple[int, int], str] = {}
        for i, r in enumerate(rows):
            cols_in = g.fresh(f"{base}_c{i}")
            cols = [g.fresh(f"{base}_p{i}{j}") for j in range(pw)]
            nodes += [
                helper.make_node("Reshape", [r, self._const(g, base, [hp * wp, pw * c])],
                                 [cols_in], name=f"{base}_cols{i}"),
                helper.make_node("Split", [cols_in, self._const(g, base, [c] * pw)], cols,
                                 axis=1, name=f"{base}_split_cols{i}"),
            ]  # fmt: skip
            for j, col in enumerate(cols):
                piece[(i, j)] = col
        if m.get("flat"):  # (P·N, C): the 2-D pieces one after the other
            nodes.append(helper.make_node("Concat", [piece[ij] for ij in m["order"]],
                                          [m["out"]], axis=0, name=f"{base}_concat"))  # fmt: skip
            return nodes
        seq = []
        for k, (i, j) in enumerate(m["order"]):
            s = g.fresh(f"{base}_s{k}")
            nodes.append(helper.make_node("Reshape", [piece[(i, j)],
                                          self._const(g, base, [1, hp * wp, c])], [s],
                                          name=f"{base}_seq{k}"))  # fmt: skip
            seq.append(s)
        nodes.append(helper.make_node("Concat", seq, [m["out"]], axis=0, name=f"{base}_concat"))
        return nodes

    def _fold(self, g: Graph, m: dict[str, Any]) -> list[onnx.NodeProto]:
        p, n, c = m["src"]
        _, _, h, w = m["dst"]
        ph, pw = m["ph"], m["pw"]
        hp, wp = h // ph, w // pw
        base = m["nodes"][0].name + "_patches"
        seq = [g.fresh(f"{base}_s{k}") for k in range(p)]
        sizes = [n] * p if m.get("flat") else [1] * p  # (P·N, C) or (P, N, C)
        nodes = [helper.make_node("Split", [m["x"], self._const(g, base, sizes)], seq, axis=0,
                                  name=f"{base}_split")]  # fmt: skip
        at = {pix: k for k, pix in enumerate(m["order"])}
        rows = []
        for i in range(ph):
            cols = []
            for j in range(pw):
                t = g.fresh(f"{base}_p{i}{j}")
                nodes.append(helper.make_node("Reshape", [seq[at[(i, j)]],
                                              self._const(g, base, [hp * wp, c])], [t],
                                              name=f"{base}_piece{i}{j}"))  # fmt: skip
                cols.append(t)
            joined, row = g.fresh(f"{base}_j{i}"), g.fresh(f"{base}_r{i}")
            nodes += [
                helper.make_node("Concat", cols, [joined], axis=1, name=f"{base}_cols{i}"),
                helper.make_node("Reshape", [joined, self._const(g, base, [hp, w * c])], [row],
                                 name=f"{base}_row{i}"),
            ]  # fmt: skip
            rows.append(row)
        joined, nhwc = g.fresh(f"{base}_rows"), g.fresh(f"{base}_nhwc")
        nodes += [
            helper.make_node("Concat", rows, [joined], axis=1, name=f"{base}_rows"),
            helper.make_node("Reshape", [joined, self._const(g, base, [1, h, w, c])], [nhwc],
                             name=f"{base}_map"),
            helper.make_node("Transpose", [nhwc], [m["out"]], perm=[0, 3, 1, 2],
                             name=f"{base}_nchw"),
        ]  # fmt: skip
        return nodes

    def _unfold_cpn(self, g: Graph, m: dict[str, Any]) -> list[onnx.NodeProto]:
        """Unfold into ``(1, C, P, N)``: the pieces of :meth:`_unfold` concatenated as a
        2-D ``(P·N, C)`` (onnx2tf keeps rank-2 tensors as they are: a 3-D ``(P, N, C)``
        was read in the wrong layout when N = C), reshaped to the channels-last
        ``(1, P, N, C)`` and transposed to NCHW (the NHWC tensor onnx2tf holds)."""
        _, c, p, n = m["dst"]
        base = m["nodes"][0].name + "_patches"
        seq, nhwc = g.fresh(f"{base}_seq"), g.fresh(f"{base}_pnc")
        nodes = self._unfold(g, {**m, "out": seq, "flat": True})
        nodes += [
            helper.make_node("Reshape", [seq, self._const(g, base, [1, p, n, c])], [nhwc],
                             name=f"{base}_pnc"),
            helper.make_node("Transpose", [nhwc], [m["out"]], perm=[0, 3, 1, 2],
                             name=f"{base}_cpn"),
        ]  # fmt: skip
        return nodes

    def _fold_cpn(self, g: Graph, m: dict[str, Any]) -> list[onnx.NodeProto]:
        """Fold from ``(1, C, P, N)``: transposed to the channels-last ``(1, P, N, C)``
        (the NHWC tensor onnx2tf holds), reshaped to a 2-D ``(P·N, C)``, then
        :meth:`_fold`."""
        _, c, p, n = m["src"]
        base = m["nodes"][0].name + "_patches"
        nhwc, seq = g.fresh(f"{base}_pnc"), g.fresh(f"{base}_seq")
        nodes = [
            helper.make_node("Transpose", [m["x"]], [nhwc], perm=[0, 2, 3, 1],
                             name=f"{base}_pnc"),
            helper.make_node("Reshape", [nhwc, self._const(g, base, [p * n, c])], [seq],
                             name=f"{base}_seq"),
        ]  # fmt: skip
        return nodes + self._fold(g, {**m, "x": seq, "src": (p, n, c), "flat": True})


class GroupNormChannelsLast(Rewrite):
    """One-group GroupNorm on a 4-D tensor → a mean/variance over ``(C, H, W)`` without
    flattening.

    PyTorch exports ``GroupNorm(1, C)`` as ``Reshape(B, 1, -1)`` → InstanceNormalization →
    ``Reshape`` back (then the affine Mul/Add). onnx2tf flattens in NCHW order, so every
    such norm costs two layout TRANSPOSEs around an NHWC graph (MobileViT v2: 42). The
    same statistics are ReduceMean over axes 1, 2, 3 (keep dims), centred first:
    ``(x − mean) / sqrt(mean((x − mean)²) + eps) · s + b`` with the InstanceNormalization's
    scalar scale ``s`` and bias ``b``; onnx2tf maps the reduction axes onto the NHWC tensor
    it holds. Exact up to float rounding (summation order)."""

    name = "groupnorm-channels-last"
    exact = "exact up to float rounding (the same mean and variance, summed in another order)"
    purpose = "GroupNorm(1, C) (reshape/InstanceNorm/reshape) -> 4-D mean/variance, no TRANSPOSE"
    tolerance = 1e-4

    def requires(self, g: Graph) -> list[Any]:
        return g.matches("InstanceNormalization", self._match)

    def _match(self, g: Graph, norm: onnx.NodeProto) -> dict[str, Any] | None:
        r1 = g.producer.get(norm.input[0])
        r2 = g.only_consumer(norm.output[0])
        if r1 is None or r1.op_type != "Reshape" or r2 is None or r2.op_type != "Reshape":
            return None
        if g.only_consumer(r1.output[0]) is None:
            return None
        x = r1.input[0]
        shape, flat, out = g.shape(x), g.shape(r1.output[0]), g.shape(r2.output[0])
        if shape is None or len(shape) != 4 or out != shape:
            return None
        if flat != (shape[0], 1, int(np.prod(shape[1:]))):
            return None
        scale, bias = g.const(norm.input[1]), g.const(norm.input[2])
        if scale is None or bias is None or scale.size != 1 or bias.size != 1:
            return None
        if self._in_patch_region(g, x):
            return None
        return {"nodes": [r1, norm, r2], "x": x, "out": r2.output[0],
                "eps": float(attr(norm, "epsilon", 1e-5)),
                "scale": float(scale.reshape(())), "bias": float(bias.reshape(()))}  # fmt: skip

    @staticmethod
    def _in_patch_region(g: Graph, x: str, limit: int = 200) -> bool:
        """Whether ``x`` descends (first inputs, back to the nearest spatial conv) from a
        patch unfold left as a 6-D Reshape/Transpose chain: onnx2tf holds such a region in
        NCHW, and a 4-D mean there came out wrong (a float model 7.5 % off, MobileViT v2
        before its unfold was rewritten; see :class:`PatchesChannelsLast`)."""
        name = x
        for _ in range(limit):
            node = g.producer.get(name)
            if node is None or not node.input:
                return False
            if node.op_type == "Conv":
                kernel = g.shape(node.input[1])
                if kernel is None or any(k != 1 for k in kernel[2:]):
                    return False
            if node.op_type in ("Reshape", "Transpose"):
                src = g.shape(node.input[0])
                if src is not None and len(src) == 6:
                    return True
            name = node.input[0]
        return True  # too far to tell: leave it alone

    @staticmethod
    def _affine_as_conv(g: Graph, out: str) -> None:
        """The per-channel affine after the norm (Mul by a ``(C, 1, 1)`` constant, then Add
        of one) → one depthwise 1×1 Conv: the same products and sums. onnx2tf pairs a
        rank-3 (or rank-4) constant with the map's axes by their sizes, which went wrong
        when C equals the token count (measured: 0.56 off); a Conv's channel axis it knows."""
        mul = g.only_consumer(out)
        if mul is None or mul.op_type != "Mul":
            return
        scale = g.const(mul.input[1] if mul.input[0] == out else mul.input[0])
        if scale is None or scale.ndim != 3 or scale.shape[1:] != (1, 1):
            return
        c = int(scale.shape[0])
        nodes, bias, last = [mul], np.zeros(c, np.float32), mul.output[0]
        add = g.only_consumer(last)
        if add is not None and add.op_type == "Add":
            b = g.const(add.input[1] if add.input[0] == last else add.input[0])
            if b is not None and b.shape == (c, 1, 1):
                nodes.append(add)
                bias, last = b.reshape(c).astype(np.float32), add.output[0]
        w = g.add_const(mul.name + "_dw", scale.reshape(c, 1, 1, 1).astype(np.float32))
        bt = g.add_const(mul.name + "_db", bias)
        conv = helper.make_node("Conv", [out, w, bt], [last], group=c, kernel_shape=[1, 1],
                                name=mul.name + "_affine")  # fmt: skip
        g.replace_nodes(nodes, [conv], at=nodes[-1])

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for m in matches:
            norm = m["nodes"][1]
            base = norm.name + "_gn"
            names = ("mu", "xc", "sq", "var", "ve", "sd", "ys", "y")
            t = {k: g.fresh(f"{base}_{k}") for k in names}
            affine = m["scale"] != 1.0 or m["bias"] != 0.0
            axes = [1, 2, 3]
            eps = g.add_const(f"{base}_eps", np.array(m["eps"], np.float32))
            nodes = [
                helper.make_node("ReduceMean", [m["x"]], [t["mu"]], axes=axes, keepdims=1,
                                 name=f"{base}_mean"),
                helper.make_node("Sub", [m["x"], t["mu"]], [t["xc"]], name=f"{base}_centre"),
                helper.make_node("Mul", [t["xc"], t["xc"]], [t["sq"]], name=f"{base}_square"),
                helper.make_node("ReduceMean", [t["sq"]], [t["var"]], axes=axes, keepdims=1,
                                 name=f"{base}_var"),
                helper.make_node("Add", [t["var"], eps], [t["ve"]], name=f"{base}_eps"),
                helper.make_node("Sqrt", [t["ve"]], [t["sd"]], name=f"{base}_sqrt"),
                helper.make_node("Div", [t["xc"], t["sd"]], [t["ys"] if affine else m["out"]],
                                 name=f"{base}_norm"),
            ]  # fmt: skip
            if affine:
                s = g.add_const(f"{base}_s", np.array(m["scale"], np.float32))
                b = g.add_const(f"{base}_b", np.array(m["bias"], np.float32))
                nodes += [
                    helper.make_node("Mul", [t["ys"], s], [t["y"]], name=f"{base}_scale"),
                    helper.make_node("Add", [t["y"], b], [m["out"]], name=f"{base}_bias"),
                ]
            g.replace_nodes(m["nodes"], nodes, at=m["nodes"][-1])
            self._affine_as_conv(g, m["out"])
            done.append(f"{norm.name}: GroupNorm(1) over {g.shape(m['x'])}")
        return done
