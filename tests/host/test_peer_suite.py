"""The development suite of real third-party architectures (../shared/peer_models).

Quick tests: the input-dependent SQNR metric, the peer-suite benchmark's table and summary,
its skip without the suite. The conversions of representative suite models are ``slow``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import peer_suite
from toolchain.convert import validate


def test_input_dependent_sqnr_ignores_a_reproduced_constant() -> None:
    rng = np.random.default_rng(0)
    varying = rng.normal(size=(200, 10))
    ref = 20.0 + varying  # a large constant offset on top of what depends on the input
    test = ref + 0.1 * rng.normal(size=ref.shape)
    plain = validate.sqnr_db(ref, test)
    centered, share = validate.centered_sqnr_db(ref, test)
    assert plain is not None and centered is not None and share is not None
    # the constant inflates the plain figure by about 10·log10(401) ≈ 26 dB
    assert plain - centered > 20.0
    assert abs(centered - 20.0) < 1.0
    assert 0.0 < share < 0.01
    # a constant bias error shows in the plain SQNR only
    biased, share2 = validate.centered_sqnr_db(ref, ref + 1.0)
    assert biased is not None and biased > 200.0 and share2 == share  # rounding noise only
    assert validate.sqnr_db(ref, ref + 1.0) < 30.0
    # a constant output: no input-dependent part at all
    const = np.tile(rng.normal(size=(1, 10)), (50, 1))
    assert validate.centered_sqnr_db(const, const + 0.01) == (None, 0.0)
    f = validate.fidelity(ref.astype(np.float32), test.astype(np.float32))
    assert f["sqnr_input_dependent_db"] == pytest.approx(centered, abs=0.01)
    assert f["input_dependent_power"] == pytest.approx(share, abs=1e-4)
    assert f["top1_agreement"] is not None


def _row(name: str, **kw: object) -> dict:
    row = {
        "input": [1, 3, 96, 96], "ok": True, "clean": True, "float_ops": [],
        "counts": {"TRANSPOSE": 0, "QUANTIZE": 0, "DEQUANTIZE": 0},
        "top1_float": 96.0, "top1_int8": 95.8, "top1_drop": 0.2, "top1_agreement": 0.99,
        "sqnr_db": 30.0, "sqnr_input_dependent_db": 29.0, "input_dependent_power": 0.9,
        "tflite_bytes": 100_000, "time_s": 12.0, "activations": "int8", "attempt": "primary",
        "rewrites": ["fold-constants"], "ops": {"CONV_2D": 3},
    }  # fmt: skip
    row.update(kw)
    return row


def test_summary_and_table_count_only_models_that_learned() -> None:
    rows = {
        "a": _row("a"),
        "b": _row(
            "b",
            clean=False,
            counts={"TRANSPOSE": 4, "QUANTIZE": 0, "DEQUANTIZE": 0},
            top1_drop=2.0,
            sqnr_input_dependent_db=15.0,
        ),  # fmt: skip
        "flat": _row(
            "flat",
            input_dependent_power=0.0,
            sqnr_input_dependent_db=None,
            sqnr_db=130.0,
            top1_drop=0.0,
        ),  # fmt: skip
        "bad": {
            "input": [1, 3, 96, 96],
            "ok": False,
            "clean": False,
            "error": "X: y",
            "time_s": 1.0,
        },  # fmt: skip
    }
    s = peer_suite.summarize(rows)
    assert (s["models"], s["converted"], s["clean"], s["learned"]) == (4, 3, 2, 2)
    assert s["within_0_5_points"] == 1 and s["worst_top1_drop"] == 2.0
    assert s["median_sqnr_db"] == 30.0  # the constant-output model's 130 dB is not counted
    assert s["min_sqnr_input_dependent_db"] == 15.0
    assert s["input_dependent_at_least_25_db"] == 1
    md = peer_suite.markdown({"date": "d", "machine": "m", "runs": {"after": rows},
                              "summary": {"after": s}})  # fmt: skip
    assert "| b | 96 | NO | 4/0/0 | - |" in md
    assert "did not learn" in md.split("| flat |")[1].splitlines()[0]
    assert "| bad | 96 | FAIL |" in md


def test_gated_run_reports_what_the_fallback_cost() -> None:
    runs = peer_suite.strategies(["after", "max-drop-0.5"])
    assert set(runs) == {"after", "max-drop-0.5"} and peer_suite.GATED["max-drop-0.5"] == 0.5
    fb = {"int8": {"sqnr_db": 2.5, "accuracy_drop": 18.2}, "bytes": 1100,
          "extra_bytes_pct": 9.5, "extra_arena_pct": 70.0}  # fmt: skip
    rows = {"vit": _row("vit", activations="int16", attempt="int16x8 (int8 missed "
                        "--max-accuracy-drop)", precision_fallback=fb)}  # fmt: skip
    md = peer_suite.markdown({"date": "d", "machine": "m", "runs": {"max-drop-0.5": rows},
                              "summary": {"max-drop-0.5": peer_suite.summarize(rows)}})  # fmt: skip
    line = md.split("| vit |")[1].splitlines()[0]
    assert "int16x8" in line and "int8 had 2.5 dB, drop 18.2" in line
    assert "+9.5 % bytes, +70.0 % arena" in line


def test_sqnr_gated_run_names_what_the_attempts_before_measured() -> None:
    runs = peer_suite.strategies(["min-sqnr-25"])
    assert peer_suite.SQNR_GATES["min-sqnr-25"] == 25.0 and runs["min-sqnr-25"].int16_fallback
    failed = [
        {"attempt": "primary", "error": "FidelityError: output 'y': int8 SQNR 18.70 dB is "
         "below --min-sqnr 25 dB"},
        {"attempt": "gptq weight rounding (int8 missed --min-sqnr)", "error": "FidelityError: "
         "int8 accuracy 91.00% is 1.60 points below float (92.60%), more than ..."},
        {"attempt": "onnx2tf options {}", "error": "Onnx2TfError: onnx2tf exited"},
    ]  # fmt: skip
    assert peer_suite._missed(failed) == (
        "primary 18.70 dB; gptq weight rounding 91.00 %, drop 1.60; onnx2tf options {} Onnx2TfError"
    )
    fb = {"int8": {"sqnr_db": 19.1, "accuracy_drop": 0.2}, "extra_bytes_pct": 11.7,
          "extra_arena_pct": 71.8}  # fmt: skip
    rows = {"m": _row("m", activations="int16", attempt="int16x8 (int8 missed --min-sqnr)",
                      precision_fallback=fb, failed_attempts=failed[:2])}  # fmt: skip
    md = peer_suite.markdown({"date": "d", "machine": "m", "runs": {"min-sqnr-25": rows},
                              "summary": {"min-sqnr-25": peer_suite.summarize(rows)}})  # fmt: skip
    line = md.split("| m |")[1].splitlines()[0]
    assert "missed before: primary 18.70 dB; gptq weight rounding 91.00 %" in line
    assert "+11.7 % bytes, +71.8 % arena" in line
    err = ("FidelityError: output 'y': int8 SQNR 14.80 dB is below --min-sqnr 25 dB\nalso "
           "tried:\n  - gptq weight rounding (int8 missed --min-sqnr): FidelityError: output "
           "'y': int8 SQNR 15.38 dB is below\n  - int16x8 (int8 missed --min-sqnr): "
           "WorkerStageError: Quantization to 16x8-bit not yet supported for op: 'HARD_SWISH'")  # fmt: skip
    assert peer_suite._failed_how(err) == (
        "FidelityError; tried: primary 14.80 dB; gptq weight rounding 15.38 dB; int16x8 "
        "WorkerStageError"
    )
    assert peer_suite._failed_how("QuantizationError: no kernel") == "QuantizationError"


def test_benchmark_skips_with_a_reason_without_the_suite(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDGEDEPLOY_PEER_MODELS", str(tmp_path / "nowhere"))
    assert peer_suite.main(["--no-readme"]) == 0
    assert "peer-suite skipped" in capsys.readouterr().err


# --- real third-party architectures (../shared/peer_models; slow) ------------------------


@pytest.fixture(scope="module")
def peer_folder():
    folder = peer_suite.peer_dir()
    if not (folder / "manifest.json").is_file():
        pytest.skip(f"development suite not found at {folder} (set EDGEDEPLOY_PEER_MODELS)")
    return folder


def _entry(folder, name: str) -> dict:
    return next(e for e in peer_suite.manifest(folder) if e["model"] == name)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "min_varying_db"),
    [
        ("dla46x_c", 19.0),  # 23 TRANSPOSE around its concatenations before the fold
        ("test_convnext", 33.0),  # 4 TRANSPOSE around its channel LayerNorms before
    ],
)
def test_peer_model_converts_clean_with_its_accuracy(
    peer_folder, tmp_path, name: str, min_varying_db: float
) -> None:
    from toolchain.convert.strategy import Strategy

    row = peer_suite.run_one(peer_folder, _entry(peer_folder, name), Strategy(), tmp_path)
    assert row["ok"], row.get("error")
    assert row["counts"] == {"TRANSPOSE": 0, "QUANTIZE": 0, "DEQUANTIZE": 0}
    assert row["clean"] and not row["float_ops"]
    assert row["top1_float"] > 90.0  # the model learned: accuracy means something
    assert row["top1_drop"] <= 0.5
    assert row["sqnr_input_dependent_db"] >= min_varying_db


@pytest.mark.slow
def test_hard_sigmoid_gates_run_on_tflm(peer_folder, tmp_path) -> None:
    """LCNet's SE gates (hard sigmoid) became RELU_0_TO_1, which tflite-micro cannot run."""
    from toolchain.convert.strategy import Strategy
    from toolchain.emit.arena import minimum_arena

    row = peer_suite.run_one(peer_folder, _entry(peer_folder, "lcnet_035"), Strategy(), tmp_path)
    assert row["ok"] and row["clean"], row.get("error")
    assert "RELU_0_TO_1" not in row["ops"] and "hardsigmoid-relu6" in row["rewrites"]
    assert row["top1_drop"] <= 0.5
    assert minimum_arena(tmp_path / "lcnet_035" / "model_int8.tflite") > 0  # TFLM runs it


