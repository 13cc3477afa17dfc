"""Android devices through the platform-tools ``adb`` client (a real adb server).

Every call runs the ``adb`` program (``$EDGEDEPLOY_ADB`` or the one on ``PATH``) with a
timeout, so nothing can hang: a timed-out client is killed, which closes its stream on the
device. The server honours ``ANDROID_ADB_SERVER_PORT`` (tests use their own). Devices need the
``shell_v2`` feature (Android 7+) for exit codes and stderr; older ones are refused.

Errors: no adb → :class:`ToolchainMissingError`; no device, or the named one absent or
offline → :class:`DeviceNotFoundError`; unauthorized → :class:`AuthError`; several and no
serial → :class:`AmbiguousDeviceError`; a command running too long → :class:`IoTimeoutError`.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain.devices.shell import ShellResult, append_lines, q
from toolchain.errors import (
    AmbiguousDeviceError,
    AuthError,
    DeviceNotFoundError,
    IoTimeoutError,
    RemoteCommandError,
    ToolchainMissingError,
    TransportError,
)

log = logging.getLogger(__name__)

#: Seconds for adb housekeeping calls (devices, getprop, connect).
ADB_TIMEOUT_S = 20.0


def adb_executable() -> str:
    """Path of the ``adb`` client. Raises :class:`ToolchainMissingError` when absent."""
    exe = os.environ.get("EDGEDEPLOY_ADB") or shutil.which("adb")
    if not exe:
        raise ToolchainMissingError(
            "adb not found",
            hint="install Android platform-tools (Debian: apt-get install adb) "
            "or set EDGEDEPLOY_ADB=/path/to/adb",
        )
    return exe


def _adb(*args: str, timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    argv = [adb_executable(), *args]
    log.debug("adb %s", " ".join(args))
    try:
        return subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise IoTimeoutError(
            f"adb {args[0] if args else ''} did not answer within {timeout_s:.0f} s"
        ) from exc
    except OSError as exc:
        raise ToolchainMissingError(f"cannot run {argv[0]}: {exc.strerror}") from exc


def _adb_streaming(
    *args: str, timeout_s: float, on_stderr_line: Callable[[str], None]
) -> subprocess.CompletedProcess[bytes]:
    """:func:`_adb` that also hands each complete stderr line to ``on_stderr_line`` as it
    arrives. Same timeout contract: past ``timeout_s`` the client is killed (closing its
    stream on the device) and :class:`IoTimeoutError` is raised."""
    argv = [adb_executable(), *args]
    log.debug("adb %s (streaming)", " ".join(args))
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise ToolchainMissingError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    try:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(argv, timeout_s)
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                append_lines(key.data, chunk, on_stderr_line if key.data is err else None)
        rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        raise IoTimeoutError(
            f"adb {args[0] if args else ''} did not answer within {timeout_s:.0f} s"
        ) from exc
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return subprocess.CompletedProcess(argv, rc, bytes(out), bytes(err))


@dataclass(frozen=True)
class AdbListing:
    """One line of ``adb devices -l``: serial, state (device/unauthorized/offline/...), tags."""

    serial: str
    state: str
    tags: dict[str, str] = field(default_factory=dict)


def list_devices(*, timeout_s: float = ADB_TIMEOUT_S) -> list[AdbListing]:
    """Every device the adb server knows, in any state (starts the server if needed)."""
    res = _adb("devices", "-l", timeout_s=timeout_s)
    if res.returncode != 0:
        raise TransportError(f"adb devices failed: {res.stderr.decode(errors='replace').strip()}")
    out: list[AdbListing] = []
    for line in res.stdout.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith(("List of devices", "*")):
            continue
        tags = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        out.append(AdbListing(parts[0], parts[1], tags))
    return out


def connect(address: str, *, timeout_s: float = ADB_TIMEOUT_S) -> str:
    """``adb connect HOST:PORT`` (ADB over TCP/IP). Returns adb's answer.

    Raises :class:`DeviceNotFoundError` when adb could not connect.
    """
    res = _adb("connect", address, timeout_s=timeout_s)
    text = (res.stdout + res.stderr).decode(errors="replace").strip()
    if res.returncode != 0 or text.startswith(("failed", "cannot", "unable")):
        if "authenticate" in text:
            raise AuthError(
                f"{address} refused our adb key: {text}",
                hint="accept the 'Allow USB debugging?' prompt on the device, then retry",
            )
        raise DeviceNotFoundError(f"adb connect {address}: {text}")
    return text


def _state_error(entry: AdbListing) -> DeviceNotFoundError | AuthError | None:
    if entry.state == "device":
        return None
    if entry.state == "unauthorized":
        return AuthError(
            f"Android device {entry.serial} is unauthorized: it has not accepted this computer's adb key",
            hint="unlock the phone and accept the 'Allow USB debugging?' prompt "
            "(or revoke USB debugging authorizations and reconnect)",
        )
    return DeviceNotFoundError(
        f"Android device {entry.serial} is {entry.state}",
        hint="reconnect the cable or run `adb reconnect`; for ADB over Wi-Fi run `adb connect HOST:PORT` again",
    )


def select_device(serial: str | None = None, *, timeout_s: float = ADB_TIMEOUT_S) -> AdbDevice:
    """The device with ``serial``, or the only one attached.

    Raises :class:`DeviceNotFoundError` (none, absent, offline), :class:`AuthError`
    (unauthorized), :class:`AmbiguousDeviceError` (several and no serial).
    """
    devices = list_devices(timeout_s=timeout_s)
    listing = ", ".join(f"{d.serial} ({d.state})" for d in devices)
    if serial:
        match = [d for d in devices if d.serial == serial]
        if not match:
            raise DeviceNotFoundError(
                f"no Android device with serial {serial!r}"
                + (f"; attached: {listing}" if devices else "; no device is attached"),
                hint="check `adb devices`; for ADB over Wi-Fi run `adb connect HOST:PORT` first",
            )
        chosen = match[0]
    else:
        if not devices:
            raise DeviceNotFoundError(
                "no Android device attached",
                hint="connect a phone with USB debugging enabled (or `adb connect HOST:PORT`) "
                "and check `adb devices`",
            )
        if len(devices) > 1:
            raise AmbiguousDeviceError(
                f"{len(devices)} Android devices attached: {listing}",
                hint="choose one with --serial SERIAL",
            )
        chosen = devices[0]
    err = _state_error(chosen)
    if err is not None:
        raise err
    return AdbDevice(chosen.serial)


@dataclass(frozen=True)
class AndroidInfo:
    """What `edgedeploy devices` shows about a phone."""

    serial: str
    state: str
    model: str = ""
    manufacturer: str = ""
    soc: str = ""
    abi: str = ""
    abilist: tuple[str, ...] = ()
    android_version: str = ""
    sdk: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["abilist"] = list(self.abilist)
        return d


def parse_getprop(text: str) -> dict[str, str]:
    """Parse ``getprop`` output (``[key]: [value]`` lines)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and "]: [" in line and line.endswith("]"):
            key, _, value = line[1:-1].partition("]: [")
            props[key] = value
    return props


