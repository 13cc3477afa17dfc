"""``prune()``: one call from a model to a smaller, checked, optionally fine-tuned model + report.

The input model is never modified: pruning works on a deep copy. The result is checked before
it is returned: it must run on the example inputs and give outputs of the same shapes, or
:class:`~toolchain.errors.PruneError` names the op (and the line of ``forward()``) that broke.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from toolchain.errors import DataError, PruneError
from toolchain.progress import ProgressFn, no_progress
from toolchain.prune import structured, unstructured
from toolchain.prune.data import Dataset, DataSpec, check_inputs, check_targets, load
from toolchain.prune.finetune import (
    FinetuneOptions,
    finetune,
    nll_of_probabilities,
    outputs_probabilities,
    resolve_callback,
    resolve_loss,
    run_callback,
)
from toolchain.prune.graph import Graph, as_tuple, explain_exception, flatten_outputs, run_model
from toolchain.prune.metric import Metric, evaluate, finite, predict, score
from toolchain.prune.stats import count_macs, count_nonzero_params, count_params

log = logging.getLogger(__name__)

METHODS = ("structured", "unstructured")

Inputs = torch.Tensor | Sequence[torch.Tensor]


@dataclass
class PruneResult:
    """The pruned model (eval mode), the example inputs it was traced with, and the report.

    ``report`` is JSON-ready (see docs/prune.md for the keys); ``metric_after`` is the metric
    on the validation data after pruning and fine-tuning (``None`` without validation data).
    """

    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    report: dict[str, Any]
    metric_before: Metric | None = None
    metric_after: Metric | None = None
    kept: dict[str, list[str]] = field(default_factory=dict)


def example_inputs_for(
    model: nn.Module,
    *,
    example_inputs: Inputs | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Example inputs from the argument, from ``input_shapes``, or from ``model.example_inputs``."""
    if example_inputs is not None:
        return as_tuple(example_inputs)
    if input_shapes:
        gen = torch.Generator().manual_seed(0)
        return tuple(torch.randn(*map(int, s), generator=gen) for s in input_shapes)
    attr = getattr(model, "example_inputs", None)
    if attr is not None:
        return as_tuple(attr() if callable(attr) else attr)
    raise PruneError(
        "the input shape of the model is unknown",
        hint="pass input_shapes=[(1, 3, 32, 32)] (CLI: --input-shape 1,3,32,32) or give the "
        "model an example_inputs attribute",
    )


