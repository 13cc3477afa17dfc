"""Fit a model to a target's budget: search the pruning ratio, converting each candidate.

A candidate is the model pruned at one ratio (and fine-tuned, when training data or a
callback is given), converted to int8 and measured (:mod:`toolchain.prune.deploy`). It *fits*
when ``tflite_bytes + flash_reserve ≤ flash budget`` and ``recommended arena + ram_reserve ≤
RAM budget`` (the arena is the searched host minimum plus the emit stage's default margin),
and it is *good enough* when the int8 accuracy is at most ``max_accuracy_drop`` percentage
points below the unpruned float model's and / or its SQNR against the unpruned float model
is at least ``min_sqnr`` dB.

Size shrinks and quality falls as the ratio grows, so the search is a bisection: the
smallest ratio (best quality) whose candidate fits, to within ``tolerance``. If that one is
not good enough, no larger ratio will be: :class:`~toolchain.errors.BudgetError`. If even
``max_ratio`` does not fit: ``BudgetError`` with what the smallest candidate needs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from toolchain.errors import BudgetError, PruneError
from toolchain.progress import ProgressFn, no_progress
from toolchain.prune.core import Inputs, PruneResult, example_inputs_for, prune_model
from toolchain.prune.data import DataSpec, load
from toolchain.prune.deploy import Deployed, deploy
from toolchain.prune.metric import accuracy, finite, predict
from toolchain.prune.structured import check_ratio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """Flash and RAM limits in bytes (``None``: no limit) and what the rest of the firmware
    takes (``*_reserve``), subtracted before the model and arena are compared."""

    flash_bytes: int | None
    ram_bytes: int | None
    flash_reserve: int = 0
    ram_reserve: int = 0

    @classmethod
    def for_target(cls, name: str, *, flash_reserve: int = 0, ram_reserve: int = 0) -> Budget:
        from toolchain.targets import load_target

        t = load_target(name)
        return cls(t.memory.flash_bytes, t.memory.ram_bytes, flash_reserve, ram_reserve)

    def fits_flash(self, model_bytes: int) -> bool:
        return self.flash_bytes is None or model_bytes + self.flash_reserve <= self.flash_bytes

    def fits_ram(self, arena_bytes: int) -> bool:
        return self.ram_bytes is None or arena_bytes + self.ram_reserve <= self.ram_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "flash_reserve": self.flash_reserve,
            "ram_reserve": self.ram_reserve,
        }


@dataclass
class Candidate:
    ratio: float
    prune: PruneResult = field(repr=False)
    deployed: Deployed = field(repr=False)
    fits: bool
    good: bool
    accuracy_drop_pts: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            **self.deployed.summary(),
            "params": self.prune.report["params_after"],
            "macs": self.prune.report["macs_after"],
            "accuracy_drop_pts": self.accuracy_drop_pts,
            "fits": self.fits,
            "good_enough": self.good,
        }


@dataclass
class BudgetResult:
    """The chosen candidate (``best``), every candidate tried, the budget and the baseline
    float accuracy (0..1, with labels)."""

    best: Candidate
    candidates: list[Candidate]
    budget: Budget
    accuracy_float: float | None

    @property
    def ratio(self) -> float:
        return self.best.ratio

    @property
    def model(self) -> nn.Module:
        return self.best.prune.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget.to_dict(),
            "chosen_ratio": self.best.ratio,
            "accuracy_float_before": self.accuracy_float,
            "candidates": [c.to_dict() for c in sorted(self.candidates, key=lambda c: c.ratio)],
        }


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def fit_to_budget(
    model: nn.Module,
    *,
    calib: Any,
    budget: Budget,
    val: DataSpec | None = None,
    max_accuracy_drop: float | None = None,
    min_sqnr: float | None = None,
    example_inputs: Inputs | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    max_ratio: float = 0.9,
    tolerance: float = 0.05,
    work_dir: str | Path | None = None,
    convert_options: Any = None,
    progress: ProgressFn = no_progress,
    **prune_kwargs: Any,
) -> BudgetResult:
    """Search the smallest pruning ratio whose int8 model fits ``budget`` and is good enough.

    ``prune_kwargs`` go to :func:`~toolchain.prune.prune_model` (``importance``, ``keep``,
    ``round_to``, ``train``, ``finetune_options``, ``callback``...). ``max_accuracy_drop`` is in
    percentage points (int8 pruned vs float unpruned, needs labelled ``val``); ``min_sqnr`` in
    dB (int8 pruned vs float unpruned on ``val``). Each candidate is converted into a folder
    under ``work_dir``; by default a temporary folder of which only the chosen candidate's
    files are kept (``result.best.deployed.tflite_path``).

    Raises :class:`BudgetError` (exit code 4) when no candidate fits or is good enough,
    :class:`PruneError` for bad options; the input model is never modified.
    """
    max_ratio = check_ratio(max_ratio, "max_ratio")
    if not 0 < tolerance < 1:
        raise PruneError(f"tolerance {tolerance} must be in (0, 1)")
    if budget.flash_bytes is None and budget.ram_bytes is None:
        raise PruneError("the budget has neither a flash nor a RAM limit")
    if "ratio" in prune_kwargs:
        raise PruneError("fit_to_budget searches the ratio itself; do not pass ratio=")
    inputs = example_inputs_for(model, example_inputs=example_inputs, input_shapes=input_shapes)
    val_ds = load(val, what="validation data") if val is not None else None
    if max_accuracy_drop is not None and (val_ds is None or not val_ds.is_classification):
        raise PruneError("max_accuracy_drop needs validation data with integer class labels")
    if min_sqnr is not None and val_ds is None:
        raise PruneError("min_sqnr needs validation data")
    reference = predict(model, val_ds.x) if val_ds is not None else None
    acc_float = None
    if reference is not None and val_ds is not None and val_ds.y is not None:
        acc_float = accuracy(reference, val_ds.y) if val_ds.is_classification else None

    own_dir = work_dir is None
    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="edgedeploy-"))
    tried: dict[float, Candidate] = {}

    def evaluate(ratio: float) -> Candidate:
        r = round(ratio, 4)
        if r in tried:
            return tried[r]
        progress("budget search", len(tried), 0)
        pr = prune_model(
            model,
            ratio=r,
            example_inputs=inputs,
            val=val_ds,
            progress=progress,
            **prune_kwargs,
        )
        dep = deploy(
            pr.model,
            example_inputs=inputs,
            calib=calib,
            out_dir=root / f"ratio_{r:.4f}",
            val=val_ds,
            reference=reference,
            options=convert_options,
            progress=progress,
            label=f"ratio {r:.2f}: ",
        )
        fits = budget.fits_flash(dep.tflite_bytes) and budget.fits_ram(dep.arena_recommended)
        drop = None
        if acc_float is not None and dep.accuracy is not None:
            drop = round((acc_float - dep.accuracy) * 100, 3)
        good = (max_accuracy_drop is None or (drop is not None and drop <= max_accuracy_drop)) and (
            min_sqnr is None or (dep.sqnr_db is not None and dep.sqnr_db >= min_sqnr)
        )
        c = Candidate(r, pr, dep, fits, good, drop)
        tried[r] = c
        log.info(
            "ratio %.3f: %d B flash, %d B arena, drop %s, sqnr %s → fits=%s good=%s",
            r,
            dep.tflite_bytes,
            dep.arena_recommended,
            drop,
            finite(dep.sqnr_db) if dep.sqnr_db is not None else None,
            fits,
            good,
        )
        return c

    try:
        best = _search(evaluate, max_ratio, tolerance, budget, max_accuracy_drop, min_sqnr)
    except BaseException:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
        raise
    if own_dir:  # keep only the chosen candidate's files
        for c in tried.values():
            if c is not best:
                shutil.rmtree(c.deployed.tflite_path.parent, ignore_errors=True)
    return BudgetResult(best, sorted(tried.values(), key=lambda c: c.ratio), budget, acc_float)


def _search(
    evaluate: Any,
    max_ratio: float,
    tolerance: float,
    budget: Budget,
    max_drop: float | None,
    min_sqnr: float | None,
) -> Candidate:
    base = evaluate(0.0)
    if base.fits:
        if not base.good:
            raise BudgetError(
                "the unpruned model fits the budget but already misses the quality bar "
                f"({_quality(base, max_drop, min_sqnr)})",
                hint="relax --max-accuracy-drop / --min-sqnr; pruning only lowers quality",
            )
        return base
    top = evaluate(max_ratio)
    if not top.fits:
        d = top.deployed
        raise BudgetError(
            f"cannot fit; the smallest candidate (ratio {top.ratio:g}) needs "
            f"{_kb(d.tflite_bytes + budget.flash_reserve)} flash / "
            f"{_kb(d.arena_recommended + budget.ram_reserve)} RAM, the budget is "
            f"{_limit(budget.flash_bytes)} flash / {_limit(budget.ram_bytes)} RAM",
            hint="choose a larger target, a smaller model, or lower the reserves",
        )
    lo, hi = 0.0, top
    while hi.ratio - lo > tolerance:
        mid = evaluate((lo + hi.ratio) / 2)
        if mid.fits:
            hi = mid
        else:
            lo = mid.ratio
    if not hi.good:
        raise BudgetError(
            f"cannot fit with the required quality: the least pruned candidate that fits "
            f"(ratio {hi.ratio:g}, {_kb(hi.deployed.tflite_bytes)} flash / "
            f"{_kb(hi.deployed.arena_recommended)} arena) has {_quality(hi, max_drop, min_sqnr)}",
            hint="relax --max-accuracy-drop / --min-sqnr, fine-tune longer (--epochs), or "
            "choose a larger target",
        )
    return hi


def _quality(c: Candidate, max_drop: float | None, min_sqnr: float | None) -> str:
    parts = []
    if max_drop is not None:
        parts.append(f"accuracy drop {c.accuracy_drop_pts} points > {max_drop:g}")
    if min_sqnr is not None:
        parts.append(f"SQNR {c.deployed.sqnr_db:.1f} dB < {min_sqnr:g} dB")
    return ", ".join(parts)


def _limit(n: int | None) -> str:
    return "unlimited" if n is None else _kb(n)
