"""A small CNN trained on scikit-learn's bundled digits (8×8 grey images, 10 classes).

Real data with no download: ``sklearn.datasets.load_digits`` ships 1,797 images. Training
takes a few seconds on a CPU and is deterministic (seeded data split, initialisation and
batch order; single-threaded while training), so the demo, the tests and the pruning stage
all see the same model and the same numbers.

Python::

    from toolchain.zoo.digits import train_digits
    d = train_digits()                 # DigitsModel: model, x_train/y_train, x_val/y_val, labels
    d.model(torch.from_numpy(d.x_val)) # logits, N×10

Command line (``module:fn`` sources)::

    edgedeploy convert toolchain.zoo.digits:model --calib toolchain.zoo.digits:calibration \\
        --val toolchain.zoo.digits:validation --out out/digits

Arrays are float32 in the PyTorch layout N×1×S×S (S = ``size``, 8 unless upsampled), pixel
values scaled to 0..1; labels are int64 class indices 0..9.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LABELS: tuple[str, ...] = tuple(str(d) for d in range(10))


class DigitsCNN(nn.Module):
    """conv16-bn-relu, conv32-bn-relu, maxpool 2, flatten → 64 → 10 (logits)."""

    def __init__(self, *, size: int = 8, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        if size < 4 or size % 2:
            raise ValueError(f"size must be even and ≥ 4, got {size}")
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 2 * width * (size // 2) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, classes)
        )
        self.example_inputs = (torch.zeros(1, 1, size, size),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class DigitsModel:
    """A trained :class:`DigitsCNN` (eval mode) with its data split."""

    model: nn.Module
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    labels: tuple[str, ...]
    #: top-1 accuracy of ``model`` on the validation split, 0..1
    val_accuracy: float


def load_data(
    *, size: int = 8, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val) from ``load_digits``, stratified, seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]  # N×1×8×8 in 0..1
    if size != 8:
        x = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear").numpy()
    y = digits.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=val_fraction, random_state=seed, stratify=y
    )
    return (
        np.ascontiguousarray(x_tr),
        np.ascontiguousarray(y_tr),
        np.ascontiguousarray(x_va),
        np.ascontiguousarray(y_va),
    )


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (0..1) of ``model`` on arrays ``x``/``y``."""
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def _lr(step: int, total: int, peak: float) -> float:
    """One-cycle schedule: linear warm-up over 30 % of the steps, then cosine decay to 0."""
    warm = max(1, int(0.3 * total))
    if step < warm:
        return peak * (0.1 + 0.9 * step / warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_digits(*, size: int = 8, epochs: int = 8, width: int = 16, seed: int = 0) -> DigitsModel:
    """Train :class:`DigitsCNN` (Adam, batch 64, one-cycle LR); about 2–4 s on one CPU core.

    Adam is written out here: ``torch.optim`` imports ``torch._dynamo`` on first use, which
    costs more than the whole training.
    """
    x_tr, y_tr, x_va, y_va = load_data(size=size, seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identical results run to run
    try:
        torch.manual_seed(seed)
        model = DigitsCNN(size=size, width=width)
        params = [p for p in model.parameters() if p.requires_grad]
        m1 = [torch.zeros_like(p) for p in params]
        m2 = [torch.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        total = epochs * -(-len(x_tr) // 64)
        gen = torch.Generator().manual_seed(seed)
        xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        model.train()
        step = 0
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                idx = order[i : i + 64]
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(xt[idx]), yt[idx]).backward()
                step += 1
                lr = _lr(step - 1, total, 1e-2)
                with torch.no_grad():
                    for p, a, b in zip(params, m1, m2, strict=True):
                        g = p.grad
                        if g is None:
                            continue
                        a.mul_(beta1).add_(g, alpha=1 - beta1)
                        b.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                        denom = (b / (1 - beta2**step)).sqrt_().add_(eps)
                        p.addcdiv_(a, denom, value=-lr / (1 - beta1**step))
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return DigitsModel(model, x_tr, y_tr, x_va, y_va, LABELS, accuracy(model, x_va, y_va))


@functools.cache
def trained() -> DigitsModel:
    """The default :func:`train_digits` result, trained once per process."""
    return train_digits()


def model() -> nn.Module:
    """Factory for ``edgedeploy convert toolchain.zoo.digits:model``: the trained CNN (8×8)."""
    return trained().model


def calibration() -> np.ndarray:
    """Calibration data for :func:`model`: the training split, N×1×8×8 float32."""
    return trained().x_train


def validation() -> np.ndarray:
    """Validation data for :func:`model`: the validation split, N×1×8×8 float32."""
    return trained().x_val


def validation_labels() -> np.ndarray:
    """Class indices of :func:`validation` (int64)."""
    return trained().y_val
