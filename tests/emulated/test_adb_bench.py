"""Emulated tier: the real adb client and server (adb 29) talking to an ADB device peer on
loopback (tests/support/adb_peer.py: CNXN/AUTH/OPEN/WRTE/OKAY/CLSE, shell v1/v2, sync),
which runs commands in a sandbox directory standing for the phone's filesystem.

The benchmark_model here is a native launcher of tests/support/fake_benchmark_model.py
(real LiteRT inferences, the real tool's output format); the Python-runner path really runs
toolchain/bench/remote_runner.py with this project's interpreter as the phone's "Termux"
Python. Every test checks that nothing is left in the phone's /data/local/tmp.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.adb_peer import AdbPeer, Sandbox
from tests.support.devices import (
    ANDROID_TARGET,
    AdbServer,
    build_launcher,
    c_compiler,
    install_device_python,
)
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.cli import main as cli_main
from toolchain.devices import adb
from toolchain.errors import (
    AmbiguousDeviceError,
    ArchMismatchError,
    AuthError,
    DeviceNotFoundError,
    InputFileError,
    IoTimeoutError,
    RemoteCommandError,
    TFLiteModelError,
)
from toolchain.targets import load_target
from toolchain.tflite_model import TFLiteModel

pytestmark = pytest.mark.skipif(
    shutil.which("adb") is None, reason="needs adb: run scripts/install-system-deps.sh"
)

WEIRD_NAME = "kws model $(touch pwned) 'q' ;&.tflite"


@dataclass
class Phone:
    peer: AdbPeer
    serial: str
    sandbox: Sandbox

    @property
    def tmp(self) -> Path:
        return self.sandbox.root / "data/local/tmp"

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory: pytest.TempPathFactory):
    with AdbServer(tmp_path_factory.mktemp("adb-home")) as server:
        yield server


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if c_compiler() is None:
        pytest.skip("needs a C compiler (cc/gcc/clang) to build the fake benchmark_model launcher")
    return build_launcher(tmp_path_factory.mktemp("bin") / "benchmark_model")


@pytest.fixture(scope="module")
def kws(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLPerf Tiny KWS int8 model, under a name with spaces and shell characters."""
    dst = tmp_path_factory.mktemp("models") / WEIRD_NAME
    shutil.copyfile(reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite", dst)
    return dst


@pytest.fixture
def phone(adb_server: AdbServer, tmp_path: Path):
    sandbox = Sandbox(tmp_path / "phone")
    with AdbPeer(sandbox) as peer:
        serial = adb_server.connect(peer.port)
        try:
            yield Phone(peer, serial, sandbox)
        finally:
            adb_server.disconnect(serial)


TARGET = load_target(ANDROID_TARGET)  # the peer is an x86_64 "phone"


def opts(**kw: object) -> BenchOptions:
    base: dict[str, object] = {"runs": 5, "warmup": 1, "rounds": 2, "timeout_s": 30.0}
    base.update(kw)
    return BenchOptions(**base)  # type: ignore[arg-type]


def test_devices_lists_model_soc_abi_android_version(phone: Phone, capsys) -> None:
    [info] = adb.describe_all()
    assert (info.serial, info.state) == (phone.serial, "device")
    assert info.model == "Edge Test Phone"
    assert info.soc == "EdgeSilicon ES-1000"
    assert info.abi == "x86_64" and info.abilist == ("x86_64",)
    assert (info.android_version, info.sdk) == ("14", "34")
    assert cli_main(["devices", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["serial"] == phone.serial and listed[0]["soc"] == "EdgeSilicon ES-1000"


def test_benchmark_model_flow(phone: Phone, launcher: Path, kws: Path, tmp_path: Path) -> None:
    result = run_bench(
        TARGET,
        kws,
        opts(
            runner="adb",
            benchmark_binary=launcher,
            threads=2,
            use_xnnpack=False,
            cpu_affinity="1",
            cooldown_s=0.05,
            profile_ops=True,
        ),
    )
    assert result.runner == "adb" and result.unit == "ms"
    assert len(result.samples) == 2 and all(0 < s < 1000 for s in result.samples)
    assert [r["count"] for r in result.environment["rounds"]] == [5, 5]
    assert result.summary is not None and result.summary.n == 2
    # 2 rounds of 5 runs: 10 inferences, not "2 runs" (issue 14)
    assert result.runs == 10 and result.to_dict()["runs"] == 10
    assert not any("only 2 runs" in w for w in result.warnings)
    assert any("only 2 samples (rounds of 5 runs each)" in w for w in result.warnings)
    assert result.device["arch"] == "x86_64"
    # one row per operator of the model; the table comes from the separate profiling round
    assert len(result.per_op) == len(TFLiteModel.from_file(kws).operators)
    assert result.per_op[0].name.startswith("CONV_2D")
    assert result.device["model"] == "Edge Test Phone"
    assert result.device["temperatures_before"] == {
        "cpu-0-0 (thermal_zone0)": 41.2,
        "battery (thermal_zone1)": 30.5,
    }
    assert set(result.device["governors"].values()) == {"schedutil"}
    assert result.environment["device_dir_removed"] is True
    params = result.environment["tool_params"]
    assert params["Num threads"] == "2" and params["Use xnnpack"] == "0"
    runs = [c for c in phone.peer.commands if "benchmark_model" in c and "--graph=" in c]
    assert len(runs) == 3 and all(c.split("exec ", 1)[1].startswith("taskset 1 ") for c in runs)
    assert "--enable_op_profiling=true" in runs[-1]
    # the quoted model name reached the device intact; no shell injection happened
    assert any(
        a.startswith("--graph=") and a.endswith(f"/{WEIRD_NAME}") for a in shlex.split(runs[0])
    )
    assert not (phone.sandbox.root / "pwned").exists() and not Path("pwned").exists()
    assert phone.leftovers() == []


def test_termux_python_runner_on_a_real_model(phone: Phone, kws: Path) -> None:
    python = install_device_python(phone.sandbox.root)
    result = run_bench(TARGET, kws, opts(runner="adb", threads=1))
    assert result.device["python"] == python
    assert len(result.samples) == 5 and all(s > 0 for s in result.samples)
    assert result.environment["runtime"].startswith("ai_edge_litert")
    check = result.output_check
    assert check is not None and check.compared_values == 12
    assert check.bit_exact, check
    assert phone.leftovers() == []


def test_no_python_and_no_binary_is_a_clear_error(phone: Phone, kws: Path) -> None:
    with pytest.raises(InputFileError, match="no benchmark_model binary given"):
        run_bench(TARGET, kws, opts(runner="adb"))
    assert phone.leftovers() == []


def _elf(path: Path, machine: int, e_type: int = 2) -> Path:
    path.write_bytes(
        b"\x7fELF\x02\x01\x01"
        + bytes(9)
        + e_type.to_bytes(2, "little")
        + machine.to_bytes(2, "little")
        + bytes(44)
    )
    return path


def test_wrong_abi_binary_is_refused_before_pushing(
    phone: Phone, kws: Path, tmp_path: Path
) -> None:
    arm = _elf(tmp_path / "benchmark_model", 183)
    with pytest.raises(InputFileError, match=r"aarch64.*x86_64"):
        run_bench(TARGET, kws, opts(runner="adb", benchmark_binary=arm))
    obj = _elf(tmp_path / "bm.o", 62, e_type=1)
    with pytest.raises(InputFileError, match="not an executable"):
        run_bench(TARGET, kws, opts(runner="adb", benchmark_binary=obj))
    script = tmp_path / "bm.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(InputFileError, match="not a native executable"):
        run_bench(TARGET, kws, opts(runner="adb", benchmark_binary=script))
    assert phone.leftovers() == []
    assert not [c for c in phone.peer.commands if "mkdir" in c]


def test_target_of_another_architecture_is_refused_before_pushing(
    phone: Phone, launcher: Path, kws: Path
) -> None:
    arm64 = load_target("android-arm64")
    with pytest.raises(ArchMismatchError, match="target android-arm64 is aarch64 but") as e:
        run_bench(arm64, kws, opts(runner="adb", benchmark_binary=launcher))
    assert "--target android-x86_64" in str(e.value) and "--allow-arch-mismatch" in str(e.value)
    assert not [c for c in phone.peer.commands if "benchmark_model" in c]
    assert phone.leftovers() == []
    result = run_bench(
        arm64, kws, opts(runner="adb", benchmark_binary=launcher, rounds=1, runs=2, warmup=0,
                         allow_arch_mismatch=True),
    )  # fmt: skip
    assert result.target == "android-arm64" and result.device["arch"] == "x86_64"
    assert any("not the target's" in w for w in result.warnings)


def test_model_the_device_runtime_rejects(
    phone: Phone, launcher: Path, reference_dir: Path
) -> None:
    # LiteRT refuses person_detect.tflite ("quantized_dimension must be in range")
    model = reference_dir / "tflm_models/person_detection/person_detect.tflite"
    if not model.is_file():
        pytest.skip(f"{model} not in the reference set")
    with pytest.raises(TFLiteModelError, match="rejected the model"):
        run_bench(TARGET, model, opts(runner="adb", benchmark_binary=launcher))
    assert phone.leftovers() == []


def _processes_with(word: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if word in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_timeout_kills_the_run_and_cleans_up(phone: Phone, launcher: Path, kws: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(IoTimeoutError, match="killed"):
        run_bench(
            TARGET,
            kws,
            opts(
                runner="adb",
                benchmark_binary=launcher,
                runs=1,
                warmup=0,
                rounds=1,
                timeout_s=2.0,
                extra_args=("--edgedeploy_test_sleep=120",),
            ),
        )
    assert time.monotonic() - t0 < 30
    assert phone.leftovers() == []
    time.sleep(0.2)
    assert _processes_with("--edgedeploy_test_sleep=120") == []


def test_killed_run_is_reported(phone: Phone, launcher: Path, kws: Path) -> None:
    with pytest.raises(RemoteCommandError, match="killed by signal 9"):
        run_bench(
            TARGET,
            kws,
            opts(runner="adb", benchmark_binary=launcher, extra_args=("--edgedeploy_test_kill=1",)),
        )
    assert phone.leftovers() == []


def test_no_device_and_unknown_serial(adb_server: AdbServer, kws: Path) -> None:
    with pytest.raises(DeviceNotFoundError, match="no Android device attached"):
        run_bench(TARGET, kws, opts(runner="adb"))
    with pytest.raises(DeviceNotFoundError, match="no Android device with serial 'nope'"):
        adb.select_device("nope")
    assert cli_main(["devices"]) == 0


def test_several_devices_need_a_serial(adb_server: AdbServer, tmp_path: Path) -> None:
    with (
        AdbPeer(Sandbox(tmp_path / "a")) as a,
        AdbPeer(Sandbox(tmp_path / "b"), serialno="EDGE0002") as b,
    ):
        sa, sb = adb_server.connect(a.port), adb_server.connect(b.port)
        try:
            with pytest.raises(AmbiguousDeviceError, match="--serial"):
                adb.select_device()
            assert adb.select_device(sb).serial == sb
        finally:
            adb_server.disconnect(sa)
            adb_server.disconnect(sb)


def test_unauthorized_device(adb_server: AdbServer, tmp_path: Path, kws: Path, capsys) -> None:
    with AdbPeer(Sandbox(tmp_path / "u"), mode="unauthorized") as peer:
        serial = f"127.0.0.1:{peer.port}"
        with pytest.raises(AuthError, match="refused our adb key"):
            adb.connect(serial)
        try:
            with pytest.raises(AuthError, match="unauthorized"):
                run_bench(TARGET, kws, opts(runner="adb"))
            assert cli_main(["devices"]) == 0
            assert "unauthorized" in capsys.readouterr().out
        finally:
            adb_server.disconnect(serial)


def test_offline_device(adb_server: AdbServer, tmp_path: Path) -> None:
    with AdbPeer(Sandbox(tmp_path / "o"), mode="offline") as peer:
        serial = f"127.0.0.1:{peer.port}"
        # adb connect waits ~10 s for a handshake that never comes; the transport is listed
        # as offline meanwhile
        pending = subprocess.Popen(
            ["adb", "connect", serial], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if any(d.serial == serial for d in adb.list_devices()):
                    break
                time.sleep(0.1)
            with pytest.raises(DeviceNotFoundError, match="is offline"):
                adb.select_device(serial)
        finally:
            pending.kill()
            pending.wait()
            adb_server.disconnect(serial)


def test_adb_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, kws: Path) -> None:
    from toolchain.errors import ToolchainMissingError

    monkeypatch.setenv("PATH", os.devnull)
    monkeypatch.delenv("EDGEDEPLOY_ADB", raising=False)
    with pytest.raises(ToolchainMissingError, match="adb not found"):
        run_bench(TARGET, kws, opts(runner="adb"))


def test_cli_bench_over_adb(phone: Phone, launcher: Path, kws: Path, tmp_path: Path) -> None:
    rc = cli_main(
        ["bench", "--target", ANDROID_TARGET, "--model", str(kws), "--out", str(tmp_path / "out"),
         "--serial", phone.serial, "--benchmark-binary", str(launcher), "--runs", "3",
         "--warmup", "0", "--rounds", "2", "--bench-arg=--use_caching=true"]
    )  # fmt: skip
    assert rc == 0
    report = json.loads((tmp_path / "out/bench_report.json").read_text())
    assert report["runner"] == "adb" and len(report["samples"]) == 2
    assert report["runs"] == 6 and report["runs_per_sample"] == 3
    assert "--use_caching=true" in report["environment"]["benchmark_args"]
    assert phone.leftovers() == []
