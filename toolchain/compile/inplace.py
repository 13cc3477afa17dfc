"""In-place element-wise operators: an output that may take its input's bytes does.

An element-wise kernel (ADD, SUB, MUL through ``edc_binary``; the 256-entry table operators
through ``edc_lut``; int16 LOGISTIC, TANH and int16 → int16 QUANTIZE/RELU through
``edc_act16``) reads element i of its operands before it writes element i of its
output, in the output's order. So when one operand has the output's shape and size, lives in
storage that nothing reads after this operator, and is not a graph output, the output can
simply be that operand's storage: the planner then sees one buffer instead of two, which
lowers the peak where such an operator sits at it (ResNet's residual ADDs). Results are
unchanged (same arithmetic, same order).
"""

from __future__ import annotations

from toolchain.compile import cmsisnn as _cmsisnn
from toolchain.compile.ir import Graph
from toolchain.compile.planner import buffers

#: kernels that may write their output over an operand of the same shape
IN_PLACE_FUNCS = frozenset(
    {
        "edc_add_s8",
        "edc_sub_s8",
        "edc_mul_s8",
        "edc_lut_s8",
        "edc_add_s16",
        "edc_sub_s16",
        "edc_mul_s16",
        "edc_logistic_s16",
        "edc_tanh_s16",
        "edc_requant_s16_s16",
        "edc_sqdiff_s8",
        "edc_sqdiff_s16",
        "edc_rsqrt_s16",
        *_cmsisnn.IN_PLACE_FUNCS,
    }
)


def apply(graph: Graph) -> list[int]:
    """Alias outputs onto dying same-shape operands (in place); returns the op indices."""
    done: list[int] = []
    for op in graph.ops:
        if op.func not in IN_PLACE_FUNCS or op.parts or len(op.outputs) != 1:
            continue
        y = graph.tensors[op.outputs[0]]
        if y.alias_of is not None or op.outputs[0] in graph.outputs:
            continue
        last = {b.tensor: b.last for b in buffers(graph)}
        keep = {graph.storage(t) for t in graph.outputs}
        if graph.keep_inputs:
            keep |= {graph.storage(t) for t in graph.inputs}
        for x in op.inputs:
            tx = graph.tensors[x]
            s = graph.storage(x)
            if tx.dtype != y.dtype or tx.nbytes != y.nbytes:
                continue
            if op.func != "edc_lut_s8" and tx.shape != y.shape:
                continue
            if s in keep or last.get(s) != op.index:
                continue
            y.alias_of = x
            done.append(op.index)
            break
    return done