class AdbDevice:
    """One device in state ``device`` (see :func:`select_device`); a :class:`RemoteShell`."""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self._props: dict[str, str] | None = None

    @property
    def description(self) -> str:
        return f"Android device {self.serial}"

    def run(self, command: str, *, timeout_s: float) -> ShellResult:
        """Run ``command`` with ``sh`` on the device (see :class:`RemoteShell`)."""
        res = _adb("-s", self.serial, "shell", command, timeout_s=timeout_s)
        return self._result(res)

    def run_streaming(
        self, command: str, *, timeout_s: float, on_stderr_line: Callable[[str], None]
    ) -> ShellResult:
        """:meth:`run`, also passing each complete stderr line to ``on_stderr_line`` as it
        arrives (a :class:`~toolchain.devices.shell.StreamingShell`; needs shell_v2, which
        keeps stderr apart)."""
        res = _adb_streaming(
            "-s", self.serial, "shell", command, timeout_s=timeout_s, on_stderr_line=on_stderr_line
        )
        return self._result(res)

    def _result(self, res: subprocess.CompletedProcess[bytes]) -> ShellResult:
        stdout = res.stdout.decode("utf-8", errors="replace")
        stderr = res.stderr.decode("utf-8", errors="replace")
        # adb's own failures (device gone) come as "error: ..." / "adb: ..." with exit code 1.
        if res.returncode == 1 and not stdout and stderr.startswith(("error: ", "adb: error")):
            raise TransportError(f"adb shell on {self.serial} failed: {stderr.strip()}")
        return ShellResult(res.returncode, stdout, stderr)

    def put(self, local: Path, remote: str, *, mode: int = 0o644, timeout_s: float) -> None:
        """``adb push`` one file, then set its mode."""
        res = _adb("-s", self.serial, "push", str(local), remote, timeout_s=timeout_s)
        if res.returncode != 0:
            raise TransportError(
                f"adb push {local} to {self.serial}:{remote} failed: "
                + (res.stderr or res.stdout).decode(errors="replace").strip()[-400:]
            )
        chmod = self.run(f"chmod {mode:o} {q(remote)}", timeout_s=ADB_TIMEOUT_S)
        if chmod.returncode != 0:
            raise RemoteCommandError(f"chmod {remote} failed on {self.serial}: {chmod.tail(300)}")

    def require_shell_v2(self) -> None:
        """Refuse devices without shell_v2 (their exit codes are always 0)."""
        res = _adb("-s", self.serial, "features", timeout_s=ADB_TIMEOUT_S)
        feats = res.stdout.decode(errors="replace").replace("\n", ",").split(",")
        if res.returncode == 0 and "shell_v2" not in feats:
            raise DeviceNotFoundError(
                f"{self.serial} lacks the adb shell_v2 feature (Android < 7): exit codes "
                "and errors of benchmark runs could not be seen",
                hint="use a device with Android 7 or newer",
            )

    def props(self) -> dict[str, str]:
        """All system properties (``getprop``), cached."""
        if self._props is None:
            res = self.run("getprop", timeout_s=ADB_TIMEOUT_S)
            self._props = parse_getprop(res.stdout)
        return self._props

    def info(self) -> AndroidInfo:
        p = self.props()
        soc = " ".join(
            x for x in (p.get("ro.soc.manufacturer", ""), p.get("ro.soc.model", "")) if x
        )
        if not soc:
            soc = p.get("ro.board.platform") or p.get("ro.hardware", "")
        abilist = tuple(a for a in p.get("ro.product.cpu.abilist", "").split(",") if a)
        abi = p.get("ro.product.cpu.abi") or (abilist[0] if abilist else "")
        return AndroidInfo(
            serial=self.serial,
            state="device",
            model=p.get("ro.product.model", ""),
            manufacturer=p.get("ro.product.manufacturer", ""),
            soc=soc,
            abi=abi,
            abilist=abilist or ((abi,) if abi else ()),
            android_version=p.get("ro.build.version.release", ""),
            sdk=p.get("ro.build.version.sdk", ""),
        )


def describe_all(*, timeout_s: float = ADB_TIMEOUT_S) -> list[AndroidInfo]:
    """Every attached device with model, SoC, ABI and Android version (state only when the
    device is not usable: unauthorized, offline)."""
    out = []
    for entry in list_devices(timeout_s=timeout_s):
        if entry.state != "device":
            out.append(
                AndroidInfo(
                    serial=entry.serial, state=entry.state, model=entry.tags.get("model", "")
                )
            )
            continue
        try:
            out.append(AdbDevice(entry.serial).info())
        except (TransportError, IoTimeoutError) as err:
            log.warning("could not query %s: %s", entry.serial, err)
            out.append(AndroidInfo(serial=entry.serial, state="error"))
    return out
