"""``edgedeploy sweep``: a project's design space — the grid of its ``[sweep.axes]`` — run on
Ray, with Pareto fronts and a recommended point per constraint set.

Python::

    from toolchain.sweep import load_sweep, run_sweep

    result = run_sweep(load_sweep("edgedeploy.toml"))            # local Ray, all cores
    result = run_sweep(spec, address="ray://head:10001")         # or a cluster
    result.data["recommended"], result.json_path, result.html_path

Modules: :mod:`~toolchain.sweep.spec` (the ``[sweep]`` table and the points),
:mod:`~toolchain.sweep.engine` (Ray tasks, device actors, retries, resume),
:mod:`~toolchain.sweep.pareto` (fronts and recommendations), :mod:`~toolchain.sweep.report`
(sweep.json, sweep.html). Ray is imported only when points run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolchain.sweep.engine import SweepProgress, execute
from toolchain.sweep.spec import SweepSpec, load_sweep, parse_sweep

__all__ = ["SweepResult", "load_sweep", "parse_sweep", "run_sweep"]


@dataclass(frozen=True)
class SweepResult:
    """A finished (or interrupted) sweep: sweep.json's content and where it is."""

    spec: SweepSpec
    data: dict[str, Any]
    json_path: Path
    html_path: Path

    @property
    def points(self) -> list[dict[str, Any]]:
        return list(self.data["points"])


def run_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: SweepProgress | None = None,
    retry_failed: bool = False,
) -> SweepResult:
    """Run the points of ``spec`` not finished by an earlier sweep of the same project, then
    write ``sweep.json`` and ``sweep.html`` into ``spec.dir``.

    ``address``: a Ray cluster (else ``$RAY_ADDRESS``, else a local Ray with ``num_cpus``
    CPUs, default all). ``retry_failed``: run points that failed last time again. A point's
    failure is recorded, not raised. On Ctrl-C the running points are cancelled, the results
    so far are written (status ``interrupted``) and ``KeyboardInterrupt`` propagates; the
    next sweep resumes from the finished points. Raises
    :class:`~toolchain.errors.UsageError` when the cluster cannot be reached.
    """
    from toolchain.sweep import report

    t0 = time.perf_counter()
    spec.dir.mkdir(parents=True, exist_ok=True)
    try:
        records, cluster, state = execute(
            spec, address=address, num_cpus=num_cpus, progress=progress, retry_failed=retry_failed
        )
    except KeyboardInterrupt:  # before the engine could collect anything
        from toolchain.sweep.engine import finished_points

        records = list(finished_points(spec).values())
        cluster, state = None, "interrupted"
    data = report.build(
        spec,
        records,
        cluster=asdict(cluster) if cluster is not None else {},
        state=state,
        seconds=time.perf_counter() - t0,
    )
    json_path, html_path = report.write(spec.dir, data)
    if state == "interrupted":
        raise KeyboardInterrupt
    return SweepResult(spec=spec, data=data, json_path=json_path, html_path=html_path)
