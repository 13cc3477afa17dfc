"""Host tier: real conversions (torch → ONNX → onnx2tf → TFLiteConverter int8 → LiteRT).

Each converted model is a session fixture shared by the tests that look at it; a conversion
costs 5–30 s on two shared cores. The nets (tests/support/convert_nets.py) cover depthwise
convs, ReLU6, hardswish, squeeze-excite gating, concat, max/avg/global pooling, flatten →
linear, softmax, nearest/bilinear upsampling, 1-D convs, an FC autoencoder, and several
inputs and outputs; a small CNN is trained on scikit-learn's digits for a real accuracy check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.support import convert_nets as nets
from toolchain.artifacts import ConvertResult
from toolchain.cli import main
from toolchain.convert import QuantOptions, convert, run_tflite
from toolchain.convert.validate import sqnr_db
from toolchain.tflite_model import TFLiteModel

NETS = Path(nets.__file__)
ROOT = Path(__file__).resolve().parents[2]
SQNR_FLOOR_DB = 30.0  # random-weight nets with realistic BN statistics land at 33–44 dB
RNG = np.random.default_rng(1234)


def _normal(n: int, *shape: int) -> np.ndarray:
    return RNG.standard_normal((n, *shape)).astype(np.float32)


def _clean_int8(report: dict[str, Any]) -> None:
    lint = report["lint"]
    assert lint["problems"] == []
    assert lint["TRANSPOSE"] == 0 and lint["DEQUANTIZE"] == 0


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("convert-cache")


@pytest.fixture(scope="session")
def mobile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mobile-data")
    files = {"calib": d / "calib.npy", "val": d / "val.npy", "labels": d / "labels.npy"}
    np.save(files["calib"], _normal(48, 3, 32, 32))
    np.save(files["val"], _normal(40, 3, 32, 32))
    np.save(files["labels"], RNG.integers(0, 10, 40))
    return files


def _mobile_argv(
    files: dict[str, Path], out: Path, cache_dir: Path, *, labels: bool = True
) -> list[str]:
    """``edgedeploy convert`` arguments for MobileBlocks on the session's data."""
    argv = [
        "-q",
        "convert",
        f"{NETS}:mobile_blocks",
        "--calib",
        str(files["calib"]),
        "--val",
        str(files["val"]),
        "--out",
        str(out),
        "--cache-dir",
        str(cache_dir),
    ]
    return [*argv, "--labels", str(files["labels"])] if labels else argv


@pytest.fixture(scope="session")
def mobile(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, mobile_files: dict[str, Path]
) -> Path:
    """MobileBlocks converted through the CLI, as a user would."""
    out = tmp_path_factory.mktemp("mobile-out")
    rc = main(_mobile_argv(mobile_files, out, cache_dir))
    assert rc == 0
    return out


def test_cli_writes_model_and_report(mobile: Path) -> None:
    assert sorted(p.name for p in mobile.iterdir()) == ["model_int8.tflite", "report.json"]
    report = json.loads((mobile / "report.json").read_text())
    model = TFLiteModel.from_file(mobile / "model_int8.tflite")
    assert report["tflite_bytes"] == model.size
    assert report["ops"] == model.op_histogram()
    for op in (
        "DEPTHWISE_CONV_2D",
        "HARD_SWISH",
        "LOGISTIC",
        "MUL",
        "CONCATENATION",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "MEAN",
        "FULLY_CONNECTED",
        "SOFTMAX",
    ):
        assert op in report["ops"], op
    _clean_int8(report)
    assert report["lint"]["QUANTIZE"] == 0
    assert report["transposes_folded"] == 1 and report["fold_check"].startswith("bit-exact")
    (inp,), (out,) = report["inputs"], report["outputs"]
    assert inp["layout"] == "NHWC" and inp["shape"] == [1, 32, 32, 3] and inp["dtype"] == "int8"
    assert inp["torch_shape"] == [1, 3, 32, 32] and inp["perm"] == [0, 2, 3, 1]
    assert out["dtype"] == "int8" and out["scale"] > 0 and isinstance(out["zero_point"], int)
    fid = report["fidelity"]["output"]
    assert fid["sqnr_db"] >= SQNR_FLOOR_DB and fid["cosine"] > 0.999
    assert fid["top1_agreement"] >= 0.9 and fid["samples"] == 40
    assert set(report["accuracy"]) >= {"float", "int8", "drop"}
    for stage in ("load model", "export", "onnx2tf", "quantize", "validate", "total"):
        assert report["timings_s"][stage] >= 0
    assert report["export_max_abs_err"] < 1e-4
    # onnx2tf ran with strict mode off (fast) and its float model passed the check
    assert report["conversion"]["onnx2tf_strict_mode"] == "off"
    assert report["conversion"]["onnx2tf_strict_fallback"] == []
    assert report["onnx2tf_max_rel_err"] <= 1e-3


