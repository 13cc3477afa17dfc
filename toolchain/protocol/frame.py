"""EDP v1 framing (docs/protocol.md): constants, CRCs, encoder and a resynchronising parser.

This mirrors ``firmware_templates/common/edp/edp.c`` byte for byte; the host tests check the
two against each other. All integers are little-endian.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

VERSION = 1
SYNC0 = 0xA5
SYNC1 = 0x5A
HEADER_SIZE = 8
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
#: the smallest max_payload a peer may announce
MIN_PAYLOAD = 256
#: the largest len a header can carry
MAX_LEN = 0xFFFF

_HDR = struct.Struct("<BBBBBHB")  # sync0 sync1 version type seq len hcrc


class MsgType(IntEnum):
    HELLO = 0x01
    TENSOR_INFO = 0x02
    SET_INPUT = 0x03
    RUN = 0x04
    GET_OUTPUT = 0x05
    TICKS = 0x06
    GET_TIMES = 0x07
    GET_PROFILE = 0x08
    ECHO = 0x09
    GET_INPUT_CRC = 0x0A
    BOOT = 0x40
    ERR = 0xFF


#: a success reply's type is ``request | REPLY``
REPLY = 0x80


class ErrCode(IntEnum):
    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_INDEX = 3
    OVERRUN = 4
    NOT_READY = 5
    INVOKE_FAILED = 6
    TOO_MANY = 7
    NO_MODEL = 8
    GAP = 9
    UNSUPPORTED = 10


def type_name(t: int) -> str:
    """``HELLO``, ``HELLO_REPLY``, ``ERR``... or the hex value for an unknown type."""
    try:
        return MsgType(t).name
    except ValueError:
        pass
    if t & REPLY:
        try:
            return MsgType(t & ~REPLY).name + "_REPLY"
        except ValueError:
            pass
    return f"0x{t:02X}"


_CRC8_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = ((_c << 1) ^ 0x07) & 0xFF if _c & 0x80 else (_c << 1) & 0xFF
    _CRC8_TABLE.append(_c)


def crc8(data: bytes | bytearray | memoryview) -> int:
    """CRC-8 with poly 0x07, init 0, no reflection, xorout 0 (CRC-8/SMBUS)."""
    c = 0
    for b in bytes(data):
        c = _CRC8_TABLE[c ^ b]
    return c


def crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32 (IEEE 802.3, as zlib.crc32)."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    """One frame; ``version`` is the header's protocol version (1 for EDP v1)."""

    type: int
    seq: int
    payload: bytes = b""
    version: int = VERSION

    def __repr__(self) -> str:
        return f"Frame({type_name(self.type)}, seq={self.seq}, {len(self.payload)} B)"


def encode(type: int, seq: int, payload: bytes = b"", *, version: int = VERSION) -> bytes:
    """The bytes of one frame. Raises ValueError for out-of-range fields."""
    if not (0 <= type <= 0xFF and 0 <= seq <= 0xFF and 0 <= version <= 0xFF):
        raise ValueError("type, seq and version are bytes")
    if len(payload) > MAX_LEN:
        raise ValueError(f"payload of {len(payload)} B exceeds {MAX_LEN}")
    head = bytes((version, type, seq)) + struct.pack("<H", len(payload))
    head += bytes((crc8(head),))
    body = head + bytes(payload)
    return bytes((SYNC0, SYNC1)) + body + struct.pack("<I", crc32(body))


class FrameParser:
    """Incremental parser with the resynchronisation rules of docs/protocol.md.

    ``feed(data)`` returns the complete valid frames found. A bad header CRC, a ``len`` above
    ``max_payload``, an unaccepted version or a bad CRC-32 drop the candidate and hunting
    resumes at the byte after its SYNC0. ``versions`` is the set of header versions taken as
    frames: the device side accepts only 1 (as the C parser); the host accepts any, so that
    a device speaking another version is reported as such rather than as silence.
    """

    def __init__(
        self, max_payload: int = MAX_LEN, *, versions: frozenset[int] | None = frozenset({1})
    ) -> None:
        self.max_payload = max_payload
        self.versions = versions
        self._buf = bytearray()
        #: candidate frames rejected (a SYNC pair matched, then a check failed)
        self.dropped = 0
        #: bytes skipped while hunting for SYNC (garbage), and the last few of them
        self.skipped = 0
        self.last_skipped = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def wanted(self) -> int:
        """How many more bytes can be read without reading past the current candidate frame
        (at least 1). Reading exactly this many never blocks on bytes that belong to a
        later frame."""
        b = self._buf
        if len(b) < HEADER_SIZE:
            return HEADER_SIZE - len(b) if len(b) >= 1 and b[0] == SYNC0 else 1
        n = struct.unpack_from("<H", b, 5)[0]
        return max(1, OVERHEAD + n - len(b))

    def drop_candidate(self) -> list[Frame]:
        """Give up on the partial frame being received (e.g. after a timeout: its sender reset
        mid-frame) and rescan the bytes after its SYNC0; returns the frames found there."""
        if not self._buf:
            return []
        self.dropped += 1
        self._skip(1)
        return self.feed(b"")

    def _skip(self, n: int) -> None:
        self.skipped += n
        self.last_skipped += self._buf[:n]
        del self.last_skipped[:-64]
        del self._buf[:n]

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        b = self._buf
        while b:
            i = b.find(SYNC0)
            if i != 0:
                self._skip(len(b) if i < 0 else i)
                continue
            if len(b) < 2:
                break
            if b[1] != SYNC1:
                self._skip(1)
                continue
            if len(b) < HEADER_SIZE:
                break
            _, _, version, typ, seq, n, hcrc = _HDR.unpack_from(b)
            if (
                (self.versions is not None and version not in self.versions)
                or n > self.max_payload
                or crc8(b[2:7]) != hcrc
            ):
                self.dropped += 1
                self._skip(1)
                continue
            if len(b) < OVERHEAD + n:
                break
            (crc,) = struct.unpack_from("<I", b, HEADER_SIZE + n)
            if crc32(b[2 : HEADER_SIZE + n]) != crc:
                self.dropped += 1
                self._skip(1)
                continue
            out.append(Frame(typ, seq, bytes(b[HEADER_SIZE : HEADER_SIZE + n]), version))
            del b[: OVERHEAD + n]
        return out
