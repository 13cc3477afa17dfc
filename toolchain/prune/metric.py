"""The quality metric used before/after pruning, in sensitivity analysis and budget search.

Higher is better for every metric:

* ``accuracy`` — top-1 accuracy of the first output, when the data has integer labels;
* ``sqnr_db`` — signal-to-quantization(-or-pruning)-noise ratio in dB of the first output
  against float targets, or, with no labels, against the unpruned model's outputs on the same
  inputs. ``math.inf`` means identical outputs (reported as ``null`` in JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from toolchain.prune.data import Dataset
from toolchain.prune.graph import flatten_outputs

BATCH = 256


@dataclass(frozen=True)
class Metric:
    name: str  # "accuracy" | "sqnr_db"
    value: float


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The first output of ``model`` on ``x`` (float32, N first), computed in batches, eval mode."""
    was_training = model.training
    model.eval()
    outs = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), BATCH):
                out = model(torch.from_numpy(np.ascontiguousarray(x[i : i + BATCH])))
                first = out if isinstance(out, torch.Tensor) else _first_tensor(out)
                outs.append(first.detach().float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs)


def _first_tensor(out: object) -> torch.Tensor:
    flat = flatten_outputs(out)
    if not flat:
        raise TypeError("the model returned no tensor")
    return flat[0]


def sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """10·log10(Σref² / Σ(ref−actual)²); ``inf`` when identical."""
    ref = reference.astype(np.float64).ravel()
    noise = float(np.sum((ref - actual.astype(np.float64).ravel()) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits.reshape(len(logits), -1), axis=1) == labels))


def evaluate(model: nn.Module, data: Dataset, reference: np.ndarray | None) -> Metric:
    """The metric of ``model`` on ``data`` (``reference``: the unpruned model's outputs)."""
    out = predict(model, data.x)
    return score(out, data, reference)


def score(out: np.ndarray, data: Dataset, reference: np.ndarray | None) -> Metric:
    """The metric for outputs ``out`` already computed on ``data.x``."""
    if data.is_classification and data.y is not None:
        return Metric("accuracy", accuracy(out, data.y))
    if data.y is not None:
        return Metric("sqnr_db", sqnr_db(data.y, out))
    if reference is None:
        raise ValueError("no labels and no reference outputs")
    return Metric("sqnr_db", sqnr_db(reference, out))


def finite(v: float | None) -> float | None:
    """``v`` for JSON: ``None`` for NaN/±inf."""
    return v if v is not None and math.isfinite(v) else None
