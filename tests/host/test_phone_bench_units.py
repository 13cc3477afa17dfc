"""Host tier: the pieces of the ADB/SSH runners that need no device — ELF checks, host
parsing, getprop/probe parsing, benchmark_model flags, option checks, output comparison,
and the standalone remote runner (including its interpreter fallback order)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolchain.bench import remote
from toolchain.bench.android import benchmark_model_args
from toolchain.bench.mcu import bench_inputs
from toolchain.bench.options import BenchOptions
from toolchain.devices.adb import parse_getprop
from toolchain.devices.elf import check_executable_for, read_elf
from toolchain.devices.ssh import parse_host
from toolchain.errors import InputFileError, UsageError


def _elf(path: Path, machine: int, e_type: int = 3, bits: int = 2) -> Path:
    path.write_bytes(
        b"\x7fELF"
        + bytes([bits, 1, 1])
        + bytes(9)
        + e_type.to_bytes(2, "little")
        + machine.to_bytes(2, "little")
        + bytes(44)
    )
    return path


def test_elf_checks(tmp_path: Path) -> None:
    arm64 = _elf(tmp_path / "a", 183)
    assert check_executable_for(arm64, ["arm64-v8a", "armeabi-v7a"]).machine_name == "aarch64"
    with pytest.raises(InputFileError, match=r"aarch64 \(64-bit\) but the device runs armeabi-v7a"):
        check_executable_for(arm64, ["armeabi-v7a"])
    with pytest.raises(InputFileError, match="not an executable"):
        check_executable_for(_elf(tmp_path / "o", 183, e_type=1), ["arm64-v8a"])
    (tmp_path / "t").write_text("#!/bin/sh\n")
    with pytest.raises(InputFileError, match="no ELF header"):
        read_elf(tmp_path / "t")
    assert read_elf(Path(sys.executable)).elf_type in (2, 3)  # this machine's python


def test_parse_host() -> None:
    assert parse_host("pi@raspberrypi") == ("pi", "raspberrypi", 22)
    assert parse_host("pi@10.0.0.2:2222") == ("pi", "10.0.0.2", 2222)
    assert parse_host("board", 8022) == (None, "board", 8022)
    assert parse_host("u@[fe80::1]:23") == ("u", "fe80::1", 23)
    for bad in ("@host", "pi@", "pi@host:0", "pi@host:x"):
        with pytest.raises(UsageError):
            parse_host(bad)


def test_parse_getprop_and_probe() -> None:
    props = parse_getprop(
        "[ro.product.model]: [Pixel 7]\n[ro.soc.model]: [GS201]\n[bad line\n[x]: []\n"
    )
    assert props == {"ro.product.model": "Pixel 7", "ro.soc.model": "GS201", "x": ""}
    state = remote.parse_probe(
        "gov cpu0 schedutil\ngov cpu4 performance\ntemp thermal_zone0 cpu-1-0-usr 45300\n"
        "temp thermal_zone3 battery 31\ntemp thermal_zone9 bad n/a\n"
    )
    assert state.governors == {"cpu0": "schedutil", "cpu4": "performance"}
    assert state.temperatures == {
        "cpu-1-0-usr (thermal_zone0)": 45.3,
        "battery (thermal_zone3)": 31.0,
    }
    assert remote.hottest(state.temperatures) == 45.3 and remote.hottest({}) is None


def test_benchmark_model_args_pass_options_through() -> None:
    o = BenchOptions(
        runs=7,
        warmup=2,
        threads=4,
        use_xnnpack=True,
        delegate="nnapi",
        extra_args=("--nnapi_accelerator_name=qti-dsp",),
    )
    args = benchmark_model_args("/data/local/tmp/d/m m.tflite", o, profile=True)
    assert args[:5] == [
        "--graph=/data/local/tmp/d/m m.tflite",
        "--num_runs=7",
        "--warmup_runs=2",
        "--min_secs=0",
        "--warmup_min_secs=0",
    ]
    for flag in (
        "--num_threads=4",
        "--use_xnnpack=true",
        "--use_nnapi=true",
        "--enable_op_profiling=true",
    ):
        assert flag in args
    assert args[-1] == "--nnapi_accelerator_name=qti-dsp"
    assert "--use_gpu=true" in benchmark_model_args("g", BenchOptions(delegate="gpu"))
    assert not any(
        "xnnpack" in a or "threads" in a for a in benchmark_model_args("g", BenchOptions())
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"runs": 0}, "--runs"),
        ({"warmup": -1}, "--warmup"),
        ({"threads": 0}, "--threads"),
        ({"cooldown_s": -1.0}, "--cooldown"),
        ({"timeout_s": 0.0}, "--timeout"),
        ({"delegate": "hexagon"}, "delegate"),
        ({"cpu_affinity": "f0; reboot"}, "--cpu-affinity"),
    ],
)
def test_check_options(kw: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        remote.check_options(BenchOptions(**kw))


def test_compare_outputs() -> None:
    a = [np.array([[1, 2, 3]], dtype=np.int8)]
    ok = remote.compare_outputs(a, [a[0].copy()], "ref")
    assert ok.bit_exact and ok.compared_values == 3 and ok.max_abs_diff == 0
    off = remote.compare_outputs(a, [np.array([[1, 2, 5]], dtype=np.int8)], "ref")
    assert (off.bit_exact, off.mismatches, off.max_abs_diff) == (False, 1, 2.0)
    with pytest.raises(Exception, match="other shapes"):
        remote.compare_outputs(a, [np.zeros((1, 4), np.int8)], "ref")


@pytest.fixture(scope="module")
def kws(reference_dir: Path) -> Path:
    return reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"


def _run_runner(
    tmp_path: Path, model: Path, *extra: str, env: dict | None = None
) -> tuple[int, dict]:
    tfl = remote.load_model(model)
    npz = remote.save_inputs(bench_inputs(tfl, None)[0], tmp_path / "in.npz")
    p = subprocess.run(
        [sys.executable, str(remote.RUNNER_SCRIPT), "--model", str(model), "--inputs", str(npz), "--runs", "3", "--warmup", "1", *extra],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


def test_remote_runner_standalone_matches_host_reference(tmp_path: Path, kws: Path) -> None:
    rc, doc = _run_runner(tmp_path, kws, "--threads", "1", "--xnnpack", "off")
    assert rc == 0 and doc["ok"] and len(doc["samples_ms"]) == 3
    assert doc["config"] == {"threads": 1, "xnnpack": "off", "runs": 3, "warmup": 1}
    inputs = bench_inputs(remote.load_model(kws), None)[0]
    ref, _ = remote.host_reference(kws, inputs)
    assert (
        remote.compare_outputs(remote.decode_outputs(doc["outputs"]), ref, "host").max_abs_diff <= 1
    )


def test_remote_runner_falls_back_to_tflite_runtime(tmp_path: Path, kws: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "ai_edge_litert").mkdir(parents=True)
    (blocker / "ai_edge_litert" / "__init__.py").write_text(
        "raise ImportError('blocked for the test')\n"
    )
    rc, doc = _run_runner(tmp_path, kws, env={"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"})
    assert rc == 0, doc
    assert doc["runtime"].startswith("tflite_runtime ")


def test_remote_runner_errors(tmp_path: Path, kws: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")  # (a truncated flatbuffer makes LiteRT segfault instead)
    tfl_inputs = remote.save_inputs(
        bench_inputs(remote.load_model(kws), None)[0], tmp_path / "i.npz"
    )
    p = subprocess.run(
        [sys.executable, str(remote.RUNNER_SCRIPT), "--model", str(bad), "--inputs", str(tfl_inputs)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    doc = json.loads(p.stdout)
    assert p.returncode == 4 and doc["kind"] == "model_rejected"
    rc, doc = _run_runner(tmp_path, kws, "--threads", "0")
    assert rc == 2 and doc["kind"] == "usage"


def test_cli_phone_flags_map_onto_bench_options() -> None:
    import argparse

    from toolchain.cli.phone_options import add_phone_arguments, phone_options

    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int)  # defined by the bench command itself: not added twice
    add_phone_arguments(p)
    args = p.parse_args(
        ["--serial", "R58M", "--benchmark-binary", "bm", "--host", "pi@pi:2222", "--trust-new-host",
         "--no-xnnpack", "--cpu-affinity", "f0", "--cooldown", "2", "--bench-arg=--use_caching=true",
         "--rounds", "3", "--delegate", "gpu"]
    )  # fmt: skip
    kw = phone_options(args)
    assert kw == {
        "adb_serial": "R58M",
        "benchmark_binary": Path("bm"),
        "rounds": 3,
        "delegate": "gpu",
        "ssh_host": "pi@pi:2222",
        "trust_new_host": True,
        "use_xnnpack": False,
        "cpu_affinity": "f0",
        "cooldown_s": 2.0,
        "extra_args": ("--use_caching=true",),
    }
    BenchOptions(**kw)  # every key is a BenchOptions field
    assert phone_options(p.parse_args([])) == {}


def test_cli_host_that_never_speaks_ssh_is_one_message(tmp_path: Path, kws: Path) -> None:
    """A port that accepts and closes (no SSH banner): one error line, no paramiko traceback."""
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            try:
                conn, _addr = srv.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    out = tmp_path / "out"
    argv = ["bench", "--target", "rpi4", "--model", str(kws), "--out", str(out)]
    argv += ["--host", "pi@127.0.0.1", "--ssh-port", str(port), "--timeout", "5"]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "toolchain", *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        srv.close()
    assert proc.returncode == 1
    assert f"cannot reach 127.0.0.1:{port} over SSH" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_missing_ssh_key_says_what_to_do(tmp_path: Path) -> None:
    from toolchain.devices.ssh import SshBoard

    board = SshBoard("pi@127.0.0.1", key=tmp_path / "no_key", known_hosts=tmp_path / "kh")
    with pytest.raises(InputFileError, match="no_key does not exist") as e:
        board.connect()
    assert e.value.hint is not None and "--ssh-key" in e.value.hint
