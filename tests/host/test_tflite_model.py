"""Host tier: the TensorFlow-free .tflite reader on the reference models and on broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.errors import InputFileError, TFLiteModelError
from toolchain.tflite_model import TFLiteModel


def test_reads_mlperf_kws(reference_dir: Path) -> None:
    m = TFLiteModel.from_file(reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite")
    assert m.size == 53936
    (inp,) = m.inputs
    assert inp.shape == (1, 49, 10, 1) and inp.dtype == "int8" and inp.scale is not None
    assert m.op_histogram() == {
        "AVERAGE_POOL_2D": 1,
        "CONV_2D": 5,
        "DEPTHWISE_CONV_2D": 4,
        "FULLY_CONNECTED": 1,
        "RESHAPE": 1,
        "SOFTMAX": 1,
    }
    convs = [m.main.tensors[op.inputs[1]] for op in m.operators if op.name == "CONV_2D"]
    assert all(w.per_channel and w.dtype == "int8" and w.is_constant for w in convs)


def test_person_detect_ops_and_custom_ops(reference_dir: Path) -> None:
    pd = reference_dir / "tflm_models/person_detection"
    m = TFLiteModel.from_file(pd / "person_detect.tflite")
    assert m.op_names() == [
        "AVERAGE_POOL_2D",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "RESHAPE",
        "SOFTMAX",
    ]
    vela = TFLiteModel.from_file(pd / "person_detect_vela.tflite")
    (op,) = {o.name: o for o in vela.operators}.values()
    assert op.is_custom and op.custom_code == "ethos-u" and not op.is_flex


def test_missing_file() -> None:
    with pytest.raises(InputFileError, match="no such model file"):
        TFLiteModel.from_file("/nonexistent/model.tflite")


@pytest.mark.parametrize("cut", [4, 100, 1000, 30000, 53000])
def test_truncated_files_are_rejected(reference_dir: Path, tmp_path: Path, cut: int) -> None:
    data = (reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite").read_bytes()
    with pytest.raises(TFLiteModelError):
        TFLiteModel.from_bytes(data[:cut])


def test_wrong_identifier() -> None:
    with pytest.raises(TFLiteModelError, match="file identifier"):
        TFLiteModel.from_bytes(b"\x1c\x00\x00\x00ONNX" + bytes(100))
