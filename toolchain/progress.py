"""The progress callback the library accepts; the CLI turns it into rich progress bars."""

from __future__ import annotations

from collections.abc import Callable

#: ``(stage, done, total)``: ``stage`` names a line of progress; ``total`` 0 means unknown.
ProgressFn = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The default callback: does nothing."""
