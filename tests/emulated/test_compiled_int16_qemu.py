"""Emulated tier: an int16x8 model in the compiled-runtime firmware on every QEMU board.

The int16 kernels (LOGISTIC/TANH tables, int16 SUB/MUL, requantize, int16 copies, the int64
accumulators of the int16x8 convolutions) on the real ISAs: a small converter-made int16x8
net (tests/support/int16_net.py; about 8 KB, 12 KB arena, so it fits lm3s6965evb's 64 KiB)
is built with ``edgedeploy firmware --runtime compiled`` for mps2-an386 (M4F), mps2-an500
(M7), mps2-an505 (M33) and lm3s6965evb (M3) and benchmarked in QEMU through the ordinary
runner: outputs bit-identical to the host tflite-micro interpreter's golden vectors,
instruction counts identical inference to inference and QEMU run to QEMU run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import int16_net
from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult
from toolchain.firmware import FirmwareResult, make_firmware
from toolchain.targets import load_target

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
        reason="needs qemu-system-arm and arm-none-eabi-gcc (scripts/install-system-deps.sh)",
    ),
]

BOARDS = ("mps2-an386", "mps2-an500", "mps2-an505", "lm3s6965evb")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the converter cache the host tier's int16 test uses: one conversion per session
    cache = tmp_path_factory.getbasetemp() / "convert-cache"
    return int16_net.convert_int16(tmp_path_factory.mktemp("net16"), cache)


def _bench(board: str, model: Path, elf: Path, runs: int) -> BenchResult:
    opts = BenchOptions(runs=runs, warmup=1, firmware=elf, timeout_s=120.0)
    return run_bench(load_target(board), model, opts)


@pytest.mark.parametrize("board", BOARDS)
def test_int16x8_compiled_firmware_bit_exact_in_qemu(
    board: str, model: Path, tmp_path: Path
) -> None:
    res: FirmwareResult = make_firmware(
        target=board, out_dir=tmp_path / board, model=model, runtime="compiled", build=True
    )
    b = res.build
    assert b is not None and b.fw == "compiled" and b.memory.fits
    assert res.project.compiled is not None
    r = _bench(board, model, b.elf, runs=2)
    assert r.runner == "qemu" and r.unit == "instructions"
    assert r.device["fw_kind"] == "compiled"
    check = r.output_check
    assert check is not None and check.bit_exact, check
    assert len(set(r.samples)) == 1, r.samples  # -icount: the same count every inference
    again = _bench(board, model, b.elf, runs=1)  # a second QEMU run counts the same
    assert again.samples[0] == r.samples[0]
    assert again.output_check is not None and again.output_check.bit_exact
    print(f"{board} int16x8 net: {r.samples[0]:,.0f} instructions per inference, "
          f"flash {r.memory['flash_used_bytes']:,} B")  # fmt: skip
