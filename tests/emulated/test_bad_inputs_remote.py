"""Emulated tier, issue 14 (remote runners): bad input and hostile peers against a real
OpenSSH server on 127.0.0.1 (tests/support/devices.py:Sshd) through the real CLI.

Every case asserts the exit code, a message naming the problem and the fix, no traceback and
no output folder; a few also check the library-level error class. Covered: a @revoked host
key, ~/.ssh/config (HostName, Port, User, IdentityFile) honoured, no usable key, a runner
killed by a signal, a port that accepts and never speaks SSH, the device's architecture
against the target's (and its override), two ports, --known-hosts, a missing
--remote-python and a board without a TFLite runtime.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.devices import LINUX_TARGET, Sshd
from tests.support.ssh_fixtures import (  # noqa: F401 - the *_fixture ones are used by name
    NEEDS_SSHD,
    copy_kws,
    fake_remote_python,
    home_fixture,
    known_fixture,
    sshd_fixture,
)
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.cli import main as cli_main
from toolchain.errors import ArchMismatchError, AuthError, HostKeyError, IoTimeoutError
from toolchain.targets import load_target

pytestmark = NEEDS_SSHD

USER = getpass.getuser()


@pytest.fixture(scope="module")
def kws(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_kws(reference_dir, tmp_path_factory, "kws.tflite")


def bench_argv(kws: Path, *extra: str, target: str = LINUX_TARGET) -> list[str]:
    return ["bench", "--target", target, "--model", str(kws), "--runs", "2", "--warmup", "0",
            "--timeout", "10", "--remote-python", sys.executable, *extra]  # fmt: skip


def login(sshd: Sshd) -> list[str]:
    return ["--host", f"{USER}@127.0.0.1:{sshd.port}", "--ssh-key", str(sshd.user_key)]


def fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], code: int, *words: str
) -> str:
    """Run the CLI; assert exit code, every word in stderr, no traceback, no output folder."""
    out = tmp_path / "out"
    capsys.readouterr()
    rc = cli_main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    flat = " ".join(err.split())  # rich wraps long lines
    assert rc == code, flat
    for w in words:
        assert w in flat, (w, flat)
    assert "Traceback" not in err and "internal error" not in err
    assert not out.exists()
    return flat


def test_revoked_host_key_is_refused(
    sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys
) -> None:
    kind, b64 = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    with known.open("a") as fh:
        fh.write("@cert-authority *.corp ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5hbWU=\n")
        fh.write("this line is garbage\n")
        fh.write(f"@revoked * {kind} {b64}\n")
    fails(capsys, tmp_path, bench_argv(kws, *login(sshd), "--trust-new-host"), 1,
          "REVOKED", f"{known}:4", "new host key")  # fmt: skip


def test_known_hosts_option_and_a_missing_file(
    sshd: Sshd, home: Path, kws: Path, tmp_path: Path, capsys
) -> None:
    kh = tmp_path / "my_known_hosts"
    fails(capsys, tmp_path, bench_argv(kws, *login(sshd), "--known-hosts", str(kh)), 1,
          f"known_hosts file {kh} does not exist", "--trust-new-host")  # fmt: skip
    hashed = sshd.known_hosts_line().split(" ", 1)[1]
    import paramiko

    kh.write_text(f"{paramiko.HostKeys.hash_host(f'[127.0.0.1]:{sshd.port}')} {hashed}")
    out = tmp_path / "ok"
    argv = bench_argv(kws, *login(sshd), "--known-hosts", str(kh), "--out", str(out))
    assert cli_main(argv) == 0  # hashed entry in the given file; ~/.ssh/known_hosts not used
    assert not (home / ".ssh/known_hosts").exists()


def test_board_with_several_host_keys_known_by_its_second_one(
    home: Path, kws: Path, tmp_path: Path
) -> None:
    """known_hosts has only the board's ECDSA key: the client must ask for that type (as ssh
    does) instead of taking the ed25519 key it would get first for a CHANGED key."""
    with Sshd(tmp_path / "sshd2", extra_host_key_types=("ecdsa",)) as two:
        (home / ".ssh/known_hosts").write_text(two.known_hosts_line(two.extra_host_keys[0]))
        opts = BenchOptions(runner="ssh", ssh_host=f"{USER}@127.0.0.1", ssh_port=two.port,
                            ssh_key=two.user_key, remote_python=sys.executable, runs=1,
                            warmup=0)  # fmt: skip
        result = run_bench(load_target(LINUX_TARGET), kws, opts)
    assert result.runs == 1


def test_ssh_config_hostname_port_user_identityfile(
    sshd: Sshd, known: Path, home: Path, kws: Path, tmp_path: Path
) -> None:
    (home / ".ssh/config").write_text(
        f"Host edgepi\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {USER}\n"
        f"  IdentityFile {sshd.user_key}\n"
        "Host *\n  User nobody-else\n  Port 1\n"
    )
    out = tmp_path / "out"
    argv = ["bench", "--target", LINUX_TARGET, "--model", str(kws), "--runs", "2", "--warmup",
            "0", "--remote-python", sys.executable, "--host", "edgepi", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    report = json.loads((out / "bench_report.json").read_text())
    assert report["device"]["host"] == f"ssh {USER}@127.0.0.1:{sshd.port}"
    assert report["device"]["arch"]


def test_no_usable_key(sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys) -> None:
    argv = bench_argv(kws, "--host", f"{USER}@127.0.0.1:{sshd.port}")
    msg = fails(capsys, tmp_path, argv, 1, "no SSH key", "ssh-add", "ssh-copy-id", "--ssh-key")
    assert "check the address" not in msg


def test_runner_killed_by_a_signal(
    sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys
) -> None:
    crash = fake_remote_python(tmp_path / "python-that-crashes", "kill -SEGV $$")
    argv = [*bench_argv(kws, *login(sshd)), "--remote-python", str(crash)]
    msg = fails(capsys, tmp_path, argv, 1, "killed by signal 11 (SIGSEGV)", "signal 11 is a crash")
    assert "exit code -1" not in msg


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (bounded: closed after)."""
    srv = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in held:
        c.close()


