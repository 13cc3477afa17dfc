"""The stage cache: a stage's folder is reused when the hash of its inputs has not changed.

Each finished stage folder holds a manifest (:data:`MANIFEST`) with the stage's key (the
SHA-256 of everything its result depends on: its options, the content of the previous
stages' artifacts, the data and model sources, the versions of the tools and of edgedeploy's
own code), the SHA-256 of every file in the folder, and the stage's output record. A later run
with the same key whose files still hash the same takes the folder as it is.

A stage is built in a hidden sibling folder (``.<name>.building-*``) and swapped into place
only once it finished, manifest included: a failure or Ctrl-C in the middle leaves the
previous folder (if any) untouched and nothing half-written; :func:`sweep` removes the
leftovers of a run that was killed outright (never those of a run still alive: build folders
carry the builder's host and pid).

Concurrent writers: two processes may build the same stage folder at once; the swap into
place is done under a lock file (``.<name>.lock``, ``fcntl.flock``), so the folder is always
one complete build. :class:`StageStore` is a content-addressed store of finished stage
folders (``<root>/<stage>/<key>/``) shared by many runs, e.g. the points of a sweep, on one
machine or on a folder every node mounts: a stage whose key is in the store is copied from
it instead of built, and a builder holds the key's lock file while it builds, so two runs that
need the same stage at the same time build it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolchain import __version__
from toolchain.fsutil import atomic_write_json, sha256_file, to_json

log = logging.getLogger(__name__)

MANIFEST = ".edgedeploy-stage.json"
MANIFEST_SCHEMA = 1
#: report fields that change from run to run without the artifact changing
VOLATILE_KEYS = frozenset({"timings_s", "seconds", "built_seconds", "created"})


def digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as deterministic JSON."""
    return hashlib.sha256(to_json(obj).encode("utf-8")).hexdigest()


def tree_digests(folder: Path) -> dict[str, str]:
    """``relative path → SHA-256`` of every file under ``folder`` (the manifest excluded)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(folder).as_posix()] = sha256_file(p)
    return out


def content_digest(folder: Path) -> str:
    """What later stages' keys see of a stage folder: every file's content, with the
    :data:`VOLATILE_KEYS` of JSON reports left out (a re-built stage that made the same
    artifacts does not invalidate the stages after it)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name == MANIFEST:
            continue
        h.update(p.relative_to(folder).as_posix().encode())
        if p.suffix == ".json":
            try:
                data = _drop_volatile(json.loads(p.read_text(encoding="utf-8")))
                h.update(to_json(data).encode())
                continue
            except ValueError:
                pass
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _drop_volatile(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_volatile(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_drop_volatile(v) for v in obj]
    return obj


@functools.cache
def code_version(parts: tuple[str, ...]) -> str:
    """edgedeploy's version and a hash of the code that makes a stage's artifacts: ``parts``
    are paths under ``toolchain/`` (modules or packages) and, with a leading ``../``, folders
    of the project such as ``../firmware_templates``."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(__version__.encode())
    for part in sorted(parts):
        p = (root / part).resolve()
        files = (
            sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
            if p.is_dir()
            else [p]
        )
        for f in files:
            if f.is_file():
                h.update(f.relative_to(root.parent).as_posix().encode())
                h.update(f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:16]}"


def lookup(folder: Path, key: str, parts: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The manifest of ``folder`` when it was built for ``key`` and its files are intact.
    ``parts`` (what ``key`` hashes) only serves the log line that says what changed."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        return None
    if manifest.get("key") != key:
        old = manifest.get("key_parts") or {}
        changed = sorted(
            k for k in {*old, *(parts or {})} if digest(old.get(k)) != digest((parts or {}).get(k))
        )
        log.info(
            "%s: inputs changed (%s); running the stage again",
            folder.name,
            ", ".join(changed) or "?",
        )
        return None
    try:
        if tree_digests(folder) != manifest.get("files"):
            log.info("%s: files changed since they were built; running the stage again", folder)
            return None
    except OSError:
        return None
    return dict(manifest)


@contextlib.contextmanager
def building(folder: Path) -> Iterator[Path]:
    """A fresh hidden folder next to ``folder`` to build the stage in; removed unless
    :func:`commit` moved it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-{_owner()}-", dir=folder.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit(
    tmp: Path,
    folder: Path,
    *,
    key: str | None,
    record: dict[str, Any],
    parts: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write the manifest into ``tmp`` and swap it in as ``folder``. Returns the file digests.

    ``key`` None (inputs that cannot be hashed) writes a manifest no lookup will match;
    ``parts`` (what the key hashes) are kept in the manifest to explain a later miss.
    """
    files = tree_digests(tmp)
    atomic_write_json(
        tmp / MANIFEST,
        {
            "schema": MANIFEST_SCHEMA,
            "key": key,
            "key_parts": parts,
            "files": files,
            "record": record,
        },
    )
    _publish(tmp)
    _swap(tmp, folder)
    return files


def _swap(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp`` (under the folder's lock: concurrent writers take turns)."""
    with file_lock(folder.parent / f".{folder.name}.lock"):
        old = None
        if folder.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.old-{_owner()}-", dir=folder.parent)
            )
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _owner() -> str:
    """``host_pid`` of this process, as written into the names of its build folders."""
    return f"{socket.gethostname().replace('-', '_')}_{os.getpid()}"


