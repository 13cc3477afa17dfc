"""File writing that never leaves a half-written artifact.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` write to a
  temporary file in the same directory, fsync it, then ``os.replace`` it into place.
* :func:`staged_outputs` collects every file of a stage in a hidden staging directory next to
  the output directory and moves them into place only when the whole stage succeeded; on any
  exception (including ``KeyboardInterrupt``) the staging directory is removed and the output
  directory is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mode of written files: what ``open()`` would give (mkstemp's own 0600 would hide reports
#: and artifacts from other users)
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, then rename),
    with the mode a plain ``open()`` gives (0666 less the umask)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as deterministic JSON (see :func:`to_json`) atomically."""
    return atomic_write_text(path, to_json(obj))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and Paths appear in reports; convert them without importing numpy here.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


@contextlib.contextmanager
def staged_outputs(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging directory; on success move its contents into ``out_dir``.

    Files are moved one by one with ``os.replace`` (same filesystem, so each is atomic) and
    replace existing files of the same name; other files in ``out_dir`` are left alone.
    Sub-directories are moved whole (an existing one of the same name is replaced).
    On failure nothing in ``out_dir`` changes and the staging directory is deleted.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    ok = False
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            dest = out / item.name
            if item.is_dir() and dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            os.replace(item, dest)
        ok = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ok and created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty: we made it, and nothing landed in it


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
