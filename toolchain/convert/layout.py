"""Remove the layout-only TRANSPOSE ops that the NCHW → NHWC change leaves in a .tflite.

PyTorch flattens a conv output in NCHW order; the TFLite graph holds it in NHWC, so the
converters insert ``TRANSPOSE(0,3,1,2) → RESHAPE(N,-1)`` before the linear layer. The same
reordering can instead be folded into the linear layer's weight columns: drop the TRANSPOSE,
let the RESHAPE flatten the NHWC tensor, and permute the FULLY_CONNECTED weights to match.
In an int8 graph this is exact (a TRANSPOSE keeps scale and zero point; per-channel weight
scales belong to output rows, which do not move), so outputs are bit-identical.

Handled: TRANSPOSE (batch axis fixed) → one or more RESHAPEs to ``(N, K)`` → any mix of
FULLY_CONNECTED (as its input) and last-axis CONCATENATIONs that end in FULLY_CONNECTEDs.

A CONCATENATION whose inputs are all TRANSPOSEs with one permutation ``P`` and whose
readers are all TRANSPOSEs that undo ``P`` (onnx2tf's NCHW concatenation between NHWC
layers: DLA's aggregation nodes) becomes one CONCATENATION of the untransposed inputs on
axis ``P[axis]``: exact, since a TRANSPOSE keeps scale and zero point.

A region of elementwise ops and keep-dims reductions entered through TRANSPOSEs with one
permutation ``P`` and left only through TRANSPOSEs that undo it (onnx2tf's NCHW channel
LayerNorm between NHWC convolutions: ConvNeXt's downsampling norm) is computed in the
source layout instead: both transposes go, the region's tensors and rank-4 constants take
the source layout and the reduction axes are mapped through ``P`` (checked bit-exact, like
every fold, by the pipeline).

A TRANSPOSE read only by reductions (MEAN, SUM, ...) that reduce every axis it moves
(onnx2tf's NCHW copy of an NHWC map for a mean over ``(C, H, W)``: MobileViT v2's
one-group GroupNorms) is dropped and the reductions read its source, their axes mapped
through the permutation: the same values are reduced, bit-exact.

A TRANSPOSE right after a graph input or right before a graph output is also layout only:
it is dropped, and the input or output takes the other layout, which the result reports
(``input_perms`` / ``output_perms``) so that the tensor specs say which bytes to feed.
A TRANSPOSE anywhere else is left alone and shows up in the graph-lint counts.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolchain.convert import flatbuf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold_layout_transposes` did: the new bytes and how many ops it removed.

    ``input_perms``/``output_perms`` map a subgraph input/output position to the permutation
    of the TRANSPOSE dropped there: the new input is ``old_input.transpose(perm)``; the new
    output is the tensor whose ``.transpose(perm)`` was the old output.
    """

    data: bytes
    removed: int
    folded_into: tuple[str, ...]  # names of the weight tensors whose columns were permuted
    input_perms: dict[int, tuple[int, ...]] = field(default_factory=dict)
    output_perms: dict[int, tuple[int, ...]] = field(default_factory=dict)


def compose_input_perm(old: tuple[int, ...], dropped: tuple[int, ...]) -> tuple[int, ...]:
    """PyTorch → new input layout, after dropping a TRANSPOSE(``dropped``) at the input."""
    return tuple(old[i] for i in dropped)


def compose_output_perm(old: tuple[int, ...], dropped: tuple[int, ...]) -> tuple[int, ...]:
    """PyTorch → new output layout, after dropping a TRANSPOSE(``dropped``) at the output."""
    inv = [int(i) for i in np.argsort(dropped)]
    return tuple(old[i] for i in inv)


