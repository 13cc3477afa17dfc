"""Converter coverage and int8 fidelity on mobile architectures (``python -m benchmarks.run
arch-suite``).

Every model of :data:`toolchain.zoo.mobile.SUITE` plus the four MLPerf Tiny ports (trained
reference weights and real data when ``../shared/reference`` is there) is converted twice:

* **before** — the plain recipe (:meth:`Strategy.plain`: no rewrites, no techniques, no
  fallbacks; legacy export → onnx2tf → TFLiteConverter int8-only);
* **after** — the default :class:`~toolchain.convert.strategy.Strategy`.

Per model and run: success (a clean int8 graph: lint passes, no TRANSPOSE / QUANTIZE /
DEQUANTIZE), the error when it failed, SQNR of the int8 output against PyTorch float on
held-out "representative" data, op counts, which rewrites/attempt produced it, wall time.
``--runs`` adds more strategies (e.g. ``--runs after,equalize``; see :func:`strategies`).

Results: ``benchmarks/results/arch_suite.json`` and the ``arch-suite`` section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

RESULT = "arch_suite"
CALIB, VAL = 100, 50
MLPERF = ("resnet8", "ds_cnn", "mobilenet_v1_025", "fc_autoencoder")
_MLPERF_DATA = {"resnet8": "ic", "ds_cnn": "kws", "mobilenet_v1_025": "vww", "fc_autoencoder": "ad"}
_MLPERF_WEIGHTS = {
    "resnet8": "ic/pretrainedResnet.h5",
    "ds_cnn": "kws/kws_ref_model_float32.tflite",
    "mobilenet_v1_025": "vww/vww_96.h5",
    "fc_autoencoder": "ad/ad01_fp32.tflite",
}


def _without(*names: str) -> tuple[str, ...]:
    """The default rewrites less ``names``."""
    from toolchain.convert.rewrites import DEFAULT

    return tuple(n for n in DEFAULT if n not in names)


def strategies(names: list[str]) -> dict[str, Any]:
    from toolchain.convert.strategy import Strategy

    table = {
        "before": Strategy.plain(),
        "after": Strategy(),
        "equalize": Strategy(equalize=True),
        "bias_correction": Strategy(bias_correction=True),
        "equalize+bias": Strategy(equalize=True, bias_correction=True),
        "margin10": Strategy(range_margin=0.1),
        "margin25": Strategy(range_margin=0.25),
        "mse": Strategy(calibration_range="mse"),
        "min-sqnr-30": Strategy(),  # with --min-sqnr 30: int16x8 where int8 misses it
        "gptq": Strategy(weight_rounding="gptq"),  # error-compensating weight rounding
        "rounding-bias": Strategy(weight_rounding="bias"),  # bias correction in the ONNX
        "gptq+mse": Strategy(weight_rounding="gptq", calibration_range="mse"),
        # the default without the ViT rewrites of the peer-vit section (both / the scale fold)
        "vit-before": Strategy(rewrites=_without("class-token-stream", "scale-into-linear")),
        "no-scale-fold": Strategy(rewrites=_without("scale-into-linear")),
    }
    return {n: table[n] for n in names}


def model_and_data(
    name: str, size: int | None, calib_count: int = CALIB
) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """The model, ``calib_count`` calibration and the validation arrays, and a note on the
    data."""
    from toolchain.zoo import mobile

    if name in MLPERF:
        from benchmarks.convert_mlperf import make_data
        from toolchain.zoo import mlperf_tiny

        ref = common.reference_dir()
        model = getattr(mlperf_tiny, name)(weights=ref / "mlperf_tiny" / _MLPERF_WEIGHTS[name])
        calib, val = make_data(_MLPERF_DATA[name], ref)
        return model, calib[:calib_count], val[:VAL], "trained reference weights, real data"
    entry = mobile.suite_model(name)
    px = size or entry.size
    model = getattr(mobile, name)(px)
    calib = mobile.image_batch(calib_count, px, seed=100).numpy()
    val = mobile.image_batch(VAL, px, seed=200).numpy()
    return model, calib, val, f"random weights, smooth random images {px}px"


def run_one(
    name: str,
    strategy: Any,
    size: int | None,
    work: Path,
    min_sqnr: float | None = None,
    *,
    calib_count: int = CALIB,
    val_on_calib: bool = False,
) -> dict[str, Any]:
    """One conversion; ``val_on_calib`` measures fidelity on the calibration inputs
    themselves (no held-out clipping)."""
    from toolchain.convert import convert

    model, calib, val, note = model_and_data(name, size, calib_count)
    if val_on_calib:
        val, note = calib, note + ", validated on the calibration images"
    t = time.perf_counter()
    row: dict[str, Any] = {"data": note, "input": list(calib.shape[1:]),
                           "calib_count": len(calib), "val_count": len(val)}  # fmt: skip
    try:
        res = convert(model, calib=calib, val=val, out_dir=work / name, cache=False,
                      strategy=strategy, min_sqnr=min_sqnr)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        return common.failed_conversion(row, exc, t)
    rep = res.report
    row.update(
        common.conversion_fields(rep),
        sqnr_db=min(f["sqnr_db"] for f in rep["fidelity"].values()),
        float_ops=len(rep["lint"]["problems"]),
        time_s=round(time.perf_counter() - t, 1),
    )
    return row


def summarize(rows: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    suite = [n for n in names if n not in MLPERF]
    rs = [rows[n] for n in suite if n in rows]
    sq = [r["sqnr_db"] for r in rs if r.get("ok")]
    return {
        "models": len(rs),
        "clean": sum(1 for r in rs if r.get("clean")),
        "clean_fraction": round(sum(1 for r in rs if r.get("clean")) / max(1, len(rs)), 3),
        "median_sqnr_db": round(statistics.median(sq), 2) if sq else None,
        "min_sqnr_db": round(min(sq), 2) if sq else None,
        "below_30_db": sum(1 for s in sq if s < 30),
        "int16x8": sum(1 for r in rs if r.get("activations") == "int16"),
    }


def markdown(result: dict[str, Any]) -> str:
    runs = list(result["runs"])
    lines = [
        f"Measured {result['date']} on {result['machine']} (`python -m benchmarks.run "
        "arch-suite`). SQNR: int8 output vs PyTorch float on held-out data. Clean: lint passes "
        "and no TRANSPOSE/QUANTIZE/DEQUANTIZE. T/Q/D: those op counts. *before* = plain recipe "
        "(`Strategy.plain()`), *after* = default `Strategy()`.",
        "",
        "| model | classes | "
        + " | ".join(f"{r}: clean / SQNR dB / T,Q,D / s" for r in runs)
        + " | after: rewrites (attempt) |",
        "|---|---|" + "---|" * len(runs) + "---|",
    ]
    for name in result["models"]:
        cells = []
        for r in runs:
            row = result["runs"][r].get(name)
            if row is None:
                cells.append("-")
            elif not row["ok"]:
                cells.append(f"FAIL ({row['error'].split(':')[0]}) / {row['time_s']}")
            else:
                c = row["counts"]
                cells.append(
                    f"{'yes' if row['clean'] else 'NO'} / {row['sqnr_db']:.1f} / "
                    f"{c['TRANSPOSE']},{c['QUANTIZE']},{c['DEQUANTIZE']}"
                    + (f" +{row['float_ops']} float" if row["float_ops"] else "")
                    + (" int16x8" if row.get("activations") == "int16" else "")
                    + f" / {row['time_s']}"
                )
        after = result["runs"].get("after", {}).get(name) or {}
        how = ", ".join(after.get("rewrites") or []) or "-"
        if after.get("attempt") and after["attempt"] != "primary":
            how += f" ({after['attempt']})"
        before = result["runs"].get("before", {}).get(name) or {}
        if after.get("tflite_sha256") and after.get("tflite_sha256") == before.get("tflite_sha256"):
            how += "; **same bytes as before**"
        lines.append(f"| {name} | {', '.join(result['classes'].get(name, []))} | "
                     + " | ".join(cells) + f" | {how} |")  # fmt: skip
    lines += ["", "| run | suite models | clean | median SQNR dB | min SQNR dB | < 30 dB "
              "| int16x8 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        s = result["summary"][r]
        lines.append(f"| {r} | {s['models']} | {s['clean']} ({100 * s['clean_fraction']:.0f} %)"
                     f" | {s['median_sqnr_db']} | {s['min_sqnr_db']} | {s['below_30_db']} "
                     f"| {s.get('int16x8', 0)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


TECHNIQUE_RESULTS = ("arch_suite_techniques", "arch_suite_techniques_split")


def techniques_markdown() -> str:
    """The technique table from the technique runs' result files (``--techniques-readme``)."""
    import json

    runs: dict[str, dict[str, Any]] = {}
    for name in TECHNIQUE_RESULTS:
        path = common.RESULTS / f"{name}.json"
        if path.is_file():
            for r, rows in json.loads(path.read_text())["runs"].items():
                runs.setdefault(r, {}).update(rows)
    if "after" not in runs:
        return "No technique runs recorded.\n"
    models = list(runs["after"])
    others = [r for r in runs if r != "after"]
    lines = [
        "Techniques, each on top of the default strategy, on four suite models at 64 px "
        "(100 calibration / 50 held-out images): SQNR dB and the change against *after*.",
        "",
        "| model | after | " + " | ".join(others) + " |",
        "|---|---|" + "---|" * len(others),
    ]
    deltas: dict[str, list[float]] = {r: [] for r in others}
    for m in models:
        base = runs["after"][m].get("sqnr_db")
        cells = []
        for r in others:
            v = runs[r].get(m, {}).get("sqnr_db")
            if v is None or base is None:
                cells.append("-")
                continue
            deltas[r].append(v - base)
            cells.append(f"{v:.1f} ({v - base:+.1f})")
        lines.append(f"| {m} | {base} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean change / worst** | | "
        + " | ".join(
            f"{statistics.mean(d):+.2f} / {min(d):+.1f}" if d else "-" for d in deltas.values()
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from toolchain.zoo import mobile

    p = argparse.ArgumentParser(prog="arch-suite", description=__doc__)
    p.add_argument("--models", help="comma-separated subset (default: the suite + MLPerf Tiny)")
    p.add_argument("--runs", default="before,after",
                   help="strategies: before, after, equalize, bias_correction, equalize+bias, "
                   "margin10, margin25, mse, min-sqnr-30")  # fmt: skip
    p.add_argument("--size", type=int, help="override the input size of suite models (px)")
    p.add_argument("--no-mlperf", action="store_true", help="skip the MLPerf Tiny ports")
    p.add_argument("--calib", type=int, default=CALIB, metavar="N",
                   help=f"calibration images per model (default {CALIB})")  # fmt: skip
    p.add_argument("--val-on-calib", action="store_true",
                   help="measure SQNR on the calibration images instead of held-out ones")  # fmt: skip
    p.add_argument("--out", default=RESULT, help="result name (benchmarks/results/NAME.json)")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    p.add_argument("--section", default="arch-suite",
                   help="README section (marker name) to write the table to")  # fmt: skip
    p.add_argument("--techniques-readme", action="store_true",
                   help="only rewrite the README technique table from the technique runs")  # fmt: skip
    args = p.parse_args(argv)
    if args.techniques_readme:
        common.update_readme("arch-suite-techniques", techniques_markdown())
        return 0
    names = (
        args.models.split(",")
        if args.models
        else [m.name for m in mobile.SUITE] + ([] if args.no_mlperf else list(MLPERF))
    )
    runs = strategies(args.runs.split(","))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "models": names,
        "classes": {m.name: list(m.classes) for m in mobile.SUITE},
        "runs": {r: {} for r in runs},
    }
    with tempfile.TemporaryDirectory(prefix="arch-suite-") as tmp:
        for name in names:
            for r, strat in runs.items():
                common.say(f"[{r}] {name} ...")
                min_sqnr = 30.0 if r == "min-sqnr-30" else None
                row = run_one(name, strat, args.size, Path(tmp) / r, min_sqnr,
                              calib_count=args.calib, val_on_calib=args.val_on_calib)  # fmt: skip
                result["runs"][r][name] = row
                common.say(f"    ok={row['ok']} clean={row.get('clean')} "
                           f"sqnr={row.get('sqnr_db')} {row.get('error', '')[:150]}")  # fmt: skip
            result["summary"] = {r: summarize(result["runs"][r], names) for r in runs}
            common.write_result(args.out, result)
    if not args.no_readme:
        common.update_readme(args.section, markdown(result))
    return 0
