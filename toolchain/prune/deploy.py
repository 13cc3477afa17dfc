"""What a model costs once deployed: int8 TFLite bytes, TFLM arena, int8 quality.

Converts with the real converter (:func:`toolchain.convert.convert`), searches the arena with
the tflite-micro interpreter (:func:`toolchain.emit.arena.minimum_arena`) and runs the int8
model on the validation data (:func:`toolchain.convert.run_tflite`) to measure its quality
against the *unpruned float* model: top-1 accuracy with labels, and the SQNR (dB) of the int8
outputs against the unpruned float outputs always.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from toolchain.progress import ProgressFn, no_progress
from toolchain.prune.data import Dataset
from toolchain.prune.metric import accuracy, finite, sqnr_db

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployed:
    """One converted model. Sizes in bytes; ``arena_bytes`` is the searched host minimum and
    ``arena_recommended`` adds the emit stage's default margin. ``accuracy`` (0..1, int8, with
    labels) and ``sqnr_db`` (int8 against the unpruned float model) need validation data."""

    tflite_path: Path
    tflite_bytes: int
    arena_bytes: int
    arena_recommended: int
    accuracy: float | None
    sqnr_db: float | None
    convert_report: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "tflite_bytes": self.tflite_bytes,
            "arena_bytes": self.arena_bytes,
            "arena_recommended_bytes": self.arena_recommended,
            "accuracy_int8": self.accuracy,
            "sqnr_db_int8_vs_float": finite(self.sqnr_db) if self.sqnr_db is not None else None,
        }


def deploy(
    model: nn.Module,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    calib: Any,
    out_dir: Path,
    val: Dataset | None,
    reference: np.ndarray | None,
    options: Any = None,
    cache: bool = True,
    progress: ProgressFn = no_progress,
    label: str = "",
) -> Deployed:
    """Convert ``model`` into ``out_dir`` (model_int8.tflite + report.json) and measure it.

    ``reference`` is the unpruned float model's first output on ``val.x``. Raises what the
    converter and the arena search raise (ConversionError, DataError, EmitError, ...).
    """
    from toolchain.convert import convert, run_tflite
    from toolchain.emit.arena import DEFAULT_MARGIN, search_arena

    def prog(stage: str, done: int, total: int) -> None:
        progress(f"{label}{stage}", done, total)

    labels = val.y if val is not None and val.is_classification else None
    res = convert(
        model,
        calib=calib,
        out_dir=out_dir,
        input_shapes=[tuple(t.shape) for t in example_inputs],
        val=val.x if val is not None else None,
        labels=labels,
        options=options,
        cache=cache,
        progress=prog,
    )
    arena = search_arena(res.tflite_path)
    acc = sq = None
    if val is not None:
        out = run_tflite(res.tflite_path, val.x)[0]
        if labels is not None:
            acc = accuracy(out, labels)
        if reference is not None:
            sq = sqnr_db(reference, out)
    log.info("%sint8 %d B, arena %d B", label, res.tflite_bytes, arena.minimum)
    return Deployed(
        tflite_path=res.tflite_path,
        tflite_bytes=res.tflite_bytes,
        arena_bytes=arena.minimum,
        arena_recommended=DEFAULT_MARGIN.apply(arena.minimum),
        accuracy=acc,
        sqnr_db=sq,
        convert_report=res.report,
    )
