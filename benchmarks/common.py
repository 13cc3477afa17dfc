"""Helpers shared by the benchmarks: paths, result files, the README sections."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from toolchain.fsutil import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"

#: Ops a clean int8 conversion should not have (layout shuffles, float islands).
LAYOUT_OPS = ("TRANSPOSE", "QUANTIZE", "DEQUANTIZE")


def reference_dir() -> Path:
    """``$EDGEDEPLOY_REFERENCE`` or ``../shared/reference``; exits with a message if absent."""
    path = Path(os.environ.get("EDGEDEPLOY_REFERENCE", ROOT.parent / "shared" / "reference"))
    if not path.is_dir():
        raise SystemExit(f"reference models not found at {path} (set EDGEDEPLOY_REFERENCE)")
    return path


def say(text: str) -> None:
    """Progress for the person running the benchmark (stderr, unbuffered)."""
    print(text, file=sys.stderr, flush=True)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """``benchmarks/results/<name>.json`` (deterministic JSON, written atomically)."""
    return atomic_write_json(RESULTS / f"{name}.json", result)


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object ({} if none)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def update_readme(marker: str, body: str) -> None:
    """Replace the text between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` in
    benchmarks/README.md (appended at the end when the markers are not there yet)."""
    text = README.read_text()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: f"{begin}\n{body}{end}", text)
    else:
        text = f"{text.rstrip()}\n\n{begin}\n{body}{end}\n"
    atomic_write_text(README, text)


def failed_conversion(row: dict[str, Any], exc: BaseException, started: float) -> dict[str, Any]:
    """``row`` as the result of a conversion that raised ``exc`` (started at perf_counter
    ``started``): every failure is a result row in the conversion suites."""
    row.update(ok=False, clean=False, error=f"{type(exc).__name__}: {str(exc)[:400]}")
    row["time_s"] = round(time.perf_counter() - started, 1)
    return row


def conversion_fields(rep: dict[str, Any]) -> dict[str, Any]:
    """The fields the conversion suites record from a successful ``convert`` report: layout
    op counts, whether it is clean, ops, sizes and how the converter got there."""
    lint = rep["lint"]
    counts = {k: int(lint.get(k, 0)) for k in LAYOUT_OPS}
    conv = rep.get("conversion", {})
    return {
        "ok": True,
        "clean": not lint["problems"] and not any(counts.values()),
        "counts": counts,
        "ops": rep["ops"],
        "tflite_bytes": rep["tflite_bytes"],
        "tflite_sha256": rep["tflite_sha256"],
        "activations": conv.get("activations", rep["options"]["activations"]),
        "attempt": conv.get("attempt"),
        "rewrites": conv.get("rewrites_applied", []),
        "techniques": conv.get("techniques", {}),
        "worst_layers": rep.get("worst_layers", [])[:3],
    }