def fold_layout_transposes(data: bytes) -> FoldResult:
    """Fold every foldable TRANSPOSE → RESHAPE → FULLY_CONNECTED chain (see module doc).

    Returns the input bytes unchanged (``removed == 0``) when nothing matched.
    """
    model = flatbuf.unpack(data)
    removed = 0
    folded: list[str] = []
    for sg in model.subgraphs:
        while True:
            done = _fold_one(model, sg)
            if done is None:
                break
            removed += 1
            folded.extend(done)
        _hoist_quantize(model, sg)
        while True:
            gone = _sink_concat(model, sg) or _sink_region(model, sg) or _sink_reduce(model, sg)
            if not gone:
                break
            removed += gone
    in_perms, out_perms = _drop_io_transposes(model, model.subgraphs[0])
    removed += len(in_perms) + len(out_perms)
    if not removed:
        return FoldResult(data, 0, ())
    flatbuf.compact(model)
    log.info(
        "removed %d layout TRANSPOSE op(s) (weights permuted: %s; inputs %s, outputs %s)",
        removed,
        ", ".join(folded) or "none",
        sorted(in_perms),
        sorted(out_perms),
    )
    return FoldResult(flatbuf.pack(model), removed, tuple(folded), in_perms, out_perms)


def _perm_of(model: Any, sg: Any, op: Any) -> tuple[int, ...] | None:
    """The constant permutation of a TRANSPOSE op (None for any other op)."""
    if flatbuf.op_name(model, op) != "TRANSPOSE":
        return None
    perm_tensor = sg.tensors[int(op.inputs[1])]
    if not _is_constant(model, perm_tensor):
        return None
    return tuple(int(p) for p in flatbuf.buffer_array(model, perm_tensor).reshape(-1))


def _same_quant(a: Any, b: Any) -> bool:
    qa, qb = a.quantization, b.quantization
    if qa is None or qb is None:
        return qa is None and qb is None
    return bool(
        np.array_equal(np.asarray(qa.scale), np.asarray(qb.scale))
        and np.array_equal(np.asarray(qa.zeroPoint), np.asarray(qb.zeroPoint))
    )


def _hoist_quantize(model: Any, sg: Any) -> int:
    """Swap every TRANSPOSE → QUANTIZE pair (the TRANSPOSE read by that QUANTIZE alone)
    into QUANTIZE → TRANSPOSE: the int16x8 converter requantizes each input of a
    CONCATENATION after onnx2tf's NCHW transpose (DLA in int16x8), which hides the
    transposes from :func:`_sink_concat`. Exact: a QUANTIZE acts elementwise and a
    TRANSPOSE keeps scale and zero point. The number of pairs swapped."""
    ops = sg.operators or []
    users = flatbuf.tensor_users(sg)
    producer = {int(t): i for i, op in enumerate(ops) for t in op.outputs}
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    swapped = 0
    for b, qop in enumerate(ops):
        if flatbuf.op_name(model, qop) != "QUANTIZE":
            continue
        mid = int(qop.inputs[0])
        a = producer.get(mid)
        if a is None or _perm_of(model, sg, ops[a]) is None:
            continue
        if users.get(mid) != [b] or mid in graph_outputs:
            continue
        top, src, dst = ops[a], int(ops[a].inputs[0]), int(qop.outputs[0])
        m, d = sg.tensors[mid], sg.tensors[dst]
        # the middle tensor now holds the quantized values in the source layout
        m.type, m.quantization = d.type, copy.deepcopy(d.quantization)
        m.shape = list(sg.tensors[src].shape)
        m.shapeSignature = copy.deepcopy(sg.tensors[src].shapeSignature)
        qop.inputs, qop.outputs = [src], [mid]
        top.inputs, top.outputs = [mid, int(top.inputs[1])], [dst]
        ops[a], ops[b] = qop, top  # the QUANTIZE runs where the TRANSPOSE ran
        producer[mid], producer[dst] = a, b
        swapped += 1
    if swapped:
        log.debug("moved %d QUANTIZE op(s) before their TRANSPOSE", swapped)
    return swapped


