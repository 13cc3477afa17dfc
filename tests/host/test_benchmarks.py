"""The benchmark harness itself (not the measurements): dispatch, README sections, tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import common, convert_mlperf, run


def test_unknown_benchmark_is_refused(capsys) -> None:
    assert run.main(["nope"]) == 2
    assert "known: convert" in capsys.readouterr().err
    assert run.main(["convert", "x", "--", "--cases", "ic"]) == 2


def test_readme_sections_are_replaced_or_appended(tmp_path, monkeypatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# B\n\n<!-- a:begin -->\nold\n<!-- a:end -->\n\ntail\n")
    monkeypatch.setattr(common, "README", readme)
    common.update_readme("a", "new\n")
    common.update_readme("b", "other\n")
    assert readme.read_text() == (
        "# B\n\n<!-- a:begin -->\nnew\n<!-- a:end -->\n\ntail\n\n<!-- b:begin -->\nother\n<!-- b:end -->\n"
    )


def _row(case: str, **extra) -> dict:
    row = {
        "case": case,
        "title": case.upper(),
        "weights": "x/w.h5",
        "same_weights_as_reference": True,
        "note": "",
        "bytes": {"ours": 100, "reference": 110, "ratio": 100 / 110},
        "arena": {"ours": 64, "reference": 64, "ratio": 1.0},
        "ops": {"ours": {"CONV_2D": 2}, "reference": {"CONV_2D": 2, "RESHAPE": 1}},
        "layout_ops": {"TRANSPOSE": 0, "QUANTIZE": 0, "DEQUANTIZE": 0},
        "sqnr_db": {"ours_vs_float": 40.0, "reference_vs_float": 30.0, "ours_vs_reference": 29.0,
                    "report": 40.0, "report_pre_softmax": 41.0},
        "timings_s": {"export": 1.0, "total": 9.0},
        "targets": {"sqnr_ge_38db": True, "bytes_le_1.05x": True},
    }  # fmt: skip
    row.update(extra)
    return row


def test_markdown_table_from_a_result() -> None:
    result = {
        "date": "2026-01-01",
        "machine": "test",
        "cases": [
            _row("ic", top1_agreement={"ours_vs_reference": 0.9}),
            _row("ad", ad_mean_mse_196_windows={"float": 1.0, "ours": 1.1, "reference": 1.2}),
        ],
        "speed": {
            "case": "ic", "how": "cli", "repeats": 1, "cpus": 2, "loadavg_1min_at_start": [1.0],
            "median_s": {"hand_recipe": 10.0, "edgedeploy_cold": 7.0, "edgedeploy_cached": 1.5},
            "median_cpu_s": {"hand_recipe": 9.0, "edgedeploy_cold": 6.0,
                             "edgedeploy_cached": 1.0},
            "ratio_cold_vs_hand": 0.7,
            "targets": {"cold_le_0.8x_hand": True, "cached_le_2s": True},
        },
    }  # fmt: skip
    text = convert_mlperf.markdown(result)
    assert "| IC (`w.h5`) | 100 / 110 (0.909) | 64 / 64 (1.000) | 40.0 (logits 41.0) |" in text
    assert "top-1 90 %, SQNR 29.0 dB" in text
    assert "MSE 1.100 vs 1.200 (float 1.000)" in text
    assert "| 10.0 (9.0 CPU s) | 7.0 (6.0 CPU s) | 0.70 ✅ | 1.50 (1.0 CPU s) ✅ |" in text


def test_saved_result_renders() -> None:
    saved = common.RESULTS / f"{convert_mlperf.RESULT}.json"
    if not saved.is_file():
        pytest.skip("no saved benchmark result")
    result = json.loads(saved.read_text())
    text = convert_mlperf.markdown(result)
    assert text.count("\n| ") >= len(result["cases"]) + 2


def test_cases_name_existing_reference_files(reference_dir: Path) -> None:
    for case in convert_mlperf.CASES:
        assert (reference_dir / "mlperf_tiny" / case.reference).is_file()
        if case.weights is not None:
            assert (reference_dir / "mlperf_tiny" / case.weights).exists()


def test_qemu_soft_float_variant_and_saved_result(tmp_path: Path) -> None:
    from benchmarks import qemu_firmware
    from toolchain.targets import load_target

    soft = qemu_firmware.soft_float_variant("mps2-an386", tmp_path)
    base = load_target("mps2-an386")
    assert soft.name == "mps2-an386-soft-float" and soft.cpu.core == base.cpu.core
    assert (soft.cpu.fpu, soft.cpu.float_abi) == ("none", "soft")
    assert "-mfloat-abi=soft" in soft.cpu.gcc_flags() and soft.transport == base.transport
    saved = common.RESULTS / "qemu_firmware.json"
    if saved.is_file():
        result = json.loads(saved.read_text())
        text = qemu_firmware.render(result)
        assert text.count("\n| ") == 2 + len(result["selftest"]) + len(result["tflm"])  # + headers
