"""``edgedeploy sweep [edgedeploy.toml]``: the grid of the project's ``[sweep.axes]`` on Ray
(local by default, a cluster with ``--address`` / ``$RAY_ADDRESS``), with a progress bar,
a table of the points and the recommended point per constraint set; writes ``sweep.json`` and
``sweep.html`` (docs/sweep.md).

Exit codes: 0 when the sweep finished (also when some points failed: they are recorded);
1 when no point succeeded or the [sweep] table is invalid; 2 usage (an unreachable cluster);
130 on Ctrl-C (the next run resumes from the finished points).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from toolchain.cli import ui


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a project's design space ([sweep.axes]) on Ray; Pareto fronts and picks",
        description="Runs every point of the grid in PROJECT's [sweep.axes] (default "
        "./edgedeploy.toml) as an ordinary `edgedeploy run` — sharing built stages between "
        "points — on Ray: this machine's cores, or a cluster with --address. Writes "
        "sweep.json and sweep.html with the Pareto fronts (accuracy vs latency, flash, RAM) "
        "and the recommended point per [[sweep.constraints]] set. Run it again to resume.",
    )
    p.add_argument("project", nargs="?", default=None, help="the project file or its folder")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="a Ray cluster (host:port of `ray start --head`, or ray://...); default "
        "$RAY_ADDRESS, else a Ray on this machine",
    )
    p.add_argument(
        "--cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all cores)"
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="run the points that failed last time again"
    )
    p.add_argument("--list", action="store_true", help="print the points and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain.sweep import load_sweep, run_sweep

    spec = load_sweep(args.project)
    if args.list:
        for pt in spec.points:
            ui.console.print(f"{pt.index:>4}  {pt.id}  {escape(pt.label)}", highlight=False)
        return 0
    with _progress(len(spec.points), quiet=args.quiet) as prog:
        result = run_sweep(
            spec,
            address=args.address,
            num_cpus=args.cpus,
            progress=prog,
            retry_failed=args.retry_failed,
        )
    _print(result.data)
    ui.console.print(f"[bold]sweep[/]: {result.html_path}", highlight=False)
    return 0 if result.data["counts"]["ok"] else 1


class _progress:
    """A bar over the points and one printed line per finished point; plain lines when not
    on a terminal (stderr)."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.bar: Progress | None = None

    def __enter__(self) -> Any:
        if not self.quiet and ui.console_err.is_terminal:
            self.bar = Progress(
                TextColumn("sweep"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=ui.console_err,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total)
        return self.update

    def update(self, event: str, done: int, total: int) -> None:
        if self.quiet:
            return
        finished = event.startswith("point ") and not event.endswith(": queued")
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=escape(event[:60]))
            if finished:
                self.bar.console.print(f"[{done}/{total}] {escape(event[6:])}", highlight=False)
        elif finished or event == "sweep":
            ui.console_err.print(f"[{done}/{total}] {escape(event)}", highlight=False)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _print(data: dict[str, Any]) -> None:
    from toolchain.sweep.report import _fmt

    on_front = {i for ids in data["fronts"].values() for i in ids}
    t = Table(title="edgedeploy sweep", title_justify="left")
    for col in ("#", "settings", "status", "accuracy", "latency", "flash", "RAM", "s", "node"):
        t.add_column(col, justify="left" if col in ("settings", "status") else "right")
    for p in data["points"]:
        m = p.get("metrics") or {}
        status = p.get("status", "?")
        style = "red" if status == "failed" else ("bold" if p["id"] in on_front else "")
        t.add_row(
            str(p["index"]),
            escape(p["label"]),
            f"[{style}]{status}{' (resumed)' if p.get('resumed') else ''}[/]" if style else status,
            _fmt(m.get("accuracy")),
            f"{_fmt(m.get('latency'))} {m.get('latency_unit') or ''}",
            _fmt(m.get("flash_bytes")),
            _fmt(m.get("ram_bytes")),
            _fmt(p.get("seconds"), 3),
            ((p.get("node") or {}).get("node_id") or "")[:8],
        )
    ui.console.print(t)
    by_id = {p["id"]: p for p in data["points"]}
    for rec in data["recommended"]:
        name = rec["constraints"]["name"]
        p = by_id.get(rec["point"] or "")
        if p is None:
            ui.console.print(f"[yellow]{escape(name)}[/]: no point meets these constraints")
        else:
            ui.console.print(
                f"[green]{escape(name)}[/]: #{p['index']} {escape(p['label'])} "
                f"({rec['feasible']} feasible)",
                highlight=False,
            )
    for p in data["points"]:
        if p.get("status") == "failed" and p.get("error"):
            ui.console_err.print(
                f"[red]point #{p['index']} failed[/]: {escape(str(p['error'].get('message')))}",
                highlight=False,
            )
