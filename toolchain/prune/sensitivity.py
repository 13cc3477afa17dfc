"""Per-layer sensitivity: prune one group of coupled layers at a time, measure the metric.

Each prunable group (named by its root layer) is pruned alone at each ratio, with no
fine-tuning, and the metric (:mod:`toolchain.prune.metric`) is measured on the validation
data. Groups whose metric falls fastest are the ones to spare (``keep``) or prune less
(``layer_ratios``). The result is a table (JSON-ready rows) and a PNG plot.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toolchain.errors import DataError, PruneError
from toolchain.progress import ProgressFn, no_progress
from toolchain.prune import structured
from toolchain.prune.core import example_inputs_for
from toolchain.prune.data import DataSpec, check_inputs, check_targets, load
from toolchain.prune.graph import Graph, run_model
from toolchain.prune.metric import evaluate, finite, predict, score

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.25, 0.5, 0.75)


@dataclass
class Sensitivity:
    """``rows``: one per group — root, members, channels and per-ratio metric values."""

    metric: str
    baseline: float | None
    ratios: tuple[float, ...]
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "ratios": list(self.ratios),
            "groups": self.rows,
        }

    def most_sensitive(self) -> list[str]:
        """Group roots ordered from the largest metric loss at the highest ratio to the least."""

        def loss(row: dict[str, Any]) -> float:
            v = row["metric"][-1]
            return -float("inf") if v is None else -v

        return [r["root"] for r in sorted(self.rows, key=loss, reverse=True)]

    def plot_png(self) -> bytes:
        """A line plot (metric against ratio, one line per group) as PNG bytes.

        Drawn on a figure of its own with the Agg canvas: no pyplot state, and the caller's
        matplotlib backend is left as it was."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        xs = [0.0, *self.ratios]
        for row in self.rows:
            ys = [self.baseline, *row["metric"]]
            ax.plot(
                xs,
                [float("nan") if y is None else y for y in ys],
                marker="o",
                label=row["root"],
            )
        ax.set_xlabel("share of the group's channels removed")
        ax.set_ylabel(self.metric)
        ax.set_title("Per-layer pruning sensitivity (no fine-tuning)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()


def sensitivity(
    model: nn.Module,
    *,
    val: DataSpec,
    example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    importance: str = "l1",
    round_to: int | None = None,
    progress: ProgressFn = no_progress,
) -> Sensitivity:
    """Prune each group alone at each of ``ratios`` and measure the metric on ``val``.

    The model is not modified. Output layers are never pruned. Raises :class:`PruneError`
    (bad ratio, untraceable model) and :class:`DataError` (validation data of the wrong shape).
    """
    rs = tuple(structured.check_ratio(r) for r in ratios)
    if not rs:
        raise PruneError("sensitivity analysis needs at least one ratio")
    structured.importance_fn(importance)
    inputs = example_inputs_for(model, example_inputs=example_inputs, input_shapes=input_shapes)
    ds = load(val, what="validation data")
    if len(inputs) != 1:
        raise DataError("sensitivity analysis takes single-input models")
    ref_out = run_model(copy.deepcopy(model).eval(), inputs)
    check_inputs(ds, tuple(inputs[0].shape), what="validation data")
    check_targets(ds, tuple(ref_out[0].shape), what="validation data")
    ref = predict(model, ds.x)
    base = score(ref, ds, ref)

    probe = Graph(copy.deepcopy(model), inputs)
    outputs = probe.output_layers()
    groups = probe.groups(outputs)
    total = len(groups) * len(rs)
    done = 0
    progress("sensitivity", 0, total)
    rows: list[dict[str, Any]] = []
    for g in groups:
        values: list[float | None] = []
        kept: list[int] = []
        for r in rs:
            work = copy.deepcopy(model).eval()
            graph = Graph(work, inputs)
            plans, remove = structured.plan(
                graph,
                ratio=0.0,
                layer_ratios={g.root: r},
                ignored=outputs,
                importance=importance,
                round_to=round_to,
                global_ranking=False,
            )
            structured.apply(graph, remove)
            kept.append(next((p.keep for p in plans if p.group.root == g.root), g.channels))
            values.append(finite(evaluate(work, ds, ref).value))
            done += 1
            progress("sensitivity", done, total)
        rows.append(
            {
                "root": g.root,
                "members": list(g.members),
                "channels": g.channels,
                "channels_kept": kept,
                "metric": values,
            }
        )
    return Sensitivity(base.name, finite(base.value), rs, rows)
