"""Multi-head attention without layout transposes: one attention per head, on channel slices.

PyTorch attention splits heads with data movement that has no NHWC meaning::

    qkv = self.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)   # (3, b, h, n, d)
    q, k, v = qkv[0], qkv[1], qkv[2]
    y = softmax(q @ k.transpose(-2, -1) * s) @ v                       # (b, h, n, d)
    y = y.transpose(1, 2).reshape(b, n, h * d)

onnx2tf keeps those Transposes (2 TRANSPOSE ops per attention in the int8 graph). But head
``i`` of q/k/v is just a contiguous channel slice of the token tensor ``(b, n, C)``, and the
merge is a concatenation of the head outputs along channels. :class:`AttentionHeads`
rewrites each such attention into ``h`` attentions on ``Slice``\\ s of the token tensors,
with one ``Concat`` at the end: the same dot products, in the same order, on the same
values. The k transpose of each head stays a Transpose(0, 2, 1) feeding the MatMul, which
TFLiteConverter folds into BATCH_MATMUL (``adj_y``), so no TRANSPOSE is left.

How heads are split is not matched by op pattern but by where the values come from: the
Reshape / Transpose / Gather chain from a rank-3 token tensor to each MatMul operand is
replayed on an index array, and each head must read a contiguous channel range of it
(any spelling of the split — one qkv projection or three, ``permute`` or ``transpose`` —
gives the same index map; ``unbind`` exports as Split + Squeeze). The merge chain is
checked the same way. A scalar Mul/Div on the q or k operand (``scaled_dot_product_attention``
exports ``q·√s`` and ``kᵀ·√s``) is applied to each head's slice instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from toolchain.convert.rewrites.base import Rewrite
from toolchain.convert.rewrites.graph import Graph, attr

#: scalar elementwise ops allowed between the two MatMuls (the 1/sqrt(d) scale)
_SCALAR_OPS = ("Mul", "Div")
#: data-movement ops a head split may consist of
_MOVE_OPS = ("Reshape", "Transpose", "Gather", "Squeeze", "Unsqueeze", "Split")


@dataclass
class _Heads:
    """How one MatMul operand reads a rank-3 token tensor: ``source[:, :, off:off+d]``
    for head ``i`` (``offsets[i]``); ``transposed``: the operand holds each head as
    ``(d, n)`` (k already transposed)."""

    source: str
    offsets: list[int]
    width: int
    transposed: bool


def _index_map(shape: tuple[int, ...], steps: list[tuple[str, Any]]) -> np.ndarray:
    a = np.arange(int(np.prod(shape))).reshape(shape)
    for kind, arg in steps:
        if kind == "reshape":
            a = a.reshape(arg)
        elif kind == "transpose":
            a = np.transpose(a, arg)
        else:  # gather: (axis, index array)
            axis, idx = arg
            a = np.take(a, idx, axis=axis)
    return a


class AttentionHeads(Rewrite):
    name = "attention-heads"
    exact = "exact up to float rounding (the same dot products per head)"
    purpose = "multi-head attention -> per-head attention on channel slices (no TRANSPOSE)"
    tolerance = 1e-5

    def requires(self, g: Graph) -> list[Any]:
        return g.matches("MatMul", self._match)

    # --- matching -----------------------------------------------------------------------
    def _match(self, g: Graph, mm2: onnx.NodeProto) -> dict[str, Any] | None:
        """``mm2`` = MatMul(P, V) with P = softmax(scalar ops(MatMul(Q, Kᵀ)))."""
        o_shape = g.shape(mm2.output[0])
        if o_shape is None or len(o_shape) != 4:
            return None
        b, h, n, d = o_shape
        soft = g.producer.get(mm2.input[0])
        if soft is None or soft.op_type != "Softmax" or g.only_consumer(soft.output[0]) is None:
            return None
        if int(attr(soft, "axis", -1)) not in (-1, 3):
            return None
        scalars: list[onnx.NodeProto] = []
        cur = g.producer.get(soft.input[0])
        while cur is not None and cur.op_type in _SCALAR_OPS:
            if g.scalar(cur.input[1]) is None or g.only_consumer(cur.output[0]) is None:
                return None
            scalars.insert(0, cur)
            cur = g.producer.get(cur.input[0])
        mm1 = cur
        if mm1 is None or mm1.op_type != "MatMul" or g.only_consumer(mm1.output[0]) is None:
            return None
        if g.shape(mm1.output[0]) != (b, h, n, n):
            return None
        q_in, q_scale = self._scaled(g, mm1.input[0])
        k_in, k_scale = self._scaled(g, mm1.input[1])
        q = self._heads(g, q_in, (b, h, n, d), transposed=False)
        k = self._heads(g, k_in, (b, h, d, n), transposed=True)
        v = self._heads(g, mm2.input[1], (b, h, n, d), transposed=False)
        merge = self._merge(g, mm2.output[0], (b, h, n, d))
        if q is None or k is None or v is None or merge is None:
            return None
        return {"q": q, "k": k, "v": v, "scalars": scalars, "soft": soft, "mm1": mm1,
                "mm2": mm2, "merge": merge, "shape": (b, h, n, d),
                "operand_scale": {"q": q_scale, "k": k_scale}}  # fmt: skip

    @staticmethod
    def _scaled(g: Graph, name: str) -> tuple[str, list[onnx.NodeProto]]:
        """``name`` behind scalar Mul/Div nodes read only by the attention (outermost last),
        and those nodes."""
        nodes: list[onnx.NodeProto] = []
        cur = g.producer.get(name)
        while (
            cur is not None
            and cur.op_type in _SCALAR_OPS
            and g.scalar(cur.input[1]) is not None
            and g.only_consumer(cur.output[0]) is not None
            and len(nodes) < 2
        ):
            nodes.insert(0, cur)
            name = cur.input[0]
            cur = g.producer.get(name)
        return name, nodes

    def _heads(
        self, g: Graph, name: str, shape: tuple[int, ...], *, transposed: bool
    ) -> _Heads | None:
        """Trace ``name`` back through data movement to a rank-3 ``(b, n, C)`` tensor."""
        if g.shape(name) != shape:
            return None
        steps: list[tuple[str, Any]] = []
        cur = name
        while True:
            src_shape = g.shape(cur)
            node = g.producer.get(cur)
            if src_shape is not None and len(src_shape) == 3 and steps:
                break
            if node is None or node.op_type not in _MOVE_OPS or src_shape is None:
                return None
            step = self._step(g, node, cur)
            if step is None:
                return None
            steps.insert(0, step)
            cur = node.input[0]
        src = g.shape(cur)
        assert src is not None
        bb, n_tok, c = src
        b, h = shape[0], shape[1]
        if bb != b:
            return None
        try:
            a = _index_map(src, steps)
        except ValueError:
            return None
        if a.shape != shape:
            return None
        if transposed:
            a = np.swapaxes(a, 2, 3)
        _, _, n, d = a.shape
        if n != n_tok:
            return None
        base = np.arange(bb * n_tok * c).reshape(src)
        offsets = []
        for i in range(h):
            off = int(a[0, i, 0, 0]) % c
            if off + d > c or not np.array_equal(a[:, i], base[:, :, off : off + d]):
                return None
            offsets.append(off)
        return _Heads(cur, offsets, d, transposed)

    def _step(
        self, g: Graph, node: onnx.NodeProto, output: str | None = None
    ) -> tuple[str, Any] | None:
        out = g.shape(output or node.output[0])
        if out is None:
            return None
        if node.op_type == "Split":  # one output of it: a range along the axis
            shape = g.shape(node.input[0])
            if shape is None or output is None:
                return None
            axis = int(attr(node, "axis", 0)) % len(shape)
            if len(node.input) > 1 and node.input[1]:
                sizes = g.const(node.input[1])
                if sizes is None:
                    return None
                split = [int(v) for v in sizes.reshape(-1)]
            else:
                split = [shape[axis] // len(node.output)] * len(node.output)
            k = list(node.output).index(output)
            start = sum(split[:k])
            return ("gather", (axis, np.arange(start, start + split[k], dtype=np.int64)))
        if node.op_type in ("Reshape", "Squeeze", "Unsqueeze"):
            return ("reshape", out)
        if node.op_type == "Transpose":
            perm = attr(node, "perm")
            return ("transpose", list(perm)) if perm is not None else None
        idx = g.const(node.input[1])  # Gather with a constant index
        if idx is None:
            return None
        return ("gather", (int(attr(node, "axis", 0)), idx.astype(np.int64)))

    def _merge(self, g: Graph, name: str, shape: tuple[int, ...]) -> dict[str, Any] | None:
        """Follow ``(b, h, n, d)`` forward through Transpose/Reshape to ``(b, n, h·d)``
        whose channel ``i·d + c`` is head ``i``'s channel ``c``."""
        b, h, n, d = shape
        nodes: list[onnx.NodeProto] = []
        steps: list[tuple[str, Any]] = []
        cur = name
        while g.shape(cur) != (b, n, h * d) or not nodes:
            node = g.only_consumer(cur)
            if node is None or node.op_type not in ("Reshape", "Transpose"):
                return None
            step = self._step(g, node)
            if step is None:
                return None
            steps.append(step)
            nodes.append(node)
            cur = node.output[0]
            if len(nodes) > 4:
                return None
        a = _index_map(shape, steps)
        want = np.arange(b * h * n * d).reshape(shape).transpose(0, 2, 1, 3).reshape(b, n, h * d)
        if not np.array_equal(a, want):
            return None
        return {"nodes": nodes, "out": cur}

    # --- rewriting ----------------------------------------------------------------------
    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for m in matches:
            b, h, n, d = m["shape"]
            base = m["mm2"].name
            new: list[onnx.NodeProto] = []
            outs = []
            for i in range(h):
                sl = {}
                for key in ("q", "k", "v"):
                    hd: _Heads = m[key]
                    off = hd.offsets[i]
                    t = g.fresh(f"{base}_{key}{i}")
                    new.append(helper.make_node(
                        "Slice",
                        [hd.source, g.add_const(f"{base}_{key}{i}_s", np.array([off], np.int64)),
                         g.add_const(f"{base}_{key}{i}_e", np.array([off + d], np.int64)),
                         g.add_const(f"{base}_{key}{i}_a", np.array([2], np.int64))],
                        [t], name=f"{base}_{key}{i}_slice"))  # fmt: skip
                    for sc in m["operand_scale"].get(key, []):
                        t2 = g.fresh(f"{base}_{key}{i}")
                        new.append(helper.make_node(sc.op_type, [t, sc.input[1]], [t2],
                                                    name=f"{sc.name}_{i}"))  # fmt: skip
                        t = t2
                    sl[key] = t
                kt = g.fresh(f"{base}_kt{i}")
                new.append(helper.make_node("Transpose", [sl["k"]], [kt], perm=[0, 2, 1],
                                            name=f"{base}_kt{i}"))  # fmt: skip
                s = g.fresh(f"{base}_s{i}")
                new.append(helper.make_node("MatMul", [sl["q"], kt], [s], name=f"{base}_qk{i}"))
                for sc in m["scalars"]:
                    s2 = g.fresh(f"{base}_s{i}")
                    new.append(helper.make_node(sc.op_type, [s, sc.input[1]], [s2],
                                                name=f"{sc.name}_{i}"))  # fmt: skip
                    s = s2
                p = g.fresh(f"{base}_p{i}")
                new.append(helper.make_node("Softmax", [s], [p], axis=-1, name=f"{base}_sm{i}"))
                o = g.fresh(f"{base}_o{i}")
                new.append(helper.make_node("MatMul", [p, sl["v"]], [o], name=f"{base}_pv{i}"))
                outs.append(o)
            last = m["merge"]["nodes"][-1]
            new.append(helper.make_node("Concat", outs, [m["merge"]["out"]], axis=2,
                                        name=f"{base}_heads"))  # fmt: skip
            old = [m["mm1"], *m["scalars"], m["soft"], m["mm2"], *m["merge"]["nodes"],
                   *m["operand_scale"]["q"], *m["operand_scale"]["k"]]  # fmt: skip
            g.replace_nodes(old, new, at=last)
            done.append(f"{base}: {h} heads of {d} on ({b}, {n}, ·) tokens")
        return done

    def ensures(self, g: Graph) -> str | None:
        left = [m["mm2"].name for m in self.requires(g)]
        return f"attention heads left: {', '.join(left[:3])}" if left else None
