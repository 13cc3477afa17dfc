"""Emulated tier, with a TFLM library (``EDGEDEPLOY_TFLM_LIB`` / ``EDGEDEPLOY_TFLM_INCLUDE``,
built with TFLM's own Makefile: docs/tflm-library.md; skipped without one): the real TFLM
benchmark firmware built for the reference models and run in QEMU through the ``qemu``
runner — outputs bit-identical to the host tflite-micro interpreter, instruction counts
identical inference to inference and QEMU run to QEMU run, a per-op table that adds up, the
arena the device used, the painted stack's high-water mark, the image within budget.

``EDGEDEPLOY_TFLM_TARGET`` names the QEMU target the library was built for (default
mps2-an386)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from toolchain.bench import run_bench
from toolchain.bench.options import BenchOptions
from toolchain.bench.result import BenchResult
from toolchain.firmware import make_firmware
from toolchain.targets import Target, load_target

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and arm-none-eabi-gcc (scripts/install-system-deps.sh)",
)

MODELS = {
    "kws": "mlperf_tiny/kws/kws_ref_model.tflite",
    "ic": "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "vww": "mlperf_tiny/vww/vww_96_int8.tflite",
    "person_detect": "tflm_models/person_detection/person_detect.tflite",
}


@pytest.fixture(scope="module")
def target() -> Target:
    return load_target(os.environ.get("EDGEDEPLOY_TFLM_TARGET", "mps2-an386"))


@pytest.fixture(scope="module")
def built(
    tflm_library: tuple[Path, Path],
    reference_dir: Path,
    target: Target,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path]]:
    """(model, firmware ELF) per reference model, built once."""
    lib, include = tflm_library
    root = tmp_path_factory.mktemp("tflm_fw")
    out = {}
    for name, rel in MODELS.items():
        model = reference_dir / rel
        res = make_firmware(
            target=target,
            out_dir=root / name,
            model=model,
            tflm_lib=lib,
            tflm_include=[include],
            build=True,
        )
        assert res.build is not None and res.build.memory.fits
        out[name] = (model, res.build.elf)
    return out


def _bench(target: Target, model: Path, elf: Path) -> BenchResult:
    return run_bench(target, model, BenchOptions(runs=3, warmup=1, firmware=elf, timeout_s=120.0))


@pytest.mark.parametrize("name", list(MODELS))
def test_tflm_firmware_in_qemu(
    name: str, built: dict[str, tuple[Path, Path]], target: Target
) -> None:
    model, elf = built[name]
    r = _bench(target, model, elf)
    assert r.runner == "qemu" and r.unit == "instructions"
    assert "QEMU does not model time" in r.unit_note
    check = r.output_check
    assert check is not None and check.bit_exact, check
    # Re-phased SysTick under -icount: every inference counts the same instructions.
    assert len(set(r.samples)) == 1, r.samples
    assert 1e6 < r.samples[0] < 1e9
    # The per-op table adds up to (nearly all of) the inference: the rest is Invoke()'s own
    # bookkeeping between operators.
    assert r.per_op, r.warnings
    ops_total = sum(op.per_inference for op in r.per_op)
    assert 0.97 * r.samples[0] <= ops_total <= r.samples[0]
    mem = r.memory
    assert 0 < mem["arena_used_bytes"] <= mem["arena_bytes"]
    assert mem["flash_used_bytes"] <= mem["flash_budget_bytes"]
    # tflm_main.cc paints the stack at boot and reports the high-water mark in HELLO: a real
    # peak (AllocateTensors and Invoke go deeper than a few words), below the reservation
    # (a saturated reading would mean the stack overflowed the painted region).
    assert 256 < mem["stack_peak_bytes"] < mem["stack_reserved_bytes"], mem
    assert mem["ram_measured_bytes"] == mem["ram_data_bss_bytes"] + mem["stack_peak_bytes"]
    # newlib's malloc is linked (stdio), but TFLM never calls it: the heap is untouched.
    assert r.device["info"]["heap_used_bytes"] == "0", r.device["info"]
    assert r.device["tick_unit"] == "instructions" and r.device["fw_kind"] == "tflm"
    # A second QEMU run counts exactly the same instructions.
    again = _bench(target, model, elf)
    assert again.samples == r.samples
    assert [op.per_inference for op in again.per_op] == [op.per_inference for op in r.per_op]
