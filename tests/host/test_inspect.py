"""Host tier: `edgedeploy inspect` and the graph lint on the third-party reference models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.convert.graphlint import check, lint
from toolchain.errors import GraphLintError
from toolchain.tflite_model import TFLiteModel


def test_inspect_reads_every_reference_model(
    reference_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(reference_dir.rglob("*.tflite"))
    assert len(files) >= 20
    for f in files:
        assert main(["inspect", str(f), "--json"]) == 0, f
        info = json.loads(capsys.readouterr().out)
        model = TFLiteModel.from_file(f)
        assert info["bytes"] == f.stat().st_size
        assert info["ops"] == model.op_histogram()
        sg = info["subgraphs"][0]
        assert [t["shape"] for t in sg["inputs"]] == [list(t.shape) for t in model.inputs]
        assert len(sg["tensors"]) == len(model.main.tensors)


def test_inspect_tables_show_quantization(
    reference_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ic = reference_dir / "mlperf_tiny" / "ic" / "pretrainedResnet_quant.tflite"
    assert main(["inspect", str(ic)]) == 0
    out = capsys.readouterr().out
    assert "integer-only" in out and "CONV_2D" in out and "1×32×32×3" in out
    assert "scale 1, zp -128" in out  # the input of the reference IC model
    assert "per-channel axis 0" in out


def test_lint_on_reference_models(reference_dir: Path) -> None:
    ok = lint(TFLiteModel.from_file(reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite"))
    assert ok.ok and ok.counts["TRANSPOSE"] == 0
    f32 = lint(TFLiteModel.from_file(reference_dir / "mlperf_tiny/ic/pretrainedResnet.tflite"))
    assert not f32.ok and "computes in float" in f32.problems[0]
    vela = lint(
        TFLiteModel.from_file(
            reference_dir / "tflm_models/person_detection/person_detect_vela.tflite"
        )
    )
    assert any("CUSTOM op" in p for p in vela.problems)
    with pytest.raises(GraphLintError, match="not a clean integer graph"):
        check(f32, source="pretrainedResnet.tflite")
    pt = lint(
        TFLiteModel.from_file(
            reference_dir / "tflm_models/pytorch_to_tflite/"
            "mobilenet_v2_quantized_1x3x224x224.tflite"
        )
    )
    assert pt.counts["TRANSPOSE"] >= 1  # a PyTorch-origin model with its layout transpose


def test_inspect_rejects_what_is_not_tflite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert main(["inspect", str(bad)]) == 1
    assert "not a TFLite flatbuffer" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.tflite")]) == 1
    assert "no such model file" in capsys.readouterr().err