def _sink_concat(model: Any, sg: Any) -> int:
    """Concatenate the sources of same-permutation TRANSPOSEs directly when every reader of
    the result transposes it back (see module doc); the number of ops removed (0: none)."""
    ops = sg.operators or []
    users = flatbuf.tensor_users(sg)
    producer = {int(t): i for i, op in enumerate(ops) for t in op.outputs}
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    for cop in ops:
        if flatbuf.op_name(model, cop) != "CONCATENATION" or cop.builtinOptions is None:
            continue
        ins = [int(t) for t in cop.inputs]
        in_ops = [producer.get(t) for t in ins]
        if any(i is None for i in in_ops):
            continue
        perms = [_perm_of(model, sg, ops[i]) for i in in_ops if i is not None]
        perm = perms[0]
        if perm is None or any(p != perm for p in perms):
            continue
        out = int(cop.outputs[0])
        readers = users.get(out, [])
        if out in graph_outputs or not readers:
            continue
        back = [_perm_of(model, sg, ops[r]) for r in readers]
        if any(q is None or [perm[k] for k in q] != list(range(len(perm))) for q in back):
            continue
        new_out = [int(ops[r].outputs[0]) for r in readers]
        if any(not _same_quant(sg.tensors[t], sg.tensors[out]) for t in new_out):
            continue
        if any(t in graph_outputs for t in new_out[1:]):
            continue
        rank = len(perm)
        axis = int(cop.builtinOptions.axis)
        cop.builtinOptions.axis = perm[axis % rank]
        cop.inputs = [int(ops[i].inputs[0]) for i in in_ops if i is not None]
        cop.outputs = [new_out[0]]
        for other in new_out[1:]:  # every reader of a duplicate back-transpose reads the first
            for op in ops:
                op.inputs = [new_out[0] if int(t) == other else int(t) for t in op.inputs]
        drop = set(readers)
        after = flatbuf.tensor_users(sg)
        for i in in_ops:
            t = int(ops[i].outputs[0]) if i is not None else -1
            if i is not None and not after.get(t) and t not in graph_outputs:
                drop.add(i)
        sg.operators = [op for k, op in enumerate(ops) if k not in drop]
        return len(drop)
    return 0


#: ops that act elementwise (with broadcasting) on every input: layout does not matter
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "LOGISTIC",
                "TANH", "RELU", "RELU6", "HARD_SWISH", "ABS", "NEG", "MAXIMUM", "MINIMUM",
                "EXP", "GELU", "LEAKY_RELU", "QUANTIZE", "DEQUANTIZE"}  # fmt: skip
#: reductions whose second input holds the axes (layout-free with keep_dims)
_REDUCE = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"}
_MAX_REGION = 64


def _sink_region(model: Any, sg: Any) -> int:
    """Compute a transposed elementwise/reduction region in the source layout (see module
    doc); the number of TRANSPOSE ops removed (0: none found)."""
    ops = sg.operators or []
    users = flatbuf.tensor_users(sg)
    producer = {int(t): i for i, op in enumerate(ops) for t in op.outputs}
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    for ei, eop in enumerate(ops):
        perm = _perm_of(model, sg, eop)
        if perm is None or len(perm) != 4 or perm == (0, 1, 2, 3):
            continue
        plan = _region(model, sg, ops, users, producer, graph_outputs, ei, perm)
        if plan is None:
            continue
        entries, region, exits, consts, axes = plan
        inv = [int(i) for i in np.argsort(perm)]
        source = {int(ops[e].outputs[0]): int(ops[e].inputs[0]) for e in entries}
        for r in region:
            op = ops[r]
            op.inputs = [source.get(int(t), int(t)) for t in op.inputs]
            for t in op.outputs:
                ten = sg.tensors[int(t)]
                ten.shape = [int(ten.shape[i]) for i in inv]
                if ten.shapeSignature is not None and len(ten.shapeSignature) == 4:
                    ten.shapeSignature = [int(ten.shapeSignature[i]) for i in inv]
        consts = {_own(model, sg, ops, region, c) for c in consts}
        axes = {_own(model, sg, ops, region, c) for c in axes}
        for c in consts:
            ten = sg.tensors[c]
            flatbuf.set_buffer_array(model, sg, c, flatbuf.buffer_array(model, ten).transpose(inv))
            ten.shape = [int(ten.shape[i]) for i in inv]
        for c in axes:
            ax = flatbuf.buffer_array(model, sg.tensors[c])
            flatbuf.set_buffer_array(model, sg, c, np.array([perm[int(a) % 4] for a in
                                                             ax.reshape(-1)], ax.dtype))  # fmt: skip
        for x in exits:  # readers of the back-transpose read the region tensor itself
            old, new = int(ops[x].outputs[0]), int(ops[x].inputs[0])
            for op in ops:
                op.inputs = [new if int(t) == old else int(t) for t in op.inputs]
        drop = set(exits)
        after = flatbuf.tensor_users(sg)
        for e in entries:
            t = int(ops[e].outputs[0])
            if not after.get(t) and t not in graph_outputs:
                drop.add(e)
        sg.operators = [op for k, op in enumerate(ops) if k not in drop]
        return len(drop)
    return 0


