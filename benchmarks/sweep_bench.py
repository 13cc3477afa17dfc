"""A 12-point sweep of the digits demo: ``edgedeploy run`` in a loop vs ``edgedeploy sweep`` on
a local Ray (one node) vs a two-node Ray cluster on this machine.

``python -m benchmarks.run sweep [-- --epochs N --runs N]``. The grid: prune ratio (0.25, 0.5,
0.75) × activations (int8, int16) × board (``target.name`` mps2-an386, mps2-an500: the emit
stage's memory plan and the firmware project differ per board). Every point is built with the
compiled runtime (the model as plain C, int8 and int16x8 alike) and benched in QEMU on its own
board (the project's default bench target: deterministic instruction counts, so the fronts do
not depend on timing noise), QEMU points in parallel (no ``exclusive_targets``). Each measurement starts cold (its own copy of the source tree, empty
stage store and converter cache) and records wall time, the load average before and after,
stage cache hits and the fronts; then a warm sweep (a new sweep folder, the 1-node sweep's
store: every stage a cache hit) gives Ray's overhead per point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, say, update_readme, write_result

SOURCE_PARTS = ("toolchain", "targets", "firmware_templates", "examples")
AXES = {
    "prune.ratio": [0.25, 0.5, 0.75],
    "quantization.activations": ["int8", "int16"],
    "target.name": ["mps2-an386", "mps2-an500"],
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _write_toml(path: Path, data: dict[str, Any]) -> None:
    """The simple TOML of a project file (scalars and lists in tables, one level of sub-tables)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        lines.append(f"\n[{name}]")
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if k not in subs]
        for sk, sv in subs.items():
            lines.append(f"\n[{name}.{sk}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in sv.items()]
    path.write_text("\n".join(lines) + "\n")


def _source(tmp: Path) -> Path:
    src = tmp / "src"
    for part in SOURCE_PARTS:
        shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__", "out"))  # fmt: skip
    return src


def _base(src: Path, epochs: int, runs: int) -> dict[str, Any]:
    proj = src / "examples/digits/edgedeploy.toml"
    data = tomllib.loads(proj.read_text())
    data["prune"]["epochs"] = epochs
    data["bench"]["runs"] = runs
    return data


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 3600) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return time.monotonic() - t0


