"""Pruning that shrinks the deployed model, and fitting a model to a target's budget.

Public API (see docs/prune.md):

* :func:`prune` — what ``edgedeploy prune`` does: load, (analyse,) prune, fine-tune,
  (convert before/after,) write ``out_dir``; returns a :class:`PruneResult`;
* :func:`fit` — ``edgedeploy prune --target``: search the ratio for a budget, write the best;
* :func:`prune_model` — pruning of an in-memory ``nn.Module`` (no files);
* :func:`fit_to_budget` with :class:`Budget` — the search itself (no files);
* :func:`sensitivity` — prune each group of coupled layers alone, measure the metric;
* :class:`FinetuneOptions`, :class:`Dataset`, :func:`load_data` — fine-tuning and data.
"""

from toolchain.prune.budget import Budget, BudgetResult, Candidate, fit_to_budget
from toolchain.prune.core import PruneResult, prune_model
from toolchain.prune.data import Dataset
from toolchain.prune.data import load as load_data
from toolchain.prune.finetune import FinetuneOptions
from toolchain.prune.pipeline import fit, prune
from toolchain.prune.sensitivity import Sensitivity, sensitivity

__all__ = [
    "Budget",
    "BudgetResult",
    "Candidate",
    "Dataset",
    "FinetuneOptions",
    "PruneResult",
    "Sensitivity",
    "fit",
    "fit_to_budget",
    "load_data",
    "prune",
    "prune_model",
    "sensitivity",
]
