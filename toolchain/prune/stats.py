"""Model size figures for the pruning report: parameters, non-zero parameters and MACs."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Parameters (weights and biases) the model stores, zeros included."""
    return int(sum(p.numel() for p in model.parameters()))


def count_nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero."""
    return int(sum(int(torch.count_nonzero(p.detach())) for p in model.parameters()))


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of the Conv and Linear layers for one batch of ``inputs``.

    Counted from the real output shapes of one forward pass (forward hooks), per call, so a
    layer used twice counts twice. Element-wise ops, pooling and normalisation are not
    counted: they are a small share and TFLite fuses most of them into the convolutions.
    """
    total = 0

    def hook(m: nn.Module, _inp: Any, out: Any) -> None:
        nonlocal total
        if not isinstance(out, torch.Tensor):
            return
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            per_out = (m.in_channels // m.groups) * math.prod(m.kernel_size)
            total += out.numel() * per_out
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    model.eval()  # never touch BatchNorm statistics of the caller's model
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
