"""Host tier: data-chosen weight rounding (toolchain/convert/weightround.py).

A small net built to be limited by its int8 weights (the input columns of its second conv
span 30x in scale, their inputs the inverse: nearest rounding of the small columns costs
much on large inputs) is rounded with ``gptq``: the integers change, they sit exactly on
the converter's per-channel grid, the layer output error drops, the converter keeps every
chosen integer, and the int8 model's SQNR improves. The strategy's fallback order (nearest
→ gptq → int16x8) is checked with a stand-in for the conversion.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.convert import convert
from toolchain.convert import weightround as wr
from toolchain.convert.options import QuantOptions
from toolchain.convert.strategy import Attempt, Strategy, run
from toolchain.convert.validate import sqnr_db
from toolchain.errors import FidelityError, UsageError
from toolchain.tflite_model import TFLiteModel


class SkewedNet(nn.Module):
    """conv → ReLU → conv whose input columns span 30x (inputs the inverse) → pool → FC."""

    def __init__(self) -> None:
        super().__init__()
        self.example_inputs = (torch.zeros(1, 3, 12, 12),)
        g = torch.Generator().manual_seed(7)
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)
        f = torch.logspace(-0.75, 0.75, 16)[torch.randperm(16, generator=g)]
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            self.c1.weight.div_(f.view(-1, 1, 1, 1))
            self.c1.bias.div_(f)
            self.c2.weight.mul_(f.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(torch.relu(self.c1(x)))
        return self.fc(torch.relu(y).mean((2, 3)))


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 12, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(SkewedNet().eval(), (torch.zeros(1, 3, 12, 12),), buf, dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])  # fmt: skip
    return buf.getvalue()


def _weights(data: bytes) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(data)
    convs = {n.input[1] for n in m.graph.node if n.op_type in ("Conv", "Gemm")}
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer if i.name in convs}


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])


def _nearest(data: bytes) -> bytes:
    """The float model with the converter's own nearest rounding baked in."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(data)
    for ly in wr._layers(m, True, False):
        init = next(i for i in m.graph.initializer if i.name == ly.weight)
        w = numpy_helper.to_array(init)
        w2 = wr._w2d(w, ly).astype(np.float64)
        s = wr._scales(w2, ly.per_channel)
        q = np.clip(np.round(w2 / s), -127, 127)
        init.CopyFrom(numpy_helper.from_array(
            wr._from2d((q * s).astype(np.float32), w.shape, ly), init.name))  # fmt: skip
    return m.SerializeToString()


def test_gptq_moves_integers_onto_the_converters_grid_and_cuts_the_error(
    onnx_bytes: bytes,
) -> None:
    calib, val = _data(32, 1), _data(24, 2)
    new, rec = wr.apply(onnx_bytes, [calib], ["x"], method="gptq")
    assert rec["method"] == "gptq" and rec["layers"] == 3 and len(rec["baked"]) == 3
    before, after = _weights(onnx_bytes), _weights(new)
    moved = 0
    for name, w in before.items():
        b = after[name]
        per_channel = w.ndim == 4  # conv per channel, FC per tensor (the converter's way)
        axes = tuple(range(1, w.ndim)) if per_channel else None
        s = np.abs(w).max(axis=axes, keepdims=True) / 127.0
        # the scale the converter will compute from the baked weights is the same one
        np.testing.assert_allclose(np.abs(b).max(axis=axes, keepdims=True) / 127.0, s, rtol=1e-6)
        q = b / s
        np.testing.assert_allclose(q, np.round(q), atol=1e-3)  # on the grid
        assert np.abs(np.round(q)).max() <= 127
        moved += int(np.sum(np.round(q) != np.clip(np.round(w / s), -127, 127)))
    assert moved > 50  # not nearest rounding any more
    ref = _run(onnx_bytes, val)
    s_near, s_gptq = sqnr_db(ref, _run(_nearest(onnx_bytes), val)), sqnr_db(ref, _run(new, val))
    assert s_near is not None and s_gptq is not None
    assert s_gptq > s_near + 3.0, (s_near, s_gptq)  # held-out data, weights only


