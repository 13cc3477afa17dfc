"""The parent's side of the TF worker process (:mod:`toolchain.convert.worker`).

:class:`TFWorker` starts the worker at once, so TensorFlow imports while this process loads
and exports the PyTorch model; :meth:`TFWorker.submit` sends the job and
:meth:`TFWorker.wait` follows the worker's stages, each under its own timeout. A stage that fails, times out, or kills the worker
(LiteRT can abort on a broken model) raises :class:`~toolchain.errors.Onnx2TfError` or
:class:`~toolchain.errors.QuantizationError` with the tail of the worker's log. The worker
runs in its own process group; :meth:`TFWorker.close` kills the whole group (onnxsim too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import toolchain
from toolchain.errors import Onnx2TfError, QuantizationError
from toolchain.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

IMPORT_TIMEOUT_S = 300.0
CHECK_TIMEOUT_S = 120.0
# glog / TF C++ log lines (CUDA probing, oneDNN notices...): not what a user needs to see
_NOISE = re.compile(
    r"^([IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ |\d{4}-\d\d-\d\d [\d:.]+: [IWE] |WARNING: All log messages"
    r"|To enable the following instructions|This TensorFlow binary is optimized)"
)


class WorkerStageError(QuantizationError):
    """A worker stage failed; ``stage``, ``ops`` and ``layers`` say where (for the pipeline)."""

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        ops: list[str],
        layers: list[str],
        converter_said: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.stage = stage
        self.ops = ops
        self.layers = layers
        self.converter_said = converter_said


class TFWorker:
    """One worker process for one conversion. Use as a context manager."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "tf_worker.log"
        self.import_s: float | None = None
        env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)  # the venv's bin: onnx2tf runs `onnxsim`
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        pkg_root = str(Path(toolchain.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        env["PYTHONUNBUFFERED"] = "1"
        self._logf = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolchain.convert.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._logf,
            cwd=workdir,
            env=env,
            start_new_session=True,
            text=True,
        )
        self._events: queue.Queue[tuple[float, dict[str, Any] | None]] = queue.Queue()
        self._created = self._submitted = time.perf_counter()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> TFWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            try:
                self._events.put((time.perf_counter(), json.loads(line)))
            except json.JSONDecodeError:
                log.debug("worker: %s", line.rstrip())
        self._events.put((time.perf_counter(), None))

    def submit(self, job: dict[str, Any]) -> None:
        """Send the job; the worker starts on it as soon as TensorFlow is imported."""
        self._submitted = time.perf_counter()
        with contextlib.suppress(BrokenPipeError):  # it died; wait() reports why
            if self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps(job) + "\n")
                self.proc.stdin.flush()

    def wait(
        self,
        *,
        onnx2tf_timeout_s: float,
        quantize_timeout_s: float,
        progress: ProgressFn = no_progress,
        timings: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Follow the submitted job to its end; the worker's result (``meta``).

        Each stage's time limit counts from when the worker announced it (events are
        time-stamped on arrival), so work done here in the meantime does not extend it.
        """
        timings = timings if timings is not None else {}
        limits = {
            "import": IMPORT_TIMEOUT_S,
            "onnx2tf": onnx2tf_timeout_s,
            "quantize": quantize_timeout_s,
            "check": CHECK_TIMEOUT_S,
        }
        stage = "import" if self.import_s is None else "onnx2tf"
        started = self._created if stage == "import" else self._submitted
        while True:
            remaining = limits[stage] - (time.perf_counter() - started)
            try:
                arrived, ev = self._events.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                self.close()
                self._fail(stage, f"did not finish within {limits[stage]:g} s", timeout=True)
            if ev is None:
                code = self.proc.wait()
                how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
                self._fail(stage, f"the worker process {how}")
            kind = ev.get("event")
            if kind == "ready":
                self.import_s = float(ev.get("import_s", 0.0))
                stage, started = "onnx2tf", max(arrived, self._submitted)
            elif kind == "stage":
                if stage in ("onnx2tf", "quantize"):
                    progress(stage, 1, 1)
                stage, started = str(ev["name"]), arrived
                if stage in ("onnx2tf", "quantize"):
                    progress(stage, 0, 1)
            elif kind == "progress":
                progress(str(ev["stage"]), int(ev["done"]), int(ev["total"]))
            elif kind == "error":
                self._fail(
                    str(ev.get("stage", stage)),
                    str(ev.get("message", "")),
                    ops=list(ev.get("ops") or []),
                    layers=list(ev.get("layers") or []),
                )
            elif kind == "done":
                progress(stage, 1, 1)
                meta: dict[str, Any] = ev["meta"]
                timings.update({k: float(v) for k, v in meta.get("timings", {}).items()})
                return meta

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the worker's log, without TF's info chatter."""
        if not self._logf.closed:
            self._logf.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        kept = [ln for ln in text.splitlines() if ln.strip() and not _NOISE.match(ln)]
        return "\n".join(kept[-lines:])

    def _fail(
        self,
        stage: str,
        message: str,
        *,
        timeout: bool = False,
        ops: list[str] | None = None,
        layers: list[str] | None = None,
    ) -> NoReturn:
        tail = self.log_tail()
        if tail:  # the tail has the whole story; the message's first line says what it is
            first = message.strip().splitlines()[0] if message.strip() else "failed"
            detail = f"{first}\n--- last lines of its output ---\n{tail}"
        else:
            detail = message
        if stage in ("import", "onnx2tf"):
            what = "onnx2tf" if stage == "onnx2tf" else "starting TensorFlow"
            raise Onnx2TfError(
                f"{what} failed: {detail}",
                hint="raise --onnx2tf-timeout for a big model"
                if timeout
                else "onnx2tf could not convert this ONNX graph; the lines above say where. "
                "Simplify that part of the model, or report it with --debug output",
            )
        if stage == "quantize" and not timeout:
            raise WorkerStageError(
                f"int8 quantization failed: {message if ops else detail}",
                stage=stage,
                ops=ops or [],
                layers=layers or [],
                converter_said=message,
            )
        raise QuantizationError(
            f"{'int8 quantization' if stage == 'quantize' else 'checking the int8 model'} "
            f"failed: {detail}",
            hint="raise --quantize-timeout" if timeout else None,
        )

    def close(self) -> None:
        """Stop the worker (its whole process group) if it still runs; idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(OSError):
            self._logf.close()
