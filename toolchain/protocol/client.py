"""The host side of EDP v1: :class:`DeviceClient`, typed requests over any
:class:`~toolchain.transports.base.Transport`.

Every request waits for its reply at most ``timeout`` seconds, is resent with the *same*
``seq`` up to ``retries`` times (requests are idempotent; a late reply to an earlier try is
still accepted), and ends in a value or one of our errors — never ``None``:

* :class:`~toolchain.errors.IoTimeoutError` — the device stayed silent;
* :class:`~toolchain.errors.ProtocolError` — it sent bytes, but no valid EDP reply (the
  message shows what it did send), or a malformed/inconsistent reply;
* :class:`~toolchain.errors.ProtocolVersionError` — it speaks another EDP version;
* :class:`~toolchain.errors.RemoteError` — it answered ERR (``.code`` is the EDP code);
* :class:`~toolchain.errors.DeviceResetError` — it sent BOOT after inputs were uploaded
  (its state is gone: re-upload and run again);
* :class:`~toolchain.errors.TransportClosedError` — the link went away.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from toolchain.errors import (
    DeviceResetError,
    IoTimeoutError,
    ModelMismatchError,
    ProtocolError,
    ProtocolVersionError,
    RemoteError,
)
from toolchain.protocol.frame import (
    MAX_LEN,
    MIN_PAYLOAD,
    OVERHEAD,
    REPLY,
    VERSION,
    ErrCode,
    Frame,
    FrameParser,
    MsgType,
    crc32,
    encode,
    type_name,
)
from toolchain.protocol.messages import (
    ErrorReply,
    Hello,
    ProfileEntry,
    ProfilePage,
    RunReply,
    TensorInfo,
    TimesPage,
)
from toolchain.transports.base import Transport

log = logging.getLogger(__name__)

#: per-inference records a RUN is assumed to hold when the device does not say (EDP_MAX_RUNS)
DEFAULT_MAX_RUNS = 256


def _preview(data: bytes | bytearray) -> str:
    text = bytes(data).decode("ascii", errors="replace")
    if sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.8 * max(1, len(text)):
        return repr(text)
    return bytes(data).hex(" ")


class DeviceClient:
    """Typed EDP requests. ``timeout_s`` bounds each try of each request (RUN takes its own
    timeout); ``retries`` is how many times a request is resent after a timeout."""

    def __init__(self, transport: Transport, *, timeout_s: float = 2.0, retries: int = 2) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.parser = FrameParser(MAX_LEN, versions=None)
        self._frames: deque[Frame] = deque()
        self._seq = random.randrange(256)  # a stale reply from an earlier session rarely matches
        self.max_payload = MIN_PAYLOAD
        self.device: Hello | None = None
        #: BOOT frames seen, resends done, stale replies skipped (diagnostics)
        self.boots = 0
        self.resends = 0
        self.stale = 0
        self._dirty = False  # the device holds state we rely on (uploaded inputs, results)

    # --- framing ----------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _next_frame(self, deadline: float) -> Frame:
        while not self._frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IoTimeoutError(f"{self.transport.name}: no frame within the timeout")
            data = self.transport.read(self.parser.wanted(), remaining)
            self._frames.extend(self.parser.feed(data))
        return self._frames.popleft()

    def _on_boot(self, frame: Frame, during: str) -> None:
        self.boots += 1
        if frame.payload and frame.payload[0] != VERSION:
            raise ProtocolVersionError(
                f"the device booted speaking EDP version {frame.payload[0]}; "
                f"this edgedeploy speaks version {VERSION}",
                hint="rebuild the firmware with this edgedeploy's templates",
            )
        if self._dirty:
            self._dirty = False
            raise DeviceResetError(
                f"the device reset (sent BOOT) while waiting for {during}; "
                "its uploaded inputs and results are gone",
                hint="a crash (HardFault), a watchdog or a brown-out resets a board; "
                "the benchmark re-uploads and retries a few times",
            )
        log.info("device booted (BOOT frame) before %s", during)

    def _await(self, seq: int, req: int, deadline: float) -> Frame:
        name = type_name(req)
        while True:
            f = self._next_frame(deadline)
            if f.version != VERSION:
                raise ProtocolVersionError(
                    f"the device speaks EDP version {f.version}; this edgedeploy speaks "
                    f"version {VERSION}",
                    hint="build and flash the firmware with this edgedeploy's templates, "
                    "or use the edgedeploy release that matches the firmware",
                )
            if f.type == MsgType.BOOT:
                self._on_boot(f, name)
                continue
            if f.seq != seq:
                self.stale += 1
                log.debug("skipping stale %r while waiting for %s seq %d", f, name, seq)
                continue
            if f.type == req | REPLY:
                return f
            if f.type == MsgType.ERR:
                er = ErrorReply.unpack(f.payload)
                if er.request_type != req:
                    self.stale += 1
                    continue
                exc = RemoteError(str(er), hint=_hint(er))
                exc.code = er.code
                raise exc
            raise ProtocolError(f"the device answered {name} with a {type_name(f.type)} frame")

    def request(
        self,
        req: int,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> bytes:
        """Send one request and return its reply payload (see the module doc for errors)."""
        timeout = self.timeout_s if timeout is None else timeout
        retries = self.retries if retries is None else retries
        if len(payload) > self.max_payload and self.device is not None:
            raise ProtocolError(
                f"{type_name(req)} payload of {len(payload)} B exceeds the device's "
                f"max_payload {self.max_payload}"
            )
        seq = self._next_seq()
        frame = encode(req, seq, payload)
        skipped0 = self.parser.skipped
        for attempt in range(retries + 1):
            if attempt:
                self.resends += 1
                log.info("no reply to %s seq %d; resending (%d)", type_name(req), seq, attempt)
                self.flush(timeout)
            self.transport.write(frame, timeout)
            try:
                return self._await(seq, req, time.monotonic() + timeout).payload
            except IoTimeoutError:
                # a reply cut short (the device reset mid-frame) may hide later frames
                self._frames.extend(self.parser.drop_candidate())
                continue
        tries = retries + 1
        junk = self.parser.skipped - skipped0
        if junk:
            raise ProtocolError(
                f"{self.transport.name}: no valid reply to {type_name(req)} after {tries} "
                f"tries; the device sent {junk} bytes that are not EDP frames, the last ones: "
                f"{_preview(self.parser.last_skipped)}",
                hint="is this the edgedeploy benchmark firmware, at the right baud rate?",
            )
        raise IoTimeoutError(
            f"{self.transport.name}: the device did not answer {type_name(req)} "
            f"({tries} tries, {timeout:.3g} s each)",
            hint="check that the board is powered and running the edgedeploy firmware on this "
            "port; reset it if it hangs",
        )

    def wait_boot(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a BOOT frame (after a reset or flashing); True if seen.
        Other frames are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self._next_frame(deadline)
            except IoTimeoutError:
                return False
            if f.type == MsgType.BOOT:
                self._dirty = False
                self._on_boot(f, "BOOT")
                return True

    def flush(self, timeout: float | None = None) -> None:
        """Send ``max_payload + 12`` zero bytes: they complete (and so discard) any partial
        frame the device's parser holds, e.g. one cut short when a previous host process
        died mid-frame, which would otherwise swallow the next requests. Zeros contain no
        SYNC byte, so the device ignores them otherwise (~90 ms at 115200 baud)."""
        n = max(self.max_payload, 1024) + OVERHEAD
        self.transport.write(bytes(n), self.timeout_s if timeout is None else timeout)

    def resync(self) -> int:
        """Start clean: flush the device's parser, then forget buffered bytes and partial
        frames on this side. Returns how many received bytes were dropped."""
        self.flush()
        self._frames.clear()
        n = self.parser.buffered
        self.parser.reset()
        return n + self.transport.discard_input()

    # --- typed requests ---------------------------------------------------------------------

    def hello(self) -> Hello:
        """HELLO; checks the protocol version and adopts the device's max_payload."""
        h = Hello.unpack(self.request(MsgType.HELLO))
        if h.protocol_version != VERSION:
            raise ProtocolVersionError(
                f"the device speaks EDP version {h.protocol_version}; this edgedeploy speaks "
                f"version {VERSION}",
                hint="build and flash the firmware with this edgedeploy's templates",
            )
        if not MIN_PAYLOAD <= h.max_payload <= MAX_LEN:
            raise ProtocolError(f"the device announced an invalid max_payload {h.max_payload}")
        self.max_payload = h.max_payload
        self.device = h
        return h

    def _hello(self) -> Hello:
        return self.device if self.device is not None else self.hello()

    def tensor_info(self, index: int, *, output: bool = False) -> TensorInfo:
        return TensorInfo.unpack(
            self.request(MsgType.TENSOR_INFO, struct.pack("<BB", int(output), index))
        )

    def upload_input(self, index: int, data: bytes) -> None:
        """Write input ``index`` in chunks, checking the device's CRC of what it holds."""
        info = self.tensor_info(index)
        if len(data) != info.nbytes:
            raise ModelMismatchError(
                f"input {index}: {len(data)} B given, the device's input tensor has "
                f"{info.nbytes} B (shape {list(info.shape)})",
                hint="the firmware was built for another model, or the input has the wrong shape",
            )
        self._hello()
        chunk = self.max_payload - 5
        for off in range(0, max(len(data), 1), chunk):
            part = data[off : off + chunk]
            until, crc = struct.unpack(
                "<II",
                _exact(
                    self.request(MsgType.SET_INPUT, struct.pack("<BI", index, off) + part),
                    8,
                    "SET_INPUT",
                ),
            )
            self._dirty = True
            if until != off + len(part) or crc != crc32(data[:until]):
                raise ProtocolError(
                    f"input {index}: the device's copy differs after writing bytes "
                    f"[{off}, {off + len(part)}) (received_until {until}, CRC {crc:08x})",
                    hint="the link corrupts data that passes the frame CRC; check the wiring",
                )
        got = self.input_crc(index)
        if got != crc32(data):
            raise ProtocolError(
                f"input {index}: device CRC {got:08x} != host CRC {crc32(data):08x}"
            )

    def input_crc(self, index: int) -> int:
        payload = _exact(self.request(MsgType.GET_INPUT_CRC, bytes((index,))), 4, "GET_INPUT_CRC")
        return int(struct.unpack("<I", payload)[0])

    def run(
        self,
        *,
        warmup: int,
        runs: int,
        profile: bool = False,
        timeout: float | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[int]:
        """``warmup`` unrecorded inferences, then ``runs`` recorded ones; returns the raw
        per-inference tick counts (counter steps; see HELLO's tick_unit and
        ticks_per_tick_count). Runs beyond the device's record size are split over several
        RUNs (warm-ups only before the first). ``timeout`` bounds each RUN (default
        ``timeout_s``). With ``profile`` the device also sums per-op ticks (see
        :meth:`profile`); then ``runs`` must fit one RUN. ``on_progress(done)`` is called
        after each RUN with the recorded inferences so far (long benchmarks show progress)."""
        if warmup < 0 or runs < 0 or warmup > 0xFFFF:
            raise ValueError("warmup and runs must be non-negative (warmup <= 65535)")
        max_runs = self._hello().max_runs or DEFAULT_MAX_RUNS
        if profile and runs > max_runs:
            raise ValueError(f"a profiled RUN holds at most {max_runs} runs")
        ticks: list[int] = []
        w = warmup
        while True:
            n = min(runs - len(ticks), max_runs)
            reply = RunReply.unpack(
                self.request(MsgType.RUN, struct.pack("<HHB", w, n, int(profile)), timeout=timeout)
            )
            self._dirty = True
            if reply.status != 0 or reply.runs_done != n:
                raise ProtocolError(
                    f"RUN of {n} returned status {reply.status}, {reply.runs_done} runs done"
                )
            page = self.times(0, n)
            if sum(page) != reply.total_ticks:
                raise ProtocolError("GET_TIMES does not add up to the RUN's total ticks")
            ticks += page
            w = 0
            if on_progress is not None:
                on_progress(len(ticks))
            if len(ticks) >= runs:
                return ticks

    def times(self, first: int = 0, count: int | None = None) -> list[int]:
        """Per-inference ticks of the last RUN (``count`` None: all from ``first``)."""
        out: list[int] = []
        want = 0xFFFF if count is None else count
        while len(out) < want:
            page = TimesPage.unpack(
                self.request(
                    MsgType.GET_TIMES,
                    struct.pack("<HH", first + len(out), min(want - len(out), 0xFFFF)),
                )
            )
            if page.first != first + len(out):
                raise ProtocolError("GET_TIMES answered another page than requested")
            if not page.ticks:
                break
            out += page.ticks
        if count is not None and len(out) != count:
            raise ProtocolError(f"GET_TIMES returned {len(out)} values, {count} were recorded")
        return out

    def profile(self) -> list[ProfileEntry]:
        """Per-op ticks of the last profiled RUN (summed over its runs)."""
        out: list[ProfileEntry] = []
        total = None
        while total is None or len(out) < total:
            page = ProfilePage.unpack(
                self.request(MsgType.GET_PROFILE, struct.pack("<HH", len(out), 0xFFFF))
            )
            total = page.total_ops
            if page.first != len(out):
                raise ProtocolError("GET_PROFILE answered another page than requested")
            if not page.entries and len(out) < total:
                raise ProtocolError(f"GET_PROFILE returned no entry at {len(out)} of {total}")
            out += page.entries
        return out

    def read_output(self, index: int) -> bytes:
        """The raw bytes of output ``index`` after the last RUN."""
        return self._read_output(index, self.tensor_info(index, output=True))

    def read_output_array(self, index: int) -> np.ndarray:
        info = self.tensor_info(index, output=True)
        return np.frombuffer(self._read_output(index, info), dtype=info.np_dtype).reshape(
            info.shape
        )

    def _read_output(self, index: int, info: TensorInfo) -> bytes:
        self._hello()
        out = bytearray()
        while len(out) < info.nbytes:
            want = min(self.max_payload, info.nbytes - len(out))
            part = self.request(MsgType.GET_OUTPUT, struct.pack("<BIH", index, len(out), want))
            if len(part) != want:
                raise ProtocolError(
                    f"output {index}: asked for {want} B at offset {len(out)}, the device "
                    f"sent {len(part)} B"
                    + (
                        " (more than asked: it overruns the host's buffer)"
                        if len(part) > want
                        else ""
                    ),
                )
            out += part
        return bytes(out)

    def echo(self, data: bytes) -> bytes:
        back = self.request(MsgType.ECHO, data)
        if back != data:
            raise ProtocolError(f"ECHO of {len(data)} B came back different ({len(back)} B)")
        return back

    def ticks(self) -> int:
        return int(struct.unpack("<Q", _exact(self.request(MsgType.TICKS), 8, "TICKS"))[0])


def _exact(payload: bytes, n: int, what: str) -> bytes:
    if len(payload) != n:
        raise ProtocolError(f"malformed {what} reply: {len(payload)} B, expected {n} B")
    return payload


def _hint(er: ErrorReply) -> str | None:
    hints: dict[int, str] = {
        ErrCode.NO_MODEL: "this is the self-test firmware; flash the benchmark firmware",
        ErrCode.TOO_MANY: "lower --runs, or rebuild the firmware with larger EDP_MAX_* sizes",
        ErrCode.INVOKE_FAILED: "the interpreter failed on the device: check the arena size "
        "and that the op resolver has every op of the model",
        ErrCode.UNSUPPORTED: "this firmware lacks that feature",
    }
    return hints.get(er.code)


def describe(h: Hello) -> dict[str, Any]:
    """A JSON-friendly view of a HELLO for reports."""
    from toolchain.protocol.messages import FwKind, TickUnit

    def _name(enum: Any, v: int) -> str:
        try:
            return str(enum(v).name.lower())
        except ValueError:
            return str(v)

    return {
        "protocol_version": h.protocol_version,
        "fw_kind": _name(FwKind, h.fw_kind),
        "max_payload": h.max_payload,
        "clock_hz": h.clock_hz,
        "tick_unit": _name(TickUnit, h.tick_unit),
        "ticks_per_tick_count": h.ticks_per_tick_count,
        "model_sha256": h.model_sha256.hex(),
        "arena_bytes": h.arena_bytes,
        "arena_used_bytes": h.arena_used_bytes,
        "n_inputs": h.n_inputs,
        "n_outputs": h.n_outputs,
        "n_ops": h.n_ops,
        "info": h.info,
    }
