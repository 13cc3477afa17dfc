"""The device side of EDP v1 in Python: :class:`DeviceDispatcher` answers requests for a
:class:`DeviceBackend`, with the same semantics as ``firmware_templates/common/edp/
edp_device.c`` (input shadow copies refilled before every invoke, ordered uploads, the same
error codes). Used by the host-TFLM device and by test fakes.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Callable
from dataclasses import replace

from toolchain.protocol.frame import (
    MIN_PAYLOAD,
    REPLY,
    VERSION,
    ErrCode,
    Frame,
    FrameParser,
    MsgType,
    crc32,
    encode,
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

#: flags passed to DeviceBackend.invoke (as EDP_PROFILE_* in edp_device.h)
PROFILE_ON = 1
PROFILE_RESET = 2


class DeviceBackend(abc.ABC):
    """What a device must provide. Tensors are described by :class:`TensorInfo`; the input
    bytes are handed to :meth:`set_inputs` before every :meth:`invoke` (the refill)."""

    @abc.abstractmethod
    def hello(self) -> Hello:
        """The HELLO fields (``protocol_version`` and ``max_payload`` are overwritten)."""

    @abc.abstractmethod
    def tensor(self, index: int, *, output: bool) -> TensorInfo:
        """Describe a tensor (IndexError when there is none)."""

    @abc.abstractmethod
    def set_inputs(self, inputs: list[bytes]) -> None:
        """Copy the inputs into the interpreter (called before every invoke, untimed)."""

    @abc.abstractmethod
    def invoke(self, profile: int) -> None:
        """Run one inference (timed); raise RuntimeError with a reason on failure."""

    @abc.abstractmethod
    def output(self, index: int) -> bytes:
        """The bytes of output ``index`` after the last invoke."""

    @abc.abstractmethod
    def now(self) -> int:
        """The tick counter (in HELLO's tick_unit)."""

    def op_profile(self) -> list[ProfileEntry] | None:
        """Per-op tick sums since the last PROFILE_RESET, or None when unsupported."""
        return None


class DeviceReset(Exception):
    """Raised inside a RUN when a reset was requested: the RUN is abandoned, no reply."""


class DeviceDispatcher:
    """Parses request bytes and returns reply bytes; see the module doc."""

    def __init__(
        self, backend: DeviceBackend, *, max_payload: int = 1024, max_runs: int = 4096
    ) -> None:
        if not MIN_PAYLOAD <= max_payload <= 0xFFFF:
            raise ValueError("max_payload must be in 256..65535")
        self.backend = backend
        self.max_payload = max_payload
        self.max_runs = max_runs
        self.parser = FrameParser(max_payload)
        #: set (e.g. from a signal handler) to abandon a running RUN; see :meth:`reboot`
        self.reset_requested = False
        self.requests = 0
        self._clear()

    def _clear(self) -> None:
        h = self.backend.hello()
        self.inputs = [
            bytearray(self.backend.tensor(i, output=False).nbytes) for i in range(h.n_inputs)
        ]
        self.valid = [0] * h.n_inputs
        self.times: list[int] | None = None
        self.have_outputs = False
        self.have_profile = False

    def reboot(self) -> bytes:
        """Forget all state, as a reset does; returns the BOOT frame to send."""
        self.reset_requested = False
        self.parser.reset()
        self._clear()
        return encode(MsgType.BOOT, 0, bytes((VERSION, self.backend.hello().fw_kind)))

    def feed(self, data: bytes) -> bytes:
        """Consume received bytes; return the reply bytes to send (may be empty).
        Raises :class:`DeviceReset` when a reset was requested during a RUN."""
        out = bytearray()
        for f in self.parser.feed(data):
            out += self.dispatch(f)
        return bytes(out)

    # --- requests -------------------------------------------------------------------------

    def dispatch(self, f: Frame) -> bytes:
        if f.type == 0 or f.type >= MsgType.BOOT:
            return b""
        self.requests += 1
        handler = _HANDLERS.get(f.type)
        if handler is None:
            return self._err(f, ErrCode.UNKNOWN_TYPE, f"unknown request type {f.type}")
        try:
            payload = handler(self, f)
        except _Err as e:
            return self._err(f, e.code, e.text)
        return encode(f.type | REPLY, f.seq, payload)

    def _err(self, f: Frame, code: int, text: str) -> bytes:
        payload = ErrorReply(f.type, code, text).pack()[: self.max_payload]
        return encode(MsgType.ERR, f.seq, payload)

    def _hello(self, f: Frame) -> bytes:
        _need(f, 0, "HELLO takes no payload")
        h = self.backend.hello()
        text = (
            f"edp.max_runs={self.max_runs}\n"
            f"edp.max_input_bytes={sum(len(b) for b in self.inputs)}\n" + h.text
        )
        return replace(h, protocol_version=VERSION, max_payload=self.max_payload, text=text).pack()[
            : self.max_payload
        ]

    def _tensor(self, index: int, output: bool) -> TensorInfo:
        h = self.backend.hello()
        count = h.n_outputs if output else h.n_inputs
        if index >= count:
            kind = "output" if output else "input"
            raise _Err(ErrCode.BAD_INDEX, f"no such {kind}; {kind}s: {count}")
        return self.backend.tensor(index, output=output)

    def _tensor_info(self, f: Frame) -> bytes:
        _need(f, 2, "TENSOR_INFO takes 2 bytes")
        return self._tensor(f.payload[1], bool(f.payload[0])).pack()

    def _set_input(self, f: Frame) -> bytes:
        if len(f.payload) < 5:
            raise _Err(ErrCode.BAD_LENGTH, "SET_INPUT takes u8 index, u32 offset, data")
        i, off = struct.unpack_from("<BI", f.payload)
        data = f.payload[5:]
        size = self._tensor(i, False).nbytes
        if off > size or len(data) > size - off:
            raise _Err(ErrCode.OVERRUN, f"write past the end of the input; its size is {size}")
        if off > self.valid[i]:
            raise _Err(ErrCode.GAP, f"write the input in order; received so far: {self.valid[i]}")
        self.inputs[i][off : off + len(data)] = data
        end = off + len(data)
        self.valid[i] = max(self.valid[i], end)
        self.have_outputs = False
        return struct.pack("<II", end, crc32(self.inputs[i][:end]))

    def _run(self, f: Frame) -> bytes:
        _need(f, 5, "RUN takes u16 warmup, u16 runs, u8 flags")
        warmup, runs, flags = struct.unpack("<HHB", f.payload)
        profile = bool(flags & 1)
        if runs > self.max_runs:
            raise _Err(ErrCode.TOO_MANY, f"too many runs; at most {self.max_runs} per RUN")
        if profile and self.backend.op_profile() is None:
            raise _Err(ErrCode.UNSUPPORTED, "this firmware has no per-op profiler")
        for i, buf in enumerate(self.inputs):
            if self.valid[i] != len(buf):
                raise _Err(ErrCode.NOT_READY, f"input not fully uploaded; input {i}")
        self.times = None
        self.have_outputs = self.have_profile = False
        times = []
        inputs = [bytes(b) for b in self.inputs]
        for k in range(warmup + runs):
            if self.reset_requested:
                raise DeviceReset()
            pflags = 0
            if profile and k >= warmup:
                pflags = PROFILE_ON | (PROFILE_RESET if k == warmup else 0)
            try:
                self.backend.set_inputs(inputs)
                t0 = self.backend.now()
                self.backend.invoke(pflags)
            except RuntimeError as exc:
                raise _Err(ErrCode.INVOKE_FAILED, f"invoke failed: {exc}") from exc
            t1 = self.backend.now()
            if k >= warmup:
                times.append(t1 - t0)
        self.times = times
        self.have_outputs = True
        self.have_profile = profile and runs > 0
        return RunReply(0, runs, sum(times)).pack()

    def _get_output(self, f: Frame) -> bytes:
        _need(f, 7, "GET_OUTPUT takes u8 index, u32 offset, u16 length")
        i, off, want = struct.unpack("<BIH", f.payload)
        size = self._tensor(i, True).nbytes
        if not self.have_outputs:
            raise _Err(ErrCode.NOT_READY, "no outputs: RUN after the last SET_INPUT first")
        if want > self.max_payload:
            raise _Err(ErrCode.BAD_LENGTH, f"length above max_payload {self.max_payload}")
        if off > size:
            raise _Err(ErrCode.OVERRUN, f"read past the end of the output; its size is {size}")
        return self.backend.output(i)[off : off + want]

    def _ticks(self, f: Frame) -> bytes:
        _need(f, 0, "TICKS takes no payload")
        return struct.pack("<Q", self.backend.now() & 0xFFFFFFFFFFFFFFFF)

    def _get_times(self, f: Frame) -> bytes:
        _need(f, 4, "GET_TIMES takes u16 first, u16 count")
        first, count = struct.unpack("<HH", f.payload)
        if self.times is None:
            raise _Err(ErrCode.NOT_READY, "no times: RUN first")
        if first > len(self.times):
            raise _Err(ErrCode.OVERRUN, f"first past the recorded runs: {len(self.times)}")
        count = min(count, len(self.times) - first, (self.max_payload - 4) // 8)
        return TimesPage(first, self.times[first : first + count]).pack()

    def _get_profile(self, f: Frame) -> bytes:
        _need(f, 4, "GET_PROFILE takes u16 first, u16 count")
        first, count = struct.unpack("<HH", f.payload)
        prof = self.backend.op_profile()
        if prof is None:
            raise _Err(ErrCode.UNSUPPORTED, "this firmware has no per-op profiler")
        if not self.have_profile:
            raise _Err(ErrCode.NOT_READY, "no profile: RUN with flags bit0 set first")
        if first > len(prof):
            raise _Err(ErrCode.OVERRUN, f"first past the last op; ops: {len(prof)}")
        entries: list[ProfileEntry] = []
        size = 6
        for e in prof[first : first + count]:
            name = e.name.encode()[:255]
            if size + 11 + len(name) > self.max_payload:
                if entries:
                    break
                name = name[: self.max_payload - size - 11]
            entries.append(replace(e, name=name.decode("utf-8", "ignore")))
            size += 11 + len(name)
        return ProfilePage(len(prof), first, entries).pack()

    def _echo(self, f: Frame) -> bytes:
        return f.payload

    def _get_input_crc(self, f: Frame) -> bytes:
        _need(f, 1, "GET_INPUT_CRC takes u8 index")
        i = f.payload[0]
        self._tensor(i, False)
        return struct.pack("<I", crc32(self.inputs[i]))


class _Err(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _need(f: Frame, n: int, what: str) -> None:
    if len(f.payload) != n:
        raise _Err(ErrCode.BAD_LENGTH, what)


_HANDLERS: dict[int, Callable[[DeviceDispatcher, Frame], bytes]] = {
    MsgType.HELLO: DeviceDispatcher._hello,
    MsgType.TENSOR_INFO: DeviceDispatcher._tensor_info,
    MsgType.SET_INPUT: DeviceDispatcher._set_input,
    MsgType.RUN: DeviceDispatcher._run,
    MsgType.GET_OUTPUT: DeviceDispatcher._get_output,
    MsgType.TICKS: DeviceDispatcher._ticks,
    MsgType.GET_TIMES: DeviceDispatcher._get_times,
    MsgType.GET_PROFILE: DeviceDispatcher._get_profile,
    MsgType.ECHO: DeviceDispatcher._echo,
    MsgType.GET_INPUT_CRC: DeviceDispatcher._get_input_crc,
}
