"""The conversion cache: an unchanged re-run costs a hash and a file copy.

Entries live in ``$EDGEDEPLOY_CACHE_DIR/convert/<key>/`` (default ``./.edgedeploy_cache``),
each the ``model_int8.tflite`` and ``report.json`` of one conversion. The key hashes
everything that decides the result: the model (its source files, TorchScript/.pt2 bytes and
weights — or, once exported, the ONNX graph), the data, the options that change the model,
the versions of torch/onnx2tf/TensorFlow/LiteRT and edgedeploy's own converter code. A
source-level key (computed without importing torch or TensorFlow) points at the ONNX-level
entry through a small link file, so the fast path never needs the heavy imports.

Entries are written to a temporary folder and renamed into place, so a reader never sees a
half-written entry; an entry whose model does not match its recorded hash is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from toolchain.fsutil import atomic_write_text, sha256_file, to_json

log = logging.getLogger(__name__)

CACHE_ENV = "EDGEDEPLOY_CACHE_DIR"
MAX_ENTRIES = 64
TFLITE_NAME = "model_int8.tflite"
REPORT_NAME = "report.json"
_PACKAGES = ("torch", "onnx", "onnx2tf", "onnxsim", "tensorflow", "ai-edge-litert", "numpy")
#: modules of edgedeploy whose code decides the converted model and its report (also the
#: pipeline's convert stage key: toolchain.pipeline.stages.STAGE_CODE)
CODE = ("convert", "artifacts.py", "data.py", "modelsrc.py", "pyref.py", "tflite_model.py")


def default_dir() -> Path:
    """``$EDGEDEPLOY_CACHE_DIR`` or ``./.edgedeploy_cache``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.cwd() / ".edgedeploy_cache"


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of the converter stack (from package metadata: nothing is imported)."""
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "absent"
    out["edgedeploy_code"] = code_hash()
    return out


@lru_cache(maxsize=1)
def code_hash() -> str:
    """A hash of edgedeploy's converter source files."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for name in CODE:
        p = root / name
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def make_key(parts: dict[str, Any]) -> str:
    """The key of a dict of JSON-able parts (order-independent)."""
    return hashlib.sha256(to_json(parts).encode()).hexdigest()[:32]


class ConvertCache:
    """A folder of conversion results, keyed by :func:`make_key`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root if root is not None else default_dir()) / "convert"

    def get(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        """(tflite path, report) of an intact entry, following a link; None on a miss."""
        entry = self.root / key
        link = self.root / f"{key}.link"
        if not entry.is_dir() and link.is_file():
            entry = self.root / link.read_text().strip()
        model, report_path = entry / TFLITE_NAME, entry / REPORT_NAME
        if not model.is_file() or not report_path.is_file():
            return None
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            return None
        if report.get("tflite_sha256") != sha256_file(model):
            return None
        with contextlib.suppress(OSError):
            os.utime(entry)  # most recently used
        return model, report

    def put(self, key: str, tflite: bytes, report: dict[str, Any]) -> None:
        """Store an entry (atomically; an existing one is kept), then trim old entries. A
        cache folder that cannot be written (full disk, permissions) only loses the entry."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        except OSError as exc:
            log.warning("convert cache %s not written: %s", self.root, exc.strerror or exc)
            return
        entry = self.root / key
        if entry.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        try:
            (tmp / TFLITE_NAME).write_bytes(tflite)
            (tmp / REPORT_NAME).write_text(to_json(report))
            os.replace(tmp, entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        self._trim()

    def link(self, key: str, target: str) -> None:
        """Make ``key`` find the entry stored under ``target``."""
        if key == target:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written is no cache
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.root / f"{key}.link", target + "\n")

    def _trim(self) -> None:
        entries = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        for old in entries[: max(0, len(entries) - MAX_ENTRIES)]:
            shutil.rmtree(old, ignore_errors=True)
        live = {p.name for p in self.root.iterdir() if p.is_dir()}
        for link in self.root.glob("*.link"):
            with contextlib.suppress(OSError):
                if link.read_text().strip() not in live:
                    link.unlink()
