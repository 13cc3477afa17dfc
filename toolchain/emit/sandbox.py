"""Run the TFLM and LiteRT interpreters in a helper process, so a crash cannot kill the caller.

:class:`Sandbox` keeps one long-lived child (``worker.py``, see its docstring for the
requests) and talks JSON lines to it. Every request has a timeout; when the child dies
(SIGSEGV/SIGABRT in the C++ interpreter) or times out, the request raises
:class:`SandboxCrash` and the next request starts a fresh child. The C-level stderr of the
interpreters is captured by the child and returned in the reply's ``log``; it never reaches
the user's terminal.

:func:`shared` returns the process-wide sandbox (one child per process, used under a lock).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from toolchain.errors import EmitError

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("worker.py")
#: Seconds one request may take (a multi-megabyte model on LiteRT's reference kernels is slow).
DEFAULT_TIMEOUT_S = 600.0


class SandboxCrash(EmitError):
    """The helper process died or timed out while serving a request."""


class Sandbox:
    """One helper process; thread-safe; restarted on demand after a crash."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self._pid = os.getpid()  # a forked copy of this object must not share the child

    def _start(self) -> subprocess.Popen[str]:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
        self._proc = subprocess.Popen(
            [sys.executable, "-u", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        log.debug("sandbox worker started (pid %d)", self._proc.pid)
        return self._proc

    def close(self) -> None:
        """Stop the child (if any)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _crash_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-2000:]

    def request(self, op: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **fields: Any) -> dict:
        """Send one request and return the reply dict.

        Raises :class:`SandboxCrash` when the child dies or does not answer within
        ``timeout_s`` seconds (the child is then killed and replaced on the next request).
        """
        with self._lock:
            if self._pid != os.getpid():  # we are a fork: the child belongs to the parent
                self._proc, self._stderr, self._pid = None, None, os.getpid()
            proc = self._proc if self._proc and self._proc.poll() is None else self._start()
            self._next_id += 1
            msg = {"op": op, "id": self._next_id, **fields}
            if proc.stdin is None or proc.stdout is None:  # pragma: no cover (PIPE given)
                raise SandboxCrash("the interpreter process has no pipes")
            try:
                proc.stdin.write(json.dumps(msg) + "\n")
                proc.stdin.flush()
                line = _readline(proc.stdout, timeout_s)
            except TimeoutError:  # (an OSError: caught before the broken-pipe case)
                proc.kill()
                self._stop()
                raise SandboxCrash(
                    f"the interpreter did not finish '{op}' within {timeout_s:g} s",
                    hint="the model may be too large for a host check; try a smaller model",
                ) from None
            except OSError:  # the child died and closed its end of a pipe
                line = ""
            if not line:
                rc = proc.wait()
                detail = self._crash_text().strip()
                self._stop()
                how = _how(rc)
                raise SandboxCrash(
                    f"the interpreter process crashed during '{op}' ({how})"
                    + (f": {detail.splitlines()[-1]}" if detail else ""),
                    hint="the interpreter cannot run this model with these settings",
                )
            reply: dict = json.loads(line)
            return reply


def _how(rc: int) -> str:
    if rc >= 0:
        return f"exit code {rc}"
    try:
        return f"signal {signal.Signals(-rc).name}"
    except ValueError:
        return f"signal {-rc}"


def _readline(stream: IO[str], timeout_s: float) -> str:
    """One line from a pipe, or TimeoutError after ``timeout_s`` seconds; "" on EOF."""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if sel.select(left):
                return stream.readline()


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared() -> Sandbox:
    """The process-wide sandbox (started lazily, stopped at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sandbox()
            atexit.register(_shared.close)
        return _shared


class ModelFile:
    """A model as the worker wants it: a file path plus its sha256 (its cache key).

    ``ModelFile.of(model)`` accepts bytes or a path; bytes are written to a temporary file
    that :meth:`close` removes. Use as a context manager.
    """

    def __init__(self, data: bytes, path: Path, sha256: str, *, temporary: bool) -> None:
        self.data = data
        self.path = path
        self.sha256 = sha256
        self._temporary = temporary

    @classmethod
    def of(cls, data: bytes, path: str | os.PathLike[str] | None = None) -> ModelFile:
        """Wrap ``data``; ``path`` (a file holding exactly these bytes) saves a temporary copy."""
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        if path is not None:
            return cls(data, Path(path), sha, temporary=False)
        fd, tmp = tempfile.mkstemp(prefix="edgedeploy-model-", suffix=".tflite")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return cls(data, Path(tmp), sha, temporary=True)

    def fields(self) -> dict[str, str]:
        return {"model": str(self.path), "sha": self.sha256}

    def close(self) -> None:
        if self._temporary:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_samples(
    op: str,
    mf: ModelFile,
    inputs: Sequence[np.ndarray],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **fields: Any,
) -> tuple[list[np.ndarray] | None, dict]:
    """Run ``op`` (``tflm_run`` / ``litert_run``) on samples stacked along axis 0 of each
    model input. Returns ``(outputs or None, reply)``: None with the reply's ``error`` and
    ``log`` when the interpreter refused; raises :class:`SandboxCrash` when it crashed."""
    with tempfile.TemporaryDirectory(prefix="edgedeploy-run-") as tmp:
        src, dst = Path(tmp, "in.npz"), Path(tmp, "out.npz")
        np.savez(src, **{f"input_{i}": a for i, a in enumerate(inputs)})
        reply = shared().request(
            op, timeout_s=timeout_s, inputs=str(src), outputs=str(dst), **mf.fields(), **fields
        )
        if not reply.get("ok"):
            return None, reply
        with np.load(dst) as z:
            return [z[f"output_{j}"] for j in range(len(z.files))], reply
