"""Emulated tier: `edgedeploy sweep` on real Ray — a local Ray (``num_cpus=2``) and a real
two-node cluster on this machine (``ray start --head`` plus a second ``ray start --address``
worker node, each with its own temp dir and non-default ports), the digits demo with tiny
settings as the project, the host TFLM device as the board.

* local: points sharing a pruned model prune once (the shared stage store); a point that fails
  (an SQNR floor it cannot meet) is recorded with its error and the sweep goes on; host-TFLM
  benches never overlap (``exclusive_targets``: one Ray actor); sweep.json/html; a second sweep
  resumes every point without running anything.
* cluster: the points land on both nodes; the worker node killed in the middle of a point →
  the point is retried on the head and the sweep completes.
* interrupt: SIGINT to `edgedeploy sweep` after its first finished point → exit 130, then the
  next sweep takes the finished point as it is and runs only the rest.

No Ray process is left behind (the cluster's processes are found by their temp dirs and killed
by pid in the fixture's teardown). About 2 minutes on 2 shared cores.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from toolchain.sweep import SweepResult, load_sweep, run_sweep

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "digits"
RAY = str(Path(sys.executable).with_name("ray"))

TINY = """
[sweep]
dir = "{dir}"
store = "{store}"
exclusive_targets = {exclusive}
max_retries = 3

[sweep.axes]
{axes}

[[sweep.constraints]]
name = "accurate"
accuracy_min = 90.0
"""


def _project(folder: Path, *, axes: str, store: Path, exclusive: bool = True, name: str = "sweep") -> Path:  # fmt: skip
    """The demo project in ``folder`` with tiny settings (no fine-tuning, 5 bench runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO / "digits_model.py", folder / "digits_model.py")
    text = (DEMO / "edgedeploy.toml").read_text()
    text = text.replace("epochs = 3", "epochs = 0").replace("runs = 20\n", "runs = 5\n")
    text = text.replace("warmup = 2", "warmup = 1")
    # benchmarked on the host TFLM device (one at a time, in its actor), not in QEMU
    text = text.replace("[bench]\n", '[bench]\ntarget = "host-tflm"\n')
    assert 'target = "host-tflm"' in text and "runs = 5" in text, "the demo project changed"
    sweep = TINY.format(dir=name, store=store, axes=axes, exclusive='["host-tflm"]' if exclusive else "[]")  # fmt: skip
    p = folder / "edgedeploy.toml"
    p.write_text(text + sweep)
    return p