def test_bias_correction_moves_only_biases(onnx_bytes: bytes) -> None:
    calib, val = _data(32, 1), _data(24, 2)
    new, rec = wr.apply(onnx_bytes, [calib], ["x"], method="bias")
    assert rec["layers"] == 3
    for name, w in _weights(onnx_bytes).items():
        np.testing.assert_array_equal(_weights(new)[name], w)
    ref = _run(onnx_bytes, val)
    near = _nearest(onnx_bytes)
    corrected = _nearest(new)
    # the mean error of nearest rounding is what it removes
    err_near = (_run(near, val) - ref).mean(0)
    err_corr = (_run(corrected, val) - ref).mean(0)
    assert np.abs(err_corr).sum() < np.abs(err_near).sum()


def test_unknown_method_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="weight rounding"):
        Strategy(weight_rounding="adaround-magic")


def test_fallback_order_nearest_then_gptq_then_mixed_then_int16() -> None:
    seen: list[tuple[str, str]] = []

    def once(att: Attempt) -> str:
        seen.append((att.weight_rounding, att.options.activations))
        if att.options.activations in ("int8", "mixed"):
            exc = FidelityError("output 'y': int8 SQNR 28.00 dB is below --min-sqnr 30 dB")
            exc.measured = {"sqnr_db": 28.0, "tflite_bytes": 100}
            raise exc
        return "ok"

    assert run(Strategy(fallback=False), QuantOptions(), 30.0, once) == "ok"
    assert seen == [("none", "int8"), ("gptq", "int8"), ("gptq", "mixed"), ("gptq", "int16")]
    seen.clear()
    with pytest.raises(FidelityError):
        run(Strategy(fallback=False, int16_fallback=False), QuantOptions(), 30.0, once)
    assert seen == [("none", "int8"), ("gptq", "int8"), ("gptq", "mixed")]
    seen.clear()
    with pytest.raises(FidelityError):
        run(Strategy(fallback=False, int16_fallback=False, mixed_fallback=False),
            QuantOptions(), 30.0, once)  # fmt: skip
    assert seen == [("none", "int8"), ("gptq", "int8")]
    seen.clear()
    with pytest.raises(FidelityError):  # no gate: nothing to fall back for
        run(Strategy(fallback=False, rounding_fallback=False, int16_fallback=False,
                     mixed_fallback=False), QuantOptions(), 30.0, once)  # fmt: skip
    assert seen == [("none", "int8")]


def test_a_gap_gptq_cannot_close_skips_the_int8_gptq_attempt() -> None:
    """int8 missing the SQNR gate by more than GPTQ_REACH_DB goes on to mixed precision at
    once, keeping gptq rounding; an accuracy gate alone (not predictable) still tries it."""
    from toolchain.convert.strategy import GPTQ_REACH_DB

    seen: list[tuple[str, str, str]] = []

    def once(att: Attempt) -> str:
        seen.append((att.weight_rounding, att.options.activations, att.why))
        if att.options.activations == "int8":
            exc = FidelityError("output 'y': int8 SQNR 19.00 dB is below --min-sqnr 30 dB")
            exc.measured = {"sqnr_db": 19.0, "tflite_bytes": 100, "accuracy_drop": 2.0}
            raise exc
        return "ok"

    assert GPTQ_REACH_DB < 30.0 - 19.0
    assert run(Strategy(fallback=False), QuantOptions(), 30.0, once) == "ok"
    assert [s[:2] for s in seen] == [("none", "int8"), ("gptq", "mixed")]
    assert "11.0 dB: gptq int8 skipped" in seen[-1][2]
    seen.clear()
    assert run(Strategy(fallback=False), QuantOptions(), None, once, max_accuracy_drop=0.5)
    assert [s[:2] for s in seen] == [("none", "int8"), ("gptq", "int8"), ("gptq", "mixed")]
    seen.clear()  # nothing could follow (uint8 I/O has no int16x8 form): gptq is tried
    u8 = QuantOptions(input_dtype="uint8", output_dtype="uint8")
    with pytest.raises(FidelityError):
        run(Strategy(fallback=False, mixed_fallback=False), u8, 30.0, once)
    assert [s[:2] for s in seen] == [("none", "int8"), ("gptq", "int8")]


