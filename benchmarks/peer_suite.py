"""Converter coverage and int8 accuracy on real third-party architectures (``python -m
benchmarks.run peer-suite``).

Every model of the development suite in ``../shared/peer_models`` (16 timm/torchvision
classifiers as TorchScript, briefly trained on scikit-learn's digits upscaled to the model's
input size; ``$EDGEDEPLOY_PEER_MODELS`` overrides the folder) is converted with the default
:class:`~toolchain.convert.strategy.Strategy` (``--runs`` adds others), calibrated on the
first 64 training images and validated on the 500 test images with their labels. The data
is rebuilt by the suite's own ``make_suite.digits_images`` (numpy and scikit-learn only), by
path: nothing of the suite is copied into the project.

Per model: clean int8 (lint passes, no TRANSPOSE / QUANTIZE / DEQUANTIZE, no float op), op
counts, float and int8 top-1 on the labels, top-1 agreement, logits SQNR, the SQNR of the
logits' input-dependent part (each side minus its mean over the 500 outputs) and that
part's share of the float output power, which attempt/rewrites produced it, model bytes,
conversion wall time.

Results: ``benchmarks/results/peer_suite.json`` and the ``peer-suite`` section of
benchmarks/README.md. Without the suite folder it says why and exits 0 (nothing written).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

RESULT = "peer_suite"
CALIB = 64
#: below this share of input-dependent output power a model "did not learn": only its
#: graph counts (SqueezeNet 1.0 in the suite: constant output)
LEARNED_MIN_POWER = 0.05


def peer_dir() -> Path:
    """``$EDGEDEPLOY_PEER_MODELS`` or ``../shared/peer_models`` (may not exist)."""
    return Path(
        os.environ.get("EDGEDEPLOY_PEER_MODELS", common.ROOT.parent / "shared" / "peer_models")
    )


def manifest(folder: Path) -> list[dict[str, Any]]:
    """The suite's model list (``manifest.json``)."""
    entries = json.loads((folder / "manifest.json").read_text())
    return [e for e in entries if (folder / e["file"]).is_file()]


