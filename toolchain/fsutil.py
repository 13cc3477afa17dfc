"""File writing that never leaves a half-written artifact.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` write to a
  temporary file in the same directory, fsync it, then ``os.replace`` it into place.
* :func:`check_output_path` says *before* any work whether an output folder or file can be
  written (no file in the way, no name too long, a writable folder to make it in), and
  :func:`writing_to` turns an ``OSError`` met while writing it into the same clear error;
  every command that writes uses them.
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
from typing import Any, Literal

from toolchain.errors import UsageError


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


#: the longest file name and path Linux filesystems take (NAME_MAX, PATH_MAX)
NAME_MAX = 255
PATH_MAX = 4096


def output_error(option: str, path: str | os.PathLike[str], exc: OSError | str) -> UsageError:
    """The one error for "cannot write this output": names the option, the path, the reason."""
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return UsageError(
        f"{option} {os.fspath(path)}: cannot write there ({reason})",
        hint=f"give {option} a path you can write to: a folder (or file name) that is not "
        "an existing file of another kind, in a writable folder, with names under "
        f"{NAME_MAX} bytes",
    )


def check_output_path(
    path: str | os.PathLike[str], *, option: str = "--out", kind: Literal["dir", "file"] = "dir"
) -> Path:
    """Raise :func:`output_error` unless ``path`` can be written as an output folder
    (``kind="dir"``) or file (``kind="file"``). Creates and changes nothing; call it before
    the work, so a bad ``--out`` fails in a second, not after a conversion."""
    p = Path(path).expanduser()
    text = os.fspath(p)
    if not text:
        raise output_error(option, path, "an empty path")
    if len(os.fsencode(os.path.abspath(text))) >= PATH_MAX:
        raise output_error(option, _short(text), f"the path is longer than {PATH_MAX} bytes")
    for part in p.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise output_error(
                option, _short(text), f"a name in it is {len(os.fsencode(part))} bytes long"
            )
    if p.exists() or p.is_symlink():
        if kind == "dir" and not p.is_dir():
            raise output_error(option, text, "it is a file, not a folder")
        if kind == "file" and p.is_dir():
            raise output_error(option, text, "it is a folder, not a file")
    folder = p if kind == "dir" else p.parent
    anc = folder
    while not anc.exists() and anc != anc.parent:
        if anc.is_symlink():
            raise output_error(option, text, f"{anc} is a broken symbolic link")
        anc = anc.parent
    if not anc.is_dir():
        raise output_error(option, text, f"{anc} is a file, so no folder can be made under it")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise output_error(option, text, f"{anc} is not writable")
    _probe(anc, option, text)  # os.access says yes to root even where mkdir fails
    return p


def _probe(folder: Path, option: str, text: str) -> None:
    try:
        made = tempfile.mkdtemp(prefix=".edgedeploy-probe-", dir=folder)
    except OSError as exc:
        raise output_error(
            option, text, f"cannot create anything in {folder}: {exc.strerror}"
        ) from exc
    os.rmdir(made)


def _short(text: str) -> str:
    return text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}"


@contextlib.contextmanager
def writing_to(path: str | os.PathLike[str], *, option: str = "--out") -> Iterator[None]:
    """Turn an ``OSError`` raised in this block (writing ``path``) into :func:`output_error`."""
    try:
        yield
    except OSError as exc:
        raise output_error(option, _short(os.fspath(path)), exc) from exc
