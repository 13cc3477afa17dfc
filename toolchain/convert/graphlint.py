"""Graph lint: is a .tflite a clean integer graph? (No TensorFlow needed.)

A model fails when an operator computes in float (any float tensor on an operator other than
the QUANTIZE/DEQUANTIZE pair at a float graph input/output), or uses a CUSTOM or Flex op.
The op histogram and the counts of the ops that cost time without computing anything
(TRANSPOSE, QUANTIZE, DEQUANTIZE, PAD, PADV2) are reported either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from toolchain.errors import GraphLintError
from toolchain.tflite_model import TFLiteModel

COUNTED_OPS = ("TRANSPOSE", "QUANTIZE", "DEQUANTIZE", "PAD", "PADV2")
FLOAT_TYPES = ("float32", "float16", "float64", "bfloat16")


@dataclass(frozen=True)
class LintReport:
    """The lint result; ``problems`` empty means a clean integer graph."""

    ops: dict[str, int]
    counts: dict[str, int]
    problems: tuple[str, ...] = field(default=())
    #: the problems that are operators computing in float (a subset of ``problems``)
    float_ops: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def lint(model: TFLiteModel) -> LintReport:
    """Lint every subgraph of ``model``."""
    problems: list[str] = []
    float_ops: list[str] = []
    for sg in model.subgraphs:
        graph_in, graph_out = set(sg.inputs), set(sg.outputs)
        for op in sg.operators:
            where = f"op #{op.index} {op.name}" + (f" (subgraph {sg.index})" if sg.index else "")
            if op.is_flex:
                problems.append(f"{where}: a Flex (TensorFlow) op; TFLite Micro cannot run it")
                continue
            if op.is_custom:
                problems.append(f"{where}: a CUSTOM op; TFLite Micro needs its own kernel")
                continue
            floats = [
                sg.tensors[t]
                for t in (*op.inputs, *op.outputs)
                if t >= 0 and sg.tensors[t].dtype in FLOAT_TYPES
            ]
            if not floats:
                continue
            if op.name == "QUANTIZE" and all(t in graph_in for t in op.inputs if t >= 0):
                continue  # float input → int at the edge
            if op.name == "DEQUANTIZE" and all(t in graph_out for t in op.outputs):
                continue  # int → float output at the edge
            names = ", ".join(f"{t.name!r} ({t.dtype})" for t in floats[:3])
            float_ops.append(f"{where} computes in float: {names}")
            problems.append(float_ops[-1])
    hist = model.op_histogram()
    counts = {name: hist.get(name, 0) for name in COUNTED_OPS}
    return LintReport(ops=hist, counts=counts, problems=tuple(problems), float_ops=tuple(float_ops))


def check(
    report: LintReport, *, source: str = "model", where: Callable[[str], str] | None = None
) -> None:
    """Raise :class:`~toolchain.errors.GraphLintError` when ``report`` has problems.

    ``where(op_name)`` may say where an operator came from (e.g. the ONNX node and PyTorch
    module); it is appended to each problem about that operator.
    """
    if report.ok:
        return
    lines = []
    for p in report.problems[:10]:
        m = re.match(r"op #\d+ (\w+)", p)
        origin = where(m.group(1)) if (where is not None and m) else ""
        lines.append(f"{p} at {origin}" if origin else p)
    shown = "\n  ".join(lines)
    more = f"\n  ... and {len(report.problems) - 10} more" if len(report.problems) > 10 else ""
    raise GraphLintError(
        f"{source} is not a clean integer graph:\n  {shown}{more}",
        hint="an op without an int8 kernel stays float; replace that layer with one that has "
        "an int8 TFLite builtin (e.g. tanh-GELU instead of exact GELU)",
    )
