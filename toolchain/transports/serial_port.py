"""Serial links through pyserial's ``serial_for_url``: ``/dev/ttyACM0``, ``COM3``,
``socket://127.0.0.1:4321`` (QEMU), ``rfc2217://host:port`` (a remote port), ``loop://``
(tests), and ptys (the host-TFLM device). Also: finding a board's port by USB VID:PID."""

from __future__ import annotations

import errno
import logging
import time

import serial
import serial.tools.list_ports

from toolchain.errors import (
    AmbiguousDeviceError,
    IoTimeoutError,
    PortNotFoundError,
    TransportClosedError,
    UsageError,
)
from toolchain.transports.base import Transport

log = logging.getLogger(__name__)

#: longest single wait inside a read (seconds); reads return as soon as their bytes are in
READ_SLICE_S = 0.05


class SerialTransport(Transport):
    """A pyserial port opened by URL. ``exclusive`` locks a local tty (a second opener gets
    :class:`PortNotFoundError` saying the port is busy)."""

    def __init__(self, url: str, *, baudrate: int = 115200, exclusive: bool = True) -> None:
        super().__init__()
        self.url = url
        self.name = url
        self.baudrate = baudrate
        self.exclusive = exclusive
        self._ser: serial.SerialBase | None = None

    def _open(self) -> None:
        local = "://" not in self.url
        try:
            ser = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                timeout=READ_SLICE_S,
                write_timeout=1.0,
                do_not_open=True,
                **({"exclusive": self.exclusive} if local else {}),
            )
            ser.open()
        except ValueError as exc:
            raise UsageError(f"bad serial port URL {self.url!r}: {exc}") from exc
        except (serial.SerialException, OSError) as exc:
            raise _open_error(self.url, exc) from exc
        self._ser = ser

    def _close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("closing %s: %s", self.url, exc)

    def _port(self) -> serial.SerialBase:
        if self._ser is None:
            raise TransportClosedError(f"{self.url}: the port is not open")
        return self._ser

    def _read_some(self, max_n: int, timeout: float) -> bytes:
        ser = self._port()
        # pyserial reconfigures the port (tcsetattr) whenever .timeout changes, which costs
        # more than the read: wait in fixed slices and change it only near the deadline.
        t = round(min(max(timeout, 0.0), READ_SLICE_S), 3)
        try:
            if ser.timeout != t:
                ser.timeout = t
            return bytes(ser.read(max_n))
        except (serial.SerialException, OSError) as exc:
            raise TransportClosedError(
                f"{self.url}: the link closed while reading ({exc})",
                hint="the device process exited, the board was unplugged or the socket closed",
            ) from exc

    def write(self, data: bytes, timeout: float) -> None:
        ser = self._port()
        try:
            wt = round(max(timeout, 0.001), 3)
            if ser.write_timeout != wt:
                ser.write_timeout = wt
            n = ser.write(data)
        except serial.SerialTimeoutException as exc:
            raise IoTimeoutError(f"{self.url}: write of {len(data)} B timed out") from exc
        except (serial.SerialException, OSError) as exc:
            raise TransportClosedError(
                f"{self.url}: the link closed while writing ({exc})"
            ) from exc
        if n is not None and n != len(data):
            raise IoTimeoutError(f"{self.url}: wrote {n} of {len(data)} bytes")

    def _discard_os_input(self) -> int:
        ser = self._port()
        try:
            n = int(ser.in_waiting)
            ser.reset_input_buffer()
        except (serial.SerialException, OSError, NotImplementedError):
            return 0
        return n

    def pulse(self, line: str, seconds: float = 0.1) -> None:
        """Assert ``dtr`` or ``rts`` for ``seconds`` (board reset wiring), then release it."""
        ser = self._port()
        if line not in ("dtr", "rts"):
            raise UsageError(f"unknown control line {line!r}: use dtr or rts")
        try:
            setattr(ser, line, True)
            time.sleep(seconds)
            setattr(ser, line, False)
        except (serial.SerialException, OSError) as exc:
            raise TransportClosedError(f"{self.url}: cannot toggle {line.upper()}: {exc}") from exc


def _open_error(url: str, exc: BaseException) -> PortNotFoundError:
    text = str(exc)
    err = getattr(exc, "errno", None)
    if err == errno.EBUSY or "busy" in text.lower() or "lock" in text.lower():
        return PortNotFoundError(
            f"serial port {url} is busy: {text}",
            hint="close the other program using it (a terminal, another edgedeploy run)",
        )
    if "refused" in text.lower():
        return PortNotFoundError(
            f"nothing listens at {url}: {text}", hint="start the emulator/device first"
        )
    return PortNotFoundError(
        f"cannot open serial port {url}: {text}",
        hint="check the port name (without --port, bench finds the board by the USB ids of "
        "its target profile) and your permissions (the dialout group on Linux)",
    )


def list_ports() -> list[tuple[str, str]]:
    """``(device, "VVVV:PPPP description")`` for each serial port the OS reports."""
    out = []
    for p in serial.tools.list_ports.comports():
        ids = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "-"
        out.append((p.device, f"{ids} {p.description or ''}".strip()))
    return out


def find_port(usb_ids: tuple[str, ...] | list[str], *, what: str = "the board") -> str:
    """The one serial port whose USB ``VID:PID`` (hex, e.g. ``"0483:374b"``) is in
    ``usb_ids``. Raises :class:`PortNotFoundError` when none matches (listing the ports seen)
    and :class:`AmbiguousDeviceError` when several do."""
    wanted = {i.lower() for i in usb_ids}
    if not wanted:
        raise PortNotFoundError(
            f"no port given and the target profile names no USB ids for {what}",
            hint="pass --port /dev/ttyACM0 (or socket://host:port)",
        )
    found = []
    for p in serial.tools.list_ports.comports():
        if p.vid is not None and p.pid is not None and f"{p.vid:04x}:{p.pid:04x}" in wanted:
            found.append(p.device)
    if not found:
        seen = ", ".join(f"{d} ({info})" for d, info in list_ports()) or "none"
        raise PortNotFoundError(
            f"no serial port with USB id {', '.join(sorted(wanted))} for {what}; ports seen: {seen}",
            hint="connect the board (and its debug probe's USB), or pass --port",
        )
    if len(found) > 1:
        raise AmbiguousDeviceError(
            f"several ports match {what}: {', '.join(sorted(found))}",
            hint="choose one with --port",
        )
    return found[0]