def _alive(procs: list[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    """Those of ``procs`` still running after ``timeout`` s (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def _kill_matching(needle: str) -> int:
    """Kill (by pid) every process whose command line names ``needle``, and its children."""
    n = 0
    for p in psutil.process_iter(["cmdline"]):
        if p.pid == os.getpid() or not any(needle in a for a in (p.info["cmdline"] or [])):
            continue
        with contextlib.suppress(psutil.Error):
            for q in [*p.children(recursive=True), p]:
                with contextlib.suppress(psutil.Error):
                    q.kill()
                    n += 1
    return n


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """A 4-point sweep on a local Ray with 2 CPUs: an SQNR floor (90 dB fails) × bench runs;
    all four points need the same pruned model (the demo's ratio 0.5)."""
    import ray

    tmp = tmp_path_factory.mktemp("sweep-local")
    proj = _project(
        tmp / "proj",
        axes="quantization.min_sqnr_db = [20.0, 90.0]\nbench.runs = [5, 6]",
        store=tmp / "store",
    )
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    spawned: list[psutil.Process] = []

    def progress(event: str, done: int, total: int) -> None:  # while Ray runs: its processes
        spawned.extend(p for p in psutil.Process().children(recursive=True) if p.pid not in mine)

    result = run_sweep(load_sweep(proj), num_cpus=2, progress=progress)
    assert not ray.is_initialized()  # the sweep shut down the Ray it started
    assert spawned and not _alive(spawned), "Ray processes left behind"
    return result


def test_local_sweep_shares_stages_and_records_failures(local: SweepResult) -> None:
    pts = {p["label"]: p for p in local.points}
    assert len(pts) == 4
    ok = [p for p in pts.values() if p["status"] == "ok"]
    failed = [p for p in pts.values() if p["status"] == "failed"]
    assert {p["settings"]["quantization.min_sqnr_db"] for p in ok} == {20.0}
    assert len(failed) == 2  # 90 dB: the validate stage's gate, recorded; the sweep went on
    for p in failed:
        assert p["error"]["stage"] == "validate" and p["error"]["type"] == "FidelityError"
        assert p["metrics"]["accuracy"] is not None  # what ran before the failure is kept
    # pruned (and converted) once: the other points took it from the store
    rows = [s for p in local.points for s in p["stages"]]
    assert [s["status"] for s in rows if s["name"] == "prune"].count("ok") == 1
    assert [s["status"] for s in rows if s["name"] == "convert"].count("ok") == 1
    # validate once per floor (the failing one too), emit/firmware once, bench per point
    assert [s["status"] for s in rows if s["name"] == "validate"].count("ok") == 1
    assert [s["status"] for s in rows if s["name"] == "emit"].count("ok") == 1
    assert [s["status"] for s in rows if s["name"] == "bench"].count("ok") == 2
    assert local.data["counts"]["stage_cache_hits"] == 3 + 3 + 1 + 1 + 1  # by stage, as above
    # the host-TFLM benches ran one at a time, in the device actor
    windows = sorted(p["bench_window"] for p in ok)
    assert len(windows) == 2 and windows[0][1] <= windows[1][0]
    assert all(p["device"] == "host-tflm:host-tflm" for p in ok)
    # every point says where it ran; the metrics are the pipeline's own report
    for p in local.points:
        assert p["node"]["node_id"] and p["node"]["host"] == socket.gethostname()
        report = json.loads(Path(p["report"]).read_text())
        assert p["metrics"]["sqnr_db"] == report["summary"]["min_sqnr_db"]
    assert 90 < ok[0]["metrics"]["accuracy"] <= 100 and ok[0]["metrics"]["latency_unit"] == "us"


def test_local_sweep_report(local: SweepResult) -> None:
    data = json.loads(local.json_path.read_text())
    ok_ids = {p["id"] for p in data["points"] if p["status"] == "ok"}
    assert set(data["fronts"]["accuracy_vs_flash_bytes"]) <= ok_ids
    assert data["fronts"]["accuracy_vs_flash_bytes"]
    rec = data["recommended"][0]
    assert rec["constraints"]["name"] == "accurate" and rec["feasible"] == 2
    best = max((p for p in data["points"] if p["id"] in ok_ids), key=lambda p: (p["metrics"]["accuracy"], -p["metrics"]["latency"]))  # fmt: skip
    assert rec["point"] == best["id"]
    html = local.html_path.read_text()
    assert html.count("data:image/png;base64,") == 3 and "FidelityError" not in html
    assert "no point meets" not in html and best["label"] in html


def test_second_sweep_resumes_everything(local: SweepResult) -> None:
    import ray

    t0 = time.monotonic()
    again = run_sweep(local.spec)
    assert again.data["counts"]["resumed"] == 4 and not ray.is_initialized()  # Ray never started
    assert time.monotonic() - t0 < 10
    assert [p["id"] for p in again.points] == [p["id"] for p in local.points]
    assert again.data["fronts"] == local.data["fronts"]


# --- a two-node cluster on this machine --------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    address: str
    head_node: str
    worker_node: str
    worker_tmp: Path
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_ids(address: str, env: dict[str, str]) -> dict[str, str]:
    """temp dir → node id, read through a short-lived driver (a subprocess: this test process
    keeps its own Ray connections for the sweeps)."""
    code = (
        "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(json.dumps({n['NodeID']: n['ObjectStoreSocketName'] for n in ray.nodes() if n['Alive']}))"
    )
    out = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    nodes = json.loads(out.stdout.strip().splitlines()[-1])
    return {sock: nid for nid, sock in nodes.items()}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    head_tmp = Path(tempfile.mkdtemp(prefix="edrh", dir="/tmp"))  # short: Ray's socket paths
    worker_tmp = Path(tempfile.mkdtemp(prefix="edrw", dir="/tmp"))
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAY_AUTH_MODE": "disabled",
    }
    common = ["--num-cpus=1", "--disable-usage-stats"]

    def ports() -> list[str]:  # none of Ray's fixed defaults: other Rays may run here
        return [f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}"]  # fmt: skip

    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--temp-dir={head_tmp}", f"--ray-client-server-port={_free_port()}", *common, *ports()],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={worker_tmp}", *common, *ports()],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        address = f"127.0.0.1:{port}"
        ids = _node_ids(address, env)
        head = next(n for s, n in ids.items() if str(head_tmp) in s)
        worker = next(n for s, n in ids.items() if str(worker_tmp) in s)
        yield Cluster(address, head, worker, worker_tmp, env)
    finally:
        for tmp in (worker_tmp, head_tmp):
            _kill_matching(str(tmp))
        time.sleep(0.5)
        for tmp in (worker_tmp, head_tmp):
            assert _kill_matching(str(tmp)) == 0, "Ray processes left behind"
            shutil.rmtree(tmp, ignore_errors=True)


def test_cluster_points_on_both_nodes(cluster: Cluster, local: SweepResult, tmp_path: Path) -> None:  # fmt: skip
    """Warm store (the local sweep's): every stage but the bench is a copy; 4 short points."""
    proj = _project(
        tmp_path,
        axes="quantization.min_sqnr_db = [20.0, 21.0]\nbench.runs = [6, 7]",
        store=local.spec.store,
        exclusive=False,
    )
    result = run_sweep(load_sweep(proj), address=cluster.address)
    assert result.data["counts"]["ok"] == 4
    nodes = {p["node"]["node_id"] for p in result.points}
    assert nodes == {cluster.head_node, cluster.worker_node}
    assert result.data["cluster"]["nodes"] == 2 and result.data["counts"]["nodes"] == 2
    assert all(p["stages"][0]["status"] == "cached" for p in result.points)  # prune shared


@pytest.mark.slow
def test_worker_node_killed_mid_point(cluster: Cluster, tmp_path: Path) -> None:
    """A cold store: each point prunes (tens of seconds); the worker node dies in its point."""
    proj = _project(tmp_path, axes="prune.ratio = [0.3, 0.6]", store=tmp_path / "store", exclusive=False)  # fmt: skip
    spec = load_sweep(proj)
    killed = threading.Event()

    def kill_when_started() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.is_set():
            for p in spec.points:
                f = spec.dir / "points" / p.id / "attempts.json"
                with contextlib.suppress(OSError, ValueError):
                    if any(a["node_id"] == cluster.worker_node for a in json.loads(f.read_text())):
                        time.sleep(2)  # well inside the point (its prune takes longer)
                        _kill_matching(str(cluster.worker_tmp))
                        killed.set()
                        return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_when_started, daemon=True)
    watcher.start()
    result = run_sweep(spec, address=cluster.address)
    watcher.join(5)
    assert killed.is_set(), "no point started on the worker node"
    assert result.data["counts"]["ok"] == 2, [p.get("error") for p in result.points]
    retried = [p for p in result.points if len(p["attempts"]) > 1]
    assert len(retried) == 1
    attempts: list[dict[str, Any]] = retried[0]["attempts"]
    assert attempts[0]["node_id"] == cluster.worker_node
    assert attempts[-1]["node_id"] == cluster.head_node == retried[0]["node"]["node_id"]
    assert not list(spec.dir.rglob(".*.building-*"))  # nothing half-written was kept


