"""Emulated tier: the self-test firmware (no TFLM) built with arm-none-eabi-gcc and run in
QEMU on every QEMU board (mps2-an386 Cortex-M4, mps2-an500 M7, mps2-an505 M33, lm3s6965evb
M3), over the loopback serial socket: boot, HELLO, ECHO, a tensor echoed with its CRC, tick
calibration (instructions per SysTick step), deterministic tick counts under -icount, the
per-op profile, the HardFault report, and QEMU missing or failing to start."""

from __future__ import annotations

import os
import random
import shutil
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.qemu import QemuProcess
from toolchain.cli import main
from toolchain.errors import (
    DeviceError,
    InputFileError,
    ModelMismatchError,
    ToolchainMissingError,
    UsageError,
)
from toolchain.firmware import build_project, make_firmware, render_project
from toolchain.protocol import DeviceClient
from toolchain.protocol.messages import FwKind, TickUnit
from toolchain.targets import Target, load_target

pytestmark = [
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None,
        reason="needs qemu-system-arm (scripts/install-system-deps.sh)",
    ),
    pytest.mark.skipif(
        shutil.which("arm-none-eabi-gcc") is None,
        reason="needs arm-none-eabi-gcc (scripts/install-system-deps.sh)",
    ),
]

BOARDS = ("mps2-an386", "mps2-an500", "mps2-an505", "lm3s6965evb")
#: selftest_main.c: RUN = 2 * LOOP + 6 * LOOP instructions of busy loop
LOOP = 25_000
RUN_INSTRUCTIONS = 8 * LOOP
TENSOR_BYTES = 4096


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The self-test ELF of each board (built once per module)."""
    root = tmp_path_factory.mktemp("selftest")
    return {
        b: make_firmware(target=b, out_dir=root / b, selftest=True, build=True).build.elf  # type: ignore[union-attr]
        for b in BOARDS
    }


def _session(target: Target, elf: Path) -> Iterator[tuple[QemuProcess, DeviceClient]]:
    with QemuProcess(target, elf) as q:
        client = DeviceClient(q.connect(), timeout_s=5.0)
        assert client.wait_boot(10.0), "no BOOT frame from the firmware"
        yield q, client


def _observe(target: Target, elf: Path) -> dict[str, Any]:
    """One QEMU session: everything the tests compare."""
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(TENSOR_BYTES))
    for q, c in _session(target, elf):
        h = c.hello()
        echo = bytes(rng.randrange(256) for _ in range(900))
        t_before = c.ticks()
        echoed = c.echo(echo)
        c.upload_input(0, data)
        crc = c.input_crc(0)
        ticks = c.run(warmup=1, runs=6, profile=True)
        profile = c.profile()
        out = c.read_output(0)
        t_after = c.ticks()
        pid = q.proc.pid if q.proc else -1
    return {
        "hello": h,
        "echo_ok": echoed == echo,
        "crc": crc,
        "want_crc": zlib.crc32(data),
        "out_ok": out == data,
        "ticks": ticks,
        "profile": [(e.name, e.ticks) for e in profile],
        "tick_delta": t_after - t_before,
        "pid": pid,
    }


@pytest.mark.parametrize("board", BOARDS)
def test_selftest_firmware_on_qemu_board(board: str, firmware: dict[str, Path]) -> None:
    target = load_target(board)
    first = _observe(target, firmware[board])
    h = first["hello"]
    assert h.fw_kind == FwKind.SELFTEST and h.protocol_version == 1
    assert h.tick_unit == TickUnit.INSTRUCTIONS
    # SysTick runs at the board's core clock; -icount shift=0 is one instruction per ns.
    assert h.ticks_per_tick_count == 1_000_000_000 // target.cpu.clock_hz
    assert h.clock_hz == target.cpu.clock_hz
    assert h.info["target"] == board and h.info["board"] == target.firmware.board  # type: ignore[union-attr]
    assert "calibrated 400000 instructions" in h.info["ticks"]
    assert (h.n_inputs, h.n_outputs, h.n_ops) == (1, 1, 2) and not h.has_model
    assert first["echo_ok"] and first["out_ok"]
    assert first["crc"] == first["want_crc"]
    # Every inference is the same busy loop: within one counter step of each other, and the
    # instruction count is the loop's (plus a few dozen instructions of call overhead).
    step = h.ticks_per_tick_count
    ticks = first["ticks"]
    assert len(ticks) == 6 and max(ticks) - min(ticks) <= 1
    assert RUN_INSTRUCTIONS <= min(ticks) * step <= RUN_INSTRUCTIONS * 1.002 + step
    (n1, t1), (n3, t3) = first["profile"]
    assert (n1, n3) == ("BUSY_LOOP_1X", "BUSY_LOOP_3X")
    assert t3 / t1 == pytest.approx(3.0, rel=0.002)  # sums over the 6 profiled runs
    assert first["tick_delta"] > sum(ticks)
    # QEMU is gone once the session ends.
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)
    # Under -icount the whole session is deterministic: a second QEMU gives the same counts.
    second = _observe(target, firmware[board])
    assert second["ticks"] == ticks
    assert second["profile"] == first["profile"]
    assert second["hello"].info["ticks"] == h.info["ticks"]


def test_tick_counter_extension_across_systick_wraps(tmp_path: Path) -> None:
    """With SysTick wrapping every 4096 steps (instead of 2^24) each inference spans
    several wraps: the 64-bit counter must stay monotonic and exact (a missed or doubled wrap
    would be off by 4096 steps = 163,840 instructions)."""
    target = load_target("mps2-an386")
    project = render_project(target=target, out_dir=tmp_path / "p", selftest=True)
    built = build_project(
        project.path,
        target,
        fw="selftest",
        make_args=("EXTRA_CFLAGS=-DEDGEDEPLOY_SYSTICK_RELOAD=0xFFF",),
    )
    for _q, c in _session(target, built.elf):
        c.upload_input(0, bytes(TENSOR_BYTES))
        stamps = [c.ticks() for _ in range(5)]
        ticks = c.run(warmup=0, runs=40)
    assert stamps == sorted(stamps)
    step = 40
    for t in ticks:  # each wrap adds one interrupt (a few dozen instructions) at most
        assert RUN_INSTRUCTIONS <= t * step <= RUN_INSTRUCTIONS * 1.01


@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an505", "lm3s6965evb"])
def test_hardfault_is_reported(board: str, tmp_path: Path) -> None:
    target = load_target(board)
    project = render_project(target=target, out_dir=tmp_path / "p", selftest=True)
    built = build_project(
        project.path, target, fw="selftest", make_args=("EXTRA_CFLAGS=-DSELFTEST_FAULT_ON_RUN=1",)
    )
    for q, c in _session(target, built.elf):
        c.upload_input(0, bytes(TENSOR_BYTES))
        with pytest.raises(DeviceError) as info:
            c.run(warmup=0, runs=1)
        err = q.explain(info.value, "running")
        assert q.poll() == 3
    text = str(err)
    assert "HardFault" in text and "faulted" in text
    # UDF: UsageFault UNDEFINSTR escalated to HardFault (FORCED)
    assert "cfsr=0x00010000" in text and "hfsr=0x40000000" in text
    assert "addr2line" in (err.hint or "")


def test_qemu_runner_rejects_the_selftest_firmware(
    firmware: dict[str, Path], reference_dir: Path
) -> None:
    model = reference_dir / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"
    with pytest.raises(ModelMismatchError, match="self-test firmware"):
        run_bench(
            load_target("mps2-an386"),
            model,
            BenchOptions(runs=2, warmup=0, firmware=firmware["mps2-an386"]),
        )


def test_qemu_that_fails_to_start_is_reported(firmware: dict[str, Path]) -> None:
    q = QemuProcess(load_target("mps2-an386"), firmware["mps2-an386"], extra_args=("-bogus",))
    with pytest.raises(DeviceError, match="did not start.*bogus"), q:
        pass
    assert q.proc is None


def test_missing_qemu_is_a_clear_error(
    firmware: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainMissingError, match="qemu-system-arm not found"):
        QemuProcess(load_target("lm3s6965evb"), firmware["lm3s6965evb"])


def test_cli_without_qemu_exits_non_zero_and_writes_nothing(
    firmware: dict[str, Path],
    reference_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = reference_dir / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "report"
    rc = main(["-q", "bench", "--target", "mps2-an386", "--model", str(model), "--firmware",
               str(firmware["mps2-an386"]), "--out", str(out)])  # fmt: skip
    assert rc == 1 and not out.exists()
    assert "qemu-system-arm not found" in capsys.readouterr().err


def test_qemu_dying_mid_session_is_reported(firmware: dict[str, Path]) -> None:
    target = load_target("mps2-an505")
    for q, c in _session(target, firmware["mps2-an505"]):
        assert q.proc is not None
        q.proc.kill()
        with pytest.raises(DeviceError) as info:
            c.hello()
        err = q.explain(info.value, "asking for HELLO")
    assert "QEMU exited with status -9 while asking for HELLO" in str(err)


def test_qemu_runner_checks_the_firmware_target(
    firmware: dict[str, Path], reference_dir: Path, tmp_path: Path
) -> None:
    model = reference_dir / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"
    with pytest.raises(UsageError, match="built for target mps2-an500, not mps2-an386"):
        run_bench(
            load_target("mps2-an386"),
            model,
            BenchOptions(firmware=firmware["mps2-an500"]),
        )
    with pytest.raises(UsageError, match="needs the firmware"):
        run_bench(load_target("mps2-an386"), model, BenchOptions())
    not_elf = tmp_path / "fw.elf"
    not_elf.write_bytes(b"\x00" * 64)
    with pytest.raises(InputFileError, match="not an ELF"):
        run_bench(load_target("mps2-an386"), model, BenchOptions(firmware=not_elf))
    with pytest.raises(InputFileError, match="cannot read it"):
        run_bench(load_target("mps2-an386"), model, BenchOptions(firmware=tmp_path / "none.elf"))
    host_elf = Path(sys.executable).resolve()
    with host_elf.open("rb") as fh:
        host_is_elf = fh.read(4) == b"\x7fELF"
    if host_is_elf:  # this machine's Python: an x86/Arm64 ELF
        with pytest.raises(InputFileError, match="not a 32-bit Arm ELF"):
            run_bench(load_target("mps2-an386"), model, BenchOptions(firmware=host_elf))
