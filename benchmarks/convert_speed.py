"""Where a conversion's seconds go, before/after a speed change (``python -m benchmarks.run
convert-speed``, or ``python benchmarks/convert_speed.py`` to measure another checkout's code
with ``PYTHONPATH`` pointing at it).

Each model of the development suite (``../shared/peer_models``, see
:mod:`benchmarks.peer_suite`) is converted cold (``cache=False``: nothing is a cache hit)
with the peer suite's data and the default strategy (``--min-sqnr`` optional: a gated run,
several attempts). Per model it records the report's per-stage ``timings_s``, the wall time,
the load average before and after, the model's sha256 and a digest of every reported figure
(the report without its timings, versions, cache key and the rounding's own seconds), so a
speed change can be checked to change no model and no figure.

Results: ``benchmarks/results/<--out>.json`` under the run label ``--label`` (other labels
kept); ``--reports DIR`` also writes each normalized report there for a diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the checkout PYTHONPATH names
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if os.environ.get("PYTHONPATH"):
        for p in reversed(os.environ["PYTHONPATH"].split(os.pathsep)):
            sys.path.insert(0, p)

from benchmarks import common
from benchmarks.peer_suite import digits_data, manifest, peer_dir

RESULT = "convert_speed"
DEFAULT_MODELS = "mobilenetv2_050,test_vit,mobilevitv2_050,test_convnext"
#: report keys that say how long or with which code, not what was produced
VOLATILE = ("timings_s", "versions", "cache_key")


def normalized(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` without what may differ between two runs of the same conversion."""
    rep = json.loads(json.dumps(report))
    for k in VOLATILE:
        rep.pop(k, None)
    conv = rep.get("conversion") or {}
    wr = (conv.get("techniques") or {}).get("weight_rounding")
    if isinstance(wr, dict):
        wr.pop("seconds", None)
        wr.pop("reused", None)
    fb = conv.get("precision_fallback")
    if isinstance(fb, dict):  # the int8 attempt it replaces: its figures stay
        pass
    return rep


def digest(report: dict[str, Any]) -> str:
    """sha256 of the normalized report (canonical JSON)."""
    text = json.dumps(normalized(report), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def convert_one(
    folder: Path, entry: dict[str, Any], work: Path, min_sqnr: float | None
) -> dict[str, Any]:
    from toolchain.convert import convert
    from toolchain.errors import FidelityError

    shape = [int(v) for v in entry["input_shape"]]
    calib, val, labels = digits_data(folder, shape[-1])
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    row: dict[str, Any] = {"model": entry["model"]}
    try:
        res = convert(str(folder / entry["file"]), input_shapes=[shape], calib=calib, val=val,
                      labels=labels, out_dir=work / entry["model"], cache=False,
                      min_sqnr=min_sqnr)  # fmt: skip
        rep = res.report
        row["ok"] = True
    except FidelityError as exc:  # a gated run that missed: still a measured conversion
        row.update(ok=False, error=f"FidelityError: {str(exc)[:300]}")
        rep = None
    row["wall_s"] = round(time.perf_counter() - t, 1)
    row["load_before"] = round(load0, 2)
    row["load_after"] = round(os.getloadavg()[0], 2)
    if rep is not None:
        fid = next(iter(rep["fidelity"].values()))
        conv = rep.get("conversion") or {}
        row.update(
            timings_s=rep.get("timings_s"),
            tflite_sha256=rep["tflite_sha256"],
            tflite_bytes=rep["tflite_bytes"],
            report_digest=digest(rep),
            sqnr_db=fid.get("sqnr_db"),
            top1_int8=(rep.get("accuracy") or {}).get("int8"),
            attempt=conv.get("attempt"),
            activations=conv.get("activations"),
            onnx2tf_strict_mode=conv.get("onnx2tf_strict_mode"),
        )
        row["_report"] = normalized(rep)
    return row


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="convert-speed", description=__doc__)
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma-separated suite model names (default {DEFAULT_MODELS}; a name "
                   "given twice converts it again in the same process)")  # fmt: skip
    p.add_argument("--label", default="after", help="run label, e.g. before / after")
    p.add_argument("--min-sqnr", type=float, default=None, help="a gated run (dB)")
    p.add_argument("--out", default=RESULT, help="result name (benchmarks/results/NAME.json)")
    p.add_argument("--reports", default=None, help="also write normalized reports here")
    args = p.parse_args(argv)
    folder = peer_dir()
    if not (folder / "manifest.json").is_file():
        common.say(f"convert-speed skipped: no development suite at {folder}")
        return 0
    entries = {e["model"]: e for e in manifest(folder)}
    wanted = args.models.split(",")
    unknown = [m for m in wanted if m not in entries]
    if unknown:
        common.say(f"unknown model(s): {', '.join(unknown)}")
        return 2
    path = common.RESULTS / f"{args.out}.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    result.setdefault("runs", {})
    run_key = args.label + (f"@min-sqnr-{args.min_sqnr:g}" if args.min_sqnr is not None else "")
    runs = result["runs"].setdefault(run_key, {})
    with tempfile.TemporaryDirectory(prefix="convert-speed-") as tmp:
        seen: dict[str, int] = {}
        for m in wanted:
            seen[m] = seen.get(m, 0) + 1
            name = m if seen[m] == 1 else f"{m}#{seen[m]}"  # again, in the same process
            common.say(f"[{run_key}] {name} ...")
            row = convert_one(folder, entries[m], Path(tmp) / name, args.min_sqnr)
            rep = row.pop("_report", None)
            if args.reports and rep is not None:
                out = Path(args.reports)
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{run_key}-{name}.json").write_text(
                    json.dumps(rep, indent=1, sort_keys=True)
                )
            row["date"] = time.strftime("%Y-%m-%d %H:%M")
            runs[name] = row
            common.say(f"    {row.get('wall_s')} s load {row['load_before']}->{row['load_after']} "
                       f"sha {str(row.get('tflite_sha256'))[:12]} {row.get('timings_s')}")  # fmt: skip
            common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
