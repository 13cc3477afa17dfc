"""Pruning that shrinks the deployed model, and fitting a model to a target's budget.

Public API (see docs/prune.md):

* :func:`prune_model` — structured (channel) or unstructured pruning of an ``nn.Module``,
  optional recovery fine-tuning, returns a :class:`PruneResult` (smaller dense model + report);
* :func:`sensitivity` — prune each group of coupled layers alone, measure the metric;
* :class:`FinetuneOptions`, :class:`Dataset`, :func:`load_data` — fine-tuning and data.
"""

from toolchain.prune.core import PruneResult, prune_model
from toolchain.prune.data import Dataset
from toolchain.prune.data import load as load_data
from toolchain.prune.finetune import FinetuneOptions
from toolchain.prune.sensitivity import Sensitivity, sensitivity

__all__ = [
    "Dataset",
    "FinetuneOptions",
    "PruneResult",
    "Sensitivity",
    "load_data",
    "prune_model",
    "sensitivity",
]