def _fronts(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    from toolchain.sweep.pareto import FRONTS, front

    ok = [r for r in records if r.get("status") == "ok"]
    by = {r["id"]: r["label"] for r in ok}
    return {f"{y}_vs_{x}": sorted(by[i] for i in front(ok, (x, y))) for x, y in FRONTS}


def sequential(src: Path, base: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Every point as its own project file through ``edgedeploy run`` (one converter cache)."""
    from toolchain.sweep.pareto import metrics
    from toolchain.sweep.spec import apply, grid

    env = {**os.environ, "PYTHONPATH": str(src), "EDGEDEPLOY_CACHE_DIR": str(tmp / "seq-cache")}
    pts = grid(tuple((k, tuple(v)) for k, v in AXES.items()))
    load0, t0 = os.getloadavg()[0], time.monotonic()
    records, hits = [], 0
    for p in pts:
        proj = src / "examples/digits" / f"seq-{p.id}.toml"
        _write_toml(proj, apply(base, p))
        out = tmp / "seq" / p.id
        _run([sys.executable, "-m", "toolchain", "-q", "run", str(proj), "--out", str(out)], env, src)  # fmt: skip
        rep = json.loads((out / "report.json").read_text())
        hits += sum(1 for s in rep["stages"] if s["status"] == "cached")
        records.append({**p.to_dict(), "status": rep["status"] if rep.get("status") != "ok" else "ok", "metrics": metrics(rep["summary"])})  # fmt: skip
    wall = time.monotonic() - t0
    say(f"  sequential: {wall:.1f} s")
    return {"wall_s": round(wall, 1), "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "stage_cache_hits": hits, "fronts": _fronts(records), "ok": sum(r["status"] == "ok" for r in records)}  # fmt: skip


def _sweep_project(src: Path, base: dict[str, Any], name: str, store: Path) -> Path:
    data = dict(base)
    data["sweep"] = {"dir": f"out/{name}", "store": str(store), "axes": dict(AXES)}  # fmt: skip
    proj = src / "examples/digits" / f"{name}.toml"
    _write_toml(proj, data)
    return proj


def sweep(src: Path, proj: Path, env: dict[str, str], extra: list[str]) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    wall = _run([sys.executable, "-m", "toolchain", "-q", "sweep", str(proj), *extra], env, src)
    data = json.loads((proj.parent / "out" / proj.stem / "sweep.json").read_text())
    pts = data["points"]
    say(f"  sweep {' '.join(extra)}: {wall:.1f} s, {data['counts']}")
    return {
        "wall_s": round(wall, 1),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "counts": data["counts"],
        "nodes_used": len({(p.get("node") or {}).get("node_id") for p in pts}),
        "point_seconds_sum": round(sum(p.get("seconds") or 0 for p in pts), 1),
        "stages_built": {
            s: sum(1 for p in pts for r in p["stages"] if r["name"] == s and r["status"] == "ok")
            for s in ("prune", "convert", "validate", "emit", "firmware", "bench")
        },  # fmt: skip
        "fronts": _fronts(pts),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def two_nodes(src: Path, proj: Path, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """A head (1 CPU) and a worker node (1 CPU, its own temp dir) on this machine."""
    import psutil

    port = _free_port()
    head_tmp, worker_tmp = tmp / "rh", tmp / "rw"
    env = {**env, "RAY_AUTH_MODE": "disabled"}
    procs_before = {p.pid for p in psutil.process_iter()}
    try:
        subprocess.run([_ray_bin(), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={head_tmp}", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([_ray_bin(), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={worker_tmp}", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        return sweep(src, proj, env, ["--address", f"127.0.0.1:{port}"])
    finally:
        for p in psutil.process_iter(["cmdline"]):
            if p.pid not in procs_before and any(str(tmp) in a for a in (p.info["cmdline"] or [])):
                for q in [*p.children(recursive=True), p]:
                    with contextlib.suppress(psutil.Error):
                        q.send_signal(signal.SIGKILL)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.run sweep")
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs after pruning")
    ap.add_argument("--runs", type=int, default=20, help="bench runs per point")
    ap.add_argument("--skip-sequential", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgedeploy-sweep-bench-") as tmpd:
        tmp = Path(tmpd)
        src = _source(tmp)
        sys.path.insert(0, str(src))
        base = _base(src, args.epochs, args.runs)
        env = {**os.environ, "PYTHONPATH": str(src)}
        out: dict[str, Any] = {}
        if not args.skip_sequential:
            say("sequential edgedeploy run x 12 ...")
            out["sequential"] = sequential(src, base, tmp)
        say("sweep, 1 node (local Ray, 2 CPUs) ...")
        one = _sweep_project(src, base, "sweep1", tmp / "store1")
        out["sweep_1node"] = sweep(src, one, env, ["--cpus", "2"])
        say("sweep, warm store (every stage cached): Ray's overhead per point ...")
        warm = _sweep_project(src, base, "sweepwarm", tmp / "store1")
        out["sweep_warm"] = sweep(src, warm, env, ["--cpus", "2"])
        say("sweep, 2 nodes (ray start --head + a worker node, 1 CPU each) ...")
        two = _sweep_project(src, base, "sweep2", tmp / "store2")
        out["sweep_2nodes"] = two_nodes(src, two, env, tmp)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": {"axes": AXES, "epochs": args.epochs, "bench_runs": args.runs, "bench_target": "[target] board in QEMU"},
        **out,
    }  # fmt: skip
    write_result("sweep", result)
    update_readme("sweep", _table(result))
    return 0


def _table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Measured {r['date']} on {m['platform']}, {m['cpus']} logical CPUs, **shared with other "
        "jobs** (load = 1-minute load average before → after each measurement; the numbers are "
        f"noisy). `python -m benchmarks.run sweep` (epochs {r['settings']['epochs']}, "
        f"{r['settings']['bench_runs']} bench runs per point in QEMU on the point's own board, compiled runtime).",
        "",
        "| run | wall (s) | × sequential | load | points ok | prunes built | stage cache hits | nodes used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seq = r.get("sequential")
    if seq:
        lines.append(f"| `edgedeploy run` × 12 | {seq['wall_s']:.1f} | 1.00 | {seq['load_before']:.1f} → {seq['load_after']:.1f} | {seq['ok']} | 12 | {seq['stage_cache_hits']} | 1 |")  # fmt: skip
    for key, label in (("sweep_1node", "sweep, 1 node (2 CPUs)"), ("sweep_2nodes", "sweep, 2 nodes (1 CPU each)"), ("sweep_warm", "sweep, warm store")):  # fmt: skip
        s = r[key]
        ratio = f"{s['wall_s'] / seq['wall_s']:.2f}" if seq else "–"
        lines.append(f"| {label} | {s['wall_s']:.1f} | {ratio} | {s['load_before']:.1f} → {s['load_after']:.1f} | {s['counts']['ok']} | {s['stages_built']['prune']} | {s['counts']['stage_cache_hits']} | {s['nodes_used']} |")  # fmt: skip
    w = r["sweep_warm"]
    lines += [
        "",
        f"Ray's overhead per point (warm store: every stage a cache hit, so a point is Ray "
        f"scheduling + process start + stage copies + the report): {w['wall_s'] / 12:.2f} s "
        f"wall per point, including Ray's start ({w['wall_s']:.1f} s for 12).",
    ]
    if seq:
        same = {k: seq["fronts"][k] == r["sweep_1node"]["fronts"][k] == r["sweep_2nodes"]["fronts"][k] for k in seq["fronts"]}  # fmt: skip
        lines.append("Same Pareto front in all three: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in same.items()) + " (latency = QEMU instruction count, deterministic).")  # fmt: skip
    return "\n".join(lines)