@pytest.mark.slow
def test_squeezenet_ceil_mode_pools_need_no_pad_ops(peer_folder) -> None:
    """SqueezeNet 1.0's ceil-mode max pools: one is TensorFlow SAME padding, two pad
    nothing at this size; the rewrite leaves no Pad node (onnx2tf made 2 MIRROR_PAD)."""
    import onnx

    from toolchain import modelsrc
    from toolchain.convert.export import export_onnx
    from toolchain.convert.rewrites import rewrite_onnx

    e = _entry(peer_folder, "squeezenet1_0")
    loaded = modelsrc.load_model(str(peer_folder / e["file"]), input_shapes=[e["input_shape"]])
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(loaded, Path(tmp) / "m.onnx")
    new, recs = rewrite_onnx(exported, ["maxpool-finite-pad"])
    rec = recs[0]
    assert rec.applied == 3 and rec.max_rel_err == 0.0
    nodes = onnx.load_from_string(new).graph.node
    assert not [n for n in nodes if n.op_type == "Pad"]
    same = [n for n in nodes if n.op_type == "MaxPool"
            and any(a.name == "auto_pad" and a.s == b"SAME_UPPER" for a in n.attribute)]  # fmt: skip
    assert len(same) == 1


@pytest.mark.slow  # ~35 s here: export and the rewrites' onnxruntime checks of a 1.5 MB model
def test_mobilevit_v2_patches_and_norms_are_rewritten_exactly(peer_folder, tmp_path) -> None:
    """The 1.5 MB peer model itself (no TensorFlow): its 3 patch unfolds/folds and 21
    one-group GroupNorms are rewritten, and the result is the TorchScript model's function
    on real digits images."""
    import onnxruntime as ort
    import torch

    from toolchain import modelsrc
    from toolchain.convert import rewrites
    from toolchain.convert.export import export_onnx

    entry = _entry(peer_folder, "mobilevitv2_050")
    shape = [int(v) for v in entry["input_shape"]]
    loaded = modelsrc.load_model(str(peer_folder / entry["file"]), input_shapes=[shape])
    new, recs = rewrites.rewrite_onnx(export_onnx(loaded, tmp_path / "m.onnx"), rewrites.DEFAULT)
    applied = {r.name: r.applied for r in recs}
    assert applied["patches-channels-last"] == 6 and applied["groupnorm-channels-last"] == 21
    _, x, _ = peer_suite.digits_data(peer_folder, shape[-1])
    x = x[:8]
    with torch.no_grad():
        want = loaded.module(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(new, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    assert float(np.max(np.abs(got - want))) <= 1e-5 * float(np.max(np.abs(want)))


@pytest.mark.slow
def test_mobilevit_v2_converts_clean(peer_folder, tmp_path) -> None:
    from toolchain.convert.strategy import Strategy

    entry = _entry(peer_folder, "mobilevitv2_050")
    row = peer_suite.run_one(peer_folder, entry, Strategy(), tmp_path)
    assert row["ok"], row.get("error")
    assert row["counts"] == {"TRANSPOSE": 0, "QUANTIZE": 0, "DEQUANTIZE": 0}
    assert row["clean"] and not row["float_ops"]
    assert row["top1_drop"] <= 0.5  # measured: 87.6 float, 89.2 int8
    assert row["sqnr_input_dependent_db"] >= 22.0  # measured 23.0 dB