def prune_model(
    model: nn.Module,
    *,
    ratio: float,
    example_inputs: Inputs | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    method: str = "structured",
    importance: str = "l1",
    layer_ratios: Mapping[str, float] | None = None,
    keep: Sequence[str] = (),
    keep_first: bool = False,
    keep_last: bool = False,
    round_to: int | None = None,
    global_ranking: bool = False,
    train: DataSpec | None = None,
    val: DataSpec | None = None,
    finetune_options: FinetuneOptions | None = None,
    callback: str | Callable[[nn.Module], nn.Module] | None = None,
    progress: ProgressFn = no_progress,
) -> PruneResult:
    """Prune ``model`` and return a smaller dense copy (the input model is not touched).

    ``ratio`` ∈ [0, 1) is the share of output channels each prunable group loses (structured)
    or of weights zeroed (unstructured); ``layer_ratios`` overrides it per layer (by module
    name; a layer's ratio applies to the whole group of layers coupled with it). ``keep`` names
    layers whose channels must not change; ``keep_first`` protects the first Conv/Linear
    layers (and the groups coupled with them), ``keep_last`` the layers that feed the output
    layers; both are off by default. The output layers themselves are always kept: they set
    the output shape. ``round_to`` rounds the channels kept to a
    multiple (e.g. 8 for CMSIS-NN). ``importance``: l1, l2, bn_scale (BatchNorm γ; groups
    without BN fall back to l1), taylor (needs ``train``), random. ``global_ranking`` ranks
    channels across groups instead of the same ratio per group.

    Fine-tuning: with ``train`` data (see :mod:`toolchain.prune.data`) the built-in loop runs
    (``finetune_options``, default 3 epochs); ``callback`` (``fn(model) -> model``) runs the
    user's own training instead. ``val`` data gives the metric before and after.

    Raises :class:`PruneError` (bad ratio, unknown layer, untraceable model, a pruned model that
    no longer runs) and :class:`DataError` (data of the wrong shape or labels).
    """
    ratio = structured.check_ratio(ratio)
    layer_ratios = dict(layer_ratios or {})
    for name, r in layer_ratios.items():
        structured.check_ratio(r, f"ratio of layer {name!r}")
    if method not in METHODS:
        raise PruneError(f"unknown method {method!r}", hint=f"choose one of {', '.join(METHODS)}")
    structured.importance_fn(importance)  # validates the name
    if round_to is not None and (isinstance(round_to, bool) or round_to < 1):
        raise PruneError(f"round_to must be a positive integer, got {round_to!r}")
    inputs = example_inputs_for(model, example_inputs=example_inputs, input_shapes=input_shapes)

    original = model
    was_training = original.training
    try:
        ref_outputs = run_model(original.eval(), inputs)
    except Exception as exc:  # the user's model: explain whatever it raised
        raise PruneError(
            f"the model does not run on inputs of shape {_shapes(inputs)}: {explain_exception(exc)}",
            hint="check --input-shape (batch first, PyTorch layout)",
        ) from exc
    finally:
        original.train(was_training)

    train_ds = load(train, what="training data") if train is not None else None
    val_ds = load(val, what="validation data") if val is not None else None
    for ds, what in ((train_ds, "training data"), (val_ds, "validation data")):
        if ds is not None:
            if len(inputs) != 1:
                raise DataError(
                    f"{what}: the built-in loop and metric take single-input models; this one "
                    f"takes {len(inputs)} inputs",
                    hint="use a fine-tune callback (--finetune-fn module:fn)",
                )
            check_inputs(ds, tuple(inputs[0].shape), what=what)
            check_targets(ds, tuple(ref_outputs[0].shape), what=what)
    if train_ds is not None:
        resolve_loss((finetune_options or FinetuneOptions()).loss, train_ds)
    if importance == "taylor" and train_ds is None:
        raise PruneError("taylor importance needs training data (gradients of the loss)")
    cb = resolve_callback(callback) if callback is not None else None

    work = copy.deepcopy(original).eval()
    graph = Graph(work, inputs)
    prunable = graph.layer_names()
    _check_names(prunable, keep, "keep")
    _check_names(prunable, layer_ratios, "layer ratio")
    kept = {
        "output": graph.output_layers(),
        "first": graph.first_layers() if keep_first else [],
        "last": _feeding(graph) if keep_last else [],
        "user": list(keep),
    }
    protected = sorted({n for names in kept.values() for n in names})
    clash = [n for n in layer_ratios if n in protected]
    if clash:
        raise PruneError(
            f"layer(s) {', '.join(clash)} have a ratio but are protected "
            f"({', '.join(k for k, v in kept.items() if set(v) & set(clash))})",
            hint="output layers are always kept; drop --keep-first/--keep-last or the --keep entry",
        )
    ref_val = predict(original, val_ds.x) if val_ds is not None else None
    metric_before = (
        score(ref_val, val_ds, ref_val) if val_ds is not None and ref_val is not None else None
    )

    params_before = count_params(original)
    nonzero_before = count_nonzero_params(original)
    macs_before = count_macs(original, inputs)
    channels_before = structured.channels_by_layer(original)

    progress("prune", 0, 1)
    groups_report: list[dict[str, Any]] = []
    if method == "structured":
        if importance == "taylor" and train_ds is not None:
            _taylor_gradients(work, train_ds, FinetuneOptions(), original)
        plans, remove = structured.plan(
            graph,
            ratio=ratio,
            layer_ratios=layer_ratios,
            ignored=protected,
            importance=importance,
            round_to=round_to,
            global_ranking=global_ranking,
        )
        structured.apply(graph, remove)
        work.zero_grad(set_to_none=True)
        groups_report = [
            {
                "root": p.group.root,
                "members": list(p.group.members),
                "channels_before": p.group.channels,
                "channels_after": p.keep,
                "ratio": round(p.ratio, 4),
                "importance": p.importance,
            }
            for p in plans
        ]
    else:
        layers = [n for n in prunable if n not in protected]
        unstructured.apply(
            work,
            ratio=ratio,
            layers=layers,
            layer_ratios=layer_ratios,
            global_ranking=global_ranking,
        )
    progress("prune", 1, 1)
    _check_runs(work, graph, inputs, ref_outputs)

    metric_pruned = evaluate(work, val_ds, ref_val) if val_ds is not None else None
    ft_report: dict[str, Any] | None = None
    if cb is not None:
        work = run_callback(cb, work)
        _check_runs(work, graph, inputs, ref_outputs)
        ft_report = {"kind": "callback", "fn": getattr(cb, "__qualname__", str(callback))}
    elif train_ds is not None:
        opts = finetune_options or FinetuneOptions()
        if opts.epochs > 0:
            finetune(work, train_ds, options=opts, teacher=original, progress=progress)
            ft_report = {
                "kind": "builtin",
                "epochs": opts.epochs,
                "batch_size": opts.batch_size,
                "lr": opts.lr,
                "loss": resolve_loss(opts.loss, train_ds),
                "samples": len(train_ds),
            }
    work.eval()
    metric_after = evaluate(work, val_ds, ref_val) if val_ds is not None else None

    report: dict[str, Any] = {
        "method": method,
        "importance": importance if method == "structured" else "l1 (weight magnitude)",
        "ratio": ratio,
        "layer_ratios": layer_ratios,
        "round_to": round_to,
        "global_ranking": global_ranking,
        "input_shapes": [list(t.shape) for t in inputs],
        "kept_layers": kept,
        "params_before": params_before,
        "params_after": count_params(work),
        "nonzero_params_before": nonzero_before,
        "nonzero_params_after": count_nonzero_params(work),
        "macs_before": macs_before,
        "macs_after": count_macs(work, inputs),
        "layers": _layers_report(channels_before, structured.channels_by_layer(work)),
        "groups": groups_report,
        "finetune": ft_report,
        "metric": _metric_report(metric_before, metric_pruned, metric_after),
    }
    if method == "unstructured":
        report["note"] = unstructured.NOTE
    return PruneResult(work, inputs, report, metric_before, metric_after, kept)


