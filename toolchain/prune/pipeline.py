"""The ``edgedeploy prune`` command as one Python call: :func:`prune` and :func:`fit`.

:func:`prune` loads the model (any source :mod:`toolchain.modelsrc` takes), optionally runs
the sensitivity analysis, prunes (and fine-tunes), optionally converts the unpruned and the
pruned model to int8 to measure what pruning saved once deployed, and writes everything to
``out_dir`` — all files or none (:func:`toolchain.fsutil.staged_outputs`):

* ``model_pruned.pt2`` (or ``model_pruned.pt``, TorchScript) — the pruned model;
* ``prune_report.json`` — see docs/prune.md;
* ``sensitivity.png`` — with a sensitivity analysis;
* ``model_int8.tflite`` + ``report.json`` (the pruned model's conversion) and
  ``baseline/model_int8.tflite`` + ``baseline/report.json`` (the unpruned one's) — with ``calib``.

:func:`fit` searches the ratio for a budget (:mod:`toolchain.prune.budget`) and writes the
same files for the chosen candidate, with the search in ``prune_report.json["budget"]``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toolchain.errors import PruneError
from toolchain.fsutil import atomic_write_json, check_output_path, staged_outputs
from toolchain.progress import ProgressFn, no_progress
from toolchain.prune import output
from toolchain.prune.budget import Budget, BudgetResult, fit_to_budget
from toolchain.prune.core import PruneResult, prune_model
from toolchain.prune.data import DataSpec, load
from toolchain.prune.deploy import Deployed, deploy
from toolchain.prune.metric import finite, predict
from toolchain.prune.sensitivity import Sensitivity, sensitivity

log = logging.getLogger(__name__)

REPORT = "prune_report.json"


def load_source(
    model: Any,
    *,
    weights: str | os.PathLike[str] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """An ``nn.Module`` and its example inputs from any source :mod:`toolchain.modelsrc` takes,
    except a ``torch.export`` program (refused up front: :class:`PruneError`)."""
    from toolchain.modelsrc import EXPORT_SUFFIXES, load_model

    if isinstance(model, torch.export.ExportedProgram) or (
        isinstance(model, str | os.PathLike) and Path(model).suffix in EXPORT_SUFFIXES
    ):
        raise PruneError(
            f"{model if not isinstance(model, torch.export.ExportedProgram) else 'the program'}"
            ": a torch.export program (.pt2) cannot be pruned: its graph is frozen (no "
            "train(), no layer surgery)",
            hint="give the model's code instead: path/file.py:factory (with --weights "
            "state_dict.pt; torch.save(torch.export.load(f).state_dict, 'w.pt') gets the "
            ".pt2's weights out)",
        )

    if isinstance(model, nn.Module) and weights is None:
        from toolchain.prune.core import example_inputs_for

        return model, example_inputs_for(model, input_shapes=input_shapes)
    loaded = load_model(
        model, weights=Path(weights) if weights else None, input_shapes=input_shapes
    )
    return loaded.module, loaded.example_inputs


def _deployed_report(before: Deployed, after: Deployed) -> dict[str, Any]:
    """The report keys that need both conversions (sizes in bytes)."""
    metric = "accuracy" if after.accuracy is not None else "sqnr_db"

    def value(d: Deployed) -> float | None:
        if metric == "accuracy":
            return d.accuracy
        return finite(d.sqnr_db) if d.sqnr_db is not None else None

    return {
        "tflite_bytes_before": before.tflite_bytes,
        "tflite_bytes_after": after.tflite_bytes,
        "arena_bytes_before": before.arena_bytes,
        "arena_bytes_after": after.arena_bytes,
        "arena_recommended_bytes_before": before.arena_recommended,
        "arena_recommended_bytes_after": after.arena_recommended,
        "int8": {
            "metric": metric,
            "before": value(before),
            "after": value(after),
            "sqnr_db_vs_unpruned_float_before": before.summary()["sqnr_db_int8_vs_float"],
            "sqnr_db_vs_unpruned_float_after": after.summary()["sqnr_db_int8_vs_float"],
        },
    }


def prune(
    model: Any,
    *,
    ratio: float | None,
    out_dir: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    val: DataSpec | None = None,
    labels: Any = None,
    train: DataSpec | None = None,
    train_labels: Any = None,
    calib: Any = None,
    convert_options: Any = None,
    sensitivity_ratios: Sequence[float] | None = None,
    model_format: str = "pt2",
    cache: bool = True,
    progress: ProgressFn = no_progress,
    **prune_kwargs: Any,
) -> PruneResult:
    """Prune ``model`` (and analyse, convert, write), mirroring ``edgedeploy prune``.

    ``ratio`` None skips pruning (sensitivity analysis only). ``prune_kwargs`` go to
    :func:`~toolchain.prune.prune_model`. With ``calib`` the unpruned and the pruned model are
    both converted (needs ``out_dir``) and the report gains ``tflite_bytes_before/after``,
    ``arena_bytes_before/after`` and the int8 metric. Writes nothing when anything fails.
    """
    if ratio is None and not sensitivity_ratios:
        raise PruneError("nothing to do", hint="give a ratio (--ratio) and/or --sensitivity")
    if calib is not None and out_dir is None:
        raise PruneError("converting needs an output folder (out_dir / --out)")
    if out_dir is not None:
        check_output_path(out_dir, option="--out")
    from toolchain.modelsrc import precheck

    precheck(model, weights=weights)
    name = output.file_name(model_format)
    module, inputs = load_source(model, weights=weights, input_shapes=input_shapes)
    val_ds = load(val, labels=labels, what="validation data") if val is not None else None
    train_ds = load(train, labels=train_labels, what="training data") if train is not None else None

    sens: Sensitivity | None = None
    if sensitivity_ratios:
        if val_ds is None:
            raise PruneError("the sensitivity analysis needs validation data (--val)")
        sens = sensitivity(
            module,
            val=val_ds,
            example_inputs=inputs,
            ratios=sensitivity_ratios,
            importance=prune_kwargs.get("importance", "l1"),
            round_to=prune_kwargs.get("round_to"),
            progress=progress,
        )
    if ratio is not None:
        result = prune_model(
            module,
            ratio=ratio,
            example_inputs=inputs,
            train=train_ds,
            val=val_ds,
            progress=progress,
            **prune_kwargs,
        )
    else:
        result = PruneResult(module, inputs, {"method": None, "ratio": None})
    if sens is not None:
        result.report["sensitivity"] = sens.to_dict()
    if out_dir is None:
        return result

    with staged_outputs(out_dir) as stage:
        if ratio is not None:
            output.write_model(stage / name, result.model, inputs, model_format)
            result.report["model_file"] = name
        if sens is not None:
            (stage / "sensitivity.png").write_bytes(sens.plot_png())
        if calib is not None and ratio is not None:
            reference = predict(module, val_ds.x) if val_ds is not None else None
            common: dict[str, Any] = {
                "example_inputs": inputs,
                "calib": calib,
                "val": val_ds,
                "reference": reference,
                "options": convert_options,
                "cache": cache,
                "progress": progress,
            }
            before = deploy(module, out_dir=stage / "baseline", label="baseline: ", **common)
            after = deploy(result.model, out_dir=stage, label="pruned: ", **common)
            result.report.update(_deployed_report(before, after))
        atomic_write_json(stage / REPORT, result.report)
    return result


def fit(
    model: Any,
    *,
    calib: Any,
    budget: Budget,
    out_dir: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    val: DataSpec | None = None,
    labels: Any = None,
    train: DataSpec | None = None,
    train_labels: Any = None,
    model_format: str = "pt2",
    progress: ProgressFn = no_progress,
    **kwargs: Any,
) -> BudgetResult:
    """Fit ``model`` to ``budget`` (see :func:`~toolchain.prune.fit_to_budget`) and write the
    chosen candidate to ``out_dir`` (pruned model, int8 model, report.json, prune_report.json).

    Raises :class:`~toolchain.errors.BudgetError` with nothing written when no candidate fits.
    """
    name = output.file_name(model_format)  # a bad format fails before the search
    check_output_path(out_dir, option="--out")
    module, inputs = load_source(model, weights=weights, input_shapes=input_shapes)
    val_ds = load(val, labels=labels, what="validation data") if val is not None else None
    train_ds = load(train, labels=train_labels, what="training data") if train is not None else None
    with staged_outputs(out_dir) as stage:
        res = fit_to_budget(
            module,
            calib=calib,
            budget=budget,
            val=val_ds,
            train=train_ds,
            example_inputs=inputs,
            work_dir=stage / ".candidates",
            progress=progress,
            **kwargs,
        )
        best = res.best
        output.write_model(stage / name, best.prune.model, inputs, model_format)
        base = next(c for c in res.candidates if c.ratio == 0.0)
        report = dict(best.prune.report)
        report["model_file"] = name
        report.update(_deployed_report(base.deployed, best.deployed))
        report["budget"] = res.to_dict()
        src = best.deployed.tflite_path.parent
        for f in ("model_int8.tflite", "report.json"):
            os.replace(src / f, stage / f)
        atomic_write_json(stage / REPORT, report)
        shutil.rmtree(stage / ".candidates", ignore_errors=True)
    best.deployed = dataclasses.replace(
        best.deployed, tflite_path=Path(out_dir) / "model_int8.tflite"
    )
    return res
