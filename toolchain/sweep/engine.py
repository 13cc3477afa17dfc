"""Running a sweep's points on Ray: one task per point, device actors, retries, resume.

Every point is the ordinary pipeline (:func:`toolchain.pipeline.run_project`) into its own
folder ``<dir>/points/<id>/``, with one :class:`~toolchain.pipeline.cache.StageStore` shared by
all points (``<dir>/store`` or ``[sweep] store``) and one converter cache
(``$EDGEDEPLOY_CACHE_DIR`` = ``<store>/convert-cache``): points that need the same stage with
the same inputs build it once. On a cluster the sweep folder and the store must be visible
at the same path on every node (one machine, or a shared mount).

Scheduling: a point is a Ray task reserving ``cpus_per_point`` CPUs (Ray sets
``OMP_NUM_THREADS`` to match), retried up to ``max_retries`` times when its worker or node
dies. Points whose bench target is a physical device (serial, ADB, SSH transport) or listed in
``exclusive_targets`` run their stages up to ``firmware`` in the task and their bench stage in
one Ray actor per device (``max_concurrency=1``, pinned to the driver's node, where the
devices are attached): two points never measure on one device at once. QEMU and the host
TFLM device run in the tasks, in parallel.

Each finished point writes ``point.json`` atomically in its folder before its task returns;
a later sweep over the same project takes those as they are (``resume``). A point that fails
with an edgedeploy error is finished too (recorded with its error); a point whose worker died
more often than retries allow is reported as failed but not persisted, so the next sweep runs
it again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.errors import EdgeDeployError, StageError, UsageError
from toolchain.fsutil import atomic_write_json
from toolchain.sweep.pareto import metrics
from toolchain.sweep.spec import Point, SweepSpec

log = logging.getLogger(__name__)

POINT_FILE = "point.json"
ATTEMPTS_FILE = "attempts.json"
POINT_SCHEMA = 1
#: bench transports that are one physical device each
DEVICE_TRANSPORTS = ("serial", "adb", "ssh")
#: the tables whose keys decide the CPU-heavy stages (prune, convert): points that differ
#: there are started first, so that parallel workers do not wait on one another's builds
HEAVY_TABLES = ("model", "data", "prune", "quantization")

#: ``(event, done, total)``: ``event`` is ``"point <label>: <status>"`` or ``"sweep"``
SweepProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PointJob:
    """What a worker needs to run one point (plain data: it travels to the worker)."""

    spec_path: str
    root: str
    base: dict[str, Any]
    fingerprint: str
    point: Point
    folder: str
    store: str
    device: str | None = None  # the device key when the bench stage goes to an actor


def point_dir(spec: SweepSpec, point: Point) -> Path:
    return spec.dir / "points" / point.id


def device_key(spec: SweepSpec, point: Point) -> str | None:
    """The device a point benches on when that device takes one point at a time, else None."""
    from toolchain.targets import load_target

    project = spec.project(point)
    if not project.bench.enabled:
        return None
    name = project.bench_target
    target = load_target(name)
    kind = project.bench.runner or target.transport.kind
    if kind not in DEVICE_TRANSPORTS and name not in spec.exclusive_targets:
        return None
    b = project.bench
    t = target.transport
    where = b.port or b.adb_serial or b.ssh_host or t.serial_url or t.adb_serial or t.ssh_host or ""
    return f"{kind}:{name}:{where}".rstrip(":")


def node_info() -> dict[str, Any]:
    """Where this code runs: the Ray node id (when inside Ray), host name and process id."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray the node is simply unknown
        node = None
    return {"node_id": node, "host": socket.gethostname(), "pid": os.getpid()}


