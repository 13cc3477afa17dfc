"""``python -m benchmarks.run prune``: ResNet-8 and DS-CNN pruned 25/50/75 %, fine-tuned on real
data, converted to int8: TFLite bytes, TFLM arena, MACs, accuracy and SQNR per ratio.

Real data with no download: scikit-learn's bundled digits (1,797 8×8 images, 10 classes,
stratified 80/20 split from :func:`toolchain.zoo.digits.load_data`).

* ResNet-8 (3×32×32, raw pixels 0..255 like the MLPerf IC model): digits upsampled to
  32×32 (bilinear), replicated to 3 channels, scaled to 0..255.
* DS-CNN (1×49×10, an MFCC window in the KWS model): there is no speech data in any package
  we can install, so the task is digit recognition with each 8×8 image resized to 49×10
  (bilinear) and standardised — a real 2-D signal of the input's shape, not keyword spotting.
  The model keeps its 12 outputs; labels use the first 10.

Each model is trained from scratch (PyTorch's init, fixed seed), then for each ratio pruned
(L1, library defaults: only the output layer kept), fine-tuned a few epochs with the
built-in loop, and converted by the real converter with 200 calibration samples; the arena
is the smallest with which the tflite-micro interpreter allocates and invokes the model.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import say, update_readme, write_result
from toolchain.prune import FinetuneOptions, prune_model
from toolchain.prune.data import Dataset
from toolchain.prune.deploy import deploy
from toolchain.prune.finetune import finetune
from toolchain.prune.metric import accuracy, predict
from toolchain.prune.stats import count_macs, count_params
from toolchain.zoo.digits import load_data
from toolchain.zoo.mlperf_tiny import ds_cnn, resnet8

RATIOS = (0.25, 0.5, 0.75)


def _resnet8_data() -> tuple[Dataset, Dataset]:
    x_tr, y_tr, x_va, y_va = load_data(size=32)
    rgb = lambda x: np.ascontiguousarray(np.repeat(x, 3, axis=1) * 255.0, dtype=np.float32)  # noqa: E731
    return Dataset(rgb(x_tr), y_tr), Dataset(rgb(x_va), y_va)


def _dscnn_data() -> tuple[Dataset, Dataset]:
    x_tr, y_tr, x_va, y_va = load_data(size=8)

    def shape(x: np.ndarray) -> np.ndarray:
        z = F.interpolate(torch.from_numpy(x), size=(49, 10), mode="bilinear").numpy()
        return np.ascontiguousarray((z - 0.3) / 0.4, dtype=np.float32)

    return Dataset(shape(x_tr), y_tr), Dataset(shape(x_va), y_va)


CASES: dict[str, Any] = {
    "resnet8": (resnet8, _resnet8_data),
    "ds_cnn": (ds_cnn, _dscnn_data),
}


def _row(ratio: float, pr: Any, dep: Any, acc_pruned: float | None, secs: float) -> dict[str, Any]:
    rep = pr.report if pr is not None else None
    conv = dep.convert_report
    return {
        "ratio": ratio,
        "params": rep["params_after"] if rep else None,
        "macs": rep["macs_after"] if rep else None,
        "tflite_bytes": dep.tflite_bytes,
        "arena_bytes": dep.arena_bytes,
        "accuracy_float_pruned": acc_pruned,
        "accuracy_float": (rep["metric"]["after"] if rep else None),
        "accuracy_int8": dep.accuracy,
        "sqnr_db_int8_vs_own_float": conv["fidelity"][next(iter(conv["fidelity"]))]["sqnr_db"],
        "channels": {k: v["out_after"] for k, v in rep["layers"].items()} if rep else None,
        "seconds": round(secs, 1),
    }


def run_case(name: str, *, base_epochs: int, ft_epochs: int, work: Path) -> dict[str, Any]:
    factory, data_fn = CASES[name]
    train, val = data_fn()
    torch.manual_seed(0)
    model = factory()
    inputs = model.example_inputs
    t0 = time.perf_counter()
    say(f"[{name}] training {base_epochs} epochs on {len(train)} digits")
    finetune(model, train, options=FinetuneOptions(epochs=base_epochs, lr=2e-3, batch_size=32))
    train_s = time.perf_counter() - t0
    ref = predict(model, val.x)
    calib = train.x[:200]
    common = {"example_inputs": inputs, "calib": calib, "val": val, "reference": ref, "cache": True}
    t0 = time.perf_counter()
    base = deploy(model, out_dir=work / name / "base", **common)
    rows = [_row(0.0, None, base, None, time.perf_counter() - t0)]
    rows[0].update(
        params=count_params(model),
        macs=count_macs(model, inputs),
        accuracy_float=accuracy(ref, val.y),
    )
    say(f"[{name}] unpruned: {base.tflite_bytes} B int8, arena {base.arena_bytes} B")
    for r in RATIOS:
        t0 = time.perf_counter()
        pr = prune_model(
            model,
            ratio=r,
            train=train,
            val=val,
            finetune_options=FinetuneOptions(epochs=ft_epochs, lr=1e-3),
        )
        dep = deploy(pr.model, out_dir=work / name / f"r{r}", **common)
        rows.append(_row(r, pr, dep, pr.report["metric"]["after_prune"], time.perf_counter() - t0))
        say(
            f"[{name}] {r:.0%}: {dep.tflite_bytes} B int8, arena {dep.arena_bytes} B, acc {dep.accuracy}"
        )
    return {
        "model": name,
        "train_samples": len(train),
        "val_samples": len(val),
        "base_epochs": base_epochs,
        "finetune_epochs": ft_epochs,
        "train_seconds": round(train_s, 1),
        "rows": rows,
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['when']} on {result['machine']} "
        f"(torch {result['torch']}, {result['threads']} thread for training).\n",
        "| model | pruned | params | MACs | int8 bytes | TFLM arena B | float acc % (no FT → FT) "
        "| int8 acc % | SQNR int8 vs float dB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        base = case["rows"][0]
        for row in case["rows"]:
            rel = lambda k: f" ({row[k] / base[k]:.2f}×)" if row["ratio"] else ""  # noqa: E731, B023
            acc = (
                _pct(row["accuracy_float"])
                if row["ratio"] == 0
                else f"{_pct(row['accuracy_float_pruned'])} → {_pct(row['accuracy_float'])}"
            )
            lines.append(
                f"| {case['model']} | {row['ratio']:.0%} | {row['params']:,} | {row['macs']:,}{rel('macs')} "
                f"| {row['tflite_bytes']:,}{rel('tflite_bytes')} | {row['arena_bytes']:,}{rel('arena_bytes')} "
                f"| {acc} | {_pct(row['accuracy_int8'])} | {row['sqnr_db_int8_vs_own_float']} |"
            )
    for case in result["cases"]:
        lines.append(
            f"\n{case['model']}: trained {case['base_epochs']} epochs on {case['train_samples']} "
            f"digits ({case['train_seconds']} s), each pruned model fine-tuned "
            f"{case['finetune_epochs']} epochs; accuracy on {case['val_samples']} held-out digits."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.run prune")
    ap.add_argument("--cases", default="resnet8,ds_cnn")
    ap.add_argument("--base-epochs", type=int, default=12)
    ap.add_argument("--ft-epochs", type=int, default=3)
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets train far faster on one (shared) core than on two
    try:
        with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
            cases = [
                run_case(c, base_epochs=args.base_epochs, ft_epochs=args.ft_epochs, work=Path(tmp))
                for c in args.cases.split(",")
            ]
    finally:
        torch.set_num_threads(threads)
    result = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} cores (shared)",
        "torch": torch.__version__,
        "threads": 1,
        "cases": cases,
    }
    write_result("prune_mlperf", result)
    update_readme("prune-mlperf", table(result))
    say(table(result))
    return 0
