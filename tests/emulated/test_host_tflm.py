"""Emulated tier: the host-TFLM device (a separate process serving the MLPerf Tiny KWS model
with the tflite-micro interpreter behind EDP on a real pty), benchmarked end to end through
the library and the CLI, with faults on the link: noise, dropped frames, a reset in the
middle of a RUN, a silent device, the wrong model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolchain.bench import run_bench
from toolchain.bench.mcu import benchmark_device
from toolchain.bench.options import BenchOptions
from toolchain.cli import main
from toolchain.devices.host_tflm import HostTflmProcess
from toolchain.errors import DeviceError, IoTimeoutError, ModelMismatchError
from toolchain.protocol import DeviceClient, MsgType
from toolchain.protocol.frame import FrameParser
from toolchain.targets import load_target
from toolchain.tflite_model import TFLiteModel
from toolchain.transports.faults import FaultyTransport
from toolchain.transports.serial_port import SerialTransport


@pytest.fixture(scope="module")
def kws(reference_dir: Path) -> Path:
    return reference_dir / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"


@pytest.fixture(scope="module")
def device(kws: Path) -> Iterator[HostTflmProcess]:
    with HostTflmProcess(kws) as dev:
        yield dev


def _bench(link: SerialTransport | FaultyTransport, model: Path, **kw: object) -> object:
    client = DeviceClient(link, timeout_s=kw.pop("timeout_s", 1.0), retries=3)  # type: ignore[arg-type]
    return benchmark_device(
        client,
        target=load_target("host-tflm"),
        model=TFLiteModel.from_file(model),
        options=BenchOptions(runs=4, warmup=1, timeout_s=20.0),
        runner="host-tflm",
    )


def test_bench_kws_on_host_tflm(kws: Path) -> None:
    result = run_bench(load_target("host-tflm"), kws, BenchOptions(runs=8, warmup=1))
    assert result.runner == "host-tflm" and result.unit == "us"
    assert len(result.samples) == 8 and min(result.samples) > 100  # KWS takes milliseconds
    assert "HOST timings" in result.unit_note
    assert result.output_check is not None and result.output_check.bit_exact
    assert result.output_check.compared_values == 12
    assert result.memory["arena_used_bytes"] > 20_000
    assert result.device["fw_kind"] == "host_tflm" and result.device["n_ops"] == 13
    assert any("no per-op timing" in w for w in result.warnings)


def test_cli_bench_writes_report(kws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = main(["-q", "bench", "--target", "host-tflm", "--model", str(kws), "--runs", "5",
               "--warmup", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "bench_report.json").read_text())
    assert report["runs"] == 5 and report["unit"] == "us"
    assert report["output_check"]["bit_exact"] is True
    assert (
        report["summary"]["median"] > 0
        and report["summary"]["ci_low"] <= report["summary"]["median"]
    )
    assert [p.name for p in out.iterdir()] == ["bench_report.json"]


def test_noise_and_dropped_frames_on_a_real_pty(device: HostTflmProcess, kws: Path) -> None:
    link = FaultyTransport(
        SerialTransport(device.port),
        noise_after={2, 5, 9},
        drop_write={4},
        corrupt_write={7},
        drop_reply_after={11},
        seed=11,
    )
    with link:
        result = _bench(link, kws, timeout_s=0.5)
    assert result.output_check.bit_exact  # type: ignore[attr-defined]
    assert result.device["resends"] >= 2  # type: ignore[attr-defined]
    assert {k for k, _ in link.log} >= {"noise", "drop", "corrupt", "eat"}


def test_reset_in_the_middle_of_a_run_is_survived(device: HostTflmProcess, kws: Path) -> None:
    resets: list[int] = []

    def reset_on_timed_run(k: int, data: bytes) -> None:
        frames = FrameParser().feed(data)
        # the timed RUN (warmup 1, runs 4), not the 1-inference probe
        if not resets and frames and frames[0].type == MsgType.RUN and data[8:10] == b"\x01\x00":
            resets.append(k)
            device.reset()

    with FaultyTransport(SerialTransport(device.port), on_write=reset_on_timed_run) as link:
        result = _bench(link, kws)
    assert resets, "the RUN was never sent"
    assert result.output_check.bit_exact  # type: ignore[attr-defined]
    assert len(result.samples) == 4  # type: ignore[attr-defined]
    assert any("reset during the benchmark" in w for w in result.warnings)  # type: ignore[attr-defined]
    assert result.device["boots_seen"] >= 1  # type: ignore[attr-defined]


def test_silent_device_times_out_then_works_again(device: HostTflmProcess) -> None:
    with SerialTransport(device.port) as link:
        client = DeviceClient(link, timeout_s=0.3, retries=1)
        device.pause()  # SIGSTOP: a hung board
        try:
            with pytest.raises(IoTimeoutError, match="did not answer HELLO"):
                client.hello()
        finally:
            device.resume()
        client.resync()
        assert client.hello().n_inputs == 1  # usable again


def test_firmware_for_another_model(
    device: HostTflmProcess, reference_dir: Path, tmp_path: Path
) -> None:
    ad = reference_dir / "mlperf_tiny" / "ad" / "ad01_int8.tflite"
    with (
        SerialTransport(device.port) as link,
        pytest.raises(ModelMismatchError, match="another model"),
    ):
        _bench(link, ad)
    out = tmp_path / "never"
    rc = main(["-q", "bench", "--target", "host-tflm", "--model", str(ad), "--port", device.port,
               "--out", str(out)])  # fmt: skip
    assert rc == 1 and not out.exists()


def test_no_such_port_from_the_cli(
    kws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    rc = main(["-q", "bench", "--target", "nucleo-l4r5zi", "--model", str(kws), "--port",
               "/dev/ttyEDGEDEPLOY_NONE", "--out", str(out)])  # fmt: skip
    assert rc == 1 and not out.exists()
    assert "cannot open serial port /dev/ttyEDGEDEPLOY_NONE" in capsys.readouterr().err


def test_device_process_with_a_broken_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DeviceError, match="did not start.*not a TFLite flatbuffer"):
        HostTflmProcess(bad, startup_timeout_s=60).start()


def test_golden_inputs_and_stale_golden_outputs(kws: Path, tmp_path: Path) -> None:
    import numpy as np

    x = np.random.default_rng(5).integers(-128, 128, (2, 49, 10, 1), dtype=np.int8)
    golden = tmp_path / "golden.npz"
    np.savez(golden, input_0=x, output_0=np.zeros((2, 1, 12), np.int8))  # outputs: wrong
    result = run_bench(load_target("host-tflm"), kws, BenchOptions(runs=3, warmup=0, golden=golden))
    assert "golden.npz" in result.environment["inputs"]
    assert result.output_check is not None and result.output_check.bit_exact
    assert any("golden file is stale" in w for w in result.warnings)
