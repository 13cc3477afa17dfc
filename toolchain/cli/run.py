"""``edgedeploy run [edgedeploy.toml]``: the whole chain for a project file, with a progress
bar per stage, cached stages, and ``report.json`` + ``report.html`` at the end.

Exit codes: 0 when every stage ran (or came from the cache, or does not apply); otherwise the
failing stage's own code (1 most errors, 2 usage, 3 fidelity/output mismatch, 4 budget),
130 on Ctrl-C. The report is written in every case.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from toolchain.cli import ui
from toolchain.fsutil import to_json
from toolchain.progress import ProgressFn

STATUS_STYLE = {
    "ok": "green",
    "cached": "blue",
    "skipped": "dim",
    "failed": "bold red",
    "interrupted": "bold yellow",
    "not run": "dim",
}


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``demo``."""
    from toolchain.pipeline import STAGE_NAMES

    p.add_argument("--out", metavar="DIR", help="output folder (default: [output] dir)")
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        choices=(*STAGE_NAMES, "all"),
        help="run STAGE even when cached (repeatable; 'all' for every stage), "
        "e.g. --force bench to measure again",
    )
    p.add_argument(
        "--stop-after", metavar="STAGE", choices=STAGE_NAMES, help="the last stage to run"
    )
    p.add_argument("--json", action="store_true", help="print report.json to stdout")
    p.add_argument(
        "--tflm-lib",
        metavar="LIB",
        help="TFLM static library to build the firmware with (overrides [firmware] tflm_lib)",
    )
    p.add_argument(
        "--tflm-include",
        action="append",
        metavar="DIR",
        help="the tflite-micro checkout LIB was built from (repeatable)",
    )
    p.add_argument(
        "--bench-target",
        metavar="TARGET",
        help="where to measure, instead of [bench] target: e.g. mps2-an386 to run the built "
        "image in QEMU, host-compiled (the compiled model built for this machine), host-tflm",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a project file end to end: prune, convert, validate, emit, firmware, bench",
        description="Runs the stages of PROJECT (default ./edgedeploy.toml; see docs/project.md) "
        "in order: prune → convert → validate → emit → firmware → bench. Each stage's "
        "artifacts go to OUT/<stage>/ and are reused when its inputs did not change. Writes "
        "OUT/report.json and OUT/report.html, also when a stage fails (earlier artifacts are "
        "kept; the report says which stage failed and why).",
    )
    p.add_argument("project", nargs="?", default=None, help="the project file or its folder")
    add_run_arguments(p)
    p.epilog = (
        "--tflm-lib/--tflm-include default to $EDGEDEPLOY_TFLM_LIB/$EDGEDEPLOY_TFLM_INCLUDE "
        "when the project names no library."
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.project import load_project

    return run_and_report(with_options(load_project(args.project), args), args)


def with_options(project: Any, args: argparse.Namespace, *, env: bool = True) -> Any:
    """The project with the command line's TFLM library (else, with ``env``, the
    environment's when the project names none) and bench target."""
    project = with_library(project, args.tflm_lib, args.tflm_include, env=env)
    if args.bench_target is not None:
        from toolchain.targets import load_target

        load_target(args.bench_target)  # an unknown name fails here, listing the known ones
        project = dataclasses.replace(
            project, bench=dataclasses.replace(project.bench, target=args.bench_target)
        )
    return project


def with_library(
    project: Any, lib: str | None, includes: list[str] | None, *, env: bool = True
) -> Any:
    """The project with the TFLM library from the command line, else (with ``env``) from the
    environment when the project names none."""
    from toolchain.errors import UsageError

    fw = project.firmware
    if env and lib is None and fw.tflm_lib is None and os.environ.get("EDGEDEPLOY_TFLM_LIB"):
        lib = os.environ["EDGEDEPLOY_TFLM_LIB"]
    if env and lib is not None and includes is None and os.environ.get("EDGEDEPLOY_TFLM_INCLUDE"):
        includes = os.environ["EDGEDEPLOY_TFLM_INCLUDE"].split(os.pathsep)
    if lib is None:
        if includes:
            raise UsageError("--tflm-include needs --tflm-lib")
        return project
    if not Path(lib).is_file():
        raise UsageError(f"no such TFLM library: {lib}", hint="see docs/tflm-library.md")
    if not includes:
        raise UsageError(
            "a TFLM library needs its include directory: --tflm-include DIR "
            "(or $EDGEDEPLOY_TFLM_INCLUDE)",
            hint="the tflite-micro checkout the library was built from (docs/tflm-library.md)",
        )
    fw = dataclasses.replace(
        fw,
        tflm_lib=Path(lib).resolve(),
        tflm_include=tuple(Path(i).resolve() for i in includes or ()),
    )
    return dataclasses.replace(project, firmware=fw)


def run_and_report(project: Any, args: argparse.Namespace) -> int:
    """Run ``project`` with the progress display, then print the stage table and where the
    report is (also when a stage failed: the error then goes to ``main``)."""
    from toolchain.errors import StageError
    from toolchain.pipeline import run_project

    try:
        with stage_progress(quiet=args.quiet) as prog:
            result = run_project(
                project,
                progress=prog,
                force=args.force,
                stop_after=args.stop_after,
                out_dir=args.out,
            )
    except StageError as exc:
        if exc.report is not None:
            _print_stages(_load(exc.report))
            ui.console_err.print(f"report (with the failure): {exc.report.with_suffix('.html')}")
        raise
    except KeyboardInterrupt:
        report = Path(args.out or project.out_dir) / "report.json"
        if report.is_file() and _load(report).get("status") == "interrupted":
            _print_stages(_load(report))
            ui.console_err.print(f"report (of the interrupted run): {report.with_suffix('.html')}")
        raise
    if args.json:
        sys.stdout.write(to_json(result.report))
        return 0
    _print_stages(result.report)
    _print_headline(result.report)
    where = result.report_html or result.report_json
    ui.console.print(f"[bold]report[/]: {where}", highlight=False)
    return 0


def _load(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _print_stages(report: dict[str, Any]) -> None:
    t = Table(title=f"edgedeploy run · {report['project']['name']}", title_justify="left")
    for col, j in (("stage", "left"), ("status", "left"), ("time", "right"), ("notes", "left")):
        t.add_column(col, justify=j)  # type: ignore[arg-type]
    for st in report["stages"]:
        style = STATUS_STYLE.get(st["status"], "")
        secs = f"{st['seconds']:.1f} s" if st["status"] not in ("skipped", "not run") else ""
        notes = "; ".join(st.get("notes") or [])
        if st.get("error"):
            notes = st["error"]["message"]
        t.add_row(st["name"], f"[{style}]{st['status']}[/]", secs, escape(notes))
    ui.console.print(t)


def _print_headline(report: dict[str, Any]) -> None:
    from toolchain.report.html import num, unit_label

    s = report.get("summary") or {}
    parts = []
    if s.get("tflite_bytes") is not None:
        parts.append(f"int8 model {s['tflite_bytes']:,} B")
    if s.get("arena_bytes") is not None:
        parts.append(f"arena {s['arena_bytes']:,} B")
    if s.get("accuracy_int8") is not None:
        parts.append(f"accuracy {s['accuracy_float']:.2f}% float → {s['accuracy_int8']:.2f}% int8")
    if s.get("min_sqnr_db") is not None:
        parts.append(f"SQNR {s['min_sqnr_db']:.1f} dB")
    if s.get("latency_median") is not None:
        median = f"{num(s['latency_median'])} {unit_label(s['latency_unit'])}"
        parts.append(f"median {median} ({s['runner']})")
    if s.get("image_flash_bytes") is not None:
        parts.append(
            f"image {num(s['image_flash_bytes'])} B flash, {num(s.get('image_ram_bytes'))} B RAM"
        )
    if s.get("ram_measured_bytes") is not None:
        parts.append(
            f"RAM used {num(s['ram_measured_bytes'])} B (data+bss+stack peak "
            f"{num(s.get('stack_peak_bytes'))} B)"
        )
    if parts:
        ui.console.print(" · ".join(parts), highlight=False)


@contextlib.contextmanager
def stage_progress(*, quiet: bool = False) -> Iterator[ProgressFn]:
    """One progress line per pipeline stage; the step inside the stage shows after its name.
    Not on a terminal: one plain line per stage start (on stderr)."""
    from toolchain.pipeline import STAGE_NAMES

    if quiet:
        yield lambda stage, done, total: None
        return
    if not ui.console_err.is_terminal:

        def plain(stage: str, done: int, total: int) -> None:
            if stage in STAGE_NAMES and done == 0:
                i = STAGE_NAMES.index(stage) + 1
                ui.console_err.print(f"[{i}/{len(STAGE_NAMES)}] {stage}", highlight=False)

        yield plain
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        console=ui.console_err,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}
        width = max(len(n) for n in STAGE_NAMES)

        def update(stage: str, done: int, total: int) -> None:
            name, _, step = stage.partition(": ")
            if name not in STAGE_NAMES:
                return
            if name not in tasks:  # no total while it runs: a pulsing bar
                tasks[name] = bar.add_task(name, total=None)
            task = tasks[name]
            if step:  # the step inside the stage, or its status once it ended
                style = STATUS_STYLE.get(step, "dim")
                bar.update(task, description=f"{name:<{width}}  [{style}]{step[:32]:<32}[/]")
            elif done >= total:
                bar.update(task, total=1, completed=1)
                bar.stop_task(task)

        yield update