def _alive(name: str) -> bool:
    """Whether the build folder ``name`` belongs to a process alive on this host."""
    owner = name.split(".building-" if ".building-" in name else ".old-", 1)[1].split("-")[0]
    host, _, pid = owner.rpartition("_")
    if host != socket.gethostname().replace("-", "_") or not pid.isdigit():
        return False  # another host's, or an old-style name: a leftover
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block. Works
    between processes on one machine and, where the file system supports it (local disks,
    NFSv4), between machines sharing the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _publish(tmp: Path) -> None:
    """Give the built folder the permissions a plain ``mkdir``/``open`` would have
    (``mkdtemp``/``mkstemp`` make them private)."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [tmp, *tmp.rglob("*")]:
        if not p.is_symlink():
            full = 0o777 if p.is_dir() or p.stat().st_mode & 0o111 else 0o666
            p.chmod(full & ~mask)


def remove(folder: Path) -> None:
    """Remove a stage folder that no longer belongs to the project's run (a skipped stage)."""
    if (folder / MANIFEST).is_file():
        shutil.rmtree(folder, ignore_errors=True)


def sweep(out_dir: Path) -> None:
    """Remove the hidden build/swap folders a killed run may have left in ``out_dir``."""
    if not out_dir.is_dir():
        return
    for p in out_dir.iterdir():
        leftover = p.name.startswith(".") and (".building-" in p.name or ".old-" in p.name)
        if leftover and not _alive(p.name):
            shutil.rmtree(p, ignore_errors=True)


class StageStore:
    """Finished stage folders shared between runs, by stage key: ``<root>/<stage>/<key>/``.

    An entry is a copy of a committed stage folder, manifest included, published by renaming
    a complete copy into place (a reader never sees half an entry; a second publisher of the
    same key keeps the first). :meth:`claim` holds ``<root>/<stage>/.<key>.lock`` so that of
    several runs needing the same stage at once, one builds it and the others then copy it.
    Entries are checked like a stage folder (:func:`lookup`) before they are used.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def claim(self, stage: str, key: str) -> contextlib.AbstractContextManager[None]:
        """The build lock of ``stage``/``key`` (blocks while another run builds it)."""
        return file_lock(self.root / stage / f".{key}.lock")

    def fetch(self, stage: str, key: str, folder: Path) -> dict[str, Any] | None:
        """Copy the entry for ``key`` into place as ``folder``; its manifest, or None when the
        store has no intact entry."""
        entry = self.entry(stage, key)
        manifest = lookup(entry, key)
        if manifest is None:
            return None
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{folder.name}.building-{_owner()}-", dir=folder.parent)
        )
        try:
            shutil.copytree(entry, tmp, dirs_exist_ok=True)
            _swap(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return manifest  # entries never change once published: the copy is what was checked

    def publish(self, stage: str, key: str, folder: Path) -> None:
        """Copy the committed ``folder`` into the store as ``key`` (kept if already there)."""
        entry = self.entry(stage, key)
        if entry.is_dir():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        sweep(entry.parent)  # copies a killed publisher left
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.building-{_owner()}-", dir=entry.parent))
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            os.rename(tmp, entry)
        except OSError as exc:  # published by another run meanwhile (or the store is full)
            log.debug("stage store: %s/%s not published: %s", stage, key, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
