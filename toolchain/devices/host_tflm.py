"""The host-TFLM device: this machine posing as a TFLM board.

A separate process runs the model with the tflite-micro Python interpreter (the same TFLM
kernels a firmware links, compiled for the host) behind the EDP device protocol on a pseudo
terminal, so the serial benchmark path (framing, chunked uploads, RUN, GET_TIMES, output
read-back) runs end to end with no board and no TFLM library.

Timings are **host timings**: ``time.perf_counter_ns()`` around ``Interpreter.invoke()`` on
this machine's CPU (tick unit: nanoseconds), nothing like an MCU's latency. Per-op timing is
not available: the tflite-micro Python API exposes no profiler (GET_PROFILE answers
UNSUPPORTED).

Run it by hand::

    python -m toolchain.devices.host_tflm MODEL.tflite --pty
    # prints "EDP_PTY /dev/pts/N"; then talk to that port (edgedeploy bench --port ...)

Signals: SIGUSR1 resets the device (a RUN in progress is abandoned, state is dropped, BOOT
is sent), SIGTERM/SIGINT stop it. :class:`HostTflmProcess` starts and stops it from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import numpy as np

from toolchain.errors import DeviceError, EdgeDeployError, TFLiteModelError
from toolchain.protocol.device import DeviceBackend, DeviceDispatcher, DeviceReset
from toolchain.protocol.messages import FwKind, Hello, TensorInfo, TickUnit, dtype_code
from toolchain.tflite_model import TFLiteModel

log = logging.getLogger(__name__)

#: what the device prints on stdout once the pty is ready: "EDP_PTY /dev/pts/N"
ANNOUNCE = "EDP_PTY"
#: fallback arena when the emit stage's search is unavailable (bytes)
FALLBACK_ARENA = 8 * 1024 * 1024
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


@contextlib.contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """Capture what C code writes to file descriptor 2 (TFLM's allocation report)."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def default_arena(model: TFLiteModel) -> tuple[int, str]:
    """(arena bytes, how it was chosen): the emit stage's recommended arena, else a
    generous fixed one."""
    try:
        from toolchain.emit.arena import recommended_arena
    except ImportError:
        return FALLBACK_ARENA, "fixed"
    try:
        return recommended_arena(model), "emit.recommended_arena"
    except EdgeDeployError as exc:
        log.warning("arena search failed (%s); using %d B", exc, FALLBACK_ARENA)
        return FALLBACK_ARENA, "fixed"


class TflmBackend(DeviceBackend):
    """The tflite-micro Python interpreter as an EDP device backend."""

    def __init__(self, model_path: str | Path, *, arena_bytes: int | None = None) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.model = TFLiteModel.from_file(model_path)
        self._hello: Hello | None = None
        if arena_bytes is None:
            arena_bytes, self.arena_source = default_arena(self.model)
        else:
            self.arena_source = "given"
        self.arena_bytes = arena_bytes
        try:
            with _capture_fd2() as err:
                self.interp = runtime.Interpreter.from_bytes(
                    self.model.data, arena_size=arena_bytes
                )
        except (RuntimeError, ValueError) as exc:
            raise TFLiteModelError(
                f"{model_path}: the tflite-micro interpreter rejected the model: {exc} "
                f"{''.join(err).strip()[-500:]}",
                hint="check the arena size (--arena) and that TFLM supports every op",
            ) from exc
        self.inputs = [self._info(t) for t in self.model.inputs]
        self.outputs = [self._info(t) for t in self.model.outputs]
        self._np = [(np.dtype(str(t.dtype)), t.shape) for t in self.model.inputs]
        # one inference on zeros: warms up, and the allocation report needs it
        self.set_inputs([bytes(t.nbytes) for t in self.inputs])
        self.invoke(0)
        with _capture_fd2() as report:
            self.interp.print_allocations()
        m = _TOTAL.search("".join(report))
        self.arena_used = int(m.group(1)) if m else 0

    @staticmethod
    def _info(t: Any) -> TensorInfo:
        dt = np.dtype(str(t.dtype))
        shape = tuple(int(d) for d in t.shape)
        return TensorInfo(
            dtype_code(dt),
            shape,
            float(t.scale or 0.0),
            int(t.zero_point or 0),
            int(np.prod(shape, dtype=np.int64)) * dt.itemsize,
        )

    def hello(self) -> Hello:
        if self._hello is None:
            self._hello = self._make_hello()
        return self._hello

    def _make_hello(self) -> Hello:
        import importlib.metadata

        try:
            version = importlib.metadata.version("tflite-micro")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        text = (
            "board=host\n"
            "target=host-tflm\n"
            f"ops={','.join(self.model.op_names())}\n"
            f"tflm=tflite-micro {version} (Python interpreter, host build)\n"
            "timing=host wall clock: time.perf_counter_ns around Interpreter.invoke\n"
            "per_op=unsupported: the tflite-micro Python API has no profiler\n"
            f"arena_source={self.arena_source}\n"
        )
        return Hello(
            protocol_version=1,
            fw_kind=FwKind.HOST_TFLM,
            max_payload=0,
            clock_hz=0,
            tick_unit=TickUnit.NS,
            ticks_per_tick_count=1,
            model_sha256=bytes.fromhex(self.model.sha256),
            arena_bytes=self.arena_bytes,
            arena_used_bytes=self.arena_used,
            n_inputs=len(self.inputs),
            n_outputs=len(self.outputs),
            n_ops=len(self.model.main.operators),
            text=text,
        )

    def tensor(self, index: int, *, output: bool) -> TensorInfo:
        return (self.outputs if output else self.inputs)[index]

    def set_inputs(self, inputs: list[bytes]) -> None:
        for i, (data, (dt, shape)) in enumerate(zip(inputs, self._np, strict=True)):
            self.interp.set_input(np.frombuffer(data, dtype=dt).reshape(shape), i)

    def invoke(self, profile: int) -> None:
        self.interp.invoke()

    def output(self, index: int) -> bytes:
        return bytes(np.ascontiguousarray(self.interp.get_output(index)).tobytes())

    def now(self) -> int:
        return time.perf_counter_ns()


# --- the device process -------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def serve_pty(dispatcher: DeviceDispatcher, *, announce: IO[str]) -> None:
    """Serve EDP on a new pty until SIGTERM/SIGINT; prints ``EDP_PTY <path>`` first."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no line discipline: bytes pass unchanged
    path = os.ttyname(slave)
    stop = False

    def on_reset(signum: int, frame: FrameType | None) -> None:
        dispatcher.reset_requested = True

    def on_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGUSR1, on_reset)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    _write_all(master, dispatcher.reboot())
    print(f"{ANNOUNCE} {path}", file=announce, flush=True)
    try:
        while not stop:
            if dispatcher.reset_requested:
                _write_all(master, dispatcher.reboot())
            try:
                ready, _, _ = select.select([master], [], [], 0.1)
            except InterruptedError:
                continue
            if not ready:
                continue
            data = os.read(master, 4096)
            try:
                reply = dispatcher.feed(data)
            except DeviceReset:
                continue  # the loop sends BOOT
            if reply:
                _write_all(master, reply)
    finally:
        os.close(master)
        os.close(slave)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m toolchain.devices.host_tflm",
        description="Serve a .tflite model as an EDP device (host TFLM) on a pty.",
    )
    ap.add_argument("model", type=Path)
    ap.add_argument("--pty", action="store_true", help="serve on a new pty (the default)")
    ap.add_argument("--arena", type=int, default=None, help="arena bytes (default: searched)")
    ap.add_argument("--max-payload", type=int, default=1024)
    ap.add_argument("--max-runs", type=int, default=4096)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        backend = TflmBackend(args.model, arena_bytes=args.arena)
        dispatcher = DeviceDispatcher(backend, max_payload=args.max_payload, max_runs=args.max_runs)
    except EdgeDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    serve_pty(dispatcher, announce=sys.stdout)
    return 0


# --- starting it from the host side -------------------------------------------------------


class HostTflmProcess:
    """Start the host-TFLM device for ``model`` in a child process; ``port`` is its pty.

    ``with HostTflmProcess(model) as dev: ... dev.port ...``. Raises
    :class:`~toolchain.errors.DeviceError` (with the child's stderr) when it does not come
    up within ``startup_timeout_s``. :meth:`reset`, :meth:`pause`, :meth:`resume` send
    SIGUSR1 / SIGSTOP / SIGCONT (fault injection: a board reset, a hung board).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        arena_bytes: int | None = None,
        max_payload: int = 1024,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.model = Path(model)
        self.arena_bytes = arena_bytes
        self.max_payload = max_payload
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.port = ""
        self._stderr: IO[bytes] | None = None

    def __enter__(self) -> HostTflmProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()[-2000:]

    #: the device's name in messages
    what = "host-TFLM"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """The device process's command line and environment."""
        cmd = [sys.executable, "-m", "toolchain.devices.host_tflm", str(self.model), "--pty"]
        cmd += ["--max-payload", str(self.max_payload)]
        if self.arena_bytes is not None:
            cmd += ["--arena", str(self.arena_bytes)]
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
        }
        return cmd, env

    def start(self) -> str:
        cmd, env = self._command()
        # kept open for the child's lifetime (its stderr), closed in stop()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
        )
        if self.proc.stdout is None:  # pragma: no cover - Popen with PIPE always sets it
            raise DeviceError(f"no stdout pipe from the {self.what} device")
        deadline = time.monotonic() + self.startup_timeout_s
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(ANNOUNCE) or not line:
                    break
            elif self.proc.poll() is not None:
                break
        if not line.startswith(ANNOUNCE):
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            why = self._stderr_tail() or f"no announcement within {self.startup_timeout_s:g} s"
            self.stop()
            raise DeviceError(
                f"the {self.what} device for {self.model} did not start: {why}",
                hint=f"run {' '.join(cmd)} to see why",
            )
        self.port = line.split(None, 1)[1].strip()
        log.info("%s device pid %d on %s", self.what, self.proc.pid, self.port)
        return self.port

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DeviceError(f"the {self.what} device is not running")
        return self.proc.pid

    def reset(self) -> None:
        os.kill(self.pid, signal.SIGUSR1)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
