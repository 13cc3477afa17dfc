"""Small helpers over an ``onnx.ModelProto`` for the rewrites (no TensorFlow).

:class:`Graph` indexes a model's main graph: producer and consumers of every tensor, constant
values (initializers and ``Constant`` nodes), static shapes (ONNX shape inference), and makes
fresh names. Rewrites change ``model.graph`` through it and call :meth:`Graph.refresh`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Graph:
    """An index over ``model.graph``; rebuild it (:meth:`refresh`) after every change."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self._counter = itertools.count()
        self.refresh()

    def refresh(self) -> None:
        g = self.model.graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in g.node:
            for o in node.output:
                self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)
        self.initializers = {t.name: t for t in g.initializer}
        self.graph_outputs = {o.name for o in g.output}
        self._shapes: dict[str, tuple[int, ...]] | None = None

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    def matches(
        self, op_type: str, match: Callable[[Graph, onnx.NodeProto], Any | None]
    ) -> list[Any]:
        """``match(self, n)`` for every node ``n`` of ``op_type``, in graph order, where it
        is not ``None`` (the usual :meth:`Rewrite.requires`)."""
        return [m for n in self.nodes if n.op_type == op_type and (m := match(self, n)) is not None]

    # --- values -------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor (initializer or Constant node output), else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_float":
                    return np.array(a.f, dtype=np.float32)
                if a.name == "value_floats":
                    return np.array(list(a.floats), dtype=np.float32)
                if a.name == "value_int":
                    return np.array(a.i, dtype=np.int64)
                if a.name == "value_ints":
                    return np.array(list(a.ints), dtype=np.int64)
        return None

    def scalar(self, name: str) -> float | None:
        v = self.const(name)
        if v is None or v.size != 1:
            return None
        return float(v.reshape(()))

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The static shape of a tensor (all dimensions known), else None."""
        if self._shapes is None:
            self._shapes = _infer_shapes(self.model)
        return self._shapes.get(name)

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.graph_outputs:
            return None
        return users[0]

    # --- changes ------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        return f"{base}__rw{next(self._counter)}"

    def add_const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def replace_nodes(
        self, old: Iterable[onnx.NodeProto], new: Iterable[onnx.NodeProto], *, at: onnx.NodeProto
    ) -> None:
        """Remove ``old`` and insert ``new`` (in order) where ``at`` stood.

        Nodes are told apart by their outputs (unique in ONNX), not by object identity:
        protobuf hands out new wrapper objects."""
        g = self.model.graph
        nodes = [_copy(n) for n in g.node]
        old_keys = {_key(n) for n in old}
        pos = next(i for i, n in enumerate(nodes) if _key(n) == _key(at))
        before = [n for n in nodes[:pos] if _key(n) not in old_keys]
        after = [n for n in nodes[pos:] if _key(n) not in old_keys]
        del g.node[:]
        g.node.extend([*before, *new, *after])
        self.refresh()

    def prune(self) -> None:
        """Drop nodes and initializers nothing reads."""
        g = self.model.graph
        needed = {o.name for o in g.output}
        keep: list[onnx.NodeProto] = []
        for node in reversed(list(g.node)):
            if any(o in needed for o in node.output):
                keep.append(node)
                needed.update(i for i in node.input if i)
        del g.node[:]
        g.node.extend(reversed(keep))
        inits = [t for t in g.initializer if t.name in needed]
        del g.initializer[:]
        g.initializer.extend(inits)
        self.refresh()


def _key(node: onnx.NodeProto) -> tuple[str, ...]:
    return tuple(node.output)


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(node)
    return c


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _infer_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes are a convenience; rewrites needing them skip
        return {}
    out: dict[str, tuple[int, ...]] = {}
    g = inferred.graph
    for vi in [*g.value_info, *g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    for t in g.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    return out


#: contrib ops the rewrites emit that ONNX shape inference does not know: output = input shape
_ELEMENTWISE_CONTRIB = {("com.microsoft", "Gelu")}


def annotate_shapes(model: onnx.ModelProto) -> None:
    """Record a static shape for every tensor (``value_info``), replacing stale entries.

    onnx2tf skips its own shape estimation when the graph holds an op onnxruntime's
    standard domain lacks (the contrib Gelu), and then trusts ``value_info`` alone: a
    tensor without a recorded shape (everything after a contrib op, for ONNX's inference)
    makes it guess layouts — seen as a silently wrong model. Inference is repeated across
    the contrib elementwise ops, whose output shape is their input's."""
    g = model.graph
    del g.value_info[:]
    for _ in range(len(g.node) + 1):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001 - leave the model without shapes rather than fail
            return
        known = {
            vi.name: vi
            for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
            if vi.type.tensor_type.HasField("shape")
        }
        added = False
        for node in g.node:
            if (node.domain, node.op_type) not in _ELEMENTWISE_CONTRIB:
                continue
            src, out = known.get(node.input[0]), node.output[0]
            if src is not None and out not in known:
                vi = onnx.ValueInfoProto()
                vi.CopyFrom(src)
                vi.name = out
                inferred.graph.value_info.append(vi)
                added = True
        del g.value_info[:]
        outputs = {o.name for o in g.output}
        g.value_info.extend(vi for vi in inferred.graph.value_info if vi.name not in outputs)
        if not added:
            return
