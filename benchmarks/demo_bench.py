"""How long ``make demo`` takes: the demo project through ``edgedeploy run``, cold (empty
caches), then unchanged (every stage from the stage cache), then with ``--force bench``; with
``$EDGEDEPLOY_TFLM_LIB``/``$EDGEDEPLOY_TFLM_INCLUDE`` set, then also with that library (the
TFLM image built instead of the compiled one, then measured in QEMU).

``python -m benchmarks.run demo [-- --repeats N]``. Each run is a subprocess on a copy of the
source tree (the stage cache keys on edgedeploy's code, which others may be editing while
this runs) with its own converter cache. Wall time and the CPU time of the run's processes
(user + system, children included) are recorded with the load average of the machine before
and after, so numbers from a busy machine can be read as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, say, update_readme, write_result

SOURCE_PARTS = ("toolchain", "targets", "firmware_templates", "examples")
RUNS = (("cold", ()), ("cached", ()), ("force bench", ("--force", "bench")))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _demo(src: Path, out: Path, env: dict[str, str], extra: tuple[str, ...]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    cpu0, t0 = _cpu(), time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "toolchain", "-q", "demo", "--out", str(out), "--json", *extra],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"edgedeploy demo failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "stages": {s["name"]: [s["status"], s["seconds"]] for s in report["stages"]},
        "summary": report["summary"],
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.run demo")
    ap.add_argument("--repeats", type=int, default=1, help="cold runs (each with empty caches)")
    args = ap.parse_args(argv)
    results: list[dict[str, Any]] = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="edgedeploy-demo-bench-") as tmp:
            src = Path(tmp) / "src"
            for part in SOURCE_PARTS:
                shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__", "out"))  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(src), "EDGEDEPLOY_CACHE_DIR": f"{tmp}/cache"}
            lib, inc = env.pop("EDGEDEPLOY_TFLM_LIB", None), env.get("EDGEDEPLOY_TFLM_INCLUDE")
            qemu = ("--tflm-lib", lib, "--tflm-include", inc, "--bench-target", "mps2-an386")
            for label, extra in (*RUNS, *([("qemu", qemu)] if lib and inc else [])):
                say(f"demo {i + 1}/{args.repeats}: {label} ...")
                r = _demo(src, Path(tmp) / "out", env, extra)
                say(f"  {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, load {r['load_before']}")
                results.append({"repeat": i, "run": label, **r})
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "runs": results,
    }  # fmt: skip
    write_result("demo", result)
    update_readme("demo", _table(result))
    return 0


def _table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Measured {result['date']} on {m['platform']}, {m['cpus']} logical CPUs (shared with "
        "other jobs: the load average is the 1-minute one when each run started), "
        "`python -m benchmarks.run demo`.",
        "",
        "| run | wall (s) | CPU user+sys (s) | load | prune | convert | validate | emit | firmware | bench |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        cells = [f"{st} {sec:.1f} s" for st, sec in (r["stages"][n] for n in ("prune", "convert", "validate", "emit", "firmware", "bench"))]  # fmt: skip
        lines.append(f"| {r['run']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['load_before']:.1f} | " + " | ".join(cells) + " |")  # fmt: skip
    s = result["runs"][0]["summary"]
    lines += [
        "",
        f"Demo result: int8 model {s['tflite_bytes']:,} B (unpruned {s['tflite_bytes_unpruned']:,} B), "
        f"arena {s['arena_bytes']:,} B, accuracy {s['accuracy_float']:.2f}% float → "
        f"{s['accuracy_int8']:.2f}% int8, SQNR {s['min_sqnr_db']:.1f} dB, median "
        + (f"{s['latency_median']:,.0f} {s['latency_unit']} on {s['runner']} (QEMU -icount, not "
           f"time; runtime {s.get('firmware_runtime')}), image {s['image_flash_bytes']:,} B flash, "
           f"RAM used {s.get('ram_measured_bytes') or 0:,} B (data+bss+stack peak)."
           if s["runner"] == "qemu"
           else f"{s['latency_median']:.1f} {s['latency_unit']} on {s['runner']} (host timings)."),
    ]  # fmt: skip
    for r in result["runs"]:
        if r["run"] == "qemu":
            q = r["summary"]
            lines.append(
                f"With the TFLM library (`qemu` row: the image built, then measured on mps2-an386 "
                f"in QEMU): median {q['latency_median']:,.0f} {q['latency_unit']} "
                f"({q['latency_runs']} runs, QEMU -icount, not time), image "
                f"{q['image_flash_bytes']:,} B flash / {q['image_ram_bytes']:,} B RAM."
            )
            break
    lines.append("")
    return "\n".join(lines)
