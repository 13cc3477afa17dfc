"""Host tier: the Linux-board description, its checks against a target (the architecture check
wiring above all), the wheel choice and the setup decisions of toolchain.devices.linux_board.

The probe command really runs here through ``sh`` (a local RemoteShell), so its shell syntax
is checked; the arm64 board itself is in tests/emulated/test_arm64_standin.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from toolchain.bench.result import BenchResult
from toolchain.cli import bench as bench_cli
from toolchain.devices import linux_board as lb
from toolchain.devices.shell import ShellResult
from toolchain.errors import ArchMismatchError, RemoteCommandError, UsageError
from toolchain.targets import load_target

RPI4 = load_target("rpi4")


class LocalShell:
    """A RemoteShell that runs commands on this machine (and records them)."""

    description = "local sh"

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.commands: list[str] = []

    def run(self, command: str, *, timeout_s: float) -> ShellResult:
        self.commands.append(command)
        p = subprocess.run(
            ["sh", "-c", command], cwd=self.cwd, capture_output=True, text=True, timeout=timeout_s
        )
        return ShellResult(p.returncode, p.stdout, p.stderr)

    def put(self, local: Path, remote: str, *, mode: int = 0o644, timeout_s: float) -> None:
        raise AssertionError("nothing should be copied")


PI_TEXT = """machine aarch64
kernel 6.6.31+rpt-rpi-v8
os Debian GNU/Linux 12 (bookworm)
user pi 1000
home /home/pi
mem MemTotal: 3882000
mem MemAvailable: 3000000
cpus 4
cpuinfo CPU implementer : 0x41
gov cpu0 ondemand
gov cpu1 ondemand
temp thermal_zone0 cpu-thermal 51100
py .edgedeploy/venv/bin/python missing
py python3 {"version": "3.11.2", "executable": "/usr/bin/python3", "numpy": "1.24.2", "litert": null, "tflite_runtime": null}
py python missing
"""


def test_probe_runs_here_and_parses(tmp_path: Path) -> None:
    info = lb.describe_board(LocalShell(tmp_path), ("python3", "no-such-python-xyz"))
    assert (
        info.machine
        == subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    )
    assert info.os != "?" and info.uid is not None and info.mem_total_bytes
    assert info.pythons[0].version and info.pythons[0].version.startswith("3.")
    assert info.pythons[1].command == "no-such-python-xyz" and info.pythons[1].version is None
    assert info.emulated is None  # a native machine


def test_a_real_pi_description_passes_rpi4() -> None:
    info = lb.parse_board(PI_TEXT, "ssh pi@pi:22")
    assert info.machine == "aarch64" and info.cpus == 4 and info.uid == 1000
    assert info.mem_total_bytes == 3882000 * 1024 and info.governors["cpu0"] == "ondemand"
    assert info.emulated is None
    checks = {c.name: c for c in lb.check_board(info, RPI4)}
    assert checks["architecture"].status == "ok" and checks["python"].status == "ok"
    assert checks["runtime"].status == "warn" and "--setup" in checks["runtime"].message
    assert checks["memory"].status == "ok" and checks["temperature"].status == "ok"


def test_wrong_architecture_is_an_error() -> None:
    info = lb.parse_board(PI_TEXT.replace("aarch64", "x86_64"), "ssh pi@pc:22")
    checks = {c.name: c for c in lb.check_board(info, RPI4)}
    assert checks["architecture"].status == "error"
    assert "rpi4 is aarch64" in checks["architecture"].message
    assert "x86_64" in checks["architecture"].message


def test_emulated_board_is_recognised_and_marked() -> None:
    text = PI_TEXT.replace("cpuinfo CPU implementer : 0x41", "cpuinfo vendor_id : GenuineIntel")
    info = lb.parse_board(text, "ssh pi@127.0.0.1:2222")
    assert info.emulated and "qemu-user" in info.emulated and "GenuineIntel" in info.emulated
    result = BenchResult(
        runner="ssh", target="rpi4", model="m.tflite", model_sha256="0", unit="ms",
        samples=[1.0], warmup=0, unit_note="wall-clock time",
    )  # fmt: skip
    lb.mark_emulated(result, info)
    assert result.unit_note.startswith("EMULATED time, not the time of a real rpi4")
    assert any("not the board's" in w for w in result.warnings)


def test_no_python_names_what_to_install() -> None:
    text = PI_TEXT.replace(
        'py python3 {"version": "3.11.2", "executable": "/usr/bin/python3", "numpy": "1.24.2", '
        '"litert": null, "tflite_runtime": null}',
        "py python3 missing",
    )
    info = lb.parse_board(text, "ssh pi@pi:22")
    checks = {c.name: c for c in lb.check_board(info, RPI4)}
    assert checks["python"].status == "error"
    assert "sudo apt install python3 python3-numpy python3-venv" in checks["python"].message
    with pytest.raises(RemoteCommandError, match="no python3") as exc:
        lb.setup_board(LocalShell(Path(".")), info, litert="2.1.0")
    assert "python3-venv" in str(exc.value)


def test_setup_refuses_root_and_is_idempotent(tmp_path: Path) -> None:
    root = lb.parse_board(PI_TEXT.replace("user pi 1000", "user root 0"), "ssh root@pi:22")
    with pytest.raises(UsageError, match="root") as exc:
        lb.setup_board(LocalShell(tmp_path), root, litert="2.1.0")
    assert "--setup-as-root" in str(exc.value)
    done = PI_TEXT.replace(
        "py .edgedeploy/venv/bin/python missing",
        'py .edgedeploy/venv/bin/python {"version": "3.11.2", "numpy": "1.24.2", "litert": "2.1.0"}',
    )
    shell = LocalShell(tmp_path)
    result = lb.setup_board(shell, lb.parse_board(done, "ssh pi@pi:22"), litert="2.1.0")
    assert not result.changed and result.actions == ["already set up"] and shell.commands == []


def _touch(d: Path, *names: str) -> Path:
    d.mkdir(exist_ok=True)
    for n in names:
        (d / n).write_bytes(b"")
    return d


def test_wheel_choice(tmp_path: Path) -> None:
    d = _touch(
        tmp_path / "w",
        "ai_edge_litert-2.1.0-cp311-cp311-manylinux_2_27_x86_64.whl",
        "ai_edge_litert-2.1.0-cp311-cp311-manylinux_2_27_aarch64.whl",
        "ai_edge_litert-2.1.0-cp312-cp312-manylinux_2_27_aarch64.whl",
        "flatbuffers-25.12.19-py2.py3-none-any.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
    )
    got = [p.name for p in lb.choose_wheels(d, machine="aarch64", python="3.11.2", litert="2.1.0")]
    assert got == [
        "ai_edge_litert-2.1.0-cp311-cp311-manylinux_2_27_aarch64.whl",
        "flatbuffers-25.12.19-py2.py3-none-any.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
    ]
    x86 = _touch(tmp_path / "x86", "ai_edge_litert-2.1.0-cp311-cp311-manylinux_2_27_x86_64.whl")
    with pytest.raises(UsageError, match="no ai-edge-litert 2.1.0 wheel for aarch64") as exc:
        lb.choose_wheels(x86, machine="aarch64", python="3.11.2", litert="2.1.0")
    assert "--platform manylinux_2_27_aarch64 --python-version 3.11" in str(exc.value)
    with pytest.raises(UsageError, match="not a directory"):
        lb.choose_wheels(tmp_path / "nope", machine="aarch64", python="3.11.2", litert="2.1.0")


def test_bench_cli_maps_setup_flags(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    bench_cli.register(sub)
    args = parser.parse_args(
        [
            "bench",
            "--target",
            "rpi4",
            "--model",
            "m.tflite",
            "--out",
            str(tmp_path),
            "--setup",
            "--wheels",
            str(tmp_path),
        ]  # fmt: skip
    )
    kw = bench_cli.options_from_args(args, {})
    assert kw["setup"] is True and kw["setup_wheels"] == tmp_path and "setup_as_root" not in kw


def test_devices_host_unreachable_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.devices import free_port
    from toolchain.cli import main as cli_main

    monkeypatch.setenv("HOME", str(tmp_path))
    code = cli_main(["devices", "--host", f"pi@127.0.0.1:{free_port()}", "--target", "rpi4"])
    assert code == 1
    assert "cannot reach 127.0.0.1" in capsys.readouterr().err


def test_inspect_refuses_wrong_arch_before_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """inspect_board checks the architecture before setup_board may touch the board."""
    calls: list[str] = []

    class Board(LocalShell):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(Path("."))

        def __enter__(self) -> Board:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr("toolchain.devices.ssh.SshBoard", Board)
    monkeypatch.setattr(lb, "setup_board", lambda *a, **k: calls.append("setup"))
    monkeypatch.setattr(
        lb,
        "describe_board",
        lambda shell, *a: lb.parse_board(PI_TEXT.replace("aarch64", "x86_64"), "b"),
    )
    with pytest.raises(ArchMismatchError, match="rpi4 is aarch64"):
        lb.inspect_board("pi@b", target=RPI4, setup=True)
    assert calls == []


def test_a_connection_lost_mid_run_says_what_happened() -> None:
    from toolchain.errors import IoTimeoutError, TransportError

    lost = pytest.raises(TransportError, match="during the benchmark: the board rebooted")
    with lost as exc, lb.lost_board_hint("ssh pi@pi:22"):
        raise TransportError("the SSH connection to ssh pi@pi:22 was lost")
    assert "run again" in str(exc.value)
    with pytest.raises(IoTimeoutError, match="^slow$"), lb.lost_board_hint("ssh pi@pi:22"):
        raise IoTimeoutError("slow")


class FailingShell(LocalShell):
    """Records commands and fails each one (exit 1)."""

    def run(self, command: str, *, timeout_s: float) -> ShellResult:
        self.commands.append(command)
        return ShellResult(1, "", "boom")


@pytest.mark.parametrize("pip", [None, "23.0.1"])
def test_venv_uses_the_system_pip_when_there_is_one(pip: str | None) -> None:
    pip_json = json.dumps(pip)
    text = PI_TEXT.replace(
        '"tflite_runtime": null}', f'"tflite_runtime": null, "pip": {pip_json}}}'
    )
    info = lb.parse_board(text, "ssh pi@pi:22")
    assert info.pythons[1].pip == pip
    shell = FailingShell(Path("."))
    with pytest.raises(RemoteCommandError, match="creating the virtualenv") as exc:
        lb.setup_board(shell, info, litert="2.1.0")
    assert "sudo apt install python3-venv" in str(exc.value)
    assert ("--without-pip" in shell.commands[0]) == bool(pip)
    assert "--system-site-packages" in shell.commands[0]


def test_devices_host_shares_the_bench_ssh_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``devices --host`` and ``bench`` take the same SSH flags, with the same help, one
    definition (cli/phone_options.SSH_FLAGS); ``--known-hosts`` reaches the SSH client."""
    from tests.support.devices import free_port
    from toolchain.cli import build_parser
    from toolchain.cli import main as cli_main

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))

    def ssh_help(cmd: str) -> dict[str, str | None]:
        opts = sub.choices[cmd]._option_string_actions
        flags = ("--host", "--ssh-key", "--ssh-port", "--known-hosts", "--trust-new-host")
        return {f: opts[f].help for f in flags[1:]} | {"dest": opts["--host"].dest}

    assert ssh_help("devices") == ssh_help("bench")
    monkeypatch.setenv("HOME", str(tmp_path))
    missing = tmp_path / "no_known_hosts"
    argv = ["devices", "--host", f"pi@127.0.0.1:{free_port()}", "--known-hosts", str(missing)]
    assert cli_main(argv) != 0
    assert f"known_hosts file {missing} does not exist" in capsys.readouterr().err
