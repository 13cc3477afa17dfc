"""Emulated tier: a real OpenSSH server (started here on 127.0.0.1 with a private config and
generated keys) stands for a Raspberry Pi; the "board" is this machine, which runs
toolchain/bench/remote_runner.py with the project's interpreter on a real model.

Host-key checking (unknown, trusted, changed), refused keys, an unreachable port, a run
that hangs, a model the runtime rejects and quoting of a hostile model name are all tried,
and every test checks that no /tmp/edgedeploy-* directory and no process is left behind.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.devices import LINUX_TARGET, Sshd, free_port
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
from toolchain.errors import (
    AuthError,
    DeviceNotFoundError,
    HostKeyError,
    IoTimeoutError,
    RemoteCommandError,
    TFLiteModelError,
    UsageError,
)
from toolchain.targets import load_target

pytestmark = NEEDS_SSHD

TARGET = load_target(LINUX_TARGET)  # this machine's architecture (the "board" is this machine)
WEIRD_NAME = "kws model $(touch pwned) 'q' ;&.tflite"


@pytest.fixture(scope="module")
def kws(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_kws(reference_dir, tmp_path_factory, WEIRD_NAME)


@pytest.fixture
def no_leftovers():
    pattern = "edgedeploy-" + "[0-9a-f]" * 12  # toolchain.devices.shell.Workdir
    before = set(Path("/tmp").glob(pattern))
    yield
    assert set(Path("/tmp").glob(pattern)) - before == set()


def opts(sshd: Sshd, **kw: object) -> BenchOptions:
    base: dict[str, object] = {
        "runner": "ssh",
        "ssh_host": f"{getpass.getuser()}@127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_key": sshd.user_key,
        "remote_python": sys.executable,
        "runs": 5,
        "warmup": 1,
        "timeout_s": 30.0,
    }
    base.update(kw)
    return BenchOptions(**base)  # type: ignore[arg-type]


def test_runner_over_ssh_on_a_real_model(
    sshd: Sshd, known: Path, kws: Path, tmp_path: Path, no_leftovers
) -> None:
    golden = tmp_path / "golden.npz"  # two samples on axis 0: the first one is used
    rng = np.random.default_rng(7)
    np.savez(golden, input_0=rng.integers(-128, 128, size=(2, 49, 10, 1)).astype(np.int8))
    result = run_bench(
        TARGET, kws, opts(sshd, threads=2, use_xnnpack=False, cpu_affinity="1", golden=golden)
    )
    assert "golden.npz" in result.environment["inputs"]
    assert result.runner == "ssh" and result.target == LINUX_TARGET and result.unit == "ms"
    assert len(result.samples) == 5 and all(0 < s < 1000 for s in result.samples)
    assert result.environment["threads"] == 2 and result.environment["xnnpack"] == "off"
    assert result.environment["runtime"].startswith("ai_edge_litert")
    assert result.device["cpu_model"] and result.device["affinity"] == [0]  # taskset mask 1 = CPU 0
    check = result.output_check
    assert check is not None and check.compared_values == 12 and check.bit_exact
    assert result.environment["board_dir_removed"] is True
    assert not Path("pwned").exists() and not (Path.home() / "pwned").exists()


def test_unknown_host_is_refused_unless_trusted(
    sshd: Sshd, home: Path, kws: Path, no_leftovers
) -> None:
    kh = home / ".ssh/known_hosts"
    with pytest.raises(HostKeyError, match=r"not in .*known_hosts.*ssh-ed25519") as exc:
        run_bench(TARGET, kws, opts(sshd))
    assert "--trust-new-host" in str(exc.value)
    assert not kh.exists()
    run_bench(TARGET, kws, opts(sshd, runs=1, trust_new_host=True))
    assert kh.read_text().split()[:3] == sshd.known_hosts_line().split()[:3]
    run_bench(TARGET, kws, opts(sshd, runs=1))  # now known


def test_changed_host_key_is_refused_even_with_trust(
    sshd: Sshd, home: Path, kws: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other_host_key"
    sshd.keygen(other)
    kind, b64 = other.with_suffix(".pub").read_text().split()[:2]
    (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {kind} {b64}\n")
    with pytest.raises(HostKeyError, match="CHANGED") as exc:
        run_bench(TARGET, kws, opts(sshd, trust_new_host=True))
    assert "ssh-keygen -R" in str(exc.value)


def test_refused_key(sshd: Sshd, known: Path, kws: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "id_stranger"
    sshd.keygen(stranger)
    with pytest.raises(AuthError, match="refused our key"):
        run_bench(TARGET, kws, opts(sshd, ssh_key=stranger))
    with pytest.raises(Exception, match="does not exist"):
        run_bench(TARGET, kws, opts(sshd, ssh_key=tmp_path / "missing_key"))


def test_unreachable_port(sshd: Sshd, known: Path, kws: Path) -> None:
    with pytest.raises(DeviceNotFoundError, match="cannot reach 127.0.0.1"):
        run_bench(TARGET, kws, opts(sshd, ssh_port=free_port()))


def _pids_running(*argv: str) -> list[int]:
    want = "\0".join(argv).encode()
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().rstrip(b"\0") == want:
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def test_hung_run_times_out_is_killed_and_cleaned(
    sshd: Sshd, known: Path, kws: Path, tmp_path: Path, no_leftovers
) -> None:
    hang = fake_remote_python(tmp_path / "python-that-hangs", "exec sleep 297")
    t0 = time.monotonic()
    with pytest.raises(IoTimeoutError, match="was killed"):
        run_bench(TARGET, kws, opts(sshd, remote_python=str(hang), runs=1, warmup=0, timeout_s=2.0))
    assert time.monotonic() - t0 < 20
    time.sleep(0.2)
    assert _pids_running("sleep", "297") == []


def test_model_the_board_runtime_rejects(
    sshd: Sshd, known: Path, reference_dir: Path, no_leftovers
) -> None:
    model = reference_dir / "tflm_models/person_detection/person_detect.tflite"
    if not model.is_file():
        pytest.skip(f"{model} not in the reference set")
    with pytest.raises(TFLiteModelError, match="rejected the model"):
        run_bench(TARGET, model, opts(sshd))


def test_board_without_python(sshd: Sshd, known: Path, kws: Path, no_leftovers) -> None:
    with pytest.raises(RemoteCommandError, match="/nonexistent/python3 does not exist on ssh"):
        run_bench(TARGET, kws, opts(sshd, remote_python="/nonexistent/python3"))


def test_bad_options(sshd: Sshd, kws: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no board given"):
        run_bench(TARGET, kws, opts(sshd, ssh_host=None))
    with pytest.raises(UsageError, match="--threads"):
        run_bench(TARGET, kws, opts(sshd, threads=0))
    with pytest.raises(UsageError, match="Android-only"):
        run_bench(TARGET, kws, opts(sshd, delegate="gpu"))
    with pytest.raises(UsageError, match="bad port"):
        run_bench(TARGET, kws, opts(sshd, ssh_host="pi@host:99999"))
    bad = tmp_path / "not_a_model.tflite"
    bad.write_bytes(b"hello world, not a flatbuffer")
    from toolchain.errors import TFLiteModelError as _E

    with pytest.raises(_E, match="not a TFLite flatbuffer"):
        run_bench(TARGET, bad, opts(sshd))


def test_cli_bench_over_ssh(sshd: Sshd, known: Path, kws: Path, tmp_path: Path, capsys) -> None:
    from toolchain.cli import main as cli_main

    argv = ["bench", "--target", LINUX_TARGET, "--model", str(kws), "--host",
            f"{getpass.getuser()}@127.0.0.1:{sshd.port}", "--ssh-key", str(sshd.user_key),
            "--remote-python", sys.executable, "--runs", "3", "--warmup", "1", "--threads", "1"]  # fmt: skip
    assert cli_main([*argv, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out/bench_report.json").read_text())
    assert report["runner"] == "ssh" and report["runs"] == 3 and report["unit"] == "ms"
    assert report["output_check"]["bit_exact"] is True
    known.unlink()  # now an unknown host: exit code 1, a hint, no report
    assert cli_main([*argv, "--out", str(tmp_path / "out2")]) == 1
    assert "--trust-new-host" in capsys.readouterr().err
    assert not (tmp_path / "out2/bench_report.json").exists()
