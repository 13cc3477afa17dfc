"""EDP v1 message payloads (docs/protocol.md "Message types"): typed records with ``pack`` (the
bytes a peer sends) and ``unpack`` (raises :class:`ProtocolError` on a malformed payload).
Used by the host client and by the Python device side alike."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from toolchain.errors import ProtocolError
from toolchain.protocol.frame import ErrCode, type_name


class FwKind(IntEnum):
    TFLM = 0
    SELFTEST = 1
    HOST_TFLM = 2
    COMPILED = 3  # the compiled model (edgedeploy compile): Cortex-M firmware or host build


class TickUnit(IntEnum):
    CYCLES = 0
    INSTRUCTIONS = 1
    US = 2
    NS = 3
    SYSTICK = 4


#: EDP dtype code (TFLite TensorType numbering) → numpy dtype
DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.float32),
    2: np.dtype(np.int32),
    3: np.dtype(np.uint8),
    7: np.dtype(np.int16),
    9: np.dtype(np.int8),
}
MAX_DIMS = 6


def dtype_code(dtype: np.dtype | type) -> int:
    """EDP dtype code of a numpy dtype; ProtocolError for a type EDP cannot carry."""
    dt = np.dtype(dtype)
    for code, d in DTYPES.items():
        if d == dt:
            return code
    raise ProtocolError(f"tensor type {dt} cannot be carried by EDP (int8/uint8/int16/int32/f32)")


def _unpack(fmt: str | struct.Struct, payload: bytes, what: str, offset: int = 0) -> tuple:
    s = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
    if len(payload) < offset + s.size:
        raise ProtocolError(
            f"malformed {what}: {len(payload)} B payload, expected at least {offset + s.size} B"
        )
    return s.unpack_from(payload, offset)


_HELLO = struct.Struct("<BBHIBI32sIIBBHH")  # 59 bytes


@dataclass(frozen=True)
class Hello:
    """The HELLO reply: what the device is and how it counts time."""

    protocol_version: int
    fw_kind: int
    max_payload: int
    clock_hz: int
    tick_unit: int
    ticks_per_tick_count: int
    model_sha256: bytes
    arena_bytes: int
    arena_used_bytes: int
    n_inputs: int
    n_outputs: int
    n_ops: int
    text: str = ""

    @property
    def info(self) -> dict[str, str]:
        """The ``key=value`` lines of ``text``."""
        out: dict[str, str] = {}
        for line in self.text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
        return out

    @property
    def max_runs(self) -> int | None:
        """Per-inference records one RUN can hold (``edp.max_runs``), when announced."""
        v = self.info.get("edp.max_runs")
        return int(v) if v and v.isdigit() else None

    @property
    def has_model(self) -> bool:
        return any(self.model_sha256)

    def pack(self) -> bytes:
        text = self.text.encode()
        return (
            _HELLO.pack(
                self.protocol_version,
                self.fw_kind,
                self.max_payload,
                self.clock_hz,
                self.tick_unit,
                self.ticks_per_tick_count,
                self.model_sha256,
                self.arena_bytes,
                self.arena_used_bytes,
                self.n_inputs,
                self.n_outputs,
                self.n_ops,
                len(text),
            )
            + text
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        f = _unpack(_HELLO, payload, "HELLO reply")
        text_len = f[-1]
        text = payload[_HELLO.size : _HELLO.size + text_len]
        if len(text) != text_len:
            raise ProtocolError("malformed HELLO reply: text shorter than text_len")
        args: tuple[int, int, int, int, int, int, bytes, int, int, int, int, int] = f[:-1]
        return cls(*args, text=text.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class TensorInfo:
    """TENSOR_INFO reply: element type (EDP code), shape, quantization, size in bytes."""

    dtype: int
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    nbytes: int

    @property
    def np_dtype(self) -> np.dtype:
        if self.dtype not in DTYPES:
            raise ProtocolError(f"device reported unknown tensor type code {self.dtype}")
        return DTYPES[self.dtype]

    def pack(self) -> bytes:
        return (
            struct.pack("<BB", self.dtype, len(self.shape))
            + struct.pack(f"<{len(self.shape)}i", *self.shape)
            + struct.pack("<fiI", self.scale, self.zero_point, self.nbytes)
        )

    @classmethod
    def unpack(cls, payload: bytes) -> TensorInfo:
        dtype, ndim = _unpack("<BB", payload, "TENSOR_INFO reply")
        if ndim > MAX_DIMS:
            raise ProtocolError(f"malformed TENSOR_INFO reply: {ndim} dimensions")
        dims = _unpack(f"<{ndim}i", payload, "TENSOR_INFO reply", 2)
        scale, zp, size = _unpack("<fiI", payload, "TENSOR_INFO reply", 2 + 4 * ndim)
        return cls(dtype, tuple(dims), scale, zp, size)


@dataclass(frozen=True)
class RunReply:
    status: int
    runs_done: int
    total_ticks: int

    def pack(self) -> bytes:
        return struct.pack("<BHQ", self.status, self.runs_done, self.total_ticks)

    @classmethod
    def unpack(cls, payload: bytes) -> RunReply:
        return cls(*_unpack("<BHQ", payload, "RUN reply"))


@dataclass(frozen=True)
class ProfileEntry:
    """Per-op ticks summed over the profiled inferences of the last profiled RUN."""

    op_index: int
    name: str
    ticks: int


@dataclass(frozen=True)
class ProfilePage:
    total_ops: int
    first: int
    entries: list[ProfileEntry] = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack("<HHH", self.total_ops, self.first, len(self.entries))
        for e in self.entries:
            name = e.name.encode()[:255]
            out += struct.pack("<HQB", e.op_index, e.ticks, len(name)) + name
        return out

    @classmethod
    def unpack(cls, payload: bytes) -> ProfilePage:
        total, first, count = _unpack("<HHH", payload, "GET_PROFILE reply")
        pos, entries = 6, []
        for _ in range(count):
            op_index, ticks, nl = _unpack("<HQB", payload, "GET_PROFILE reply", pos)
            name = payload[pos + 11 : pos + 11 + nl]
            if len(name) != nl:
                raise ProtocolError("malformed GET_PROFILE reply: op name cut short")
            entries.append(ProfileEntry(op_index, name.decode("utf-8", "replace"), ticks))
            pos += 11 + nl
        return cls(total, first, entries)


@dataclass(frozen=True)
class TimesPage:
    first: int
    ticks: list[int]

    def pack(self) -> bytes:
        return struct.pack(f"<HH{len(self.ticks)}Q", self.first, len(self.ticks), *self.ticks)

    @classmethod
    def unpack(cls, payload: bytes) -> TimesPage:
        first, count = _unpack("<HH", payload, "GET_TIMES reply")
        if len(payload) != 4 + 8 * count:
            raise ProtocolError(
                f"malformed GET_TIMES reply: {len(payload)} B for {count} tick values"
            )
        return cls(first, list(struct.unpack_from(f"<{count}Q", payload, 4)))


@dataclass(frozen=True)
class ErrorReply:
    """An ERR reply: which request failed, the code and the device's text."""

    request_type: int
    code: int
    text: str

    def pack(self) -> bytes:
        return struct.pack("<BH", self.request_type, self.code) + self.text.encode()

    @classmethod
    def unpack(cls, payload: bytes) -> ErrorReply:
        req, code = _unpack("<BH", payload, "ERR reply")
        return cls(req, code, payload[3:].decode("utf-8", errors="replace"))

    @property
    def code_name(self) -> str:
        try:
            return ErrCode(self.code).name
        except ValueError:
            return f"code {self.code}"

    def __str__(self) -> str:
        return f"{type_name(self.request_type)} failed on the device: {self.code_name}: {self.text}"
