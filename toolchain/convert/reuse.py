"""What the attempts of one conversion share, computed once (see :mod:`strategy`).

A gated conversion (``--min-sqnr`` / ``--max-accuracy-drop`` missed) runs up to three
attempts of the same model on the same data: int8, int8 with gptq weight rounding, int16x8.
Each used to load the model again, export and rewrite the same ONNX graph again, and
compute the same float reference again. :func:`attempts_share` (entered by
:func:`toolchain.convert.convert` around its attempts) makes one :class:`Shared` memo current
for the duration of that call; the pipeline asks it with a key naming everything the value
depends on beyond the call's fixed inputs (model, weights, input shapes, data, labels):

* ``("load",)`` — the loaded PyTorch model (fixed for the call);
* ``("raw export", techniques, options they read)`` — the exported ONNX bytes (every
  export but the conversion's first from a freshly loaded model: the TorchScript exporter
  changes a module it exports) with the technique records;
* ``("export", rewrites, techniques, options they read)`` — those bytes rewritten, with the
  rewrite records;
* ``("reference", ONNX sha256, samples, ...)`` — the float reference outputs and the ONNX
  intermediates of the per-layer table.

Outside such a call (or with nothing current) every ``get`` computes afresh. The memo dies
with the call: nothing is kept between conversions, and nothing is written to disk.

It also holds a spare TF worker (:meth:`Shared.start_spare`): when an attempt's figures
miss the gate, the next attempt's worker starts importing TensorFlow at once, while the
attempt finishes its per-layer table (the worker process is the same as ever: the model it
makes does not depend on when it started).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Shared:
    """A memo of values by key for the attempts of one conversion; counts its hits."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self.hits: list[Hashable] = []
        self._spare: Any = None
        self._folders: list[Path] = []
        self.scoped = False  # inside attempts_share (which closes what it started)

    def start_spare(self) -> None:
        """Start a TF worker for the next attempt now (it imports TensorFlow while this
        attempt ends: an attempt that reuses the export has nothing else to overlap that
        with). Called when an attempt missed the fidelity gate (a fallback attempt usually
        follows; when none does, :meth:`close` stops it unused); one at a time."""
        if self._spare is not None or not self.scoped:
            return  # one at a time; none without attempts_share to close it
        from toolchain.convert.tfproc import TFWorker

        folder = Path(tempfile.mkdtemp(prefix="edgedeploy-worker-"))
        self._folders.append(folder)
        self._spare = TFWorker(folder)

    def take_spare(self) -> Any:
        """The started worker (its process still running), or None; it is the caller's
        then (a context manager that closes it)."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.proc.poll() is not None:
            spare.close()
            return None
        return spare

    def close(self) -> None:
        """Stop a worker nobody took and remove the workers' folders."""
        if self._spare is not None:
            self._spare.close()
            self._spare = None
        if not os.environ.get("EDGEDEPLOY_KEEP_WORKDIR"):
            for folder in self._folders:
                shutil.rmtree(folder, ignore_errors=True)

    def get(self, key: Hashable, make: Callable[[], T], *, copy_out: bool = False) -> T:
        """The value stored under ``key``, or ``make()`` stored under it. ``copy_out``: hand
        out a deep copy each time (for values an attempt changes, e.g. record lists)."""
        if key in self._values:
            self.hits.append(key[0] if isinstance(key, tuple) and key else key)
            log.debug(
                "reused from an earlier attempt: %s", key[0] if isinstance(key, tuple) else key
            )
            value = self._values[key]
        else:
            value = make()
            self._values[key] = value
        return copy.deepcopy(value) if copy_out else value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)


_CURRENT: ContextVar[Shared | None] = ContextVar("edgedeploy_convert_shared", default=None)


@contextlib.contextmanager
def attempts_share() -> Iterator[Shared]:
    """Make a fresh :class:`Shared` current while the block runs (one conversion)."""
    shared = Shared()
    shared.scoped = True
    token = _CURRENT.set(shared)
    try:
        yield shared
    finally:
        _CURRENT.reset(token)
        shared.close()


def current() -> Shared:
    """The current conversion's memo, or a fresh one that keeps nothing beyond this call."""
    shared = _CURRENT.get()
    return shared if shared is not None else Shared()