def _stage_rows(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for st in (report or {}).get("stages") or []:
        rows.append({k: st.get(k) for k in ("name", "status", "seconds", "built_seconds")})
    return rows


def _read(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_point(job: PointJob, bench: Any = None) -> dict[str, Any]:
    """Run one point's pipeline (in a Ray worker, or in-process) and persist its record.

    ``bench``: a :class:`DeviceBench` actor handle that runs the bench stage, or None to run
    every stage here. Returns the record also written to ``<folder>/point.json``; an
    edgedeploy error makes a ``failed`` record, never an exception.
    """
    from toolchain.convert.cache import CACHE_ENV
    from toolchain.pipeline import run_project
    from toolchain.pipeline.cache import StageStore
    from toolchain.sweep.spec import point_project

    folder = Path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    where = node_info()
    t0 = time.time()
    attempts = _read(folder / ATTEMPTS_FILE) or []
    attempts.append({**where, "started": t0})
    atomic_write_json(folder / ATTEMPTS_FILE, attempts)
    os.environ[CACHE_ENV] = str(Path(job.store) / "convert-cache")
    out = folder / "run"
    before: list[dict[str, Any]] = []  # the stages run here when an actor ran the bench
    error: dict[str, Any] | None = None
    bench_on: dict[str, Any] | None = None
    try:
        project = point_project(job.base, job.point, root=Path(job.root), source=job.spec_path)
        store = StageStore(job.store)
        if bench is not None and job.device is not None:
            run_project(project, out_dir=out, store=store, stop_after="firmware")
            before = _stage_rows(_read(out / "report.json"))
            import ray

            bench_on = ray.get(bench.bench.remote(job))
        else:
            run_project(project, out_dir=out, store=store)
    except StageError as exc:
        error = {"stage": exc.stage, **_error(exc.cause)}
    except EdgeDeployError as exc:
        error = {"stage": None, **_error(exc)}
    except Exception as exc:  # noqa: BLE001 - a bug in one point must not end the sweep
        error = {
            "stage": None,
            "type": type(exc).__name__,
            "message": f"internal error: {exc}",
            "hint": "a bug in edgedeploy; the traceback is in the record",
            "traceback": traceback.format_exc(limit=8),
        }
    report = _read(out / "report.json")
    if bench_on is not None and bench_on.get("error"):
        error = bench_on["error"]
    rows = _stage_rows(report)
    if before:  # the actor's run found the earlier stages in the folder: keep how they went here
        rows = [r for r in before if r["name"] != "bench"] + [
            r for r in rows if r["name"] == "bench"
        ]
    record = {
        "schema": POINT_SCHEMA,
        "fingerprint": job.fingerprint,
        **job.point.to_dict(),
        "status": "failed" if error else "ok",
        "error": error,
        "node": where,
        "bench_node": (bench_on or {}).get("node"),
        "device": job.device,
        "bench_window": (bench_on or {}).get("window"),
        "attempts": attempts,
        "started": t0,
        "seconds": round(time.time() - t0, 3),
        "stages": rows,
        "cache_hits": sum(1 for r in rows if r["status"] == "cached"),
        "summary": (report or {}).get("summary"),
        "metrics": metrics((report or {}).get("summary")),
        "report": str(out / "report.json") if report else None,
    }
    atomic_write_json(folder / POINT_FILE, record)
    return record


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, EdgeDeployError):
        return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    return {"type": type(exc).__name__, "message": str(exc), "hint": None}


class DeviceBench:
    """The bench stage of the points that measure on one device: a Ray actor with
    ``max_concurrency=1`` runs them one after another (the earlier stages are already in the
    point's folder and come from its cache)."""

    def bench(self, job: PointJob) -> dict[str, Any]:
        from toolchain.convert.cache import CACHE_ENV
        from toolchain.pipeline import run_project
        from toolchain.pipeline.cache import StageStore
        from toolchain.sweep.spec import point_project

        os.environ[CACHE_ENV] = str(Path(job.store) / "convert-cache")
        start = time.time()
        error = None
        try:
            project = point_project(job.base, job.point, root=Path(job.root), source=job.spec_path)
            run_project(project, out_dir=Path(job.folder) / "run", store=StageStore(job.store))
        except StageError as exc:
            error = {"stage": exc.stage, **_error(exc.cause)}
        except EdgeDeployError as exc:
            error = {"stage": "bench", **_error(exc)}
        return {"node": node_info(), "window": [start, time.time()], "error": error}


@dataclass(frozen=True)
class Cluster:
    """What the sweep ran on (recorded in sweep.json)."""

    address: str | None
    nodes: int
    cpus: float
    started_here: bool


def connect(address: str | None, num_cpus: int | None) -> Cluster:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), or start a local one with
    ``num_cpus`` (default: this machine's cores). An already initialised Ray is used as is."""
    import ray

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kw: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if address is None:
            kw["num_cpus"] = num_cpus or os.cpu_count() or 1
        elif num_cpus is not None:
            raise UsageError("--cpus is for a local Ray; a cluster has its own CPUs")
        else:
            _check_reachable(address)
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"cannot reach the Ray cluster at {address}: {exc}",
                hint="start it with `ray start --head` (docs/sweep.md) or leave out --address "
                "(and RAY_ADDRESS) to run on this machine",
            ) from exc
        started = True
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return Cluster(
        address=address,
        nodes=len(nodes),
        cpus=float(ray.cluster_resources().get("CPU", 0)),
        started_here=started,
    )


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a cluster address nobody listens at (``ray.init`` would retry for
    minutes). ``auto`` and addresses without a port are left to Ray."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
            hint="start it with `ray start --head --port PORT` (docs/sweep.md), check the "
            "address, or leave out --address (and RAY_ADDRESS) to run on this machine",
        ) from exc


