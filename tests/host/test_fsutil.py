"""Host tier: atomic writes and staged outputs never leave half-written artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolchain.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    staged_outputs,
    to_json,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.bin"]


def test_atomic_write_gives_the_mode_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's 0600


def test_json_is_deterministic(tmp_path: Path) -> None:
    a = atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, Path("x")]})
    assert a.read_text() == to_json({"a": [1.5, "x"], "b": 1})
    assert json.loads(a.read_text()) == {"a": [1.5, "x"], "b": 1}


def test_staged_outputs_commit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (out / "report.json").write_text("old")
    with staged_outputs(out) as stage:
        (stage / "report.json").write_text("new")
        (stage / "dir").mkdir()
        (stage / "dir" / "x").write_text("x")
    assert (out / "report.json").read_text() == "new"
    assert (out / "keep.txt").read_text() == "old"
    assert (out / "dir" / "x").read_text() == "x"
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_staged_outputs_failure_changes_nothing(tmp_path: Path, exc: type[BaseException]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    with pytest.raises(exc), staged_outputs(out) as stage:
        (stage / "report.json").write_text("half")
        (stage / "model.tflite").write_bytes(b"partial")
        raise exc()
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert (out / "report.json").read_text() == "old"


def test_staged_outputs_failure_removes_dir_it_created(tmp_path: Path) -> None:
    out = tmp_path / "new_out"
    with pytest.raises(RuntimeError), staged_outputs(out) as stage:
        (stage / "x").write_text("x")
        raise RuntimeError
    assert not out.exists()


def test_sha256_file_streams_the_whole_file(tmp_path: Path) -> None:
    import hashlib

    from toolchain.fsutil import sha256_file

    data = bytes(range(256)) * 5000  # > 1 MiB: more than one chunk
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    p.write_bytes(data[:-1] + b"\x00")
    assert sha256_file(p) != hashlib.sha256(data).hexdigest()
