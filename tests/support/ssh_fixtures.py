"""Fixtures shared by the tests against a real OpenSSH server (tests/emulated/test_ssh_bench.py,
tests/emulated/test_bad_inputs_remote.py).

A test module takes them by importing them (pytest finds fixtures in the module's namespace;
the functions are named ``*_fixture`` so that the test arguments do not shadow the imports):
``from tests.support.ssh_fixtures import home_fixture, known_fixture, sshd_fixture  # noqa: F401``.

* ``sshd`` — :class:`~tests.support.devices.Sshd` on 127.0.0.1, one per test module;
* ``home`` — a private HOME (no ~/.ssh keys, config or known_hosts) and no SSH agent;
* ``known`` — ``~/.ssh/known_hosts`` in that HOME, trusting the server's host key;
* :func:`copy_kws` — the MLPerf Tiny KWS reference model copied under a name of the test's;
* :func:`fake_remote_python` — a board "python" that misbehaves on the benchmark run;
* ``NEEDS_SSHD`` — the skip mark for a module when openssh-server is not installed.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.devices import Sshd

NEEDS_SSHD = pytest.mark.skipif(
    not Sshd.available(), reason="needs openssh-server: run scripts/install-system-deps.sh"
)


@pytest.fixture(name="sshd", scope="module")
def sshd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with Sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(name="home")
def home_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME (no ~/.ssh keys, config or known_hosts) and no SSH agent."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return h


@pytest.fixture(name="known")
def known_fixture(home: Path, sshd: Sshd) -> Path:
    """``~/.ssh/known_hosts`` in the private HOME, trusting ``sshd``'s host key."""
    kh = home / ".ssh/known_hosts"
    kh.write_text(sshd.known_hosts_line())
    return kh


def copy_kws(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The MLPerf Tiny KWS int8 reference model, copied to a fresh folder as ``name``."""
    dst = tmp_path_factory.mktemp("models") / name
    shutil.copyfile(reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite", dst)
    return dst


def fake_remote_python(path: Path, then: str) -> Path:
    """An executable shell script at ``path`` standing for the board's python: ``-c`` (the
    runner's probes) runs this interpreter; anything else (the benchmark run) runs the shell
    command ``then`` instead (e.g. ``kill -SEGV $$``, ``exec sleep 297``)."""
    path.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n{then}\n')
    path.chmod(0o755)
    return path
