"""Progress of remote benchmarks (issue 14): the runner's ``EDP-PROGRESS done total`` lines on
stderr, their parsing, and the streaming of stderr lines while a command runs (the adb client
path is exercised with a real child process standing in for ``adb``; SSH and the adb peer are
in tests/emulated/test_remote_progress_live.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from toolchain.bench import remote
from toolchain.devices import adb
from toolchain.devices.shell import ShellResult, StreamingShell, Workdir
from toolchain.errors import IoTimeoutError


def test_parse_progress_line() -> None:
    assert remote.parse_progress_line("EDP-PROGRESS 3 10") == (3, 10)
    assert remote.parse_progress_line("EDP-PROGRESS 10 10\r\n") == (10, 10)
    for bad in ("", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                "EDP-PROGRESS", "EDP-PROGRESS x 10", "EDP-PROGRESS 11 10",
                "EDP-PROGRESS -1 10", "EDP-PROGRESS 0 0", "EDP-PROGRESS 1 2 3",
                "edp-progress 1 2"):  # fmt: skip
        assert remote.parse_progress_line(bad) is None, bad


def test_strip_progress_keeps_everything_else() -> None:
    text = "INFO: delegate\nEDP-PROGRESS 1 4\nEDP-PROGRESS 2 4\nTraceback: boom\n"
    assert remote.strip_progress(text) == "INFO: delegate\nTraceback: boom\n"
    assert remote.strip_progress("") == ""


def test_runner_prints_progress_between_inferences(reference_dir: Path, tmp_path: Path) -> None:
    """The real runner on a real model: progress lines on stderr, stdout still one JSON."""
    model = reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"
    npz = remote.save_inputs([np.zeros((1, 49, 10, 1), np.int8)], tmp_path / "in.npz")
    argv = [sys.executable, str(remote.RUNNER_SCRIPT), "--model", str(model), "--inputs",
            str(npz), "--runs", "3000", "--warmup", "20", "--progress-every", "0.02"]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    done = [d for d in map(remote.parse_progress_line, p.stderr.splitlines()) if d is not None]
    assert len(done) >= 2, p.stderr
    assert all(total == 3020 for _, total in done)
    assert [d for d, _ in done] == sorted({d for d, _ in done})  # strictly increasing
    assert done[0][0] > 0 and done[-1][0] <= 3020
    doc = json.loads(p.stdout)  # stdout is exactly the JSON result
    assert doc["ok"] and len(doc["samples_ms"]) == 3000
    quiet = subprocess.run(argv[:-2], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "EDP-PROGRESS" not in quiet.stderr  # off by default


class _Recorder:
    """A StreamingShell running commands locally, feeding stderr lines as they come."""

    description = "local sh"

    def __init__(self) -> None:
        self.streamed = 0

    def run(self, command: str, *, timeout_s: float) -> ShellResult:
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return ShellResult(p.returncode, p.stdout, p.stderr)

    def run_streaming(self, command: str, *, timeout_s: float, on_stderr_line) -> ShellResult:
        self.streamed += 1
        res = self.run(command, timeout_s=timeout_s)
        for line in res.stderr.splitlines():
            on_stderr_line(line)
        return res

    def put(self, local: Path, remote: str, *, mode: int = 0o644, timeout_s: float) -> None:
        raise AssertionError("not used")


class _Plain(_Recorder):
    run_streaming = None  # type: ignore[assignment]


def test_run_guarded_streams_only_when_asked_and_supported(tmp_path: Path) -> None:
    shell = _Recorder()
    assert isinstance(shell, StreamingShell)
    lines: list[str] = []
    with Workdir(shell, str(tmp_path)) as wd:
        res = wd.run_guarded("sh -c 'echo a >&2; echo b >&2; echo out'", timeout_s=10,
                             on_stderr_line=lines.append)  # fmt: skip
        assert (res.stdout, lines, shell.streamed) == ("out\n", ["a", "b"], 1)
        wd.run_guarded("true", timeout_s=10)
        assert shell.streamed == 1  # no callback: plain run
    plain = _Plain()
    with Workdir(plain, str(tmp_path)) as wd:
        res = wd.run_guarded("sh -c 'echo a >&2'", timeout_s=10, on_stderr_line=lines.append)
    assert res.stderr == "a\n" and lines == ["a", "b"]  # no streaming, result intact


@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``adb`` client stand-in: runs its last argument with sh (as ``adb shell CMD``)."""
    exe = tmp_path / "adb"
    exe.write_text('#!/bin/sh\nfor a; do last="$a"; done\nexec sh -c "$last"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("EDGEDEPLOY_ADB", str(exe))
    return exe


def test_adb_streaming_delivers_lines_while_the_command_runs(fake_adb: Path) -> None:
    seen: list[tuple[str, float]] = []
    t0 = time.monotonic()
    res = adb.AdbDevice("emu").run_streaming(
        "printf 'EDP-PROGRESS 1 3\\npart'>&2; sleep 0.6; printf 'ial\\nEDP-PROGRESS 3 3\\n'>&2;"
        " echo '{\"ok\": true}'; exit 7",
        timeout_s=30,
        on_stderr_line=lambda line: seen.append((line, time.monotonic() - t0)),
    )
    end = time.monotonic() - t0
    assert [s for s, _ in seen] == ["EDP-PROGRESS 1 3", "partial", "EDP-PROGRESS 3 3"]
    assert seen[0][1] < end - 0.4  # the first line came while the command still ran
    assert res.returncode == 7 and res.stdout == '{"ok": true}\n'
    assert res.stderr == "EDP-PROGRESS 1 3\npartial\nEDP-PROGRESS 3 3\n"


def test_adb_streaming_timeout_kills_the_client(fake_adb: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(IoTimeoutError, match="did not answer within 1 s"):
        adb.AdbDevice("emu").run_streaming(
            f"echo $$ > {pidfile}; echo EDP-PROGRESS 0 1 >&2; exec sleep 30",
            timeout_s=1.0,
            on_stderr_line=lambda line: None,
        )
    assert time.monotonic() - t0 < 10
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the client (here: the command itself) was killed and reaped
