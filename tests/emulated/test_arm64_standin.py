"""Emulated tier: a "Raspberry Pi" that really is arm64 (tests/support/arm64_device.py).

A Debian bookworm arm64 root filesystem runs under qemu-aarch64 (binfmt_misc) with its own
arm64 sshd on 127.0.0.1; the runner runs there with Debian's aarch64 Python and numpy and the
aarch64 ai-edge-litert wheel that ``--setup`` installs from the wheels pushed from the host (the
board has no internet). Skipped, with the command that builds it, when the image is not in
the cache (building takes minutes: ``make arm64-device``).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import arm64_device
from tests.support.arm64_device import Arm64Device
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.devices import linux_board
from toolchain.errors import ArchMismatchError, RemoteCommandError, TransportError
from toolchain.targets import load_target

WHY = arm64_device.unavailable()
pytestmark = [
    pytest.mark.skipif(WHY is not None, reason=f"arm64 stand-in: {WHY}"),
    pytest.mark.slow,  # about 1.5-4 min: setup and inferences under qemu-user
]

RPI4 = load_target("rpi4")


@pytest.fixture(scope="module")
def ssh_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private HOME (known_hosts lives there), no agent, for the whole module."""
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.delenv("SSH_AUTH_SOCK", raising=False)
        yield home


def _boot(work: Path, home: Path) -> Arm64Device:
    dev = Arm64Device(work).start()
    with open(home / ".ssh/known_hosts", "a") as fh:
        fh.write(dev.known_hosts_line())
    return dev


@pytest.fixture(scope="module")
def pi(tmp_path_factory: pytest.TempPathFactory, ssh_home: Path) -> Iterator[Arm64Device]:
    dev = _boot(tmp_path_factory.mktemp("pi"), ssh_home)
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="module")
def setup_log(pi: Arm64Device) -> dict[str, Any]:
    """The board before setup, the cold setup, the board after it and a second (cached) setup."""
    before = linux_board.inspect_board(pi.login, target=RPI4, key=pi.user_key)
    cold = linux_board.inspect_board(
        pi.login, target=RPI4, key=pi.user_key, setup=True, wheels=pi.wheels
    )
    again = linux_board.inspect_board(
        pi.login, target=RPI4, key=pi.user_key, setup=True, wheels=pi.wheels
    )
    return {"before": before, "cold": cold, "again": again}


def opts(pi: Arm64Device, **kw: object) -> BenchOptions:
    base: dict[str, object] = {
        "runner": "ssh",
        "ssh_host": pi.login,
        "ssh_key": pi.user_key,
        "runs": 3,
        "warmup": 1,
        "timeout_s": 120.0,
    }
    base.update(kw)
    return BenchOptions(**base)  # type: ignore[arg-type]


def test_devices_check_and_setup_from_pushed_wheels(setup_log: dict[str, Any]) -> None:
    before, cold, again = setup_log["before"].info, setup_log["cold"], setup_log["again"]
    assert before.machine == "aarch64" and "Debian GNU/Linux 12" in before.os
    py3 = next(p for p in before.pythons if p.command == "python3")
    assert py3.version and py3.version.startswith("3.11") and py3.numpy and not py3.litert
    assert before.emulated and "qemu-user" in before.emulated
    status = {c.name: c.status for c in before.checks}
    assert status["architecture"] == "ok" and status["python"] == "ok"
    assert status["runtime"] == "warn"  # nothing installed yet: "run bench --setup"

    litert = linux_board.host_litert_version()
    assert cold.setup is not None and cold.setup.changed
    assert any("--without-pip" in a for a in cold.setup.actions)  # Debian's python3-pip
    assert any(w.startswith("ai_edge_litert-") and "aarch64" in w for w in cold.setup.wheels_pushed)
    assert not any(w.startswith("numpy") for w in cold.setup.wheels_pushed)  # Debian's numpy
    venv = next(p for p in cold.info.pythons if p.command == linux_board.VENV_PYTHON)
    assert venv.litert == litert and venv.numpy == py3.numpy
    assert {c.name: c.status for c in cold.info.checks}["runtime"] == "ok"
    assert cold.ok

    assert again.setup is not None and not again.setup.changed
    assert again.setup.actions == ["already set up"] and again.setup.wheels_pushed == []