def _sink_reduce(model: Any, sg: Any) -> int:
    """Drop a TRANSPOSE read only by reductions that reduce every axis it moves (onnx2tf's
    NCHW mean over ``(C, H, W)`` of an NHWC tensor: MobileViT v2's one-group GroupNorms):
    the reductions read the source with their axes mapped through the permutation. The
    reduced values and the kept axes are the same, so the outputs are bit-identical; the
    number of ops removed (0: none)."""
    ops = sg.operators or []
    users = flatbuf.tensor_users(sg)
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    for ti, top in enumerate(ops):
        perm = _perm_of(model, sg, top)
        if perm is None or perm == tuple(range(len(perm))):
            continue
        src, dst = int(top.inputs[0]), int(top.outputs[0])
        readers = users.get(dst, [])
        if dst in graph_outputs or not readers:
            continue
        if not _same_quant(sg.tensors[src], sg.tensors[dst]):
            continue
        ok = True
        for r in readers:
            rop = ops[r]
            if flatbuf.op_name(model, rop) not in _REDUCE or int(rop.inputs[0]) != dst:
                ok = False
                break
            axes_t = sg.tensors[int(rop.inputs[1])]
            if not _is_constant(model, axes_t):
                ok = False
                break
            rank = len(perm)
            axes = {int(a) % rank for a in flatbuf.buffer_array(model, axes_t).reshape(-1)}
            if any(perm[i] != i for i in range(rank) if i not in axes):
                ok = False
                break
        if not ok:
            continue
        region = set(readers)
        for r in readers:
            c = _own(model, sg, ops, region, int(ops[r].inputs[1]))
            ax = flatbuf.buffer_array(model, sg.tensors[c])
            flatbuf.set_buffer_array(model, sg, c, np.array(
                [perm[int(a) % len(perm)] for a in ax.reshape(-1)], ax.dtype))  # fmt: skip
            ops[r].inputs = [src, *[int(t) for t in ops[r].inputs[1:]]]
        sg.operators = [op for k, op in enumerate(ops) if k != ti]
        return 1
    return 0


def _region(
    model: Any,
    sg: Any,
    ops: list[Any],
    users: dict[int, list[int]],
    producer: dict[int, int],
    graph_outputs: set[int],
    first: int,
    perm: tuple[int, ...],
) -> tuple[set[int], set[int], set[int], set[int], set[int]] | None:
    """(entry transposes, region ops, exit transposes, rank-4 constants, axes constants) of
    the region reached from TRANSPOSE ``first``; None when it is not a closed region."""
    entries, region, exits = {first}, set(), set()
    todo = [int(ops[first].outputs[0])]
    seen: set[int] = set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in graph_outputs:
            return None
        for u in users.get(t, []):
            if u in region or u in exits:
                continue
            uop = ops[u]
            name = flatbuf.op_name(model, uop)
            q = _perm_of(model, sg, uop)
            if q is not None:
                if [perm[k] for k in q] != [0, 1, 2, 3] or int(uop.outputs[0]) in graph_outputs:
                    return None
                exits.add(u)
                continue
            if name not in _ELEMENTWISE and name not in _REDUCE:
                return None
            if name in _REDUCE:
                opts = uop.builtinOptions
                if opts is None or not getattr(opts, "keepDims", False):
                    return None
            region.add(u)
            if len(region) > _MAX_REGION:
                return None
            todo.extend(int(x) for x in uop.outputs)
            for i in (int(x) for x in uop.inputs):
                p = producer.get(i)
                if p is not None and p not in entries and _perm_of(model, sg, ops[p]) == perm:
                    entries.add(p)  # another way in, with the same permutation
                    todo.append(i)
    consts: set[int] = set()
    axes: set[int] = set()
    for r in region:
        name = flatbuf.op_name(model, ops[r])
        for k, i in enumerate(int(x) for x in ops[r].inputs):
            if i < 0:
                continue
            ten = sg.tensors[i]
            if _is_constant(model, ten):
                qz = ten.quantization
                if qz is not None and qz.scale is not None and len(qz.scale) > 1:
                    return None
                if name in _REDUCE and k == 1:
                    axes.add(i)
                elif len(ten.shape) == 4:
                    consts.add(i)
                elif int(np.prod(ten.shape)) != 1:
                    return None  # a lower-rank constant broadcasts along other axes
                continue
            p = producer.get(i)
            if p is None or (p not in region and p not in entries):
                return None  # a non-constant input from outside the region
    for e in entries:  # every reader of an entry's output is in the region or an exit
        if any(u not in region and u not in exits for u in users.get(int(ops[e].outputs[0]), [])):
            return None
    return (entries, region, exits, consts, axes) if region and exits else None