def test_per_layer_table_names_pytorch_modules(mobile: Path) -> None:
    report = json.loads((mobile / "report.json").read_text())
    rows = report["layers"]
    assert len(rows) == sum(report["ops"].values())
    matched = [r for r in rows if r["sqnr_db"] is not None]
    assert len(matched) >= len(rows) - 3  # PAD / RESHAPE have no ONNX twin
    modules = {r["module"] for r in matched}
    assert {"stem.0", "dw.0", "se.fc1", "head"} <= modules
    worst = report["worst_layers"]
    assert worst and worst[0]["drop_db"] == max(
        r["drop_db"] for r in rows if r["drop_db"] is not None
    )


def test_run_tflite_feeds_the_right_bytes(mobile: Path, mobile_files: dict[str, Path]) -> None:
    """The helper quantizes/transposes PyTorch-layout inputs; its outputs match PyTorch."""
    x = np.load(mobile_files["val"])[:8]
    got = run_tflite(mobile / "model_int8.tflite", x)[0]
    with torch.no_grad():
        want = nets.mobile_blocks()(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (8, 10)
    assert sqnr_db(want, got) >= SQNR_FLOOR_DB


def test_cached_rerun_needs_neither_torch_nor_tensorflow(
    mobile: Path, mobile_files: dict[str, Path], cache_dir: Path, tmp_path: Path
) -> None:
    """The same conversion again (same source file, data, options) comes from the cache
    without importing torch or TensorFlow — CLI start-up included: that is what makes an
    unchanged re-run take about a second."""
    out = tmp_path / "again"
    argv = _mobile_argv(mobile_files, out, cache_dir)
    code = (
        "import json, sys\n"
        "from toolchain.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, "
        "'tf': 'tensorflow' in sys.modules}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout.strip().splitlines()[-1])
    assert status == {"rc": 0, "torch": False, "tf": False}, res.stderr
    assert (out / "model_int8.tflite").read_bytes() == (mobile / "model_int8.tflite").read_bytes()
    assert (out / "report.json").read_text() == (mobile / "report.json").read_text()


def test_fidelity_gates_fail_cleanly_from_cache(
    mobile: Path,
    mobile_files: dict[str, Path],
    cache_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "gated"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    base = _mobile_argv(mobile_files, out, cache_dir, labels=False)
    assert main([*base, "--labels", str(mobile_files["labels"]), "--min-sqnr", "80"]) == 3
    err = capsys.readouterr().err
    assert "output 'output': int8 SQNR" in err and "below --min-sqnr 80 dB" in err
    assert "layers losing the most" in err
    assert main([*base, "--max-accuracy-drop", "1"]) == 2  # no labels
    assert "needs labels" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# --- several inputs and outputs, upsampling, a 4-D output --------------------------------------


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> ConvertResult:
    return convert(
        nets.up_net(),
        calib=[_normal(48, 1, 16, 16), _normal(48, 6)],
        val={"vec": _normal(24, 6), "img": _normal(24, 1, 16, 16)},
        input_shapes=[(1, 1, 16, 16), (1, 6)],
        out_dir=tmp_path_factory.mktemp("up-out"),
        cache_dir=cache_dir,
    )


def test_multi_input_multi_output(up: ConvertResult) -> None:
    assert [s.name for s in up.inputs] == ["img", "vec"]
    assert [s.name for s in up.outputs] == ["seg", "logits", "emb"] or [
        s.name for s in up.outputs
    ] == ["output_0", "output_1", "output_2"]
    img, vec = up.inputs
    assert img.layout == "NHWC" and vec.layout == "NC"
    seg = up.outputs[0]
    assert seg.torch_shape == (1, 4, 16, 16) and seg.shape == (1, 16, 16, 4)
    assert seg.layout == "NHWC"  # onnx2tf's trailing TRANSPOSE was dropped, the spec says so
    model = TFLiteModel.from_file(up.tflite_path)
    assert sorted(s.tflite_index for s in up.inputs) == [0, 1]
    for s in up.outputs:
        assert model.outputs[s.tflite_index].shape == s.shape
    for op in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "CONCATENATION", "MEAN"):
        assert op in up.report["ops"]
    _clean_int8(up.report)
    # the one QUANTIZE is an int8 → int8 requantization (a concat input used elsewhere at
    # another scale, which TFLM's int8 CONCATENATION requires), not a float boundary
    quant = [op for op in model.operators if op.name == "QUANTIZE"]
    assert len(quant) <= 1
    for op in quant:
        assert {model.main.tensors[t].dtype for t in (*op.inputs, *op.outputs)} == {"int8"}
    for name, f in up.report["fidelity"].items():
        assert f["sqnr_db"] >= SQNR_FLOOR_DB, name


def test_multi_io_outputs_match_pytorch(up: ConvertResult) -> None:
    img, vec = _normal(6, 1, 16, 16), _normal(6, 6)
    got = run_tflite(up, [img, vec])
    with torch.no_grad():
        want = nets.up_net()(torch.from_numpy(img), torch.from_numpy(vec))
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        assert sqnr_db(w.numpy(), g) >= SQNR_FLOOR_DB


# --- 1-D convs and an FC autoencoder ------------------------------------------------------------


def test_conv1d_and_fc_autoencoder(tmp_path: Path, cache_dir: Path) -> None:
    res = convert(
        nets.signal_net(),
        calib=[_normal(48, 4, 32), _normal(48, 640)],
        input_shapes=[(1, 4, 32), (1, 640)],
        out_dir=tmp_path,
        cache_dir=cache_dir,
    )
    wave, spec = res.inputs
    assert wave.layout == "NWC" and wave.shape == (1, 32, 4) and spec.layout == "NC"
    _clean_int8(res.report)
    assert res.report["lint"]["QUANTIZE"] == 0 and res.report["transposes_folded"] == 1
    assert res.report["ops"]["FULLY_CONNECTED"] >= 5
    for name, f in res.report["fidelity"].items():
        assert f["sqnr_db"] >= SQNR_FLOOR_DB, name


# --- real data: a CNN trained on scikit-learn's digits --------------------------------------------


def _train_digits() -> tuple[torch.nn.Module, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1300], y[:1300], x[1300:], y[1300:]
    torch.manual_seed(0)
    model = nets.DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only fight over the shared cores
    try:
        for _ in range(12):
            for i in range(0, len(xt), 64):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xt[i : i + 64]), yt[i : i + 64])
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), xtr, ytr, xte, yte


