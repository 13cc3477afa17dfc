"""Structured (channel/filter) pruning: remove whole output channels, keep the model dense.

The model is changed in place (callers pass a copy). For each prunable group of the dependency
graph (see :mod:`toolchain.prune.graph`) the channels with the lowest importance are removed
from every coupled layer at once, so residual adds, depthwise convs, concats and
squeeze-excite gates stay consistent and the result is an ordinary, smaller ``nn.Module``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from toolchain.errors import PruneError
from toolchain.prune.graph import Graph, Group

log = logging.getLogger(__name__)

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "random")


@dataclass(frozen=True)
class GroupPlan:
    """What happens to one group: ``keep`` of ``channels`` output channels stay."""

    group: Group
    ratio: float
    keep: int
    importance: str


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """A pruning ratio must be a number in [0, 1): the fraction of channels removed."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
        raise PruneError(
            f"{what} {ratio!r} is outside [0, 1)",
            hint="give the fraction of channels to remove, e.g. 0.5 removes half; 1 would remove all",
        )
    return float(ratio)


def keep_count(channels: int, ratio: float, round_to: int | None) -> int:
    """Channels kept when removing ``ratio`` of ``channels``, rounded to a multiple of ``round_to``.

    Keeps at least one channel (or one multiple), never more than ``channels``; a group smaller
    than ``round_to`` is left whole.
    """
    keep = max(1, channels - math.floor(channels * ratio + 1e-9))
    if round_to and round_to > 1:
        if channels <= round_to:
            return channels
        keep = max(round_to, int(math.floor(keep / round_to + 0.5)) * round_to)
    return min(keep, channels)


def importance_fn(name: str) -> Callable[[Any], torch.Tensor | None]:
    """The torch-pruning importance estimator called ``name`` (see :data:`IMPORTANCES`)."""
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    if name == "random":
        return tp.importance.RandomImportance()
    raise PruneError(f"unknown importance {name!r}", hint=f"choose one of {', '.join(IMPORTANCES)}")


def plan(
    graph: Graph,
    *,
    ratio: float,
    layer_ratios: Mapping[str, float],
    ignored: Sequence[str],
    importance: str,
    round_to: int | None,
    global_ranking: bool,
) -> tuple[list[GroupPlan], dict[str, list[int]]]:
    """Decide how many channels each group keeps and which ones (by importance).

    Returns the plans and, per group root, the channel indices to remove.
    """
    imp_fn = importance_fn(importance)
    fallback = importance_fn("l1")
    groups = graph.groups(ignored)
    scores: dict[str, torch.Tensor] = {}
    used: dict[str, str] = {}
    for g in groups:
        full = graph.torch_group(g.root, list(range(g.channels)))
        with torch.no_grad():
            imp = imp_fn(full)
        used[g.root] = importance
        if imp is None:  # e.g. bn_scale on a group without BatchNorm
            with torch.no_grad():
                imp = fallback(full)
            used[g.root] = "l1"
        if imp is None or len(imp) != g.channels:
            log.info("group %s: no importance (grouped layer?); left whole", g.root)
            continue
        scores[g.root] = imp.detach().float().cpu()

    ratios: dict[str, float] = {}
    for g in groups:
        per = [layer_ratios[m] for m in g.members if m in layer_ratios]
        ratios[g.root] = max(per) if per else ratio

    keeps: dict[str, int] = {}
    if global_ranking and ratio > 0:
        keeps = _global_keeps(groups, scores, ratio, layer_ratios)
    plans: list[GroupPlan] = []
    remove: dict[str, list[int]] = {}
    for g in groups:
        if g.root not in scores:
            continue
        r = ratios[g.root]
        if g.root in keeps:
            keep = keeps[g.root]
            r = 1 - keep / g.channels
        keep = keep_count(g.channels, r, round_to)
        plans.append(GroupPlan(g, r, keep, used[g.root]))
        if keep < g.channels:
            order = torch.argsort(scores[g.root], stable=True)  # least important first
            remove[g.root] = sorted(int(i) for i in order[: g.channels - keep])
    return plans, remove


def _global_keeps(
    groups: list[Group],
    scores: Mapping[str, torch.Tensor],
    ratio: float,
    layer_ratios: Mapping[str, float],
) -> dict[str, int]:
    """Rank channels across all groups (scores normalised per group by their mean)."""
    pool = [g for g in groups if g.root in scores and not any(m in layer_ratios for m in g.members)]
    if not pool:
        return {}
    norm = {g.root: scores[g.root] / (scores[g.root].mean() + 1e-12) for g in pool}
    allv = torch.cat([norm[g.root] for g in pool])
    n_remove = int(math.floor(len(allv) * ratio))
    if n_remove == 0:
        return {g.root: g.channels for g in pool}
    thresh = torch.sort(allv).values[n_remove - 1]
    return {g.root: max(1, int((norm[g.root] > thresh).sum())) for g in pool}


def apply(graph: Graph, remove: Mapping[str, list[int]]) -> None:
    """Remove the planned channels from every layer of each group (in place)."""
    for root, idxs in remove.items():
        group = graph.torch_group(root, idxs)
        if not graph.dg.check_pruning_group(group):
            log.info("group %s: torch-pruning refuses to prune it; left whole", root)
            continue
        group.prune()


def channels_by_layer(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{layer: {"in": in_channels, "out": out_channels}}`` for every Conv/Linear layer."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            out[name] = {"in": m.in_channels, "out": m.out_channels}
        elif isinstance(m, nn.Linear):
            out[name] = {"in": m.in_features, "out": m.out_features}
    return out
