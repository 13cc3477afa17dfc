"""Unstructured magnitude pruning (``torch.nn.utils.prune``): zero the smallest weights.

Honest note, repeated in every report that uses it: the tensors stay dense. Zeroed weights
are stored and multiplied like any other, so the int8 TFLite file, the TFLM arena and the
latency do not shrink; TFLite Micro has no sparse kernels. Only a later stage that exploits
sparsity (compression of the flash image, a sparse runtime) could turn zeros into savings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn
from torch.nn.utils import prune as torch_prune

NOTE = (
    "unstructured pruning zeroes weights but leaves every tensor dense: the int8 TFLite file, "
    "the TFLM arena and the MACs do not shrink (TFLite Micro has no sparse kernels); only a "
    "later stage that exploits sparsity could save anything"
)


def apply(
    model: nn.Module,
    *,
    ratio: float,
    layers: Sequence[str],
    layer_ratios: Mapping[str, float],
    global_ranking: bool,
) -> None:
    """Zero a share of the weights of ``layers`` by magnitude (L1), in place, made permanent.

    Each layer loses ``layer_ratios[name]`` (default ``ratio``) of its own weights; with
    ``global_ranking`` the layers without their own ratio are ranked together instead.
    """
    modules = dict(model.named_modules())
    shared = [(modules[n], "weight") for n in layers if n not in layer_ratios]
    if global_ranking and shared and ratio > 0:
        torch_prune.global_unstructured(
            shared, pruning_method=torch_prune.L1Unstructured, amount=ratio
        )
    for n in layers:
        r = layer_ratios.get(n, ratio)
        if (global_ranking and n not in layer_ratios) or r == 0:
            continue
        torch_prune.l1_unstructured(modules[n], "weight", amount=r)
    for n in layers:
        if torch_prune.is_pruned(modules[n]):
            torch_prune.remove(modules[n], "weight")