def _make_suite(folder: Path) -> Any:
    spec = importlib.util.spec_from_file_location("peer_make_suite", folder / "make_suite.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {folder / 'make_suite.py'}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_DATA: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def digits_data(folder: Path, size: int, calib: int = CALIB) -> tuple[Any, Any, Any]:
    """(calibration images, test images, test labels) at ``size`` px, NCHW float32."""
    if size not in _DATA:
        ms = _make_suite(folder)
        x_cal, _ = ms.digits_images(size, "train")
        x_val, y_val = ms.digits_images(size, "test")
        _DATA[size] = (np.ascontiguousarray(x_cal[:calib]), x_val, y_val)
    return _DATA[size]


#: runs with an accuracy gate: the default strategy plus ``max_accuracy_drop`` (points),
#: so the automatic int16x8 fallback and its cost show
GATED = {"max-drop-0.5": 0.5}
#: runs with an SQNR gate (dB, the plain logits SQNR of ``--min-sqnr``): a model below it
#: tries gptq rounding, then int16x8 activations (see toolchain/convert/strategy.py)
SQNR_GATES = {"min-sqnr-25": 25.0, "min-sqnr-30": 30.0}


def _with_hardswish_relu6() -> Any:
    """The default strategy plus hardswish-relu6 in int8 (what the decomposed HardSwish
    would cost an int8 model: the peer-hswish section)."""
    from toolchain.convert import rewrites as rw
    from toolchain.convert.strategy import Strategy

    wanted = {*rw.DEFAULT, "hardswish-relu6"}
    return Strategy(rewrites=tuple(n for n in rw.KNOWN if n in wanted))


#: more runs of this suite: name → strategy factory
EXTRA = {"hswish-int8": _with_hardswish_relu6}


#: runs with other quantization options (the default strategy): ``mixed`` = int8 with
#: int16x8 islands chosen by measurement (target 30 dB on calibration samples, ≤ 10 % bytes)
OPTION_RUNS: dict[str, dict[str, Any]] = {
    # int16x8 activations everywhere (the strategy adds toolchain.convert.rewrites.INT16)
    "int16": {"activations": "int16"},
    # the same with a fixed int16x8 range headroom (QuantOptions.int16_headroom; "int16"
    # uses the default): the peer-int16-headroom section
    "int16-h1": {"activations": "int16", "int16_headroom": 1.0},
    "int16-h2": {"activations": "int16", "int16_headroom": 2.0},
    "int16-h4": {"activations": "int16", "int16_headroom": 4.0},
    "mixed": {"activations": "mixed", "mixed_target_sqnr": 30.0, "mixed_budget": 0.10},
    # mixed with the int16 model at the calibration ranges (int16 headroom 1x; the
    # peer-int16-headroom section compares it with "mixed", the default 4x)
    "mixed-h1": {
        "activations": "mixed",
        "mixed_target_sqnr": 30.0,
        "mixed_budget": 0.10,
        "int16_headroom": 1.0,
    },
    # the same with float32 input (islands quantize the float input to int16 themselves)
    # and gptq weight rounding (see RUN_STRATEGIES)
    "mixed-gptq-f32in": {
        "activations": "mixed",
        "mixed_target_sqnr": 30.0,
        "mixed_budget": 0.10,
        "input_dtype": "float32",
    },
    # int16 graph I/O (taken from the int16x8 model; the fallback's mixed attempt) + gptq
    "mixed-int16io": {
        "activations": "mixed",
        "mixed_target_sqnr": 30.0,
        "mixed_budget": 0.10,
        "input_dtype": "int16",
        "output_dtype": "int16",
    },
}
#: the strategy of an OPTION_RUNS entry when not the default one
RUN_STRATEGIES: dict[str, dict[str, Any]] = {
    "mixed-gptq-f32in": {"weight_rounding": "gptq"},
    "mixed-int16io": {"weight_rounding": "gptq"},
}


def strategies(names: list[str]) -> dict[str, Any]:
    from benchmarks.arch_suite import strategies as arch
    from toolchain.convert.strategy import Strategy

    gated = {
        n: Strategy(**RUN_STRATEGIES.get(n, {}))
        for n in names
        if n in GATED or n in SQNR_GATES or n in OPTION_RUNS
    }
    gated.update({n: EXTRA[n]() for n in names if n in EXTRA})
    table = arch([n for n in names if n not in gated])
    return {n: gated.get(n) or table[n] for n in names}


def run_one(
    folder: Path,
    entry: dict[str, Any],
    strategy: Any,
    work: Path,
    *,
    min_sqnr: float | None = None,
    max_accuracy_drop: float | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert one suite model (``options``: QuantOptions fields); every failure is a row."""
    from toolchain.convert import QuantOptions, convert

    shape = [int(v) for v in entry["input_shape"]]
    calib, val, labels = digits_data(folder, shape[-1])
    row: dict[str, Any] = {"input": shape, "calib_count": len(calib), "val_count": len(val)}
    t = time.perf_counter()
    try:
        res = convert(str(folder / entry["file"]), input_shapes=[shape], calib=calib, val=val,
                      labels=labels, out_dir=work / entry["model"], cache=False,
                      strategy=strategy, min_sqnr=min_sqnr,
                      max_accuracy_drop=max_accuracy_drop,
                      options=QuantOptions(**options) if options else None)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        return common.failed_conversion(row, exc, t)
    rep = res.report
    lint = rep["lint"]
    fid = next(iter(rep["fidelity"].values()))
    acc = rep.get("accuracy") or {}
    conv = rep.get("conversion", {})
    row.update(
        common.conversion_fields(rep),
        float_ops=list(lint["problems"]),
        int16_headroom=(rep.get("options") or {}).get("int16_headroom")
        if conv.get("activations") != "int8"
        else None,
        top1_float=acc.get("float"),
        top1_int8=acc.get("int8"),
        top1_drop=acc.get("drop"),
        top1_agreement=fid.get("top1_agreement"),
        sqnr_db=fid.get("sqnr_db"),
        sqnr_input_dependent_db=fid.get("sqnr_input_dependent_db"),
        input_dependent_power=fid.get("input_dependent_power"),
        precision_fallback=conv.get("precision_fallback"),
        mixed_precision=conv.get("mixed_precision"),
        failed_attempts=conv.get("failed_attempts") or [],
        onnx2tf_strict_mode=conv.get("onnx2tf_strict_mode"),
        timings_s=rep.get("timings_s"),
        convert_s=rep.get("timings_s", {}).get("total"),
        time_s=round(time.perf_counter() - t, 1),
    )
    return row


def learned(row: dict[str, Any]) -> bool:
    """Whether the float model's output depends on its input (see LEARNED_MIN_POWER)."""
    return (row.get("input_dependent_power") or 0.0) >= LEARNED_MIN_POWER


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rs = list(rows.values())
    ok = [r for r in rs if r.get("ok")]
    lr = [r for r in ok if learned(r)]
    sq = [r["sqnr_db"] for r in lr if r.get("sqnr_db") is not None]
    sqc = [r["sqnr_input_dependent_db"] for r in lr if r.get("sqnr_input_dependent_db")]
    drops = [r["top1_drop"] for r in lr if r.get("top1_drop") is not None]
    times = [r["time_s"] for r in ok]
    return {
        "models": len(rs),
        "converted": len(ok),
        "clean": sum(1 for r in ok if _clean(r) != "NO"),  # mixed: Q at island edges only
        "learned": len(lr),
        "within_0_5_points": sum(1 for d in drops if d <= 0.5),
        "within_1_point": sum(1 for d in drops if d <= 1.0),
        "worst_top1_drop": round(max(drops), 2) if drops else None,
        "median_sqnr_db": round(statistics.median(sq), 2) if sq else None,
        "median_sqnr_input_dependent_db": round(statistics.median(sqc), 2) if sqc else None,
        "min_sqnr_input_dependent_db": round(min(sqc), 2) if sqc else None,
        "input_dependent_at_least_25_db": sum(1 for s in sqc if s >= 25.0),
        "max_time_s": max(times) if times else None,
        "int16x8": sum(1 for r in ok if r.get("activations") == "int16"),
    }


def _missed(failed: list[dict[str, str]]) -> str:
    """What the attempts before the kept one measured, e.g. ``primary 18.70 dB; gptq ...``
    (from their FidelityError messages; other failures by their error class)."""
    out = []
    for f in failed:
        err = f.get("error", "")
        m = re.search(r"SQNR (-?[0-9.]+) dB|accuracy ([0-9.]+)% is ([0-9.]+) points", err)
        if m and m.group(1):
            what = f"{m.group(1)} dB"
        elif m:
            what = f"{m.group(2)} %, drop {m.group(3)}"
        else:
            what = err.split(":")[0]
        out.append(f"{f.get('attempt', '?').split(' (')[0]} {what}")
    return "; ".join(out)


def _failed_how(error: str) -> str:
    """A failed conversion's cell: its error class and, for a gated run, what each attempt
    measured (from the combined error: the first attempt, then the ``also tried`` lines)."""
    lines = error.splitlines()
    kind = lines[0].split(":")[0]
    tried = [{"attempt": "primary", "error": lines[0]}]
    for line in lines[1:]:
        if line.startswith("  - ") and ": " in line:
            attempt, err = line[4:].split(": ", 1)
            tried.append({"attempt": attempt, "error": err})
    if len(tried) == 1 or "FidelityError" not in error:
        return kind
    return f"{kind}; tried: {_missed(tried)}"


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def _pads(ops: dict[str, int]) -> str:
    """The padding ops of a graph, e.g. ``5 PAD, 2 MIRROR_PAD`` (``-`` for none)."""
    found = [f"{n} {k}" for k, n in sorted(ops.items()) if "PAD" in k and n]
    return ", ".join(found) or "-"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['date']} on {result['machine']} (`python -m benchmarks.run "
        "peer-suite`; needs `../shared/peer_models`). Each model: 64 calibration images, "
        "top-1 on the 500 digits test images. SQNR: int8 logits vs TorchScript float; "
        "*input-dep.* = the same with each side's mean over the 500 outputs removed, and the "
        "share of float output power that varies with the input. Clean: lint passes and no "
        "TRANSPOSE/QUANTIZE/DEQUANTIZE (T/Q/D); *pad ops*: PAD/PADV2/MIRROR_PAD left (a "
        "stride-2 conv's asymmetric PAD is ordinary).",
        "",
    ]
    for run, rows in result["runs"].items():
        lines += [
            f"**{run}**",
            "",
            "| model | S | clean | T/Q/D | pad ops | float top-1 % | int8 top-1 % | agree % "
            "| logits SQNR dB | input-dep. SQNR dB | input-dep. power % | KB | s | how |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            size = r["input"][-1]
            if not r["ok"]:
                lines.append(f"| {name} | {size} | FAIL | | | | | | | | | | {r['time_s']} "
                             f"| {_failed_how(r['error'])} |")  # fmt: skip
                continue
            c = r["counts"]
            how = ", ".join(r.get("rewrites") or []) or "-"
            if r.get("attempt") and r["attempt"] != "primary":
                how += f" ({r['attempt']})"
            if r.get("activations") in ("int16", "mixed"):
                how += " int16x8" if r["activations"] == "int16" else " mixed"
            wr = (r.get("techniques") or {}).get("weight_rounding")
            if wr and wr.get("layers"):
                inm = wr.get("in_model") or {}
                how += (f"; {wr['method']} rounding of {wr['layers']} layers "
                        f"({inm.get('exact')}/{inm.get('of')} exact in the model, "
                        f"{wr.get('seconds')} s"
                        f"{', reused from the gptq attempt' if wr.get('reused') else ''})")  # fmt: skip
            fb = r.get("precision_fallback")
            if fb:
                arena = (
                    f"+{fb['extra_arena_pct']} % arena"
                    if fb.get("extra_arena_pct") is not None
                    else "arena not measured (the host TFLM interpreter refused it)"
                )
                how += (f"; int8 had {fb['int8'].get('sqnr_db')} dB, drop "
                        f"{fb['int8'].get('accuracy_drop')}; +{fb.get('extra_bytes_pct')} % "
                        f"bytes, {arena}")  # fmt: skip
            mp = r.get("mixed_precision")
            if mp:
                how += "; " + _mixed_how(mp)
            missed = _missed(r.get("failed_attempts") or [])
            if missed:
                how += f"; missed before: {missed}"
            if not learned(r):
                how += "; did not learn (constant output): only the graph counts"
            flt = f" +{len(r['float_ops'])} float" if r["float_ops"] else ""
            agree = r.get("top1_agreement")
            lines.append(
                f"| {name} | {size} | {_clean(r)} "
                f"| {c['TRANSPOSE']}/{c['QUANTIZE']}/{c['DEQUANTIZE']}{flt} "
                f"| {_pads(r.get('ops') or {})} "
                f"| {_num(r['top1_float'])} | {_num(r['top1_int8'])} "
                f"| {_num(None if agree is None else 100 * agree)} | {_num(r['sqnr_db'])} "
                f"| {_num(r['sqnr_input_dependent_db'] if learned(r) else None)} "
                f"| {_num((r.get('input_dependent_power') or 0) * 100, '{:.0f}')} "
                f"| {r['tflite_bytes'] / 1024:.0f} | {r['time_s']} | {how} |"
            )
        s = result["summary"][run]
        lines += [
            "",
            f"Converted {s['converted']}/{s['models']}, clean {s['clean']}/{s['models']}; of the "
            f"{s['learned']} that learned: int8 top-1 within 0.5 points of float on "
            f"{s['within_0_5_points']} (within 1 point on {s['within_1_point']}, worst drop "
            f"{s['worst_top1_drop']}); median logits SQNR {s['median_sqnr_db']} dB; "
            f"input-dependent SQNR median {s['median_sqnr_input_dependent_db']} dB, min "
            f"{s['min_sqnr_input_dependent_db']} dB, ≥ 25 dB on "
            f"{s['input_dependent_at_least_25_db']}; slowest conversion {s['max_time_s']} s.",
            "",
        ]
    return "\n".join(lines)


def _clean(r: dict[str, Any]) -> str:
    """yes / NO; a mixed model whose only QUANTIZE ops are its island edges is clean."""
    if r["clean"]:
        return "yes"
    mp, c = r.get("mixed_precision") or {}, r["counts"]
    if (
        mp.get("used")
        and not r.get("float_ops")
        and c["TRANSPOSE"] == c["DEQUANTIZE"] == 0
        and c["QUANTIZE"] == mp.get("quantize_added")
    ):
        return "yes (Q: island edges)"
    return "NO"


def _mixed_how(mp: dict[str, Any]) -> str:
    """What mixed precision chose and cost (the *how* column)."""
    if not mp.get("used"):
        return f"mixed: int8 kept ({mp.get('how') or mp.get('reason')})"
    arena = (
        f", {mp['extra_arena_pct']:+.1f} % arena" if mp.get("extra_arena_pct") is not None else ""
    )
    return (
        f"mixed: {mp['int16_tensors']}/{mp['candidates']} tensors int16 ({mp['int16_ops']} ops, "
        f"{mp['quantize_added']} QUANTIZE at island edges), calib. SQNR "
        f"{mp['sqnr_before_db']} → {mp['sqnr_after_db']} dB (target {mp['target_sqnr_db']:g}), "
        f"{mp['extra_bytes_pct']:+.1f} % bytes{arena}, {mp['seconds']['total']} s"
    )


def _commit() -> str | None:
    """The project's git commit (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT,
                             capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="peer-suite", description=__doc__)
    p.add_argument("--models", help="comma-separated subset (model names of the manifest)")
    p.add_argument("--runs", default="after",
                   help="strategies (see arch-suite): before, after, equalize, bias_correction, "
                   "...; max-drop-0.5 = after with --max-accuracy-drop 0.5, min-sqnr-25 / "
                   "min-sqnr-30 = after with --min-sqnr (the gptq, then int16x8 "
                   "fallback); int16 = after with --activations int16 (int16-h1/-h2/-h4: "
                   "with int16 headroom 1x/2x/4x); hswish-int8 = after "
                   "plus hardswish-relu6; mixed = after with --activations mixed (int16 islands, "
                   "30 dB target, 10 %% bytes); default: after (the default Strategy)")  # fmt: skip
    p.add_argument("--out", default=RESULT, help="result name (benchmarks/results/NAME.json)")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    p.add_argument("--section", default="peer-suite", help="README section (marker name)")
    p.add_argument("--update", action="store_true",
                   help="keep the other models' rows of the existing result file and replace "
                   "only the models measured now (each row records its date and commit)")  # fmt: skip
    args = p.parse_args(argv)
    folder = peer_dir()
    if not (folder / "manifest.json").is_file():
        common.say(f"peer-suite skipped: the development suite is not at {folder} "
                   "(set EDGEDEPLOY_PEER_MODELS to its folder)")  # fmt: skip
        return 0
    entries = manifest(folder)
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - {e["model"] for e in entries})
        if unknown:
            common.say(f"unknown model(s): {', '.join(unknown)}")
            return 2
        entries = [e for e in entries if e["model"] in wanted]
    runs = strategies(args.runs.split(","))
    commit = _commit()  # the code this process runs (files may change while it runs)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} CPUs",
        "suite": os.path.relpath(folder.resolve(), common.ROOT),  # no machine path
        "models": [e["model"] for e in entries],
        "runs": {r: {} for r in runs},
    }
    old_path = common.RESULTS / f"{args.out}.json"
    if args.update and old_path.is_file():
        old = json.loads(old_path.read_text())
        measured = set(result["models"])
        result["models"] = list(dict.fromkeys([*old.get("models", []), *result["models"]]))
        for r in runs:
            kept = {m: row for m, row in old.get("runs", {}).get(r, {}).items()
                    if m not in measured}  # fmt: skip
            result["runs"][r] = kept
    with tempfile.TemporaryDirectory(prefix="peer-suite-") as tmp:
        for e in entries:
            for r, strat in runs.items():
                common.say(f"[{r}] {e['model']} ...")
                row = run_one(folder, e, strat, Path(tmp) / r,
                              min_sqnr=SQNR_GATES.get(r),
                              max_accuracy_drop=GATED.get(r),
                              options=OPTION_RUNS.get(r))  # fmt: skip
                row.update(date=time.strftime("%Y-%m-%d %H:%M"), commit=commit)
                result["runs"][r][e["model"]] = row
                common.say(f"    ok={row['ok']} clean={row.get('clean')} "
                           f"top1={row.get('top1_float')}/{row.get('top1_int8')} "
                           f"sqnr={row.get('sqnr_db')}/{row.get('sqnr_input_dependent_db')} "
                           f"{row['time_s']}s {row.get('error', '')[:150]}")  # fmt: skip
            for r in runs:  # table order: the manifest's
                result["runs"][r] = {m: result["runs"][r][m] for m in result["models"]
                                     if m in result["runs"][r]}  # fmt: skip
            result["summary"] = {r: summarize(result["runs"][r]) for r in runs}
            common.write_result(args.out, result)
    if not args.no_readme:
        common.update_readme(args.section, markdown(result))
    return 0
