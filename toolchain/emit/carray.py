"""C array text, fast: the model flatbuffer as ``<name>_model_data.h/.cc`` (TFLM's convention).

``format_bytes`` renders bytes as ``0x00, 0x01, ...`` lines of 12, byte-identical to ``xxd -i``,
with numpy table look-ups instead of a Python loop: a 4 MB model takes well under a tenth of
a second (benchmarks/README.md, "Emit: arenas and speed"). ``format_values`` renders
typed arrays (golden vectors) as decimal literals.

The generated files follow TFLite Micro's examples: ``alignas(16) const unsigned char
g_<name>_model_data[]`` (TFLM reads the flatbuffer in place and needs 16-byte alignment) and
``const unsigned int g_<name>_model_data_size``; optional linker section and namespace;
include guards; no timestamps, so the same inputs give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolchain.emit import cnames
from toolchain.errors import EmitError

PER_LINE = 12


def _word(two: bytes) -> np.uint16:
    return np.frombuffer(two, np.uint16)[0]


# Each "0xHH, " entry is three 16-bit words ("0x", "HH", ", "), so a line is a row of a
# uint16 matrix filled with strided slices: no per-byte Python work at all.
_HEX2 = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint16)
_INDENT, _0X, _SEP, _EOL = _word(b"  "), _word(b"0x"), _word(b", "), _word(b",\n")

#: numpy dtype name → C type of a golden-vector array.
C_TYPES = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "uint16": "uint16_t",
    "int32": "int32_t",
    "uint32": "uint32_t",
    "int64": "int64_t",
    "float32": "float",
    "bool": "bool",
}


def format_bytes(data: bytes | memoryview) -> bytes:
    """``data`` as C initializer lines (ASCII bytes), byte-identical to the body ``xxd -i``
    writes: two spaces, 12 ``0xHH`` per line, comma-separated, no trailing comma, ``\\n``
    line ends. Empty data gives ``b""``."""
    a = np.frombuffer(data, np.uint8)
    n = a.size
    if n == 0:
        return b""
    full = n - n % PER_LINE
    rows = full // PER_LINE
    lines = np.empty((rows, 1 + 3 * PER_LINE), np.uint16)
    lines[:, 0] = _INDENT
    lines[:, 1::3] = _0X
    lines[:, 2::3] = _HEX2[a[:full]].reshape(rows, PER_LINE)
    lines[:, 3::3] = _SEP
    lines[:, -1] = _EOL
    out = lines.tobytes()
    if full < n:
        tail = b"".join(b"0x" + _HEX2[v].tobytes() + b", " for v in a[full:])
        out += b"  " + tail[:-2] + b"\n"
    else:
        out = out[:-2] + b"\n"  # no comma after the last byte
    return out


def format_values(values: np.ndarray, *, per_line: int = 16, indent: int = 2) -> str:
    """A typed array as decimal C literals (floats as ``1.5f``), ``per_line`` per line."""
    flat = np.asarray(values).reshape(-1)
    kind = flat.dtype.name
    if kind not in C_TYPES:
        raise EmitError(f"cannot write a {kind} array as C (supported: {', '.join(C_TYPES)})")
    if kind == "float32":
        if not np.all(np.isfinite(flat)):
            raise EmitError("a golden vector holds NaN or infinity; it cannot be checked on device")
        items = [f"{np.format_float_scientific(v, unique=True, trim='-')}f" for v in flat]
        items = [s.replace("e+", "e") for s in items]
    elif kind == "bool":
        items = ["true" if v else "false" for v in flat.tolist()]
    else:
        info = np.iinfo(flat.dtype)
        suffix = "LL" if kind == "int64" else "U" if kind == "uint32" else ""
        items = [
            f"({v + 1}{suffix} - 1)" if v == info.min and info.min < -32768 else f"{v}{suffix}"
            for v in flat.tolist()
        ]
    pad = " " * indent
    rows = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "".join(f"{pad}{r},\n" for r in rows)


@dataclass(frozen=True)
class Namespace:
    """Opening and closing lines for an optional (possibly nested) C++ namespace."""

    parts: tuple[str, ...] = ()

    @classmethod
    def of(cls, ns: str | None) -> Namespace:
        return cls(cnames.check_namespace(ns) if ns else ())

    def open(self) -> str:
        return "".join(f"namespace {p} {{\n" for p in self.parts) + ("\n" if self.parts else "")

    def close(self) -> str:
        return ("\n" if self.parts else "") + "".join(
            f"}}  // namespace {p}\n" for p in reversed(self.parts)
        )

    def qualify(self, symbol: str) -> str:
        return "::".join((*self.parts, symbol))


def banner(lines: Sequence[str]) -> str:
    """The comment block at the top of every generated file (plain ASCII: characters
    outside it, e.g. in a model's file name, are written as ``\\u00f3``-style escapes)."""
    return "".join(f"// {comment_text(ln)}\n" if ln else "//\n" for ln in lines)


def comment_text(text: str) -> str:
    """``text`` made safe for one ``//`` comment line of an ASCII C file: non-ASCII and
    control characters escaped, no trailing backslash (it would continue the comment)."""
    out = "".join(
        c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return out + "." if out.endswith("\\") else out


@dataclass(frozen=True)
class ModelDataFiles:
    header_name: str
    source_name: str
    header: bytes
    source: bytes
    array_symbol: str
    size_symbol: str


def model_data(
    data: bytes,
    *,
    name: str,
    about: Sequence[str],
    header_extra: str = "",
    namespace: str | None = None,
    section: str | None = None,
) -> ModelDataFiles:
    """Render ``<name>_model_data.h`` and ``.cc`` for the flatbuffer ``data``.

    ``about`` is the banner text (source, size, sha256); ``header_extra`` is inserted into
    the header inside the namespace (the arena constants). Raises UsageError for a bad
    name, namespace or section.
    """
    cnames.check_identifier(name)
    ns = Namespace.of(namespace)
    attr = f' __attribute__((section("{cnames.check_section(section)}")))' if section else ""
    h_name, cc_name = f"{name}_model_data.h", f"{name}_model_data.cc"
    array, size = f"g_{name}_model_data", f"g_{name}_model_data_size"
    g = cnames.guard(h_name)
    header = (
        banner([*about, "Generated by edgedeploy emit; do not edit."])
        + f"#ifndef {g}\n#define {g}\n\n"
        + ns.open()
        + "// The .tflite flatbuffer. TFLM reads it in place: tflite::GetModel("
        + f"{array}).\n// 16-byte aligned, as TFLM requires"
        + (f"; placed in section {section}.\n" if section else ".\n")
        + f"extern const unsigned char {array}[];\n"
        + f"extern const unsigned int {size};\n"
        + header_extra
        + ns.close()
        + f"\n#endif  // {g}\n"
    ).encode("ascii")
    source = (
        banner([*about, "Generated by edgedeploy emit; do not edit."])
        + f'#include "{h_name}"\n\n'
        + ns.open()
        + f"alignas(16) const unsigned char {array}[]{attr} = {{\n"
    ).encode("ascii")
    source += format_bytes(data)
    source += (f"}};\nconst unsigned int {size} = {len(data)};\n" + ns.close()).encode("ascii")
    return ModelDataFiles(h_name, cc_name, header, source, ns.qualify(array), ns.qualify(size))
