"""Channels-last islands (ConvNeXt blocks) rewritten as NCHW ops: no permutes left.

A ConvNeXt block permutes a feature map to channels-last, works on the last axis, and
permutes back::

    y = x.permute(0, 2, 3, 1)                     # (B, H, W, C)
    y = pw2(gelu(pw1(layer_norm(y))))             # LayerNorm(C), Linear, GELU, Linear
    x = x + gamma * y.permute(0, 3, 1, 2)         # back to (B, C, H, W)

Everything between the two permutes acts per pixel on the channel vector, so the same
block can be written on the NCHW tensor: a Linear is a 1×1 convolution, a LayerNorm over C
is a mean/variance over axis 1, a per-channel constant broadcasts as ``(C, 1, 1)``, and
elementwise ops do not care. onnx2tf then sees an ordinary NCHW conv block (no layout
juggling: onnx2tf mishandled the exact-GELU node inside the channels-last form, and the
tanh fallback cost accuracy).

:class:`ChannelsLastIsland` finds a Transpose(0, 2, 3, 1) whose downstream region —
up to Transpose(0, 3, 1, 2) exits — consists only of ops it can rewrite this way, and
rewrites the region. The LayerNorm decomposition (mean, centre, mean of squares,
``1/sqrt(var + eps)``, scale, shift) is exact up to float rounding; TFLiteConverter maps it
to MEAN / SUB / MUL / RSQRT int8 builtins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from toolchain.convert.rewrites.base import Rewrite
from toolchain.convert.rewrites.graph import Graph, attr

#: elementwise ops with one data input (layout-agnostic)
_UNARY = {"Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "HardSigmoid", "HardSwish", "Abs", "Neg",
          "Exp", "Softplus", "Identity", "LeakyRelu", "Elu", "Selu", "Clip"}  # fmt: skip
_BINARY = {"Add", "Sub", "Mul", "Div"}
_TO_NHWC = [0, 2, 3, 1]
_TO_NCHW = [0, 3, 1, 2]
MAX_ISLAND = 64


class ChannelsLastIsland(Rewrite):
    name = "channels-last-island"
    exact = "exact up to float rounding (LayerNorm decomposed; Linear as 1x1 conv)"
    purpose = "permute -> LayerNorm/Linear/elementwise -> permute back as NCHW ops (ConvNeXt)"
    tolerance = 1e-4

    def requires(self, g: Graph) -> list[Any]:
        return [
            m
            for n in g.nodes
            if n.op_type == "Transpose"
            and list(attr(n, "perm") or []) == _TO_NHWC
            and (m := self._island(g, n)) is not None
        ]

    def _island(self, g: Graph, entry: onnx.NodeProto) -> dict[str, Any] | None:
        shape = g.shape(entry.input[0])
        if shape is None or len(shape) != 4:
            return None
        chans = {entry.output[0]: shape[1]}  # island tensor -> its channel count
        nodes: list[onnx.NodeProto] = []
        exits: list[onnx.NodeProto] = []
        seen: set[str] = set()
        todo = [entry.output[0]]
        while todo:
            t = todo.pop(0)
            if t in g.graph_outputs:
                return None
            for user in g.consumers.get(t, []):
                if user.output[0] in seen:
                    continue
                if user.op_type == "Transpose":
                    if list(attr(user, "perm") or []) != _TO_NCHW:
                        return None
                    exits.append(user)
                    seen.add(user.output[0])
                    continue
                ready = [i for i in user.input if i in chans]
                if any(i and i not in chans and g.const(i) is None for i in user.input):
                    # another island input is not known yet: come back when it is
                    if any(self._downstream(g, i, entry.output[0]) for i in user.input
                           if i and i not in chans and g.const(i) is None):  # fmt: skip
                        continue
                    return None
                c_out = self._supported(g, user, chans[ready[0]], set(chans))
                if c_out is None:
                    return None
                nodes.append(user)
                seen.add(user.output[0])
                if len(nodes) > MAX_ISLAND:
                    return None
                chans[user.output[0]] = c_out
                todo.append(user.output[0])
        if not exits or not nodes:
            return None
        inside = {n.output[0] for n in (*nodes, *exits)}
        if any(u.output[0] not in inside for t in chans for u in g.consumers.get(t, [])):
            return None  # an island tensor is read from outside without a permute back
        return {"entry": entry, "nodes": nodes, "exits": exits, "tensors": set(chans),
                "chans": chans}  # fmt: skip

    def _downstream(self, g: Graph, name: str, root: str, depth: int = 64) -> bool:
        """Whether ``name`` is computed from ``root`` (a second path of the island)."""
        todo, seen = [name], set()
        while todo and depth:
            depth -= 1
            t = todo.pop()
            if t == root:
                return True
            node = g.producer.get(t)
            if node is None or t in seen:
                continue
            seen.add(t)
            todo.extend(i for i in node.input if i)
        return False

    def _supported(self, g: Graph, n: onnx.NodeProto, c: int, island: set[str]) -> int | None:
        """The channel count of ``n``'s output when the island can contain ``n``."""
        if len(n.output) != 1:
            return None
        if n.op_type in _UNARY:
            ok = n.input[0] in island and all(g.const(i) is not None for i in n.input[1:] if i)
            return c if ok else None
        if n.op_type in _BINARY:
            for i in n.input:
                if i in island:
                    continue
                v = g.const(i)
                if v is None or not (v.size == 1 or (v.shape[-1:] == (c,) and v.size == c)):
                    return None
            return c
        if n.op_type == "LayerNormalization":
            axis = int(attr(n, "axis", -1))
            params = [g.const(i) for i in n.input[1:] if i]
            ok = axis in (-1, 3) and all(v is not None and v.size == c for v in params)
            return c if ok else None
        if n.op_type == "MatMul":
            w = g.const(n.input[1])
            ok = w is not None and w.ndim == 2 and w.shape[0] == c
            return int(w.shape[1]) if ok and w is not None else None
        return None

    # --- rewriting ----------------------------------------------------------------------
    def call(self, g: Graph, matches: list[Any]) -> list[str]:
        done = []
        claimed: set[str] = set()
        for m in matches:
            if m["tensors"] & claimed:
                continue
            claimed |= m["tensors"]
            new = self._rewrite(g, m)
            g.replace_nodes([m["entry"], *m["nodes"], *m["exits"]], new, at=m["entry"])
            ops = sorted({n.op_type for n in m["nodes"]})
            done.append(f"{m['entry'].name}: {len(m['nodes'])} ops ({', '.join(ops)})")
        return done

    def _rewrite(self, g: Graph, m: dict[str, Any]) -> list[onnx.NodeProto]:
        """The island's nodes, in order, on NCHW tensors (fresh names; the exits' outputs
        are the last ones)."""
        entry = m["entry"]
        rename = {entry.output[0]: entry.input[0]}
        # every exit transpose reads an island tensor; that tensor's NCHW twin must carry
        # the exit's output name (several exits of one tensor: an Identity for the others)
        out_name: dict[str, str] = {}
        extra: list[onnx.NodeProto] = []
        for e in m["exits"]:
            if e.input[0] in out_name:
                extra.append(helper.make_node("Identity", [out_name[e.input[0]]], [e.output[0]],
                                              name=e.name + "_id"))  # fmt: skip
            elif e.input[0] == entry.output[0]:
                extra.append(helper.make_node("Identity", [entry.input[0]], [e.output[0]],
                                              name=e.name + "_id"))  # fmt: skip
            else:
                out_name[e.input[0]] = e.output[0]
        for t in m["tensors"]:
            if t != entry.output[0]:
                rename[t] = out_name.get(t) or g.fresh(t + "_nchw")
        new: list[onnx.NodeProto] = []
        biased = self._linear_biases(g, m)
        affine = self._foldable_affine(g, m)  # LayerNorm outputs whose scale/bias go into W
        for n in _topo(m["nodes"], m["tensors"]):
            if n.output[0] in biased.values():
                continue  # an Add folded into the 1x1 conv before it
            ins = [rename.get(i, i) for i in n.input]
            out = rename[n.output[0]]
            c = m["chans"][n.output[0]]
            if n.op_type == "LayerNormalization":
                new += self._layer_norm(g, n, ins, out, c, affine=n.output[0] not in affine)
            elif n.op_type == "MatMul":
                new.append(self._conv1x1(g, m, n, ins[0], rename, biased, affine))
            else:
                consts = []
                for j, i in enumerate(n.input):
                    v = g.const(i) if i not in m["tensors"] else None
                    if v is not None and n.op_type in _BINARY and v.size == c and v.size > 1:
                        ins[j] = g.add_const(i + "_nchw", v.reshape(1, c, 1, 1))
                    if v is not None:
                        consts.append(j)
                if n.op_type in ("Add", "Mul") and consts == [0]:
                    ins.reverse()  # the tensor first, the constant second
                node = onnx.NodeProto()
                node.CopyFrom(n)
                del node.input[:]
                node.input.extend(ins)
                node.output[0] = out
                new.append(node)
        _drop_value_info(g, m["tensors"] | {e.output[0] for e in m["exits"]})
        return new + extra

    def _conv1x1(
        self,
        g: Graph,
        m: dict[str, Any],
        n: onnx.NodeProto,
        x: str,
        rename: dict[str, str],
        biased: dict[str, str],
        affine: dict[str, tuple[np.ndarray, np.ndarray | None]],
    ) -> onnx.NodeProto:
        """``x @ W (+ b)`` as a 1x1 conv; a LayerNorm affine before it folded in:
        ``(γ·x + β) @ W + b = x @ (diag(γ)·W) + (β @ W + b)``."""
        w = g.const(n.input[1])
        assert w is not None
        w64 = w.astype(np.float64)
        bias = np.zeros(w.shape[1])
        out = rename[n.output[0]]
        add = biased.get(n.output[0])
        if add is not None:  # the Linear's bias Add: the conv's bias
            out = rename[add]
            add_node = next(a for a in m["nodes"] if a.output[0] == add)
            b = next(g.const(i) for i in add_node.input if i != n.output[0])
            assert b is not None
            bias = bias + b.reshape(-1)
        if n.input[0] in affine:
            gamma, beta = affine[n.input[0]]
            if beta is not None:
                bias = bias + beta.astype(np.float64) @ w64
            w64 = gamma.astype(np.float64)[:, None] * w64
        ins = [x, g.add_const(n.name + "_w1x1", np.ascontiguousarray(w64.T)[:, :, None, None]
                              .astype(w.dtype))]  # fmt: skip
        if add is not None or n.input[0] in affine:
            ins.append(g.add_const(n.name + "_b1x1", bias.astype(w.dtype)))
        return helper.make_node("Conv", ins, [out], kernel_shape=[1, 1], name=n.name + "_1x1")

    def _foldable_affine(
        self, g: Graph, m: dict[str, Any]
    ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """LayerNorm output -> (scale, bias) when its only consumer is a Linear."""
        found = {}
        for n in m["nodes"]:
            if n.op_type != "LayerNormalization":
                continue
            user = g.only_consumer(n.output[0])
            if user is None or user.op_type != "MatMul" or user.input[0] != n.output[0]:
                continue
            scale = g.const(n.input[1])
            bias = g.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if scale is not None:
                found[n.output[0]] = (scale.reshape(-1), None if bias is None else bias.reshape(-1))
        return found

    def _linear_biases(self, g: Graph, m: dict[str, Any]) -> dict[str, str]:
        """MatMul output -> the output of the ``+ bias`` Add right after it (foldable)."""
        found = {}
        for n in m["nodes"]:
            if n.op_type != "MatMul":
                continue
            add = g.only_consumer(n.output[0])
            if add is None or add.op_type != "Add" or add.output[0] not in m["tensors"]:
                continue
            other = [i for i in add.input if i != n.output[0]]
            b = g.const(other[0]) if len(other) == 1 else None
            if b is not None and b.size == m["chans"][n.output[0]] and b.size > 1:
                found[n.output[0]] = add.output[0]
        return found

    def _layer_norm(
        self, g: Graph, n: onnx.NodeProto, ins: list[str], out: str, c: int, *, affine: bool
    ) -> list[onnx.NodeProto]:
        """LayerNorm over axis 1: (x - mean) / sqrt(var + eps) · scale + bias."""
        eps = float(attr(n, "epsilon", 1e-5))
        base = n.name + "_c"
        x = ins[0]
        t = {k: g.fresh(f"{base}_{k}") for k in ("mu", "xc", "sq", "var", "ve", "sd", "y", "ys")}  # fmt: skip
        nodes = [
            helper.make_node("ReduceMean", [x], [t["mu"]], axes=[1], keepdims=1,
                             name=f"{base}_mean"),
            helper.make_node("Sub", [x, t["mu"]], [t["xc"]], name=f"{base}_centre"),
            helper.make_node("Mul", [t["xc"], t["xc"]], [t["sq"]], name=f"{base}_square"),
            helper.make_node("ReduceMean", [t["sq"]], [t["var"]], axes=[1], keepdims=1,
                             name=f"{base}_var"),
            helper.make_node("Add", [t["var"], g.add_const(f"{base}_eps",
                             np.array(eps, np.float32))], [t["ve"]], name=f"{base}_eps"),
            helper.make_node("Sqrt", [t["ve"]], [t["sd"]], name=f"{base}_sqrt"),
        ]  # fmt: skip
        scale = g.const(n.input[1])
        bias = g.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        assert scale is not None
        y = t["y"] if bias is not None else out
        if not affine:  # scale and bias are folded into the Linear after it
            nodes.append(helper.make_node("Div", [t["xc"], t["sd"]], [out], name=f"{base}_norm"))
            return nodes
        # x / sqrt(v): TFLiteConverter turns it into MUL(x, RSQRT(v)), both int8 builtins
        # (a Reciprocal of the Sqrt stays a float SQRT and DIV)
        nodes.append(helper.make_node("Div", [t["xc"], t["sd"]], [t["ys"]], name=f"{base}_norm"))
        nodes.append(helper.make_node(
            "Mul", [t["ys"], g.add_const(f"{base}_scale", scale.reshape(1, c, 1, 1))], [y],
            name=f"{base}_scale"))  # fmt: skip
        if bias is not None:
            nodes.append(helper.make_node(
                "Add", [y, g.add_const(f"{base}_bias", bias.reshape(1, c, 1, 1))], [out],
                name=f"{base}_bias"))  # fmt: skip
        return nodes

    def ensures(self, g: Graph) -> str | None:
        left = [m["entry"].name for m in self.requires(g)]
        return f"channels-last islands left: {', '.join(left[:3])}" if left else None


def _topo(nodes: list[onnx.NodeProto], tensors: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every island input is produced before it is used."""
    ready = {t for t in tensors if not any(t in n.output for n in nodes)}
    out: list[onnx.NodeProto] = []
    left = list(nodes)
    while left:
        for n in left:
            if all(i not in tensors or i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
                left.remove(n)
                break
        else:  # a cycle cannot happen in ONNX; keep the given order
            return out + left
    return out


def _drop_value_info(g: Graph, names: set[str]) -> None:
    """Forget recorded shapes of tensors whose layout changed (shape inference redoes it)."""
    vi = [v for v in g.model.graph.value_info if v.name not in names]
    del g.model.graph.value_info[:]
    g.model.graph.value_info.extend(vi)
