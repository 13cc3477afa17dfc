"""Host tier: the memory report — per-core runtime tables, target overrides, budgets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from toolchain.emit import footprint
from toolchain.errors import BudgetError
from toolchain.targets import load_target

OPS = ("AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX")


@pytest.mark.parametrize(
    ("target", "family"),
    [
        ("rpi-pico", "thumb1-reference"),
        ("lm3s6965evb", "thumb2-reference"),
        ("mps2-an386", "thumb2-cmsis-nn"),
        ("nucleo-l4r5zi", "thumb2-cmsis-nn"),
        ("rpi4", None),
        ("android-arm64", None),
    ],
)
def test_family_per_core(target: str, family: str | None) -> None:
    assert footprint.family_of(load_target(target)) == family


def test_measured_tables_cover_every_builtin_tflm_has() -> None:
    from toolchain.emit.resolver import BUILTIN_METHODS

    assert set(footprint.KERNEL_FLASH_REFERENCE) == set(BUILTIN_METHODS)
    assert set(footprint.KERNEL_FLASH_CMSIS_NN) <= set(BUILTIN_METHODS)
    # CMSIS-NN keeps the reference path and adds optimized ones: never smaller for conv/fc
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        assert footprint.KERNEL_FLASH_CMSIS_NN[op] > footprint.KERNEL_FLASH_REFERENCE[op]


@pytest.mark.parametrize(
    ("ops", "cmsis_nn", "linked"),
    [  # measured: these ops linked together (Cortex-M4, see footprint's docstring)
        (OPS, False, 26_788),  # person_detect, reference kernels
        (OPS, True, 60_432),  # person_detect, CMSIS-NN kernels
        ((*OPS, "FULLY_CONNECTED"), False, 31_192),  # KWS
        ((*OPS, "FULLY_CONNECTED"), True, 71_016),
        (("FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE"), False, 13_548),  # AD
        (("FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE"), True, 21_428),
        (("UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"), False, 29_796),
        (("UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"), True, 43_120),
    ],
)
def test_kernel_estimate_is_near_the_linked_size(
    ops: tuple[str, ...], cmsis_nn: bool, linked: int
) -> None:
    est = footprint.kernels_flash(ops, cmsis_nn=cmsis_nn)
    assert 0.95 * linked <= est <= 1.2 * linked  # on the safe side, by at most a fifth


def test_soft_float_and_thumb1_cost_more() -> None:
    m3, _, note3 = footprint.runtime_estimate(load_target("lm3s6965evb"), OPS)
    m0, _, note0 = footprint.runtime_estimate(load_target("rpi-pico"), OPS)
    assert m0 > m3 and "soft-float" in note3 and "Thumb-1" in note0


def test_runtime_grows_with_the_ops_used() -> None:
    t = load_target("nucleo-l4r5zi")
    small, _, _ = footprint.runtime_estimate(t, ("RESHAPE",))
    big, _, note = footprint.runtime_estimate(t, OPS)
    assert big > small and "estimate" in note


def test_profile_figures_replace_the_estimate() -> None:
    t = load_target("nucleo-l4r5zi")
    mine = replace(t, memory=replace(t.memory, runtime_flash_bytes=12345, runtime_ram_bytes=678))
    assert footprint.runtime_estimate(mine, OPS) == (12345, 678, "from the target profile")


def test_profile_override_loads_from_toml(tmp_path: Path) -> None:
    board = tmp_path / "b.toml"
    board.write_text(
        'extends = "nucleo-l4r5zi"\n[memory]\nruntime_flash_bytes = 50000\nruntime_ram_bytes = 900\n'
    )
    from toolchain.targets import load_target as load

    t = load(str(board))
    assert (t.memory.runtime_flash_bytes, t.memory.runtime_ram_bytes) == (50000, 900)


def test_report_sums_and_budget() -> None:
    t = load_target("lm3s6965evb")
    r = footprint.memory_report(
        model_bytes=300_000, arena_bytes=90_000, golden_bytes=1000, ops=OPS, target=t
    )
    assert r.flash_total == sum(i.bytes for i in r.flash) and r.flash_total > 301_000
    assert r.ram_total == 90_000 + t.memory.stack_bytes + t.memory.heap_bytes + r.ram[-1].bytes
    assert not r.fits
    with pytest.raises(BudgetError, match="does not fit lm3s6965evb") as e:
        r.check()
    assert e.value.exit_code == 4 and "over by" in str(e.value)
    d = r.to_dict()
    assert d["flash"]["fits"] is False and d["flash"]["headroom"] < 0


def test_small_model_fits_and_no_target_is_unchecked() -> None:
    t = load_target("lm3s6965evb")
    r = footprint.memory_report(
        model_bytes=20_000, arena_bytes=8_000, golden_bytes=0, ops=OPS, target=t
    )
    assert r.fits
    r.check()
    bare = footprint.memory_report(
        model_bytes=10**9, arena_bytes=10**9, golden_bytes=0, ops=OPS, target=None
    )
    assert bare.fits and [i.name for i in bare.flash] == ["model"]