def test_digits_int8_accuracy_within_half_a_point(tmp_path: Path, cache_dir: Path) -> None:
    model, xtr, _, xte, yte = _train_digits()
    res = convert(
        model,
        calib=xtr[:200],
        val=xte,
        labels=yte,
        input_shapes=[(1, 1, 8, 8)],
        out_dir=tmp_path,
        cache_dir=cache_dir,
        max_accuracy_drop=0.5,
    )
    acc = res.report["accuracy"]
    assert acc["samples"] == len(yte) == 497
    assert acc["float"] >= 95.0, acc  # it really learned
    assert abs(acc["float"] - acc["int8"]) <= 0.5, acc
    assert res.report["fidelity"]["output"]["sqnr_db"] >= SQNR_FLOOR_DB
    _clean_int8(res.report)


# --- options ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_calib() -> np.ndarray:
    return _normal(32, 2, 4, 4)


def _tiny(
    tmp: Path,
    calib: np.ndarray,
    cache_dir: Path,
    *,
    source: str = "module",
    cache: bool = True,
    strategy: Any = None,
    **opts: Any,
) -> ConvertResult:
    """TinyNet from a module in memory, a TorchScript file or a torch.export program;
    ``opts`` are QuantOptions fields."""
    model: Any = nets.tiny_net()
    example = torch.zeros(1, 2, 4, 4)
    if source == "torchscript":
        model = tmp / "tiny.pt"
        torch.jit.save(torch.jit.trace(nets.tiny_net(), example), str(model))
    elif source == "export":
        model = tmp / "tiny.pt2"
        torch.export.save(torch.export.export(nets.tiny_net(), (example,)), str(model))
    return convert(
        model,
        calib=calib,
        input_shapes=None if source == "export" else [(1, 2, 4, 4)],  # .pt2 brings its own
        out_dir=tmp / "out",
        options=QuantOptions(**opts),
        cache=cache,
        cache_dir=cache_dir,
        strategy=strategy,
    )


@pytest.fixture(scope="session")
def tiny_default(
    tmp_path_factory: pytest.TempPathFactory, tiny_calib: np.ndarray, cache_dir: Path
) -> ConvertResult:
    return _tiny(tmp_path_factory.mktemp("tiny"), tiny_calib, cache_dir)


def test_conversion_is_deterministic(
    tiny_default: ConvertResult, tiny_calib: np.ndarray, tmp_path: Path, cache_dir: Path
) -> None:
    again = _tiny(tmp_path, tiny_calib, cache_dir, cache=False)
    assert not again.cached
    assert again.tflite_path.read_bytes() == tiny_default.tflite_path.read_bytes()