def test_silent_port_times_out_clearly(
    silent_port: int, home: Path, kws: Path, tmp_path: Path, capsys
) -> None:
    argv = [*bench_argv(kws, "--host", f"pi@127.0.0.1:{silent_port}")]
    argv[argv.index("--timeout") + 1] = "2"
    t0 = time.monotonic()
    words = ("cannot reach 127.0.0.1", "sent no SSH greeting within 2 s", "--ssh-port")
    msg = fails(capsys, tmp_path, argv, 1, *words)
    assert time.monotonic() - t0 < 15 and "No existing session" not in msg
    opts = BenchOptions(runner="ssh", ssh_host=f"pi@127.0.0.1:{silent_port}", timeout_s=1.0)
    with pytest.raises(IoTimeoutError):
        run_bench(load_target(LINUX_TARGET), kws, opts)


def test_architecture_mismatch(sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys) -> None:
    here = load_target(LINUX_TARGET)
    other = "rpi4" if here.cpu.abi != "aarch64" else "linux-x86_64"
    argv = bench_argv(kws, *login(sshd), target=other)
    fails(capsys, tmp_path, argv, 1, f"target {other} is", "reports", "--allow-arch-mismatch",
          f"--target {LINUX_TARGET}")  # fmt: skip
    opts = BenchOptions(runner="ssh", ssh_host=f"{USER}@127.0.0.1", ssh_port=sshd.port,
                        ssh_key=sshd.user_key, remote_python=sys.executable, runs=2, warmup=0)  # fmt: skip
    with pytest.raises(ArchMismatchError):
        run_bench(load_target(other), kws, opts)
    result = run_bench(
        load_target(other), kws, BenchOptions(**{**opts.__dict__, "allow_arch_mismatch": True})
    )
    assert result.target == other and any("not the target's" in w for w in result.warnings)


def test_port_given_twice(sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys) -> None:
    argv = bench_argv(kws, *login(sshd), "--ssh-port", str(sshd.port))
    fails(capsys, tmp_path, argv, 2, "two SSH ports", "give the port once")


def test_missing_remote_python_and_no_runtime(
    sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys
) -> None:
    argv = [*bench_argv(kws, *login(sshd)), "--remote-python", "/opt/nowhere/python3"]
    msg = fails(capsys, tmp_path, argv, 1, "/opt/nowhere/python3 does not exist", "which python3")
    assert "with numpy" not in msg
    block = tmp_path / "block"  # a Python whose TFLite runtimes all fail to import
    block.mkdir()
    for mod in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        (block / f"{mod}.py").write_text("raise ImportError('not installed here')\n")
    py = tmp_path / "python-without-tflite"
    py.write_text(f'#!/bin/sh\nPYTHONPATH={block} exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    argv = [*bench_argv(kws, *login(sshd)), "--remote-python", str(py)]
    fails(capsys, tmp_path, argv, 1, "no usable TFLite interpreter", "--remote-python",
          "--benchmark-binary")  # fmt: skip


def test_library_errors_are_typed(sshd: Sshd, known: Path, kws: Path) -> None:
    base = {"runner": "ssh", "ssh_host": f"{USER}@127.0.0.1", "ssh_port": sshd.port,
            "remote_python": sys.executable, "runs": 1, "warmup": 0, "timeout_s": 10.0}  # fmt: skip
    with pytest.raises(AuthError, match="no SSH key"):
        run_bench(load_target(LINUX_TARGET), kws, BenchOptions(**base))  # type: ignore[arg-type]
    kind, b64 = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"@revoked * {kind} {b64}\n")
    with pytest.raises(HostKeyError, match="REVOKED"):
        run_bench(
            load_target(LINUX_TARGET),
            kws,
            BenchOptions(**base, ssh_key=sshd.user_key),  # type: ignore[arg-type]
        )
