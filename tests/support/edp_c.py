"""Build the EDP C library (firmware_templates/common/edp) for the host and drive it through
ctypes: CRCs, the encoder, the parser and a device with the fake backend of tests/c/edp_fake.c.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from toolchain.transports.serial_port import SerialTransport

ROOT = Path(__file__).resolve().parents[2]
EDP_DIR = ROOT / "firmware_templates" / "common" / "edp"
C_DIR = ROOT / "tests" / "c"
LIB_SOURCES = [EDP_DIR / "edp.c", EDP_DIR / "edp_device.c"]
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-Wconversion"]


def compile_c(out: Path, sources: list[Path], *flags: str, cc: str = "gcc") -> Path:
    """Compile ``sources`` (plus the library) with warnings as errors; raises with the
    compiler's output on failure."""
    if shutil.which(cc) is None:
        raise FileNotFoundError(f"{cc} not found")
    cmd = [cc, *WARNINGS, f"-I{EDP_DIR}", f"-I{C_DIR}", *flags, "-o", str(out)]
    cmd += [str(s) for s in (*LIB_SOURCES, *sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out


class EdpC:
    """ctypes handle on the shared library built from the shim."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        u8p = ctypes.POINTER(ctypes.c_uint8)
        lib.edp_crc8.restype = ctypes.c_uint8
        lib.edp_crc8.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.edp_crc32.restype = ctypes.c_uint32
        lib.edp_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
        lib.edp_encode.restype = ctypes.c_size_t
        lib.edp_encode.argtypes = [
            u8p,
            ctypes.c_size_t,
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.shim_device_init.argtypes = [
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.shim_device_feed.restype = ctypes.c_size_t
        lib.shim_device_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, u8p, ctypes.c_size_t]
        lib.shim_device_boot.restype = ctypes.c_size_t
        lib.shim_device_boot.argtypes = [u8p, ctypes.c_size_t]
        lib.shim_device_dropped.restype = ctypes.c_uint32
        lib.shim_parse.restype = ctypes.c_int
        lib.shim_parse.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint16,
            u8p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_uint32),
        ]
        self.lib = lib
        self._out = (ctypes.c_uint8 * (1 << 20))()

    def crc8(self, data: bytes) -> int:
        return int(self.lib.edp_crc8(data, len(data)))

    def crc32(self, data: bytes, crc: int = 0) -> int:
        return int(self.lib.edp_crc32(crc, data, len(data)))

    def encode(self, typ: int, seq: int, payload: bytes, cap: int | None = None) -> bytes:
        cap = len(payload) + 12 if cap is None else cap
        n = self.lib.edp_encode(self._out, cap, typ, seq, payload, len(payload))
        return bytes(self._out[:n])

    def parse(self, data: bytes, max_payload: int) -> tuple[list[tuple[int, int, bytes]], int]:
        used = ctypes.c_size_t()
        dropped = ctypes.c_uint32()
        n = self.lib.shim_parse(
            data, len(data), max_payload, self._out, len(self._out), used, dropped
        )
        raw = bytes(self._out[: used.value])
        frames, pos = [], 0
        for _ in range(n):
            ln = raw[pos + 2] | raw[pos + 3] << 8
            frames.append((raw[pos], raw[pos + 1], raw[pos + 4 : pos + 4 + ln]))
            pos += 4 + ln
        return frames, int(dropped.value)

    def device_init(
        self, in_bytes: int, out_bytes: int, *, profiler: bool = True, persist: bool = False
    ) -> None:
        """A fresh fake device; ``persist``: its input survives invoke and the dispatcher
        receives straight into it (no shadow copy), as with a compiled model."""
        self.lib.shim_device_init(in_bytes, out_bytes, int(profiler), int(persist))

    def device_feed(self, data: bytes) -> bytes:
        n = self.lib.shim_device_feed(data, len(data), self._out, len(self._out))
        return bytes(self._out[:n])

    def device_boot(self) -> bytes:
        n = self.lib.shim_device_boot(self._out, len(self._out))
        return bytes(self._out[:n])


def build_shim(out_dir: Path) -> EdpC:
    lib = compile_c(
        out_dir / "libedp_shim.so",
        [C_DIR / "edp_fake.c", C_DIR / "edp_shim.c"],
        "-shared",
        "-fPIC",
        "-O1",
        "-g",
        "-DEDP_MAX_INPUT_BYTES=8192u",
        "-DEDP_MAX_RUNS=64u",
    )
    return EdpC(lib)


class LoopDevice(SerialTransport):
    """pyserial's ``loop://`` port with a device at the far end: every write is handed to
    ``respond(bytes) -> bytes`` (the C shim's ``device_feed`` or a Python
    ``DeviceDispatcher.feed``) and its reply bytes are what the loop port then reads."""

    def __init__(self, respond: Callable[[bytes], bytes], name: str = "loop://") -> None:
        super().__init__("loop://")
        self.respond = respond
        self.name = name

    def write(self, data: bytes, timeout: float) -> None:
        reply = self.respond(data)
        if reply:
            super().write(reply, timeout)

    def inject(self, data: bytes) -> None:
        """Bytes that arrive from the device unasked (noise, a BOOT frame)."""
        super().write(data, 1.0)
