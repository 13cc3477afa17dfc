"""Constant scales of a Linear's output slices folded into its weights (the attention scale).

``scaled_dot_product_attention`` exports the ``1/sqrt(d)`` scale as ``q·√s`` and
``kᵀ·√s``; after ``attention-heads`` each head's q and k are ``Slice``\\ s of the qkv
Linear's output, each followed by a scalar ``Mul``. In int8 every such Mul is an op with an
output tensor and a requantization (24 in timm's 6-block, 2-head test ViT). When every
reader of ``y = x @ W + b`` is a Slice over its last axis and the scaled slices' columns are
read by nothing else with another scale, ``y[..., cols] · s`` is ``x @ W' + b'`` with those
columns of ``W`` and ``b`` multiplied by ``s``: :class:`ScaleIntoLinear` does that and drops
the Muls. Exact up to float rounding (one rounding of ``w·s`` instead of ``(x·w)·s``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolchain.convert.rewrites.base import Rewrite
from toolchain.convert.rewrites.graph import Graph


def _last_axis_slice(g: Graph, n: Any, rank: int, width: int) -> tuple[int, int] | None:
    """The column range ``[start, end)`` a Slice reads on the last axis (step 1), else None."""
    if n.op_type != "Slice" or len(n.input) < 4:
        return None
    starts, ends, axes = (g.const(n.input[k]) for k in (1, 2, 3))
    steps = g.const(n.input[4]) if len(n.input) > 4 and n.input[4] else None
    if starts is None or ends is None or axes is None or starts.size != 1 or axes.size != 1:
        return None
    if int(axes.reshape(())) % rank != rank - 1:
        return None
    if steps is not None and int(steps.reshape(())) != 1:
        return None
    s, e = int(starts.reshape(())), int(ends.reshape(()))
    s, e = (s + width if s < 0 else s), (e + width if e < 0 else e)
    s, e = max(0, min(s, width)), max(0, min(e, width))
    return (s, e) if s < e else None


class ScaleIntoLinear(Rewrite):
    name = "scale-into-linear"
    exact = "exact up to float rounding (the scale applied to W and b instead of x @ W + b)"
    purpose = "scalar Mul on a slice of a Linear's output (attention q·√s, k·√s) -> its weights"
    tolerance = 1e-5

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for add in g.nodes:
            m = self._linear(g, add)
            if m is None:
                continue
            _, w, _, _ = m
            y = add.output[0]
            shape = g.shape(y)
            if shape is None or y in g.graph_outputs:
                continue
            width = int(w.shape[1])
            col_scale = np.ones(width, np.float64)
            seen = np.zeros(width, bool)
            muls = []
            ok = True
            for sl in g.consumers.get(y, []):
                cols = _last_axis_slice(g, sl, len(shape), width)
                if cols is None or sl.output[0] in g.graph_outputs:
                    ok = False
                    break
                users = g.consumers.get(sl.output[0], [])
                mul = users[0] if len(users) == 1 and users[0].op_type == "Mul" else None
                if mul is not None and mul.output[0] in g.graph_outputs:
                    mul = None
                s = None
                if mul is not None:
                    other = mul.input[1] if mul.input[0] == sl.output[0] else mul.input[0]
                    s = g.scalar(other)
                scale = 1.0 if s is None else s
                part = slice(*cols)
                if np.any(seen[part] & (col_scale[part] != scale)):
                    ok = False  # the same columns read with two scales
                    break
                seen[part] = True
                col_scale[part] = scale
                if s is not None:
                    muls.append(mul)
            if ok and muls:
                found.append((add, col_scale, muls))
        return found

    @staticmethod
    def _linear(g: Graph, add: Any) -> tuple[Any, np.ndarray, str, np.ndarray] | None:
        """``Add(b, MatMul(x, W))`` with constant 2-D W and 1-D b, the MatMul read only by
        the Add: (MatMul, W, bias name, b)."""
        if add.op_type != "Add":
            return None
        for k in (0, 1):
            mm = g.producer.get(add.input[k])
            b = g.const(add.input[1 - k])
            if mm is None or mm.op_type != "MatMul" or b is None or b.ndim != 1:
                continue
            w = g.const(mm.input[1])
            if w is None or w.ndim != 2 or b.shape[0] != w.shape[1]:
                continue
            if g.only_consumer(mm.output[0]) is None:
                continue
            return mm, w, add.input[1 - k], b
        return None

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for add, col_scale, muls in matches:
            m = self._linear(g, add)
            assert m is not None
            mm, w, bias_name, b = m
            w2 = (w.astype(np.float64) * col_scale[None, :]).astype(w.dtype)
            b2 = (b.astype(np.float64) * col_scale).astype(b.dtype)
            new_w = g.add_const(f"{mm.input[1]}_scaled", w2)
            new_b = g.add_const(f"{bias_name}_scaled", b2)
            for node in g.model.graph.node:  # protobuf nodes: edit in place
                if node.output[0] == mm.output[0]:
                    node.input[1] = new_w
                elif node.output[0] == add.output[0]:
                    node.input[list(node.input).index(bias_name)] = new_b
            g.refresh()
            for mul in muls:
                src = next(i for i in mul.input if g.const(i) is None)
                for node in g.model.graph.node:
                    for k, i in enumerate(node.input):
                        if i == mul.output[0]:
                            node.input[k] = src
            g.refresh()
            done.append(f"{add.name}: {len(muls)} scaled slices into the weights")
        return done
