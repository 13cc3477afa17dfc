"""Hardware tier: the ADB and SSH flows on a real phone / Raspberry Pi.

    pytest tests/hardware --adb-serial SERIAL        # phone; with the benchmark_model path:
    EDGEDEPLOY_BENCHMARK_MODEL=/path/to/android_aarch64/benchmark_model pytest ... --adb-serial S
    pytest tests/hardware --ssh-host pi@raspberrypi  # Pi: key login, host in known_hosts

Skipped by default (fixtures hw_adb_serial / hw_ssh_host in tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.devices import adb
from toolchain.devices.ssh import SshBoard
from toolchain.errors import TFLiteModelError
from toolchain.targets import load_target


@pytest.fixture(scope="module")
def kws(reference_dir: Path) -> Path:
    return reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"


def _no_scratch_dirs_on_phone(serial: str) -> None:
    res = adb.AdbDevice(serial).run("ls /data/local/tmp", timeout_s=20)
    assert "edgedeploy-" not in res.stdout


def test_phone_is_listed(hw_adb_serial: str) -> None:
    info = {d.serial: d for d in adb.describe_all()}[hw_adb_serial]
    assert info.state == "device" and info.model and info.abi and info.android_version


def test_phone_benchmark_model(hw_adb_serial: str, kws: Path) -> None:
    binary = os.environ.get("EDGEDEPLOY_BENCHMARK_MODEL")
    if not binary:
        pytest.skip("set EDGEDEPLOY_BENCHMARK_MODEL to a benchmark_model built for the phone")
    result = run_bench(
        load_target("android-arm64"),
        kws,
        BenchOptions(runner="adb", adb_serial=hw_adb_serial, benchmark_binary=Path(binary),
                     runs=30, warmup=5, rounds=3, threads=1, profile_ops=True, cooldown_s=2.0),
    )  # fmt: skip
    assert len(result.samples) == 3 and all(0 < s < 1000 for s in result.samples)
    assert result.per_op and result.device["temperatures_before"] is not None
    assert result.environment["device_dir_removed"] is True
    _no_scratch_dirs_on_phone(hw_adb_serial)


def test_phone_rejected_model_leaves_nothing(hw_adb_serial: str, reference_dir: Path) -> None:
    binary = os.environ.get("EDGEDEPLOY_BENCHMARK_MODEL")
    if not binary:
        pytest.skip("set EDGEDEPLOY_BENCHMARK_MODEL to a benchmark_model built for the phone")
    model = reference_dir / "tflm_models/person_detection/person_detect.tflite"
    with pytest.raises(TFLiteModelError):
        run_bench(load_target("android-arm64"), model,
                  BenchOptions(runner="adb", adb_serial=hw_adb_serial, benchmark_binary=Path(binary)))  # fmt: skip
    _no_scratch_dirs_on_phone(hw_adb_serial)


def test_pi_runner(hw_ssh_host: str, kws: Path) -> None:
    result = run_bench(
        load_target("rpi4"),
        kws,
        BenchOptions(runner="ssh", ssh_host=hw_ssh_host, runs=30, warmup=5, threads=1),
    )
    assert len(result.samples) == 30
    assert result.output_check is not None and result.output_check.max_abs_diff <= 1
    assert result.device["cpu_model"]
    assert result.environment["board_dir_removed"] is True


def test_pi_rejected_model_leaves_nothing(hw_ssh_host: str, reference_dir: Path) -> None:
    model = reference_dir / "tflm_models/person_detection/person_detect.tflite"
    with pytest.raises(TFLiteModelError):
        run_bench(load_target("rpi4"), model, BenchOptions(runner="ssh", ssh_host=hw_ssh_host))
    with SshBoard(hw_ssh_host) as board:
        assert "edgedeploy-" not in board.run("ls /tmp", timeout_s=20).stdout


def test_pi_devices_check(hw_ssh_host: str) -> None:
    """`edgedeploy devices --host` on a real Pi: aarch64, not emulated, no check is an error
    (run once with --setup, or install ai-edge-litert, for the runtime check to pass)."""
    from toolchain.devices.linux_board import inspect_board

    report = inspect_board(hw_ssh_host, target=load_target("rpi4"))
    assert report.info.machine == "aarch64" and report.info.emulated is None
    assert report.ok, report.info.checks