def _shapes(inputs: tuple[torch.Tensor, ...]) -> str:
    return ", ".join("×".join(map(str, t.shape)) for t in inputs)


def _check_names(prunable: list[str], names: Any, what: str) -> None:
    unknown = [n for n in names if n not in prunable]
    if unknown:
        raise PruneError(
            f"{what}: no prunable layer named {', '.join(map(repr, unknown))}",
            hint="prunable layers: " + ", ".join(prunable),
        )


def _feeding(graph: Graph) -> list[str]:
    """The Conv/Linear layers whose outputs feed the output layers (their input channels)."""
    outputs = set(graph.output_layers())
    modules = graph.modules_by_name()
    nodes = [graph.dg.module2node[modules[n]] for n in outputs]
    found: list[str] = []
    graph._walk([i for node in nodes for i in node.inputs], lambda node: node.inputs, found)
    return [n for n in found if n not in outputs]


def _check_runs(
    model: nn.Module, graph: Graph, inputs: tuple[torch.Tensor, ...], ref: list[torch.Tensor]
) -> None:
    try:
        outs = run_model(model.eval(), inputs)
    except Exception as exc:  # a broken pruned model: say which op and line
        unknown = graph.unknown_ops()
        raise PruneError(
            f"the pruned model no longer runs: {explain_exception(exc)}"
            + (f"; ops torch-pruning does not understand: {', '.join(unknown)}" if unknown else ""),
            hint="a hard-coded channel count or an op that mixes channels; keep the layers "
            "around it (--keep NAME) or write forward() with shape-agnostic ops "
            "(e.g. torch.flatten(x, 1))",
        ) from exc
    got = [tuple(t.shape) for t in outs]
    want = [tuple(t.shape) for t in ref]
    if got != want:
        raise PruneError(
            f"pruning changed the output shapes from {want} to {got}",
            hint="keep the layers that produce the outputs (--keep NAME)",
        )
    if any(not torch.isfinite(t).all() for t in outs):
        raise PruneError("the pruned model produces NaN/inf on the example inputs")


def _taylor_gradients(
    work: nn.Module, train: Dataset, opts: FinetuneOptions, teacher: nn.Module
) -> None:
    """Accumulate loss gradients on up to 256 training samples for Taylor importance."""
    n = min(len(train), 256)
    x = torch.from_numpy(np.ascontiguousarray(train.x[:n]))
    loss_name = resolve_loss(opts.loss, train)
    work.zero_grad(set_to_none=True)
    work.eval()
    with torch.enable_grad():
        out = flatten_outputs(work(x))[0]
        if loss_name == "ce" and train.y is not None:
            y_t = torch.from_numpy(train.y[:n])
            probs = outputs_probabilities(teacher, train.x[:n])
            loss = (nll_of_probabilities if probs else nn.functional.cross_entropy)(out, y_t)
        else:
            y = train.y[:n] if train.y is not None else predict(teacher, train.x[:n])
            loss = nn.functional.mse_loss(out, torch.from_numpy(y))
        loss.backward()


def _layers_report(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        name: {
            "in_before": b["in"],
            "out_before": b["out"],
            "in_after": after[name]["in"],
            "out_after": after[name]["out"],
        }
        for name, b in before.items()
        if name in after
    }


def _metric_report(
    before: Metric | None, pruned: Metric | None, after: Metric | None
) -> dict[str, Any] | None:
    if after is None:
        return None
    return {
        "name": after.name,
        "before": finite(before.value) if before else None,
        "after_prune": finite(pruned.value) if pruned else None,
        "after": finite(after.value),
        "drop": finite(before.value - after.value)
        if before and math.isfinite(before.value)
        else None,
    }