def _own(model: Any, sg: Any, ops: list[Any], region: set[int], c: int) -> int:
    """Tensor ``c`` itself if only region ops read it, else a copy the region ops read."""
    if all(u in region for u in flatbuf.tensor_users(sg).get(c, [])):
        return c
    import copy

    ten = copy.deepcopy(sg.tensors[c])
    sg.tensors.append(ten)
    new = len(sg.tensors) - 1
    for r in region:
        ops[r].inputs = [new if int(t) == c else int(t) for t in ops[r].inputs]
    return new


def _drop_io_transposes(
    model: Any, sg: Any
) -> tuple[dict[int, tuple[int, ...]], dict[int, tuple[int, ...]]]:
    """Drop TRANSPOSEs that only read a graph input or only feed a graph output."""
    in_perms: dict[int, tuple[int, ...]] = {}
    out_perms: dict[int, tuple[int, ...]] = {}
    sigs = [s for s in (model.signatureDefs or []) if int(s.subgraphIndex) == 0]
    changed = True
    while changed:
        changed = False
        users = flatbuf.tensor_users(sg)
        g_in = [int(t) for t in sg.inputs]
        g_out = [int(t) for t in sg.outputs]
        for op_index, op in enumerate(sg.operators or []):
            if flatbuf.op_name(model, op) != "TRANSPOSE":
                continue
            src, dst = int(op.inputs[0]), int(op.outputs[0])
            perm_tensor = sg.tensors[int(op.inputs[1])]
            if not _is_constant(model, perm_tensor):
                continue
            perm = tuple(int(p) for p in flatbuf.buffer_array(model, perm_tensor).reshape(-1))
            if dst in g_out and src not in g_in and not users.get(dst):
                pos = g_out.index(dst)
                if pos in out_perms:
                    continue
                sg.outputs = [src if t == dst else t for t in g_out]
                _retarget(sigs, "outputs", dst, src)
                out_perms[pos] = perm
            elif src in g_in and users.get(src) == [op_index] and dst not in g_out:
                pos = g_in.index(src)
                if pos in in_perms:
                    continue
                sg.inputs = [dst if t == src else t for t in g_in]
                _retarget(sigs, "inputs", src, dst)
                in_perms[pos] = perm
            else:
                continue
            del sg.operators[op_index]
            changed = True
            break
    return in_perms, out_perms


def _retarget(sigs: list[Any], kind: str, old: int, new: int) -> None:
    for sig in sigs:
        for m in getattr(sig, kind) or []:
            if int(m.tensorIndex) == old:
                m.tensorIndex = new