def test_bench_kws_runs_on_aarch64_litert(
    setup_log: dict[str, Any], pi: Arm64Device, reference_dir: Path, tmp_path: Path
) -> None:
    """`edgedeploy bench --target rpi4 --host pi@... --setup --wheels DIR` end to end."""
    from toolchain.cli import main as cli_main

    kws = reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"
    argv = ["bench", "--target", "rpi4", "--model", str(kws), "--host", pi.login,
            "--ssh-key", str(pi.user_key), "--setup", "--wheels", str(pi.wheels),
            "--runs", "3", "--warmup", "1", "--timeout", "120", "--out", str(tmp_path / "o")]  # fmt: skip
    assert cli_main(argv) == 0
    report = json.loads((tmp_path / "o/bench_report.json").read_text())
    dev, env = report["device"], report["environment"]
    assert dev["machine"] == "aarch64" and dev["arch"] == "aarch64" and dev["emulated"]
    assert dev["python_path"] == linux_board.VENV_PYTHON
    assert env["runtime"] == f"ai_edge_litert {linux_board.host_litert_version()}"
    assert env["python"].startswith("3.11")
    assert report["unit_note"].startswith("EMULATED time, not the time of a real rpi4")
    assert any("emulated" in w for w in report["warnings"])
    assert len(report["samples"]) == 3 and all(s > 0 for s in report["samples"])
    check = report["output_check"]
    assert check["compared_values"] == 12
    # measured: XNNPACK's aarch64 int8 kernels give the host's x86 outputs exactly (KWS, IC)
    assert check["bit_exact"] is True, check


def test_wrong_architecture_is_refused_before_anything_runs(
    setup_log: dict[str, Any], pi: Arm64Device, reference_dir: Path
) -> None:
    kws = reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"
    with pytest.raises(ArchMismatchError, match="x86_64 but .* reports aarch64"):
        run_bench(load_target("linux-x86_64"), kws, opts(pi))
    with pytest.raises(ArchMismatchError, match="rpi4"):  # the hint names the matching target
        linux_board.inspect_board(
            pi.login, target=load_target("linux-x86_64"), key=pi.user_key, setup=True
        )
    report = linux_board.inspect_board(
        pi.login, target=load_target("linux-x86_64"), key=pi.user_key
    )
    assert (
        not report.ok and {c.name: c.status for c in report.info.checks}["architecture"] == "error"
    )
    assert pi.root_sh("ls /tmp").stdout.split() == []  # nothing was copied


def test_reboot_mid_run_is_a_clear_error_and_the_board_comes_back(
    setup_log: dict[str, Any], pi: Arm64Device, reference_dir: Path
) -> None:
    kws = reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"
    errors: list[BaseException] = []

    def bench() -> None:
        try:
            run_bench(RPI4, kws, opts(pi, runs=5000, warmup=0, timeout_s=600.0))
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            errors.append(exc)

    thread = threading.Thread(target=bench, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "remote_runner.py" in pi.root_sh("ps -eo args").stdout:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the runner never started on the board")
    time.sleep(1.0)
    t0 = time.monotonic()
    pi.stop()  # power cut: sshd and every session on the board die
    thread.join(60)
    assert not thread.is_alive(), "bench hung after the board went away"
    assert time.monotonic() - t0 < 30
    assert len(errors) == 1 and isinstance(errors[0], TransportError), errors
    assert "127.0.0.1" in str(errors[0]) and "the board rebooted" in str(errors[0])
    pi.start()  # same disk: the venv survives the reboot
    result = run_bench(RPI4, kws, opts(pi, runs=1, warmup=0))
    assert result.output_check is not None and result.output_check.bit_exact


def test_board_without_python(
    tmp_path: Path, ssh_home: Path, reference_dir: Path, setup_log: dict[str, Any]
) -> None:
    kws = reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"
    bare = _boot(tmp_path / "bare", ssh_home)  # a fresh board of the same image
    try:
        res = bare.root_sh("rm -f /usr/bin/python3*")
        assert res.returncode == 0, res.stderr
        with pytest.raises(RemoteCommandError, match="no Python 3") as exc:
            run_bench(RPI4, kws, opts(bare))
        assert "sudo apt install python3 python3-numpy python3-venv" in str(exc.value)
        with pytest.raises(RemoteCommandError, match="no python3") as exc2:
            linux_board.inspect_board(
                bare.login, target=RPI4, key=bare.user_key, setup=True, wheels=bare.wheels
            )
        assert "python3-venv" in str(exc2.value)
        report = linux_board.inspect_board(bare.login, target=RPI4, key=bare.user_key)
        assert {c.name: c.status for c in report.info.checks}["python"] == "error"
    finally:
        bare.stop()
        shutil.rmtree(tmp_path / "bare", ignore_errors=True)
