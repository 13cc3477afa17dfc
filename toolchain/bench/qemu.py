"""The QEMU runner: a firmware ELF on an emulated Cortex-M board, measured in *instructions*.

:class:`QemuProcess` starts ``qemu-system-arm`` for the target's machine
(``transport.qemu_machine``) with

* ``-icount shift=N,align=off,sleep=off`` — N is the target's fixed ``qemu_icount_shift``
  (never ``auto``, which is not deterministic): SysTick then advances with guest
  instructions, so the firmware's tick counts are instruction counts and identical run to
  run. QEMU does not model time: results are never cycles or milliseconds.
* ``-serial tcp:127.0.0.1:PORT,server=on,wait=on`` — the board's UART on a loopback socket;
  QEMU holds the guest until we connect (so the BOOT frame is not lost), and we talk to it
  through the serial transport's ``socket://`` URL (``-serial pty`` drops output).
* ``-semihosting-config enable=on,target=native`` — the firmware's exit code becomes QEMU's
  exit status, and its fault reports appear on QEMU's console, which is captured.

The process is always killed when the ``with`` block ends (normally, on an error, on a
timeout or Ctrl-C). :func:`run_qemu` is the ``qemu`` benchmark runner: it runs the shared MCU
procedure (:func:`toolchain.bench.mcu.benchmark_device`) against the emulated board.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult
from toolchain.errors import (
    BenchmarkError,
    DeviceError,
    InputFileError,
    PortNotFoundError,
    ToolchainMissingError,
    UsageError,
)
from toolchain.targets import Target

log = logging.getLogger(__name__)

QEMU = "qemu-system-arm"
#: seconds to wait for QEMU to listen on its serial socket
START_TIMEOUT_S = 15.0
#: seconds to wait for the firmware's BOOT frame after connecting
BOOT_TIMEOUT_S = 10.0
#: firmware exit codes (firmware_templates/cortex-m/include/board.h)
EXIT_CODES = {3: "the firmware faulted (HardFault)", 4: "the firmware failed to boot"}
_ELF_MAGIC = b"\x7fELF"
_REPORT_RE = re.compile(r"!!! EDGEDEPLOY (FAULT .*?!!! END FAULT|BOOT FAILED: [^\r\n]*)", re.S)
_EM_ARM = 40


def qemu_binary() -> str:
    """The path of qemu-system-arm; raises :class:`ToolchainMissingError` when absent."""
    exe = shutil.which(QEMU)
    if exe is None:
        raise ToolchainMissingError(
            f"{QEMU} not found on PATH: it is needed to run firmware on emulated boards",
            hint="install QEMU (Debian: apt-get install qemu-system-arm; "
            "or scripts/install-system-deps.sh)",
        )
    return exe


def qemu_version(exe: str | None = None) -> str:
    """``QEMU emulator version 7.2.x ...`` (first line of ``--version``), or "unknown"."""
    try:
        out = subprocess.run(
            [exe or qemu_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def check_elf(elf: Path) -> Path:
    """``elf`` if it is a 32-bit little-endian Arm ELF file, else :class:`InputFileError`."""
    p = Path(elf)
    try:
        with p.open("rb") as fh:
            head = fh.read(20)
    except OSError as exc:
        raise InputFileError(f"firmware {elf}: cannot read it ({exc.strerror})") from exc
    if len(head) < 20 or head[:4] != _ELF_MAGIC:
        raise InputFileError(
            f"firmware {elf} is not an ELF file",
            hint="pass the firmware.elf from edgedeploy firmware --build (build/<fw>/firmware.elf)",
        )
    machine = int.from_bytes(head[18:20], "little")
    if head[4] != 1 or head[5] != 1 or machine != _EM_ARM:
        raise InputFileError(f"firmware {elf} is not a 32-bit Arm ELF (e_machine {machine})")
    return p


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QemuProcess:
    """``qemu-system-arm`` running one firmware image for ``target`` (see the module doc).

    Use as a context manager; :meth:`connect` returns the opened serial transport. The
    process and the transport are closed when the block ends, whatever happens.
    """

    def __init__(
        self,
        target: Target,
        elf: str | os.PathLike[str],
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        machine = target.transport.qemu_machine
        if target.transport.kind != "qemu" or not machine:
            raise UsageError(
                f"target {target.name} is not a QEMU board",
                hint="QEMU targets: mps2-an386, mps2-an500, mps2-an505, lm3s6965evb",
            )
        shift = target.transport.qemu_icount_shift
        if not 0 <= shift <= 10:
            raise UsageError(f"target {target.name}: qemu_icount_shift {shift} is not in 0..10")
        self.target = target
        self.machine = machine
        self.icount = f"shift={shift},align=off,sleep=off"
        self.elf = check_elf(Path(elf))
        self.start_timeout_s = start_timeout_s
        self.extra_args = extra_args
        self.exe = qemu_binary()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._transport: Any = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def command(self, port: int) -> list[str]:
        return [
            self.exe,
            "-machine",
            self.machine,
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            f"tcp:127.0.0.1:{port},server=on,wait=on",
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            self.icount,
            "-kernel",
            str(self.elf),
            *self.extra_args,
        ]

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start QEMU on a free loopback port (retried if another process takes the port).
        On any failure (or Ctrl-C) nothing is left running."""
        self._log = tempfile.TemporaryFile(prefix="edgedeploy-qemu-")  # noqa: SIM115 (closed in stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for attempt in range(3):
            self.port = _free_port()
            cmd = self.command(self.port)
            log.info("starting %s", " ".join(cmd))
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._wait_listening():
                return
            out = self.output()
            self._kill()
            if "Address already in use" not in out or attempt == 2:
                raise DeviceError(
                    f"QEMU ({self.machine}) did not start: "
                    + (_tail(out) or f"no listening socket after {self.start_timeout_s:g} s"),
                    hint=f"run it by hand to see why: {' '.join(cmd)}",
                )

    def _wait_listening(self) -> bool:
        """False if QEMU exited before listening; True once it says it waits for a connection
        (or is still running after the start timeout: :meth:`connect` then keeps trying)."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if "waiting for connection" in self.output():
                return True
            time.sleep(0.02)
        return self.proc is not None and self.proc.poll() is None

    def connect(self, timeout_s: float | None = None) -> Any:
        """Open the serial transport (``socket://``) to the board's UART; the guest starts
        running when this connects. Returns the open transport (closed by :meth:`stop`)."""
        from toolchain.transports.serial_port import SerialTransport

        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        while True:
            self.check_running("connecting to its serial port")
            link = SerialTransport(self.url)
            try:
                link.open()
            except PortNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            self._transport = link
            return link

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def check_running(self, doing: str) -> None:
        """Raise :class:`DeviceError` (with QEMU's output) when QEMU has exited."""
        rc = self.poll()
        if rc is not None:
            raise self.exit_error(rc, doing)

    def wait_exit(self, timeout_s: float) -> int:
        """QEMU's exit status (the firmware's semihosting exit code); raises
        :class:`DeviceError` when it is still running after ``timeout_s``."""
        if self.proc is None:
            raise DeviceError("QEMU was not started")
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"QEMU did not exit within {timeout_s:g} s") from exc

    def output(self) -> str:
        """Everything QEMU printed so far (its messages and the firmware's semihosting
        console: fault reports, boot failures)."""
        if self._log is None:
            return ""
        self._log.flush()
        pos = self._log.tell()
        self._log.seek(0)
        data = self._log.read()
        self._log.seek(pos)
        return str(data.decode("utf-8", "replace"))

    def fault_report(self) -> str | None:
        """The firmware's last fault or boot-failure report, if it printed one."""
        found = _REPORT_RE.findall(self.output())
        return f"!!! EDGEDEPLOY {found[-1]}".strip() if found else None

    def exit_error(self, rc: int, doing: str) -> DeviceError:
        """A DeviceError that says why QEMU stopped (exit code meaning, fault report)."""
        why = EXIT_CODES.get(rc, f"QEMU exited with status {rc}")
        report = self.fault_report()
        detail = report or _tail(self.output())
        return DeviceError(
            f"{why} while {doing} ({self.machine}, {self.elf.name})"
            + (f":\n{detail}" if detail else ""),
            hint="a HardFault report shows pc/lr and CFSR; look the pc up with "
            f"arm-none-eabi-addr2line -e {self.elf} <pc>"
            if rc == 3
            else None,
        )

    def explain(self, exc: DeviceError, doing: str) -> DeviceError:
        """``exc``, or a clearer error when the reason is that QEMU stopped."""
        rc = self.poll()
        if rc is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = self.proc.wait(0.5) if self.proc else None
        return exc if rc is None else self.exit_error(rc, doing)

    def stop(self) -> None:
        """Close the transport and kill QEMU (idempotent)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(3)


def _tail(text: str, lines: int = 12) -> str:
    keep = [ln for ln in text.splitlines() if ln.strip() and "waiting for connection" not in ln]
    return "\n".join(keep[-lines:])


# --- the runner --------------------------------------------------------------------------------


def _project_of(elf: Path) -> Path | None:
    """The rendered project an ELF was built in (``<project>/build/<fw>/firmware.elf``)."""
    from toolchain.firmware.render import MANIFEST

    for parent in elf.resolve().parents[:3]:
        if (parent / MANIFEST).is_file():
            return parent
    return None


def _firmware_for(target: Target, options: BenchOptions) -> tuple[Path, dict[str, Any]]:
    if options.firmware is None:
        raise UsageError(
            "the qemu runner needs the firmware to run: --firmware ELF",
            hint=f"build it with: edgedeploy firmware --target {target.name} --model MODEL "
            "--out DIR --tflm-lib LIB --tflm-include DIR --build (then DIR/build/tflm/firmware.elf)",
        )
    elf = check_elf(Path(options.firmware))
    manifest: dict[str, Any] = {}
    project = _project_of(elf)
    if project is not None:
        from toolchain.firmware.render import read_manifest

        manifest = read_manifest(project)
        manifest["project"] = str(project)
        built_for = manifest.get("target")
        if built_for and built_for != target.name:
            raise UsageError(
                f"{elf} was built for target {built_for}, not {target.name}",
                hint=f"run it with --target {built_for}, or rebuild it for {target.name}",
            )
    return elf, manifest


def run_qemu(target: Target, model: Path, options: BenchOptions) -> BenchResult:
    """The ``qemu`` runner: benchmark ``options.firmware`` (an ELF built for ``model`` and
    ``target``) on QEMU's model of the target's board. Latencies are guest instructions.

    The golden inputs are ``options.golden``, else the ``golden.npz`` of the firmware's
    project, else seeded random ones. Raises :class:`UsageError` (no/unsuitable firmware),
    :class:`ToolchainMissingError` (no QEMU), :class:`DeviceError` (QEMU did not start, the
    firmware faulted or failed to boot: the message carries its report), the MCU procedure's
    errors, and :class:`BenchmarkError` when the firmware does not count instructions.
    """
    from toolchain.bench.mcu import REQUEST_TIMEOUT_S, benchmark_device, firmware_memory
    from toolchain.protocol.client import DeviceClient
    from toolchain.tflite_model import TFLiteModel

    elf, manifest = _firmware_for(target, options)
    tfl = TFLiteModel.from_file(model)
    golden = options.golden
    if golden is None and manifest.get("golden"):
        candidate = Path(manifest["project"]) / manifest["golden"]
        golden = candidate if candidate.is_file() else None
    opts = replace(options, golden=golden)
    memory = firmware_memory(target, elf)
    with QemuProcess(target, elf) as q:
        link = q.connect()
        client = DeviceClient(link, timeout_s=REQUEST_TIMEOUT_S)
        try:
            if not client.wait_boot(BOOT_TIMEOUT_S):
                q.check_running("booting")
                log.warning("no BOOT frame within %g s; trying HELLO anyway", BOOT_TIMEOUT_S)
            result = benchmark_device(
                client,
                target=target,
                model=tfl,
                options=opts,
                runner="qemu",
                device_info={"qemu_machine": q.machine, "port": q.url, "firmware": str(elf)},
                memory=memory,
                environment={
                    "emulator": qemu_version(q.exe),
                    "icount": q.icount,
                    "qemu_command": " ".join(q.command(q.port)),
                },
            )
        except DeviceError as exc:
            err = q.explain(exc, "benchmarking")
            if err is exc:
                raise
            raise err from exc
    if result.unit != "instructions":
        raise BenchmarkError(
            f"the firmware reports {result.unit}, not instructions: it was not built for "
            f"QEMU -icount (target {target.name})",
            hint="render and build the firmware for this QEMU target",
        )
    return result
