"""Remove the layout-only TRANSPOSE ops that the NCHW → NHWC change leaves in a .tflite.

PyTorch flattens a conv output in NCHW order; the TFLite graph holds it in NHWC, so the
converters insert ``TRANSPOSE(0,3,1,2) → RESHAPE(N,-1)`` before the linear layer. The same
reordering can instead be folded into the linear layer's weight columns: drop the TRANSPOSE,
let the RESHAPE flatten the NHWC tensor, and permute the FULLY_CONNECTED weights to match.
In an int8 graph this is exact (a TRANSPOSE keeps scale and zero point; per-channel weight
scales belong to output rows, which do not move), so outputs are bit-identical.

Handled: TRANSPOSE (batch axis fixed) → one or more RESHAPEs to ``(N, K)`` → any mix of
FULLY_CONNECTED (as its input) and last-axis CONCATENATIONs that end in FULLY_CONNECTEDs.
A TRANSPOSE whose result reaches anything else (a graph output, an ADD, ...) is left alone
and shows up in the graph-lint counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolchain.convert import flatbuf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold_layout_transposes` did: the new bytes and how many ops it removed."""

    data: bytes
    removed: int
    folded_into: tuple[str, ...]  # names of the weight tensors whose columns were permuted


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
    if not removed:
        return FoldResult(data, 0, ())
    flatbuf.compact(model)
    log.info("folded %d layout TRANSPOSE op(s) into %s", removed, ", ".join(folded))
    return FoldResult(flatbuf.pack(model), removed, tuple(folded))


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
