"""Terminal output for the CLI: rich consoles, logging setup, progress bars, error display.

The library never prints; it logs. This module is the only place that writes to the terminal.
Results go to stdout (``console``), progress, logs and errors to stderr (``console_err``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from toolchain.errors import EdgeDeployError
from toolchain.progress import ProgressFn


def _console(stderr: bool) -> Console:
    c = Console(stderr=stderr, soft_wrap=True)
    if not c.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        c = Console(stderr=stderr, soft_wrap=True, width=160)
    return c


console = _console(stderr=False)
console_err = _console(stderr=True)
_quiet = False


def configure(*, verbose: int = 0, quiet: bool = False) -> None:
    """Set up logging (warnings by default, info with -v, debug with -vv)."""
    global _quiet
    _quiet = quiet
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=console_err, show_path=False, show_time=verbose > 1)
    root = logging.getLogger("toolchain")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # paramiko logs a failed handshake (e.g. no SSH banner) from its transport thread with a
    # traceback; our SSH errors already say what failed, so its log shows only with -vv
    ssh_log = logging.getLogger("paramiko")
    ssh_log.handlers[:] = [handler]
    ssh_log.setLevel(logging.DEBUG if verbose > 1 else logging.CRITICAL)
    ssh_log.propagate = False


def error(exc: EdgeDeployError) -> None:
    # escape: messages quote things like "[cpu].fpu" or shapes "[1, 96, 96, 1]", not markup
    console_err.print(f"[bold red]error[/]: {escape(exc.message)}", highlight=False)
    if exc.hint:
        console_err.print(f"  [cyan]hint[/]: {escape(exc.hint)}", highlight=False)


@contextlib.contextmanager
def progress() -> Iterator[ProgressFn]:
    """A progress bar for the duration of a command; yields a ``ProgressFn`` for the library.

    Each distinct stage name gets its own line. With ``--quiet`` the callback does nothing.
    """
    if _quiet or not console_err.is_terminal:
        yield lambda stage, done, total: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console_err,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update