def _fold_one(model: Any, sg: Any) -> list[str] | None:
    """Fold the first foldable TRANSPOSE of ``sg``; the weight names touched, or None."""
    users = flatbuf.tensor_users(sg)
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    for op_index, op in enumerate(sg.operators or []):
        if flatbuf.op_name(model, op) != "TRANSPOSE":
            continue
        src, perm_t = int(op.inputs[0]), int(op.inputs[1])
        dst = int(op.outputs[0])
        perm_tensor = sg.tensors[perm_t]
        if dst in graph_outputs or not _is_constant(model, perm_tensor):
            continue
        perm = [int(p) for p in flatbuf.buffer_array(model, perm_tensor).reshape(-1)]
        in_shape = [int(s) for s in sg.tensors[src].shape]
        if len(perm) < 2 or perm[0] != 0 or len(in_shape) != len(perm):
            continue
        # Flat position j of the transposed tensor holds element t_idx[j] of the source.
        t_idx = (
            np.arange(int(np.prod(in_shape[1:])))
            .reshape(in_shape[1:])
            .transpose([p - 1 for p in perm[1:]])
            .reshape(-1)
        )
        plan = _plan(model, sg, users, graph_outputs, dst, t_idx)
        if plan is None:
            continue
        reshapes, fc_perms = plan
        names = []
        for fc_index, newcol in fc_perms.items():
            fc = sg.operators[fc_index]
            w_index = int(fc.inputs[1])
            w = flatbuf.buffer_array(model, sg.tensors[w_index])
            w_new = np.empty_like(w)
            w_new[:, newcol] = w
            flatbuf.set_buffer_array(model, sg, w_index, w_new)
            names.append(_name(sg.tensors[w_index]))
        for r in reshapes:
            rop = sg.operators[r]
            rop.inputs = [src, *[int(t) for t in rop.inputs[1:]]]
        del sg.operators[op_index]
        return names
    return None


def _plan(
    model: Any,
    sg: Any,
    users: dict[int, list[int]],
    graph_outputs: set[int],
    dst: int,
    t_idx: np.ndarray,
) -> tuple[list[int], dict[int, np.ndarray]] | None:
    """The RESHAPE ops to rewire and, per FULLY_CONNECTED, its new column order; or None."""
    n = t_idx.size
    reshapes: list[int] = []
    fc_perms: dict[int, np.ndarray] = {}
    consumers = users.get(dst, [])
    if not consumers:
        return None
    for r in consumers:
        rop = sg.operators[r]
        if flatbuf.op_name(model, rop) != "RESHAPE" or int(rop.inputs[0]) != dst:
            return None
        out = int(rop.outputs[0])
        shape = [int(s) for s in sg.tensors[out].shape]
        if len(shape) != 2 or shape[1] != n or out in graph_outputs:
            return None
        reshapes.append(r)
        # (tensor, offset of our segment in its last axis) pairs still to follow
        todo = [(out, 0)]
        while todo:
            tensor, off = todo.pop()
            if tensor in graph_outputs:
                return None
            nxt = users.get(tensor, [])
            if not nxt:
                return None
            for u in nxt:
                uop = sg.operators[u]
                name = flatbuf.op_name(model, uop)
                if name == "FULLY_CONNECTED" and int(uop.inputs[0]) == tensor:
                    if int(uop.inputs[1]) == tensor or not _is_constant(
                        model, sg.tensors[int(uop.inputs[1])]
                    ):
                        return None
                    width = int(sg.tensors[int(uop.inputs[1])].shape[1])
                    newcol = fc_perms.setdefault(u, np.arange(width))
                    newcol[off + np.arange(n)] = off + t_idx
                elif name == "CONCATENATION" and _last_axis_concat(sg, uop):
                    cat_out = int(uop.outputs[0])
                    pos = 0
                    for t in uop.inputs:
                        if int(t) == tensor:
                            todo.append((cat_out, pos + off))
                        pos += int(sg.tensors[int(t)].shape[-1])
                else:
                    return None
    return reshapes, fc_perms


def _last_axis_concat(sg: Any, op: Any) -> bool:
    out_shape = sg.tensors[int(op.outputs[0])].shape
    axis = int(op.builtinOptions.axis) if op.builtinOptions is not None else 0
    return len(out_shape) == 2 and axis in (1, -1)


def _is_constant(model: Any, tensor: Any) -> bool:
    buf = model.buffers[int(tensor.buffer)]
    return buf.data is not None and len(buf.data) > 0


def _name(tensor: Any) -> str:
    n = tensor.name
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