def order(spec: SweepSpec, points: list[Point]) -> list[Point]:
    """Points in submission order: round-robin over the groups of points that share their
    CPU-heavy settings (:data:`HEAVY_TABLES`), so that parallel workers build different
    pruned/converted models first and the rest then find them in the store."""
    groups: dict[str, list[Point]] = {}
    for p in points:
        heavy = tuple((k, repr(v)) for k, v in p.settings if k.split(".")[0] in HEAVY_TABLES)
        groups.setdefault(repr(heavy), []).append(p)
    out: list[Point] = []
    lists = list(groups.values())
    for i in range(max((len(g) for g in lists), default=0)):
        out.extend(g[i] for g in lists if i < len(g))
    return out


def finished_points(spec: SweepSpec, *, retry_failed: bool = False) -> dict[str, dict[str, Any]]:
    """The records of points a previous sweep of the same project finished (by point id)."""
    out = {}
    for p in spec.points:
        rec = _read(point_dir(spec, p) / POINT_FILE)
        if not isinstance(rec, dict) or rec.get("schema") != POINT_SCHEMA:
            continue
        if rec.get("fingerprint") != spec.fingerprint() or rec.get("id") != p.id:
            continue
        if rec.get("status") == "failed" and retry_failed:
            continue
        out[p.id] = {**rec, "resumed": True}
    return out


def execute(
    spec: SweepSpec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: SweepProgress | None = None,
    retry_failed: bool = False,
) -> tuple[list[dict[str, Any]], Cluster, str]:
    """Run the points not finished yet; every point's record (in grid order), the cluster,
    and how the sweep ended (``"finished"`` or ``"interrupted"``: then ``KeyboardInterrupt``
    is re-raised by the caller after writing the results)."""
    import ray

    prog = progress or (lambda event, done, total: None)
    done = finished_points(spec, retry_failed=retry_failed)
    pending = order(spec, [p for p in spec.points if p.id not in done])
    total = len(spec.points)
    prog("sweep", len(done), total)
    if not pending:
        return [done[p.id] for p in spec.points], Cluster(address, 0, 0, False), "finished"
    cluster = connect(address, num_cpus)
    log.info(
        "sweep: %d points to run on %d node(s), %g CPUs", len(pending), cluster.nodes, cluster.cpus
    )
    records = dict(done)
    task = ray.remote(run_point).options(
        num_cpus=spec.cpus_per_point,
        max_retries=spec.max_retries,
        retry_exceptions=False,
    )
    actors: dict[str, Any] = {}
    refs: dict[Any, Point] = {}
    here = ray.get_runtime_context().get_node_id()
    state = "finished"
    try:
        for p in pending:
            dev = device_key(spec, p)
            handle = None
            if dev is not None:
                if dev not in actors:
                    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                    actors[dev] = (
                        ray.remote(DeviceBench)
                        .options(
                            num_cpus=0,
                            max_concurrency=1,
                            max_restarts=spec.max_retries,
                            max_task_retries=spec.max_retries,
                            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
                        )
                        .remote()
                    )
                handle = actors[dev]
            job = PointJob(
                spec_path=str(spec.path),
                root=str(spec.root),
                base=dict(spec.base),
                fingerprint=spec.fingerprint(),
                point=p,
                folder=str(point_dir(spec, p)),
                store=str(spec.store),
                device=dev,
            )
            refs[task.remote(job, handle)] = p
            prog(f"point {p.label}: queued", len(records), total)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
            for ref in ready:
                p = refs.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayError as exc:  # worker/node died more than retries allow
                    rec = {
                        **p.to_dict(),
                        "status": "failed",
                        "error": {
                            "stage": None,
                            "type": type(exc).__name__,
                            "message": str(exc).splitlines()[0][:500],
                            "hint": "the point's worker died (retries exhausted); "
                            "`edgedeploy sweep` again runs it again",
                        },
                        "metrics": metrics(None),
                        "stages": [],
                        "persisted": False,
                    }
                records[p.id] = rec
                prog(f"point {p.label}: {rec['status']}", len(records), total)
    except KeyboardInterrupt:
        state = "interrupted"
        for ref in refs:
            ray.cancel(ref, force=True)
        # the points that finished meanwhile wrote their point.json: take them
        for pid, rec in finished_points(spec).items():
            records.setdefault(pid, {**rec, "resumed": pid in done})
    finally:
        for a in actors.values():
            ray.kill(a)
        if cluster.started_here:
            ray.shutdown()
    return [records[p.id] for p in spec.points if p.id in records], cluster, state
