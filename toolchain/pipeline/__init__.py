"""``edgedeploy run``: a project's whole trip, stage by stage, cached, with one report.

The stages and their order are the explicit list :data:`~toolchain.pipeline.stages.STAGES`:
prune → convert → validate → emit → firmware → bench. Python::

    from toolchain.project import load_project
    from toolchain.pipeline import run_project

    result = run_project(load_project("edgedeploy.toml"))
    result.report_html, result.stage("bench").status, result.report["bench"]["summary"]

Every stage writes into its own folder under the project's output folder
(``out/<stage>/``), built aside and swapped in only when it finished; a stage whose inputs
hash the same as last time is taken from its folder (:mod:`toolchain.pipeline.cache`).
``report.json`` and ``report.html`` are written at the end — also when a stage failed or the
run was interrupted, saying which stage and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.artifacts import StageOutput, StageRecord
from toolchain.errors import EdgeDeployError, StageError, UsageError
from toolchain.fsutil import check_output_path
from toolchain.pipeline import cache
from toolchain.pipeline.stages import STAGE_NAMES, STAGES, Context
from toolchain.progress import ProgressFn, no_progress
from toolchain.project import Project
from toolchain.report import build_report, write_reports

log = logging.getLogger(__name__)

__all__ = ["STAGE_NAMES", "RunResult", "StageRecord", "run_project"]

#: stage statuses in report.json
STATUSES = ("ok", "cached", "skipped", "failed", "interrupted", "not run")


@dataclass(frozen=True)
class RunResult:
    """A finished (or stopped) run: per-stage records, the outputs, the report."""

    project: Project
    out_dir: Path
    stages: tuple[StageRecord, ...]
    outputs: dict[str, StageOutput]
    report: dict[str, Any]
    report_json: Path
    report_html: Path | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "cached", "skipped") for s in self.stages)

    def stage(self, name: str) -> StageRecord:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def tflite_path(self) -> Path | None:
        conv = self.outputs.get("convert")
        return conv.path("tflite") if conv else None


def run_project(
    project: Project,
    *,
    progress: ProgressFn | None = None,
    force: Collection[str] = (),
    stop_after: str | None = None,
    out_dir: str | Path | None = None,
    store: cache.StageStore | None = None,
) -> RunResult:
    """Run the project's stages in order and write ``report.json`` / ``report.html``.

    ``force``: stage names (or ``"all"``) to run even when cached — e.g. ``{"bench"}`` to
    measure again. ``stop_after``: the last stage to run (later ones are "not run").
    ``out_dir`` overrides the project's ``[output] dir``. ``store``: a
    :class:`~toolchain.pipeline.cache.StageStore` shared with other runs (a sweep's points):
    a stage missing from ``out_dir`` is copied from it when another run built it, and what is
    built here is published to it (one builder per key at a time). ``progress`` gets
    ``(stage, done, total)`` for each stage and ``("<stage>: <step>", done, total)`` for the
    steps inside it.

    Raises :class:`~toolchain.errors.StageError` (carrying the stage's own error and its exit
    code) after writing the report when a stage fails; ``KeyboardInterrupt`` after writing
    the report when interrupted. Earlier stages' folders are kept either way, and no stage
    folder is ever left half-written. Errors that are bugs propagate as they are (the report
    still records them).
    """
    unknown = sorted(set(force) - {*STAGE_NAMES, "all"})
    if unknown or (stop_after is not None and stop_after not in STAGE_NAMES):
        bad = unknown[0] if unknown else stop_after
        raise UsageError(
            f"no stage named {bad!r}", hint="stages: " + ", ".join(STAGE_NAMES) + " (or all)"
        )
    forced = set(STAGE_NAMES) if "all" in force else set(force)
    out = Path(out_dir) if out_dir is not None else project.out_dir
    check_output_path(out, option="--out" if out_dir is not None else "[output] dir")
    prog = progress or no_progress
    ctx = Context(project=project, out_dir=out, progress=prog)
    out.mkdir(parents=True, exist_ok=True)
    cache.sweep(out)
    t_run = time.perf_counter()
    records: list[StageRecord] = []
    failure: BaseException | None = None
    stopped = False
    for stage in STAGES:
        if failure is not None or stopped:
            records.append(StageRecord(stage.name, stage.title, "not run"))
            continue
        folder = out / stage.name
        t0 = time.perf_counter()
        prog(stage.name, 0, 1)
        key: str | None = None
        try:
            reason = stage.skip(ctx)
            if reason is not None:
                cache.remove(folder)
                records.append(StageRecord(stage.name, stage.title, "skipped", notes=(reason,)))
                prog(f"{stage.name}: skipped", 1, 1)
                prog(stage.name, 1, 1)
                continue
            parts = stage.key(ctx)
            key = cache.digest(parts) if parts is not None else None
            cacheable = key is not None and stage.name not in forced
            hit = cache.lookup(folder, key, parts) if cacheable and key else None
            # the shared store: one builder per key; the others wait, then copy its folder
            shared = store if key is not None and hit is None else None
            with shared.claim(stage.name, key) if shared and key else nullcontext():
                if shared and cacheable and key:
                    hit = shared.fetch(stage.name, key, folder)
                    if hit is not None:
                        log.info("%s: copied from the shared stage store", stage.name)
                if hit is not None:
                    rec = hit["record"]
                    output = StageOutput.from_dict(
                        rec["output"], folder, cache.content_digest(folder)
                    )
                    status, built = "cached", rec.get("seconds")
                else:
                    with cache.building(folder) as work:
                        output = stage.run(ctx, work, folder)
                        built = time.perf_counter() - t0
                        cache.commit(
                            work,
                            folder,
                            key=key,
                            record={"output": output.to_dict(), "seconds": round(built, 3)},
                            parts=parts,
                        )
                    if shared and key:
                        shared.publish(stage.name, key, folder)
                    output = StageOutput.from_dict(
                        output.to_dict(), folder, cache.content_digest(folder)
                    )
                    status = "ok"
        except KeyboardInterrupt as exc:
            failure = exc
            records.append(
                StageRecord(stage.name, stage.title, "interrupted", time.perf_counter() - t0)
            )
            continue
        except Exception as exc:  # every failure is recorded; bugs are re-raised below
            failure = exc
            records.append(
                StageRecord(
                    stage.name,
                    stage.title,
                    "failed",
                    time.perf_counter() - t0,
                    folder=folder if folder.exists() else None,
                    key=key,
                    error=_error_dict(exc),
                )
            )
            log.debug("stage %s failed", stage.name, exc_info=True)
            continue
        ctx.outputs[stage.name] = output
        records.append(
            StageRecord(
                stage.name,
                stage.title,
                status,
                time.perf_counter() - t0,
                built_seconds=built,
                folder=folder,
                key=key,
                notes=output.notes,
            )
        )
        prog(f"{stage.name}: {status}", 1, 1)
        prog(stage.name, 1, 1)
        stopped = stage.name == stop_after

    result = _finish(project, out, records, ctx.outputs, time.perf_counter() - t_run)
    if isinstance(failure, EdgeDeployError):
        failed = next(r for r in records if r.status == "failed")
        raise StageError(failed.name, failure, report=result.report_json) from failure
    if failure is not None:
        raise failure
    return result


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, EdgeDeployError):
        return {
            "type": type(exc).__name__,
            "message": exc.message,
            "hint": exc.hint,
            "exit_code": exc.exit_code,
        }
    return {
        "type": type(exc).__name__,
        "message": f"internal error: {exc}",
        "hint": "this is a bug in edgedeploy; please report it (run with --debug)",
        "exit_code": 70,
    }


def _finish(
    project: Project,
    out: Path,
    records: list[StageRecord],
    outputs: dict[str, StageOutput],
    seconds: float,
) -> RunResult:
    report = build_report(project, records, outputs, seconds=seconds, out_dir=out)
    json_path, html_path = write_reports(
        out, report, html=project.output is None or project.output.html
    )
    return RunResult(
        project=project,
        out_dir=out,
        stages=tuple(records),
        outputs=dict(outputs),
        report=report,
        report_json=json_path,
        report_html=html_path,
        seconds=seconds,
    )
