"""The class token as its own tensor: a ViT's residual stream split into row 0 and the rest.

A ViT prepends a learnt class token to the patch tokens and reads only that row at the end::

    x = concat([cls, patches], dim=1) + pos_embed        # (1, 1 + N, C)
    for blk in blocks:
        x = x + attn(norm1(x))                             # residual Adds
        x = x + mlp(norm2(x))
    y = head(norm(x)[:, 0])

In int8 every tensor has one scale. The patch tokens set the residual stream's range, and
the class token is much smaller: in timm's ViT test net (peer suite) ``cls + pos[0]`` has
an rms of 0.11 against a step of 0.68 (range ±96) — it quantizes to zeros, and every
block's update of it stays at 0–1 dB SQNR, while the patch rows keep 18–34 dB. The logits
read that row: 2.6 dB input-dependent SQNR, top-1 33.6 % for 55.6 % in float.

:class:`ClassTokenStream` carries row 0 (``c``, shape ``(1, 1, C)``) and the other rows
(``p``) as two tensors along the residual chain, so each gets its own int8 scale:

* the start ``concat([c, p]) (+ pos)`` becomes ``c + pos[:, :1]`` and ``p + pos[:, 1:]``
  (a constant class row is folded to a constant);
* every LayerNorm over channels reading the stream becomes ``concat([LN(c), LN(p)])``
  (the norm is per token, so this is the same computation; a constant row's norm is folded);
* every residual ``Add(x, b)`` becomes ``c + b[:, :1]`` and ``p + b[:, 1:]``;
* a ``Gather(index 0, axis 1)`` of a norm's output reads ``LN(c)`` directly;
* any other reader of a stream tensor gets ``concat([c, p])`` (the same values).

The branches (attention, MLP) are not touched: they read normalised tokens, all of one
magnitude. Exact up to float rounding (the same per-token operations on the same values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from toolchain.convert.rewrites.base import Rewrite
from toolchain.convert.rewrites.graph import Graph, attr


@dataclass
class _Stream:
    """One residual chain: the token Concat (and the position Add after it), the residual
    Adds in order (with the operand that is the stream), the norms reading the stream."""

    concat: onnx.NodeProto
    pos_add: onnx.NodeProto | None
    start: str  # the stream's first tensor (output of pos_add, else of concat)
    adds: list[tuple[onnx.NodeProto, int]] = field(default_factory=list)
    norms: list[onnx.NodeProto] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)


def _tokens_axis(g: Graph, n: onnx.NodeProto) -> bool:
    shape = g.shape(n.output[0])
    return shape is not None and len(shape) == 3 and int(attr(n, "axis", 0)) % 3 == 1


def _is_channel_norm(g: Graph, n: onnx.NodeProto) -> bool:
    return (
        n.op_type == "LayerNormalization"
        and int(attr(n, "axis", -1)) % 3 == 2
        and (len(n.output) == 1 or not any(n.output[1:]))
        and g.const(n.input[1]) is not None
        and (len(n.input) < 3 or not n.input[2] or g.const(n.input[2]) is not None)
    )


class ClassTokenStream(Rewrite):
    name = "class-token-stream"
    exact = "exact up to float rounding (the same per-token norms and adds, row 0 apart)"
    purpose = "ViT class token (row 0 of the residual stream) as its own tensor: its own int8 scale"
    tolerance = 1e-4

    def requires(self, g: Graph) -> list[Any]:
        found = []
        for n in g.nodes:
            if n.op_type != "Concat" or len(n.input) != 2 or not _tokens_axis(g, n):
                continue
            first, rest = g.shape(n.input[0]), g.shape(n.input[1])
            out = g.shape(n.output[0])
            if first is None or rest is None or out is None or first[:2] != (1, 1):
                continue
            stream = self._follow(g, n, out)
            if stream is not None:
                found.append(stream)
        return found

    def _follow(self, g: Graph, concat: onnx.NodeProto, shape: tuple[int, ...]) -> _Stream | None:
        """The residual chain from ``concat``: None unless it has a norm and an Add."""
        start, pos_add = concat.output[0], None
        user = g.only_consumer(start)
        if user is not None and user.op_type == "Add":
            other = user.input[1] if user.input[0] == start else user.input[0]
            pos = g.const(other)
            if pos is not None and pos.shape in ((1, *shape[1:]), shape[1:]):
                pos_add, start = user, user.output[0]
        stream = _Stream(concat, pos_add, start)
        x = start
        while True:
            stream.tensors.append(x)
            users = g.consumers.get(x, [])
            stream.norms += [u for u in users if _is_channel_norm(g, u)]
            nxt = [
                (u, list(u.input).index(x))
                for u in users
                if u.op_type == "Add"
                and len(set(u.input)) == 2
                and g.shape(u.output[0]) == shape
                and g.shape(u.input[1 - list(u.input).index(x)]) == shape
            ]
            if len(nxt) != 1:
                break
            stream.adds.append(nxt[0])
            x = nxt[0][0].output[0]
        if not stream.norms or not stream.adds:
            return None
        return stream

    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        for s in matches:
            done.append(self._split(g, s))
        return done

    def _split(self, g: Graph, s: _Stream) -> str:
        base = s.concat.name or "tokens"
        one, zero = self._const_i64(g, base, [1]), self._const_i64(g, base, [0])
        tokens = g.shape(s.start)
        assert tokens is not None
        end, axis = self._const_i64(g, base, [tokens[1]]), self._const_i64(g, base, [1])
        # names of the two parts of every stream tensor
        part = {t: (g.fresh(f"{t}_cls"), g.fresh(f"{t}_tok")) for t in s.tensors}
        consts: dict[str, np.ndarray] = {}

        # 1. the start: concat (+ pos) -> two tensors
        cls_in, tok_in = s.concat.input[0], s.concat.input[1]
        c0, p0 = part[s.start]
        new: list[onnx.NodeProto] = []
        if s.pos_add is not None:
            other = (
                s.pos_add.input[1]
                if s.pos_add.input[0] == s.concat.output[0]
                else s.pos_add.input[0]
            )
            pos = g.const(other)
            assert pos is not None
            pos = pos.reshape((1, *pos.shape[-2:]))
            cv = g.const(cls_in)
            if cv is not None:
                consts[c0] = (cv.astype(np.float32) + pos[:, :1]).astype(np.float32)
            else:
                new.append(helper.make_node("Add", [cls_in, g.add_const(f"{base}_pos_cls", pos[:, :1])],
                                            [c0], name=f"{base}_pos_cls"))  # fmt: skip
            new.append(helper.make_node("Add", [tok_in, g.add_const(f"{base}_pos_tok", pos[:, 1:])],
                                        [p0], name=f"{base}_pos_tok"))  # fmt: skip
        else:
            cv = g.const(cls_in)
            if cv is not None:
                consts[c0] = cv.astype(np.float32)
            else:
                new.append(helper.make_node("Identity", [cls_in], [c0], name=f"{base}_cls"))
            new.append(helper.make_node("Identity", [tok_in], [p0], name=f"{base}_tok"))
        for name, value in consts.items():
            g.model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
        last = s.pos_add if s.pos_add is not None else s.concat
        old = [s.concat] + ([s.pos_add] if s.pos_add is not None else [])
        new += self._rejoin(g, s, s.start, part, consts, handled={n.output[0] for n in old})
        g.replace_nodes(old, new, at=last)

        # 2. residual adds: both parts separately
        for add, idx in s.adds:
            add = g.producer[add.output[0]]
            x, b = add.input[idx], add.input[1 - idx]
            (cx, px), (cy, py) = part[x], part[add.output[0]]
            b0, b1 = g.fresh(f"{b}_cls"), g.fresh(f"{b}_tok")
            nodes = [
                helper.make_node("Slice", [b, zero, one, axis], [b0], name=f"{add.name}_cls_slice"),
                helper.make_node("Slice", [b, one, end, axis], [b1], name=f"{add.name}_tok_slice"),
                helper.make_node("Add", [cx, b0], [cy], name=f"{add.name}_cls"),
                helper.make_node("Add", [px, b1], [py], name=f"{add.name}_tok"),
            ]  # fmt: skip
            nodes += self._rejoin(g, s, add.output[0], part, consts, handled={add.output[0]})
            g.replace_nodes([add], nodes, at=add)

        # 3. norms: per part, then concatenated (or row 0 alone for a Gather of it)
        for norm in s.norms:
            norm = g.producer[norm.output[0]]
            cx, px = part[norm.input[0]]
            eps = float(attr(norm, "epsilon", 1e-5))
            y = norm.output[0]
            y0, y1 = g.fresh(f"{y}_cls"), g.fresh(f"{y}_tok")
            nodes = []
            if cx in consts:
                w = g.const(norm.input[1])
                bias = g.const(norm.input[2]) if len(norm.input) > 2 and norm.input[2] else None
                assert w is not None
                y0 = g.add_const(f"{y}_cls", _layer_norm(consts[cx], w, bias, eps))
            else:
                nodes.append(self._norm_like(norm, cx, y0, "_cls"))
            nodes.append(self._norm_like(norm, px, y1, "_tok"))
            readers = g.consumers.get(y, [])
            row0 = [r for r in readers if self._reads_row0(g, r)]
            for r in row0:
                nodes.append(helper.make_node(
                    "Reshape", [y0, g.add_const(f"{r.name}_shape", np.array(g.shape(r.output[0]), np.int64))],
                    [r.output[0]], name=f"{r.name}_cls"))  # fmt: skip
            if len(row0) < len(readers) or y in g.graph_outputs:
                nodes.append(
                    helper.make_node("Concat", [y0, y1], [y], axis=1, name=f"{norm.name}_join")
                )
            g.replace_nodes([norm, *row0], nodes, at=norm)
        return (f"{s.start}: class row apart through {len(s.adds)} residual adds and "
                f"{len(s.norms)} norms")  # fmt: skip

    def _rejoin(
        self,
        g: Graph,
        s: _Stream,
        t: str,
        part: dict[str, tuple[str, str]],
        consts: dict[str, np.ndarray],
        handled: set[str],
    ) -> list[onnx.NodeProto]:
        """``concat([c, p]) -> t`` when ``t`` has a reader the split does not serve."""
        served = {n.output[0] for n in s.norms} | {a.output[0] for a, _ in s.adds}
        served |= handled
        others = [u for u in g.consumers.get(t, []) if u.output[0] not in served]
        if not others and t not in g.graph_outputs:
            return []
        c, p = part[t]
        return [helper.make_node("Concat", [c, p], [t], axis=1, name=f"{t}_join")]

    @staticmethod
    def _norm_like(norm: onnx.NodeProto, x: str, y: str, tag: str) -> onnx.NodeProto:
        n = onnx.NodeProto()
        n.CopyFrom(norm)
        n.input[0] = x
        del n.output[:]
        n.output.append(y)
        n.name = f"{norm.name}{tag}"
        return n

    @staticmethod
    def _reads_row0(g: Graph, r: onnx.NodeProto) -> bool:
        if r.op_type != "Gather" or int(attr(r, "axis", 0)) % 3 != 1:
            return False
        idx = g.const(r.input[1])
        return (
            idx is not None
            and idx.size == 1
            and int(idx.reshape(())) == 0
            and g.shape(r.output[0]) is not None
        )

    @staticmethod
    def _const_i64(g: Graph, base: str, v: list[int]) -> str:
        return g.add_const(f"{base}_i", np.array(v, np.int64))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    var = ((x64 - mu) ** 2).mean(-1, keepdims=True)
    y = (x64 - mu) / np.sqrt(var + eps) * w.astype(np.float64)
    if b is not None:
        y = y + b.astype(np.float64)
    return y.astype(np.float32)
