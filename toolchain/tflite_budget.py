"""Where the bytes of a .tflite go: constant data, quantization arrays, names, metadata,
flatbuffer tables, padding.

:func:`byte_budget` walks the flatbuffer itself (every table, vtable, vector and string the
TFLite schema defines, from the root down) and gives each byte of the file to exactly one
category, so the categories add up to the file size:

* ``constant_data`` — the data vectors of buffers tensors use (weights, biases, constants);
* ``quantization`` — ``QuantizationParameters`` tables and their ``scale`` / ``zero_point`` /
  ``min`` / ``max`` vectors;
* ``names`` — tensor and subgraph name strings;
* ``metadata`` — the model description, ``metadata`` entries and the buffers they point at,
  the deprecated ``metadata_buffer`` list, and signature defs;
* ``tables`` — everything else the schema defines: the root, tables and their vtables,
  operator codes, tensor shapes, operator input/output lists, builtin and custom options,
  the buffer tables and vector length prefixes of constant data;
* ``padding`` — bytes no walked structure covers: alignment padding (constant data is
  16-byte aligned, int64 zero points 8-byte aligned) and the vectors inside builtin-option
  tables, which are walked as tables only.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from toolchain.tflite_model import TFLiteModel

CATEGORIES = ("constant_data", "quantization", "names", "metadata", "tables", "padding")
_CODE = {c: i + 1 for i, c in enumerate(CATEGORIES)}

# table name → field slot → kind: ("table", T) ("tables", T) ("vec", elem size) ("str",)
# ("union",) ("bytes",). Field slot = field id (vtable entry); from schema.fbs.
_SCHEMA: dict[str, dict[int, tuple[Any, ...]]] = {
    "Model": {
        1: ("tables", "OperatorCode"),
        2: ("tables", "SubGraph"),
        3: ("str",),
        4: ("tables", "Buffer"),
        5: ("vec", 4),
        6: ("tables", "Metadata"),
        7: ("tables", "SignatureDef"),
    },
    "OperatorCode": {1: ("str",)},
    "SubGraph": {
        0: ("tables", "Tensor"),
        1: ("vec", 4),
        2: ("vec", 4),
        3: ("tables", "Operator"),
        4: ("str",),
    },
    "Tensor": {
        0: ("vec", 4),
        3: ("str",),
        4: ("table", "QuantizationParameters"),
        6: ("table", "Sparsity"),
        7: ("vec", 4),
        9: ("tables", "VariantSubType"),
    },
    "VariantSubType": {0: ("vec", 4)},
    "QuantizationParameters": {
        0: ("vec", 4),
        1: ("vec", 4),
        2: ("vec", 4),
        3: ("vec", 8),
        5: ("union",),
    },
    "Sparsity": {0: ("vec", 4), 1: ("vec", 4), 2: ("tables", "DimensionMetadata")},
    "DimensionMetadata": {2: ("union",), 4: ("union",)},
    "Operator": {
        1: ("vec", 4),
        2: ("vec", 4),
        4: ("union",),
        5: ("vec", 1),
        7: ("vec", 1),
        8: ("vec", 4),
        12: ("union",),
    },
    "Buffer": {0: ("bytes",)},
    "Metadata": {0: ("str",)},
    "SignatureDef": {0: ("tables", "TensorMap"), 1: ("tables", "TensorMap"), 2: ("str",)},
    "TensorMap": {0: ("str",)},
}

# (table, slot) → category of the whole subtree (default: inherited from the parent).
_SUBTREE = {
    ("Model", 3): "metadata",
    ("Model", 5): "metadata",
    ("Model", 6): "metadata",
    ("Model", 7): "metadata",
    ("Tensor", 3): "names",
    ("Tensor", 4): "quantization",
    ("SubGraph", 4): "names",
}


class _Walker:
    def __init__(self, data: bytes, metadata_buffers: set[int]) -> None:
        self.data = data
        self.mark = np.zeros(len(data), dtype=np.uint8)
        self.metadata_buffers = metadata_buffers
        self.buffer_index = -1

    def u32(self, pos: int) -> int:
        return int(struct.unpack_from("<I", self.data, pos)[0])

    def put(self, start: int, end: int, cat: str) -> None:
        seg = self.mark[start:end]
        seg[seg == 0] = _CODE[cat]  # first claim wins (vtables are shared)

    def table(self, pos: int, kind: str, cat: str) -> None:
        vt = pos - int(struct.unpack_from("<i", self.data, pos)[0])
        vt_size, obj_size = struct.unpack_from("<HH", self.data, vt)
        self.put(vt, vt + vt_size, cat)
        self.put(pos, pos + obj_size, cat)
        fields = _SCHEMA.get(kind, {})
        for slot in range((vt_size - 4) // 2):
            off = struct.unpack_from("<H", self.data, vt + 4 + 2 * slot)[0]
            if not off or slot not in fields:
                continue
            spec = fields[slot]
            fcat = _SUBTREE.get((kind, slot), cat)
            where = pos + off
            if spec[0] == "union":
                self.table(where + self.u32(where), "", fcat)
                continue
            target = where + self.u32(where)
            if spec[0] == "table":
                self.table(target, spec[1], fcat)
            elif spec[0] == "str":
                n = self.u32(target)
                self.put(target, target + 4 + n + 1, fcat)
            elif spec[0] == "vec":
                n = self.u32(target)
                self.put(target, target + 4 + n * spec[1], fcat)
            elif spec[0] == "bytes":  # Buffer.data
                n = self.u32(target)
                self.put(target, target + 4, fcat)
                dcat = "metadata" if self.buffer_index in self.metadata_buffers else "constant_data"
                self.put(target + 4, target + 4 + n, dcat if cat == "tables" else cat)
            elif spec[0] == "tables":
                n = self.u32(target)
                self.put(target, target + 4 + 4 * n, fcat)
                for i in range(n):
                    elem = target + 4 + 4 * i
                    if spec[1] == "Buffer" and kind == "Model":
                        self.buffer_index = i
                    self.table(elem + self.u32(elem), spec[1], fcat)


def byte_budget(model: TFLiteModel) -> dict[str, int]:
    """Bytes of ``model``'s file per category (:data:`CATEGORIES`); they sum to the file size.

    Buffers that ``metadata`` entries point at count as metadata, not constant data.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = model.data
    root = schema.Model.GetRootAs(data, 0)
    md = {int(root.Metadata(i).Buffer()) for i in range(root.MetadataLength())}
    w = _Walker(data, md)
    w.put(0, 8, "tables")  # root offset + file identifier
    w.table(w.u32(0), "Model", "tables")
    counts = np.bincount(w.mark, minlength=len(CATEGORIES) + 1)
    out = {c: int(counts[_CODE[c]]) for c in CATEGORIES}
    out["padding"] += int(counts[0])
    return out