# --- Ctrl-C and resume -------------------------------------------------------------------------


def test_interrupt_then_resume(local: SweepResult, tmp_path: Path) -> None:
    """Ratio 0.5 is in the local sweep's store (fast); 0.75 is not (a prune): SIGINT lands
    after the first point finished, while the other prunes."""
    proj = _project(tmp_path, axes="prune.ratio = [0.5, 0.75]", store=local.spec.store)
    spec = load_sweep(proj)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "toolchain", "-q", "sweep", str(proj), "--cpus", "2"]
    # SIGINT at its default even when the tests run as a background job (which ignores it)
    sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=sigint)  # fmt: skip
    first = spec.dir / "points" / spec.points[0].id / "point.json"
    deadline = time.monotonic() + 180
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.exists(), proc.stderr.read() if proc.stderr else ""
    assert not (spec.dir / "points" / spec.points[1].id / "point.json").exists()
    ray_procs = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    left = _alive(ray_procs)  # the interrupted sweep's Ray went with it
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not left, [p.cmdline()[:2] for p in left]
    data = json.loads((spec.dir / "sweep.json").read_text())
    assert data["status"] == "interrupted" and [p["id"] for p in data["points"]] == [spec.points[0].id]  # fmt: skip
    again = run_sweep(load_sweep(proj), num_cpus=2)
    by = {p["id"]: p for p in again.points}
    assert by[spec.points[0].id].get("resumed") and not by[spec.points[1].id].get("resumed")
    assert again.data["counts"]["ok"] == 2 and again.data["status"] == "finished"
