"""Recovery fine-tuning after pruning: a short built-in loop, or the user's own function.

The built-in loop trains with Adam for a few epochs on the training data, in batches, with a
fixed seed (same data and options → same weights). Loss ``auto`` picks cross-entropy for
integer labels, MSE for float targets, and with no labels ``distill``: MSE against the
unpruned model's outputs on the same inputs (the pruned model learns to imitate the original).

A user callback is ``fn(model) -> model`` (a Python callable or a ``module:fn`` /
``path/file.py:fn`` spec); it may train in place and return the same model, or return another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from toolchain.errors import DataError, ModelLoadError, PruneError
from toolchain.progress import ProgressFn, no_progress
from toolchain.prune.data import Dataset
from toolchain.prune.metric import predict
from toolchain.pyref import load_object, user_code

log = logging.getLogger(__name__)

LOSSES = ("auto", "ce", "mse", "distill")


@dataclass(frozen=True)
class FinetuneOptions:
    """The built-in loop: ``epochs`` passes over the data, Adam at ``lr``, ``batch_size``."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    loss: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise PruneError(
                f"unknown loss {self.loss!r}", hint=f"choose one of {', '.join(LOSSES)}"
            )
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise PruneError(
                f"fine-tune options out of range: epochs={self.epochs}, "
                f"batch_size={self.batch_size}, lr={self.lr}",
                hint="epochs ≥ 0, batch size ≥ 1, learning rate > 0",
            )


def resolve_loss(loss: str, data: Dataset) -> str:
    """The loss actually used for ``loss`` on ``data`` (``auto`` resolved)."""
    if loss == "auto":
        if data.y is None:
            return "distill"
        return "ce" if data.is_classification else "mse"
    if loss == "ce" and not data.is_classification:
        raise DataError("cross-entropy needs integer class labels with the training data")
    if loss == "mse" and data.y is None:
        raise DataError("MSE needs float targets with the training data (or use loss 'distill')")
    return loss


def finetune(
    model: nn.Module,
    train: Dataset,
    *,
    options: FinetuneOptions = FinetuneOptions(),
    teacher: nn.Module | None = None,
    progress: ProgressFn = no_progress,
) -> nn.Module:
    """Train ``model`` in place on ``train``; returns it (in eval mode).

    ``teacher`` (the unpruned model) is needed for the ``distill`` loss. The caller checks the
    data shapes first (:func:`toolchain.prune.data.check_inputs` / ``check_targets``).
    """
    loss_name = resolve_loss(options.loss, train)
    if loss_name == "distill":
        if teacher is None:
            raise PruneError("the 'distill' loss needs the unpruned model as teacher")
        targets = predict(teacher, train.x)
    else:
        assert train.y is not None  # resolve_loss guarantees it
        targets = train.y
    x_all = torch.from_numpy(np.ascontiguousarray(train.x))
    y_all = torch.from_numpy(np.ascontiguousarray(targets))
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.mse_loss
    if loss_name == "ce":
        probs = outputs_probabilities(model, train.x[: options.batch_size])
        loss_fn = nll_of_probabilities if probs else nn.functional.cross_entropy
        if probs:
            log.info("the model outputs probabilities (softmax): training on log(p)")
    n = len(train)
    steps_per_epoch = (n + options.batch_size - 1) // options.batch_size
    total = steps_per_epoch * options.epochs
    log.info("fine-tune: %d epochs × %d steps, loss %s", options.epochs, steps_per_epoch, loss_name)
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        gen = torch.Generator().manual_seed(options.seed)
        opt = torch.optim.Adam(model.parameters(), lr=options.lr)
        model.train()
        done = 0
        progress("fine-tune", 0, total)
        for _ in range(options.epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, options.batch_size):
                idx = order[i : i + options.batch_size]
                if len(idx) < 2 and _has_batchnorm(model):
                    continue  # BatchNorm cannot train on a batch of one
                opt.zero_grad(set_to_none=True)
                out = model(x_all[idx])
                loss = loss_fn(out, y_all[idx])
                if not torch.isfinite(loss):
                    raise PruneError(
                        f"fine-tuning diverged (loss {float(loss)})",
                        hint="lower the learning rate (--lr) or normalise the data",
                    )
                loss.backward()
                opt.step()
                done += 1
                progress("fine-tune", done, total)
        progress("fine-tune", total, total)
        recalibrate_batchnorm(model, x_all, batch_size=max(options.batch_size, 64))
    model.eval()
    return model


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, *, batch_size: int = 64) -> None:
    """Re-estimate every BatchNorm's running mean/variance on up to 2,048 samples of ``x``.

    After pruning, the layers that lost input channels produce differently distributed
    outputs; with a slow BN momentum (Keras ports use 0.01) a short fine-tune leaves the
    running statistics far from the new ones and the model does well in train mode but badly
    in eval mode. A cumulative average over a pass of the data fixes that (no gradients).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    try:
        with torch.no_grad():
            for i in range(0, min(len(x), 2048), batch_size):
                if len(x[i : i + batch_size]) > 1:
                    model(x[i : i + batch_size])
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom


def outputs_probabilities(model: nn.Module, x: np.ndarray) -> bool:
    """Whether the model's outputs are probabilities (≥ 0, rows summing to 1: a final softmax).

    Cross-entropy on probabilities would apply softmax twice; such models train on log(p).
    """
    out = predict(model, x)
    rows = out.reshape(len(out), -1)
    return bool((rows >= 0).all() and np.allclose(rows.sum(1), 1.0, atol=1e-4))


def nll_of_probabilities(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.nll_loss(torch.log(p.clamp_min(1e-8)), y)


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def resolve_callback(
    spec: str | Callable[[nn.Module], nn.Module],
) -> Callable[[nn.Module], nn.Module]:
    """A fine-tune callback from a callable or a ``module:fn`` / ``file.py:fn`` spec."""
    fn = (
        spec
        if callable(spec)
        else load_object(spec, what="fine-tune callback", error=ModelLoadError)
    )
    if not callable(fn):
        raise ModelLoadError(f"fine-tune callback: {spec} is not a function")
    return fn


def run_callback(fn: Callable[[nn.Module], nn.Module], model: nn.Module) -> nn.Module:
    """Call the user's fine-tune function; it must return an ``nn.Module``."""
    try:
        with user_code("the fine-tune callback", PruneError):
            out = fn(model)
    except PruneError:
        raise
    except Exception as exc:  # user code
        raise PruneError(f"the fine-tune callback raised {type(exc).__name__}: {exc}") from exc
    if out is None:
        out = model  # trained in place and returned nothing
    if not isinstance(out, nn.Module):
        raise PruneError(
            f"the fine-tune callback returned a {type(out).__name__}, not an nn.Module"
        )
    return out.eval()
