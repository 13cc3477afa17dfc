"""The run report: ``report.json`` (the union of the stage reports, schema
:data:`REPORT_SCHEMA`, documented in docs/report.md) and ``report.html`` (the same, for people:
:mod:`toolchain.report.html`).

* :func:`build_report` — assemble report.json's content from a run's stage records/outputs;
* :func:`write_reports` — write both files atomically;
* :func:`render_html` — report.json content → a self-contained HTML page (plots embedded,
  nothing fetched from the network).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain import __version__
from toolchain.bench.mcu import cpu_name
from toolchain.fsutil import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from toolchain.artifacts import StageOutput, StageRecord
    from toolchain.project import Project

REPORT_SCHEMA = "edgedeploy.report/1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
#: packages whose versions the environment section lists
PACKAGES = (
    "torch",
    "onnx",
    "onnx2tf",
    "tensorflow",
    "ai-edge-litert",
    "tflite-micro",
    "torch-pruning",
    "numpy",
    "scikit-learn",
    "matplotlib",
)

__all__ = ["REPORT_SCHEMA", "build_report", "render_html", "write_reports"]


def build_report(
    project: Project,
    records: Sequence[StageRecord],
    outputs: Mapping[str, StageOutput],
    *,
    seconds: float,
    out_dir: Path,
) -> dict[str, Any]:
    """report.json's content (see docs/report.md). Stage sections are the stages' own reports
    (None when the stage did not run); ``summary`` picks the numbers people look for first."""
    failed = next((r for r in records if r.status in ("failed", "interrupted")), None)
    status = "ok" if failed is None else failed.status
    # one section per stage, in the pipeline's order (None when it did not run)
    stage_reports = {
        r.name: (outputs[r.name].report if r.name in outputs else None) for r in records
    }
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "edgedeploy": __version__,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "status": status,
        "failed_stage": None
        if failed is None
        else {
            "stage": failed.name,
            "status": failed.status,
            **(
                failed.error
                or {
                    "message": "interrupted (Ctrl-C)",
                    "hint": None,
                    "type": "KeyboardInterrupt",
                    "exit_code": 130,
                }
            ),
        },
        "seconds": round(seconds, 3),
        "out_dir": str(out_dir),
        "project": {**project.to_dict(), "path": str(project.path) if project.path else None},
        "stages": [r.to_dict() for r in records],
        "target": _target(project.target.name),
        "bench_target": _target(project.bench_target)
        if project.bench_target != project.target.name
        else None,
        **stage_reports,
        "environment": environment(stage_reports.get("bench")),
    }
    report["summary"] = summary(report)
    return report


def _target(name: str) -> dict[str, Any] | None:
    from toolchain.errors import EdgeDeployError
    from toolchain.targets import load_target

    try:
        t = load_target(name)
    except EdgeDeployError:
        return {"name": name, "error": "cannot load the profile"}
    return {
        "name": t.name,
        "kind": t.kind,
        "description": t.description,
        "core": t.cpu.core,
        "fpu": t.cpu.fpu,
        "clock_hz": t.cpu.clock_hz,
        "flash_bytes": t.memory.flash_bytes,
        "ram_bytes": t.memory.ram_bytes,
        "transport": t.transport.kind,
        "source": t.source,
    }


def summary(r: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers (None where the stage that gives them did not run)."""
    conv, prune, emit, bench = (r.get(k) or {} for k in ("convert", "prune", "emit", "bench"))
    validate, fw = r.get("validate") or {}, r.get("firmware") or {}
    acc = conv.get("accuracy") or {}
    fid = conv.get("fidelity") or {}
    sqnrs = [f.get("sqnr_db") for f in fid.values() if f.get("sqnr_db") is not None]
    varying = [f["sqnr_input_dependent_db"] for f in fid.values()
               if f.get("sqnr_input_dependent_db") is not None]  # fmt: skip
    mem = emit.get("memory") or {}
    bsum = bench.get("summary") or {}
    build = (fw.get("build") or {}) if fw else {}
    image = build.get("memory") or {}
    # the project's own name for the model: the converter only saw the pruned module object
    named = ((r.get("project") or {}).get("model") or {}).get("source")
    model = named or (conv.get("model") or {}).get("source")
    return {
        "model": model,
        "params_before": prune.get("params_before"),
        "params_after": prune.get("params_after"),
        "tflite_bytes": conv.get("tflite_bytes"),
        "tflite_bytes_unpruned": prune.get("tflite_bytes_before"),
        "ops": sum((conv.get("ops") or {}).values()) if conv.get("ops") else None,
        "arena_bytes": (emit.get("arena") or {}).get("size"),
        "flash_total_bytes": (mem.get("flash") or {}).get("total"),
        "flash_budget_bytes": (mem.get("flash") or {}).get("budget"),
        "ram_total_bytes": (mem.get("ram") or {}).get("total"),
        "ram_budget_bytes": (mem.get("ram") or {}).get("budget"),
        "fits": _image_fits(image) if image else (mem.get("flash", {}).get("fits", True) and mem.get("ram", {}).get("fits", True) if mem else None),
        "image_flash_bytes": image.get("flash_used_bytes"),
        "image_ram_bytes": image.get("ram_used_bytes"),
        "accuracy_float": acc.get("float"),
        "accuracy_int8": acc.get("int8"),
        "accuracy_tflm": (validate.get("tflm") or {}).get("accuracy"),
        "min_sqnr_db": min(sqnrs) if sqnrs else None,
        "min_sqnr_input_dependent_db": min(varying) if varying else None,
        "latency_median": bsum.get("median"),
        "latency_unit": bsum.get("unit"),
        "latency_runs": bsum.get("n"),
        "runner": bench.get("runner"),
        "firmware_built": bool(build.get("elf")) if fw else None,
        "firmware_runtime": fw.get("runtime") if fw else None,
        "stack_peak_bytes": (bench.get("memory") or {}).get("stack_peak_bytes"),
        "ram_measured_bytes": (bench.get("memory") or {}).get("ram_measured_bytes"),
    }  # fmt: skip


def _image_fits(image: Mapping[str, Any]) -> bool:
    """The linked firmware image's flash and RAM within the target's budget."""
    return all(
        image.get(f"{k}_used_bytes", 0) <= (image.get(f"{k}_budget_bytes") or float("inf"))
        for k in ("flash", "ram")
    )


def environment(bench: Mapping[str, Any] | None) -> dict[str, Any]:
    """Versions of Python, edgedeploy and the tool stack; this machine; the device measured."""
    versions: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    env: dict[str, Any] = {
        "edgedeploy": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "tools": {
            "arm-none-eabi-gcc": _tool_version("arm-none-eabi-gcc"),
            "qemu-system-arm": _tool_version("qemu-system-arm"),
        },
    }
    if bench:
        env["device"] = bench.get("device")
        env["bench_environment"] = bench.get("environment")
    return env


def _tool_version(tool: str) -> str | None:
    exe = shutil.which(tool)
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def render_html(report: Mapping[str, Any]) -> str:
    """report.json's content → report.html (see :mod:`toolchain.report.html`)."""
    from toolchain.report.html import render

    return render(report)


def write_reports(
    out_dir: Path, report: Mapping[str, Any], *, html: bool = True
) -> tuple[Path, Path | None]:
    """Write ``report.json`` (and ``report.html``) into ``out_dir``, each atomically."""
    json_path = atomic_write_json(out_dir / REPORT_JSON, dict(report))
    html_path = atomic_write_text(out_dir / REPORT_HTML, render_html(report)) if html else None
    return json_path, html_path