def test_default_strategy_equals_the_plain_recipe_where_no_rewrite_applies(
    tiny_default: ConvertResult, tiny_calib: np.ndarray, tmp_path: Path, cache_dir: Path
) -> None:
    """The rewrites and the float check change nothing for a net they do not apply to:
    the default conversion is byte for byte the plain recipe's (no regression)."""
    from toolchain.convert.strategy import Strategy

    plain = _tiny(tmp_path, tiny_calib, cache_dir, cache=False, strategy=Strategy.plain())
    assert plain.report["conversion"]["rewrites_applied"] == []
    assert plain.tflite_path.read_bytes() == tiny_default.tflite_path.read_bytes()


def test_uint8_io_per_tensor_weights_from_torchscript(
    tiny_default: ConvertResult, tiny_calib: np.ndarray, tmp_path: Path, cache_dir: Path
) -> None:
    res = _tiny(
        tmp_path,
        tiny_calib,
        cache_dir,
        source="torchscript",
        input_dtype="uint8",
        output_dtype="uint8",
        per_channel=False,
    )
    (i,), (o,) = res.inputs, res.outputs
    assert i.dtype == o.dtype == "uint8" and i.zero_point is not None and i.scale
    # uint8 ↔ int8 at the edges are integer QUANTIZE ops, no float anywhere
    assert res.report["lint"]["problems"] == [] and res.report["lint"]["DEQUANTIZE"] == 0
    model = TFLiteModel.from_file(res.tflite_path)
    conv = next(op for op in model.operators if op.name == "CONV_2D")
    weights = model.main.tensors[conv.inputs[1]]
    assert weights.dtype == "int8" and len(weights.scales) == 1  # per-tensor
    assert _weight_scales(res, "FULLY_CONNECTED") == 1
    assert _weight_scales(tiny_default, "CONV_2D") == 4  # per-channel convs by default
    assert _weight_scales(tiny_default, "FULLY_CONNECTED") == 1  # per-tensor dense by default
    assert res.report["fidelity"]["output"]["sqnr_db"] >= SQNR_FLOOR_DB - 5


def _weight_scales(res: ConvertResult, op_name: str) -> int:
    model = TFLiteModel.from_file(res.tflite_path)
    op = next(op for op in model.operators if op.name == op_name)
    return len(model.main.tensors[op.inputs[1]].scales)


def test_per_channel_dense_layers_on_request(
    tiny_default: ConvertResult, tiny_calib: np.ndarray, tmp_path: Path, cache_dir: Path
) -> None:
    res = _tiny(tmp_path, tiny_calib, cache_dir, per_channel_dense=True)
    assert _weight_scales(res, "CONV_2D") == 4
    assert _weight_scales(res, "FULLY_CONNECTED") == 6  # one per output unit
    # the per-channel scales and zero points are stored in the file
    assert res.tflite_bytes > tiny_default.tflite_bytes
    assert res.report["options"]["per_channel_dense"] is True


def test_int16x8_float_io_from_torch_export(
    tiny_default: ConvertResult, tiny_calib: np.ndarray, tmp_path: Path, cache_dir: Path
) -> None:
    res = _tiny(
        tmp_path,
        tiny_calib,
        cache_dir,
        source="export",
        activations="int16",
        input_dtype="float32",
        output_dtype="float32",
    )
    (i,), (o,) = res.inputs, res.outputs
    assert i.dtype == o.dtype == "float32" and i.scale is None and o.scale is None
    assert res.report["lint"]["QUANTIZE"] == 1 and res.report["lint"]["DEQUANTIZE"] == 1
    assert res.report["lint"]["problems"] == []  # float only at the edges
    model = TFLiteModel.from_file(res.tflite_path)
    conv = next(op for op in model.operators if op.name == "CONV_2D")
    assert model.main.tensors[conv.outputs[0]].dtype == "int16"
    # int16 activations beat int8 ones (the int8 weights now bound the error)
    s16 = res.report["fidelity"]["output"]["sqnr_db"]
    s8 = tiny_default.report["fidelity"]["output"]["sqnr_db"]
    assert s16 > s8 + 3, (s16, s8)


def test_mse_calibration_ranges_narrow_activation_scales(
    tiny_default: ConvertResult, tiny_calib: np.ndarray, tmp_path: Path, cache_dir: Path
) -> None:
    from toolchain.convert.strategy import Strategy

    res = _tiny(tmp_path, tiny_calib, cache_dir, strategy=Strategy(calibration_range="mse"))
    assert res.report["conversion"]["calibration_range"] == "mse"

    def scales(r: ConvertResult) -> list[float]:
        model = TFLiteModel.from_file(r.tflite_path)
        return [model.main.tensors[op.outputs[0]].scale or 0.0 for op in model.operators]

    # each range is narrowed to its optimum or kept, never widened
    assert all(a <= b for a, b in zip(scales(res), scales(tiny_default), strict=True))
    assert res.report["fidelity"]["output"]["sqnr_db"] >= SQNR_FLOOR_DB - 5
