"""Host tier: the live-TFLM part of benchmarks/compiled_qemu.py without QEMU or a TFLM
library — which libraries it takes (options over environment, an include directory
required), the ratios against TFLM's real RAM (data + bss + measured stack peak) and the
side-by-side table that says, per column, whether TFLM was measured live or recorded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks import compiled_qemu as cq


def _args(**kw: str | None) -> argparse.Namespace:
    base = {"tflm_lib_ref": None, "tflm_lib_cmsisnn": None, "tflm_include": None}
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("EDGEDEPLOY_TFLM_LIB_REF", "EDGEDEPLOY_TFLM_LIB_CMSISNN", "EDGEDEPLOY_TFLM_INCLUDE"):
        monkeypatch.delenv(v, raising=False)


def test_libraries_from_options_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib, other, inc = tmp_path / "ref.a", tmp_path / "nn.a", tmp_path / "tflite-micro"
    lib.write_bytes(b"!<arch>\n")
    other.write_bytes(b"!<arch>\n")
    inc.mkdir()
    assert cq.tflm_libraries(_args()) == ({}, None)
    monkeypatch.setenv("EDGEDEPLOY_TFLM_LIB_CMSISNN", str(other))
    monkeypatch.setenv("EDGEDEPLOY_TFLM_INCLUDE", str(inc))
    libs, got_inc = cq.tflm_libraries(_args(tflm_lib_ref=str(lib)))
    assert libs == {"ref": lib, "cmsisnn": other} and got_inc == inc


def test_library_without_include_or_missing_is_refused(tmp_path: Path) -> None:
    lib = tmp_path / "ref.a"
    lib.write_bytes(b"!<arch>\n")
    with pytest.raises(SystemExit, match="--tflm-include"):
        cq.tflm_libraries(_args(tflm_lib_ref=str(lib)))
    with pytest.raises(SystemExit, match="no such file"):
        cq.tflm_libraries(_args(tflm_lib_ref=str(tmp_path / "nope.a"), tflm_include=str(tmp_path)))


def _row() -> dict:
    return {
        "key": "kws",
        "model": "KWS DS-CNN",
        "file": "not/in/the/recorded/results.tflite",
        "instructions": 8_000_000,
        "flash_bytes": 50_000,
        "ram_bytes": 20_000,
        "arena_bytes": 16_000,
    }


def _live(ram_data_bss: int, stack: int) -> dict:
    return {
        "instructions": 10_000_000,
        "flash_bytes": 100_000,
        "ram_linked_bytes": ram_data_bss + 24_576,
        "ram_data_bss_bytes": ram_data_bss,
        "stack_peak_bytes": stack,
        "ram_bytes": ram_data_bss + stack,
        "arena_used_bytes": 22_000,
        "outputs_equal_compiled": True,
    }


def test_ratios_and_table_use_tflm_real_ram() -> None:
    rows = [_row()]
    live = {"ref": {"kws": {**_live(22_000, 3_000), "ram_tight_arena_bytes": 24_000}}}
    cq.compare(rows, live["ref"])
    cq.compare_live(rows, live)
    # ours 20,000 B against TFLM's 25,000 B real RAM: 0.8 (the bound alone would say 0.909)
    assert rows[0]["vs_tflm_ref"]["ram_vs_real"] == 0.8
    assert rows[0]["vs_tflm"]["ram_vs_real"] == 0.8
    assert rows[0]["vs_tflm_ref"]["ram_vs_data_bss"] == pytest.approx(0.909, abs=1e-3)
    assert rows[0]["vs_tflm_ref"]["instructions"] == 0.8
    # no live CMSIS-NN library and no recorded row for this file: nothing to compare with
    assert rows[0].get("tflm_cmsisnn") is None
    result = {
        "tflm_sources": {"ref": "measured live with /x/ref.a", "cmsisnn": "recorded ..."},
        "rows": rows,
    }
    table = "\n".join(cq.readme_live(result))
    assert "measured live with /x/ref.a" in table
    line = next(x for x in table.splitlines() if x.startswith("| KWS"))
    assert "25,000 (22,000 + 3,000) | 0.80× ✓" in line
    assert "(0.83× of TFLM cut to its used arena)" in line and "yes / —" in line


def test_ram_target_missed_is_marked() -> None:
    rows = [_row()]
    live = {"ref": {"kws": _live(22_000, 1_000)}}  # 20,000 / 23,000 = 0.87 > 0.8
    cq.compare_live(rows, live)
    line = next(x for x in cq.readme_live({"rows": rows}) if x.startswith("| KWS"))
    assert "23,000 (22,000 + 1,000) | 0.87× ✗" in line
