"""Host tier: golden vectors — inputs from user data in either layout (float data quantized
the TFLite way) or seeded random ones, outputs from the host TFLM interpreter, C arrays that
compile and hold the same values, a deterministic golden.npz."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.emit_cxx import compile_cxx
from toolchain.emit import arena, golden, litert_check
from toolchain.emit.model_input import load, model_file
from toolchain.errors import DataError, InputFileError
from toolchain.tflite_model import TFLiteModel


@pytest.fixture(scope="module")
def kws(reference_dir: Path) -> TFLiteModel:
    return load(reference_dir / "mlperf_tiny/kws/kws_ref_model.tflite")  # int8 [1,49,10,1]


@pytest.fixture(scope="module")
def mnv2(reference_dir: Path) -> TFLiteModel:
    # int8 input [1,3,224,224]: NCHW in the model itself
    return load(
        reference_dir / "tflm_models/pytorch_to_tflite/mobilenet_v2_quantized_1x3x224x224.tflite"
    )


@pytest.fixture(scope="module")
def vww(reference_dir: Path) -> TFLiteModel:
    return load(reference_dir / "armzoo/visual_wake_words_micronet_vww2/vww2_50_50_INT8.tflite")


def test_random_inputs_are_seeded_and_span_the_range(kws: TFLiteModel) -> None:
    a = golden.random_inputs(kws, count=3, seed=0)[0]
    b = golden.random_inputs(kws, count=3, seed=0)[0]
    c = golden.random_inputs(kws, count=3, seed=1)[0]
    assert a.shape == (3, 1, 49, 10, 1) and a.dtype == np.int8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() == -128 and a.max() == 127


def test_float_data_is_quantized_like_tflite(kws: TFLiteModel, tmp_path: Path) -> None:
    t = kws.inputs[0]
    assert t.scale is not None and t.zero_point is not None
    x = np.array([0.5, 1.5, -0.5, 1e6], np.float64) * t.scale  # halves round away from 0
    data = np.zeros((2, 49, 10, 1), np.float64)  # float64: x / scale gives back exact halves
    data.reshape(2, -1)[0, :4] = x
    np.save(tmp_path / "d.npy", data)
    (q,), desc = golden.load_inputs(kws, tmp_path / "d.npy", count=5)
    assert q.shape == (2, 1, 49, 10, 1) and q.dtype == np.int8
    assert q.reshape(2, -1)[0, :4].tolist() == [t.zero_point + v for v in (1, 2, -1)] + [127]
    assert "2 sample(s) from d.npy" in desc and "quantized" in desc


def test_pytorch_layout_is_transposed(vww: TFLiteModel) -> None:
    (n, h, w, c) = vww.inputs[0].shape
    assert c == 1 and h == w == 50
    nhwc = np.arange(2 * h * w, dtype=np.int64).reshape(2, h, w, 1) % 256 - 128
    nchw = np.moveaxis(nhwc, -1, 1)  # (2, 1, 50, 50): a PyTorch batch
    (a,), desc = golden.load_inputs(vww, {"x": nchw.astype(np.int8)}, count=2)
    assert np.array_equal(a[:, 0], nhwc.astype(np.int8)) and "NCHW" in desc


def test_bad_golden_data(kws: TFLiteModel, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="shape"):
        golden.load_inputs(kws, np.zeros((2, 7), np.float32), count=1)
    with pytest.raises(DataError, match="NaN"):
        golden.load_inputs(kws, np.full((1, 49, 10, 1), np.nan, np.float32), count=1)
    with pytest.raises(DataError, match="range"):
        golden.load_inputs(kws, np.full((1, 49, 10, 1), 300, np.int32), count=1)
    with pytest.raises(DataError, match="the model has 1 input"):
        golden.load_inputs(kws, {"a": np.zeros(1), "b": np.zeros(1)}, count=1)
    with pytest.raises(InputFileError, match="no such"):
        golden.load_inputs(kws, tmp_path / "missing.npz", count=1)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read"):
        golden.load_inputs(kws, tmp_path / "junk.npy", count=1)


PRINT = r"""
#include <cstdio>
#include "kws_golden.h"
int main() {
  for (int k = 0; k < kKwsGoldenCount; ++k)
    for (int i = 0; i < kKwsGoldenOutput0Size; ++i) std::printf("%d\n", g_kws_golden_output0[k][i]);
  for (int k = 0; k < kKwsGoldenCount; ++k)
    for (int i = 0; i < kKwsGoldenInput0Size; ++i) std::printf("%d\n", g_kws_golden_input0[k][i]);
  return 0;
}
"""


def test_golden_c_arrays_hold_the_tflm_outputs(kws: TFLiteModel, tmp_path: Path) -> None:
    inputs = golden.random_inputs(kws, count=2)
    with model_file(kws) as mf:
        outputs = golden.run_tflm(mf, inputs, arena=arena.minimum_arena(kws))
        cmp = litert_check.check(mf, inputs, outputs, kernels=("reference",))
    assert cmp[0].exact  # TFLM's kernels are ports of LiteRT's reference kernels
    g = golden.GoldenSet("2 random samples", tuple(inputs), tuple(outputs))
    (hn, hb), (cn, cb) = golden.c_files(g, kws, name="kws", about=["t"])
    (tmp_path / hn).write_bytes(hb)
    (tmp_path / cn).write_bytes(cb)
    (tmp_path / "main.cc").write_text(PRINT)
    exe = compile_cxx("g++", tmp_path / "p", [tmp_path / "main.cc", tmp_path / cn], f"-I{tmp_path}")
    printed = [
        int(v)
        for v in subprocess.run(
            [str(exe)], capture_output=True, text=True, check=True
        ).stdout.split()
    ]
    expected = np.concatenate([outputs[0].reshape(-1), inputs[0].reshape(-1)]).tolist()
    assert printed == expected


def test_npz_is_deterministic_and_loadable(kws: TFLiteModel) -> None:
    inputs = golden.random_inputs(kws, count=1)
    g = golden.GoldenSet("x", tuple(inputs), (np.zeros((1, 1, 12), np.int8),))
    a, b = golden.npz_bytes(g), golden.npz_bytes(g)
    assert a == b
    with np.load(io.BytesIO(a), allow_pickle=False) as z:
        assert np.array_equal(z["input_0"], inputs[0]) and str(z["source"]) == "x"
    # and the bench stage can feed it back as golden data
    (back,), _ = golden.load_inputs(kws, {"input_0": inputs[0], "output_0": np.zeros(1)}, count=1)
    assert np.array_equal(back, inputs[0])


def test_nchw_model_takes_nchw_data(mnv2: TFLiteModel) -> None:
    data = np.zeros((1, 3, 224, 224), np.float32)
    (a,), desc = golden.load_inputs(mnv2, data, count=1)
    assert a.shape == (1, 1, 3, 224, 224) and "NCHW" not in desc


def test_litert_rejection_is_a_report_not_a_crash(reference_dir: Path) -> None:
    m = load(reference_dir / "tflm_models/person_detection/person_detect.tflite")
    inputs = golden.random_inputs(m, count=1)
    with model_file(m) as mf:
        outputs = golden.run_tflm(mf, inputs, arena=arena.minimum_arena(m))
        results = litert_check.check(mf, inputs, outputs)
    assert [r.status for r in results] == ["rejected", "rejected"]
    assert "quantized_dimension must be in range" in results[0].reason


def test_histogram() -> None:
    h = litert_check.histogram(np.array([0, 0, 1, 3, 20]), integer=True)
    assert h == {"0": 2, "1": 1, "3": 1, ">8": 1}
    f = litert_check.histogram(np.array([0.0, 1e-7, 0.5, 3.0]), integer=False)
    assert f == {"0": 1, "(0, 1e-06]": 1, "(0.01, 1]": 1, ">1": 1}
