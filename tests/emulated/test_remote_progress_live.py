"""Emulated tier: a remote benchmark reports progress while it runs (issue 14), over a real
OpenSSH server on 127.0.0.1 and over the real adb server talking to the ADB peer, with the
real remote runner timing a real model. The progress interval is shortened so that a run of
about a second yields several intermediate values."""

from __future__ import annotations

import getpass
import io
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.support.adb_peer import AdbPeer, Sandbox
from tests.support.devices import (
    ANDROID_TARGET,
    LINUX_TARGET,
    AdbServer,
    Sshd,
    install_device_python,
)
from toolchain.bench import remote, run_bench
from toolchain.bench.options import BenchOptions
from toolchain.targets import load_target

RUNS, WARMUP = 8000, 20
TOTAL = RUNS + WARMUP


@pytest.fixture
def kws(reference_dir: Path) -> Path:
    return reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"


@pytest.fixture
def fast_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "PROGRESS_EVERY_S", 0.05)


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int, float]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.seen.append((stage, done, total, time.monotonic()))

    def check(self) -> None:
        bench = [(d, t, at) for s, d, t, at in self.seen if s == "benchmark"]
        assert bench[0][:2] == (0, TOTAL) and bench[-1][:2] == (TOTAL, TOTAL)
        middle = bench[1:-1]
        assert len(middle) >= 2, bench
        assert all(t == TOTAL and 0 < d < TOTAL for d, t, _ in middle), middle
        done = [d for d, _, _ in middle]
        assert done == sorted(set(done)), done  # strictly increasing
        # they arrived while the runner ran, not all at once at the end
        assert middle[0][2] < bench[-1][2] - 0.1, bench


# --- SSH ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if not Sshd.available():
        pytest.skip("needs openssh-server: run scripts/install-system-deps.sh")
    with Sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sshd: Sshd) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    kh = home / ".ssh/known_hosts"
    kh.write_text(sshd.known_hosts_line())
    return kh


def test_ssh_bench_reports_progress_while_it_runs(
    sshd: Sshd, known: Path, kws: Path, fast_progress: None
) -> None:
    calls = Calls()
    options = BenchOptions(
        runner="ssh", ssh_host=f"{getpass.getuser()}@127.0.0.1", ssh_port=sshd.port,
        ssh_key=sshd.user_key, remote_python=sys.executable, runs=RUNS, warmup=WARMUP,
        threads=1, timeout_s=30.0, progress=calls,
    )  # fmt: skip
    result = run_bench(load_target(LINUX_TARGET), kws, options)
    calls.check()
    assert len(result.samples) == RUNS  # the result itself is unchanged
    assert result.output_check is not None and result.output_check.bit_exact


def test_cli_bench_over_ssh_shows_intermediate_progress(
    sshd: Sshd,
    known: Path,
    kws: Path,
    tmp_path: Path,
    fast_progress: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from toolchain.cli import main as cli_main
    from toolchain.cli import ui

    err = io.StringIO()
    monkeypatch.setattr(ui, "console_err", Console(file=err, force_terminal=True, width=120))
    argv = ["bench", "--target", LINUX_TARGET, "--model", str(kws), "--host",
            f"{getpass.getuser()}@127.0.0.1:{sshd.port}", "--ssh-key", str(sshd.user_key),
            "--remote-python", sys.executable, "--runs", str(RUNS), "--warmup", str(WARMUP),
            "--threads", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli_main(argv) == 0
    shown = err.getvalue()
    assert f"{TOTAL}/{TOTAL}" in shown

    counts = {int(m) for m in re.findall(rf"(\d+)/{TOTAL}\b", shown)}
    assert any(0 < c < TOTAL for c in counts), shown[-2000:]


# --- ADB (Python runner) --------------------------------------------------------------------


@pytest.fixture
def phone(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path):
    if shutil.which("adb") is None:
        pytest.skip("needs adb: run scripts/install-system-deps.sh")
    with AdbServer(tmp_path_factory.mktemp("adb-home")) as server:
        sandbox = Sandbox(tmp_path / "phone")
        with AdbPeer(sandbox) as peer:
            serial = server.connect(peer.port)
            try:
                yield sandbox, serial
            finally:
                server.disconnect(serial)


def test_adb_python_runner_reports_progress_while_it_runs(
    phone: tuple[Sandbox, str], kws: Path, fast_progress: None
) -> None:
    sandbox, _serial = phone
    install_device_python(sandbox.root)
    calls = Calls()
    options = BenchOptions(
        runner="adb", runs=RUNS, warmup=WARMUP, threads=1, timeout_s=30.0, progress=calls
    )
    result = run_bench(load_target(ANDROID_TARGET), kws, options)
    calls.check()
    assert len(result.samples) == RUNS
    assert result.output_check is not None and result.output_check.bit_exact
    assert sorted(p.name for p in (sandbox.root / "data/local/tmp").iterdir()) == []
