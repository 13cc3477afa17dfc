"""Where the peer suite's int8 *weights* limit the output, and what two-term weights buy
(``python -m benchmarks.run peer-weights``).

For each model (default: DLA-60 and DLA-46, the suite's deepest nets) and each
configuration, one conversion with the development suite's digits data (64 calibration
images, 500 labelled test images; see ``benchmarks.peer_suite``): int8 or int16x8
activations, nearest or gptq weight rounding, with or without the weight split
(:mod:`toolchain.convert.weightsplit`). Rows: top-1 (float / quantized), logits SQNR and
its input-dependent part, the weights-only SQNR the split measured (before / after, on the
calibration data), the layers split, bytes (and against the same model's int8 row), the
split's and the whole conversion's seconds.

Results: ``benchmarks/results/peer_weights.json`` and the ``peer-weights`` section of
benchmarks/README.md. Without the suite folder it says why and exits 0.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.peer_suite import digits_data, manifest, peer_dir

RESULT = "peer_weights"
SECTION = "peer-weights"
#: name: (activations, Strategy keyword arguments)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "int8": ("int8", {}),
    "int8+split": ("int8", {"weight_split": 35.0}),
    "int16x8": ("int16", {}),
    "int16x8+gptq": ("int16", {"weight_rounding": "gptq"}),
    "int16x8+split": ("int16", {"weight_split": 35.0}),
    "int16x8+split+gptq": ("int16", {"weight_split": 35.0, "weight_rounding": "gptq"}),
    "int16x8+split5%+gptq": (
        "int16",
        {"weight_split": 35.0, "weight_split_budget": 0.05, "weight_rounding": "gptq"},
    ),
}
DEFAULT = "int8,int16x8,int16x8+gptq,int16x8+split,int16x8+split+gptq"


def run_one(folder: Path, entry: dict[str, Any], config: str, work: Path) -> dict[str, Any]:
    from toolchain.convert import convert
    from toolchain.convert.options import QuantOptions
    from toolchain.convert.strategy import Strategy

    acts, kw = CONFIGS[config]
    shape = [int(v) for v in entry["input_shape"]]
    calib, val, labels = digits_data(folder, shape[-1])
    row: dict[str, Any] = {"config": config}
    t = time.perf_counter()
    try:
        res = convert(str(folder / entry["file"]), input_shapes=[shape], calib=calib, val=val,
                      labels=labels, out_dir=work, cache=False,
                      options=QuantOptions(activations=acts),
                      strategy=Strategy(rounding_fallback=False, int16_fallback=False,
                                        split_fallback=False, **kw))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - every failure is a result row
        return common.failed_conversion(row, exc, t)
    rep = res.report
    fid = next(iter(rep["fidelity"].values()))
    acc = rep.get("accuracy") or {}
    tech = rep.get("conversion", {}).get("techniques", {})
    split = tech.get("weight_split") or {}
    row.update(
        ok=True,
        top1_float=acc.get("float"),
        top1=acc.get("int8"),
        sqnr_db=fid.get("sqnr_db"),
        sqnr_input_dependent_db=fid.get("sqnr_input_dependent_db"),
        tflite_bytes=rep["tflite_bytes"],
        ops=rep["ops"],
        split_layers=len(split.get("chosen", [])),
        split_weights_only_db=split.get("weights_only_db"),
        split_added_bytes_estimate=split.get("added_bytes_estimate"),
        split_s=split.get("seconds"),
        rounding=(tech.get("weight_rounding") or {}).get("in_model"),
        timings_s=rep.get("timings_s"),
        time_s=round(time.perf_counter() - t, 1),
    )
    return row


def _f(v: Any, nd: int = 1) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['date']} at {result['commit']} ({result['machine']}); "
        "`python -m benchmarks.run peer-weights -- --models "
        f"{','.join(result['models'])} --configs {','.join(result['configs'])}`.",
        "",
        "| model | config | top-1 % (float) | logits SQNR dB | input-dep. SQNR dB | "
        "weights-only dB (split: before → after) | layers split | bytes | vs int8 | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in result["rows"].items():
        base = (rows.get("int8") or {}).get("tflite_bytes")
        for cfg, r in rows.items():
            if not r.get("ok"):
                lines.append(f"| {model} | {cfg} | FAIL: {r.get('error', '')[:120]} "
                             "|  |  |  |  |  |  |  |")  # fmt: skip
                continue
            wo = r.get("split_weights_only_db") or {}
            wtxt = f"{_f(wo.get('before'))} → {_f(wo.get('after'))}" if wo else "–"
            rel = f"{100 * (r['tflite_bytes'] / base - 1):+.1f} %" if base and cfg != "int8" else ""
            lines.append(
                f"| {model} | {cfg} | {_f(r.get('top1'))} ({_f(r.get('top1_float'))}) | "
                f"{_f(r.get('sqnr_db'), 2)} | {_f(r.get('sqnr_input_dependent_db'), 2)} | "
                f"{wtxt} | {r.get('split_layers') or '–'} | {r['tflite_bytes']:,} | {rel} | "
                f"{r['time_s']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="peer-weights", description=__doc__)
    p.add_argument("--models", default="dla60x_c,dla46x_c", help="comma-separated")
    p.add_argument("--configs", default=DEFAULT,
                   help=f"comma-separated, of: {', '.join(CONFIGS)}")  # fmt: skip
    p.add_argument("--out", default=RESULT, help="result name (benchmarks/results/NAME.json)")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = p.parse_args(argv)
    folder = peer_dir()
    if not (folder / "manifest.json").is_file():
        common.say(f"peer-weights skipped: the development suite is not at {folder}")
        return 0
    entries = {e["model"]: e for e in manifest(folder)}
    models, configs = args.models.split(","), args.configs.split(",")
    bad = [m for m in models if m not in entries] + [c for c in configs if c not in CONFIGS]
    if bad:
        common.say(f"unknown model(s)/config(s): {', '.join(bad)}")
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=common.ROOT).stdout.strip()  # fmt: skip
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "models": models,
        "configs": configs,
        "rows": {m: {} for m in models},
    }
    with tempfile.TemporaryDirectory(prefix="peer-weights-") as tmp:
        for m in models:
            for c in configs:
                common.say(f"[{c}] {m} ...")
                row = run_one(folder, entries[m], c, Path(tmp) / f"{m}-{c}")
                result["rows"][m][c] = row
                common.say(f"    top1={row.get('top1')} sqnr={row.get('sqnr_input_dependent_db')} "
                           f"bytes={row.get('tflite_bytes')} {row['time_s']}s "
                           f"{row.get('error', '')[:150]}")  # fmt: skip
                common.write_result(args.out, result)
    if not args.no_readme:
        common.update_readme(SECTION, markdown(result))
    return 0