def _int8_weights(path: Path) -> list[np.ndarray]:
    from toolchain.convert.runtime import make_interpreter

    data = path.read_bytes()
    model = TFLiteModel.from_bytes(data)
    interp = make_interpreter(data)
    return [
        np.asarray(interp.get_tensor(t.index))
        for t in model.main.tensors
        if t.is_constant and t.dtype == "int8"
    ]


def test_converted_model_keeps_every_chosen_integer(tmp_path: Path) -> None:
    calib, val = _data(48, 1), _data(48, 2)
    kw: dict[str, Any] = {"calib": calib, "val": val, "cache": False}
    plain = convert(SkewedNet().eval(), out_dir=tmp_path / "near", **kw)
    res = convert(SkewedNet().eval(), out_dir=tmp_path / "gptq",
                  strategy=Strategy(weight_rounding="gptq"), **kw)  # fmt: skip
    rec = res.report["conversion"]["techniques"]["weight_rounding"]
    assert rec["method"] == "gptq" and rec["layers"] == 3
    # every baked layer's integers are in the .tflite exactly (round trip through the
    # converter's max|w|/127 scale and its nearest rounding)
    assert rec["in_model"] == {"exact": 3, "of": 3}
    assert res.report["conversion"]["weight_rounding"] == "gptq"
    w_near, w_gptq = _int8_weights(plain.tflite_path), _int8_weights(res.tflite_path)
    assert [w.shape for w in w_near] == [w.shape for w in w_gptq]
    assert any(not np.array_equal(a, b) for a, b in zip(w_near, w_gptq, strict=True))
    assert res.tflite_bytes == plain.tflite_bytes  # the same graph, other integers
    s0 = plain.report["fidelity"]["y"]["sqnr_db"] if "y" in plain.report["fidelity"] else None
    s0 = s0 or next(iter(plain.report["fidelity"].values()))["sqnr_db"]
    s1 = next(iter(res.report["fidelity"].values()))["sqnr_db"]
    assert s1 > s0 + 1.0, (s0, s1)


def test_cli_flags_reach_the_strategy() -> None:
    import argparse

    from toolchain.cli import convert as cli

    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    args = p.parse_args(["convert", "m.pt", "--calib", "c.npy", "--out", "o",
                         "--weight-rounding", "gptq", "--no-rounding-fallback"])  # fmt: skip
    st = cli._strategy(args)
    assert st.weight_rounding == "gptq" and st.rounding_fallback is False
    args = p.parse_args(["convert", "m.pt", "--calib", "c.npy", "--out", "o"])
    st = cli._strategy(args)
    assert st.weight_rounding == "none" and st.rounding_fallback is True


def test_a_later_attempt_reuses_the_same_rounding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The int16x8 fallback after a gptq attempt rounds the same ONNX on the same data:
    computed once, reused (record marked), recomputed when the weights or data differ."""
    from dataclasses import replace

    from toolchain.convert import strategy

    calls: list[bytes] = []

    def fake_apply(data: bytes, calib: Any, names: Any, **kw: Any) -> tuple[bytes, dict]:
        calls.append(data)
        return data + b"-rounded", {"method": kw["method"], "layers": 2, "baked": [1]}

    monkeypatch.setattr(wr, "apply", fake_apply)
    monkeypatch.setattr(strategy, "_ROUNDED", {})
    calib = [np.ones((4, 3, 8, 8), np.float32)]
    att = Attempt(options=QuantOptions(), rewrites=(), equalize=False, bias_correction=False,
                  weight_rounding="gptq")  # fmt: skip
    path = tmp_path / "m.onnx"
    first = att.round_weights(b"onnx", path, calib, ["x"])
    later = replace(att, options=replace(QuantOptions(), activations="int16"), techniques={})
    again = later.round_weights(b"onnx", path, calib, ["x"])
    assert first == again == b"onnx-rounded" and calls == [b"onnx"]
    assert later.techniques["weight_rounding"]["reused"] is True
    later.techniques["weight_rounding"].pop("baked")  # the pipeline does this: no aliasing
    assert att.techniques["weight_rounding"]["baked"] == [1]
    replace(att, techniques={}).round_weights(b"other", path, calib, ["x"])
    replace(att, techniques={}).round_weights(b"other", path, [2 * calib[0]], ["x"])
    assert calls == [b"onnx", b"other", b"other"]
