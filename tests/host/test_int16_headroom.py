"""int16x8 range headroom (issue 15): ``QuantOptions.int16_headroom``.

TFLiteConverter's int16x8 path re-calibrates inside ``calibrate_and_quantize`` and ignores
the int8 range seam, so held-out inputs beyond the calibration ranges clip (MobileNetV3-small:
20.9 dB). :func:`toolchain.convert.calibrate.int16_ranges` widens every calibrated int16
range by the factor; these tests check it in a real conversion: every int16 activation
scale grows by exactly that factor, and int8 models do not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.convert import QuantOptions, convert
from toolchain.convert.options import INT16_HEADROOM
from toolchain.errors import EdgeDeployError, UsageError


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, stride=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(y.mean(dim=(2, 3)))


def _convert(out: Path, activations: str, headroom: float) -> bytes:
    calib = np.random.default_rng(0).standard_normal((16, 3, 10, 10)).astype(np.float32)
    res = convert(_Tiny().eval(), calib=calib, input_shapes=[(1, 3, 10, 10)], out_dir=out,
                  cache=False,
                  options=QuantOptions(activations=activations, int16_headroom=headroom))  # fmt: skip
    return Path(res.tflite_path).read_bytes()


def _scales(data: bytes, dtype: Any) -> dict[str, float]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    return {d["name"]: float(d["quantization"][0]) for d in interp.get_tensor_details()
            if d["dtype"] == dtype and d["quantization"][0] > 0}  # fmt: skip


def test_int16_ranges_are_widened_by_the_factor(tmp_path: Path) -> None:
    base = _scales(_convert(tmp_path / "h1", "int16", 1.0), np.int16)
    wide = _scales(_convert(tmp_path / "h4", "int16", 4.0), np.int16)
    assert base.keys() == wide.keys() and len(base) >= 4  # input, 2 convs, mean, fc
    ratios = {name: wide[name] / base[name] for name in base}
    assert all(abs(r - 4.0) < 4e-3 for r in ratios.values()), ratios


def test_int8_models_do_not_change(tmp_path: Path) -> None:
    a = _convert(tmp_path / "a", "int8", 1.0)
    b = _convert(tmp_path / "b", "int8", 4.0)
    assert a == b and _scales(a, np.int8)
    assert QuantOptions(int16_headroom=1.0).cache_dict() == QuantOptions().cache_dict()
    assert (QuantOptions(activations="int16", int16_headroom=4.0).cache_dict()
            != QuantOptions(activations="int16", int16_headroom=1.0).cache_dict())  # fmt: skip


def test_headroom_is_checked_and_has_a_measured_default() -> None:
    assert QuantOptions().int16_headroom == INT16_HEADROOM >= 1.0
    # the CLI help names it without importing toolchain.convert (kept lazy)
    cli = (Path(__file__).parents[2] / "toolchain" / "cli" / "convert.py").read_text()
    assert f"default {INT16_HEADROOM:g}, QuantOptions.int16_headroom" in cli
    for bad in (0.5, 0.0, 100.0):
        with pytest.raises(UsageError, match="int16 headroom"):
            QuantOptions(activations="int16", int16_headroom=bad)


def test_project_file_sets_the_headroom(tmp_path: Path) -> None:
    from toolchain.project import load_project

    (tmp_path / "net.py").write_text("def build():\n    raise SystemExit('not called')\n")
    (tmp_path / "calib.npy").write_bytes(b"")
    (tmp_path / "edgedeploy.toml").write_text(
        '[model]\nsource = "net.py:build"\ninput_shape = [1, 3, 16, 16]\n'
        '[data]\ncalibration = "calib.npy"\n'
        '[quantization]\nactivations = "int16"\nint16_headroom = 2.0\n'
        '[target]\nname = "mps2-an386"\n'
    )
    p = load_project(tmp_path / "edgedeploy.toml")
    assert p.quantization.options.int16_headroom == 2.0
    # fractions below 1 are read too (a budget), and QuantOptions' own range check speaks
    toml = (tmp_path / "edgedeploy.toml").read_text()
    (tmp_path / "edgedeploy.toml").write_text(
        toml.replace('activations = "int16"', 'activations = "mixed"\nmixed_budget = 0.05')
    )
    assert load_project(tmp_path / "edgedeploy.toml").quantization.options.mixed_budget == 0.05
    (tmp_path / "edgedeploy.toml").write_text(toml.replace("2.0", "0.5"))
    with pytest.raises(EdgeDeployError, match="headroom"):
        load_project(tmp_path / "edgedeploy.toml")


def test_a_normalisations_variance_is_not_widened() -> None:
    """The tensors that feed RSQRT through the epsilon ADD, MEAN and the square keep their
    calibrated ranges; the rest (its input, RSQRT's output) are widened."""
    from tests.support.tflite_build import T, chain
    from toolchain.convert import calibrate, flatbuf

    f = "float32"
    x = T((1, 4, 8), f)
    data = chain(x, [
        ("MUL", [T((1,), f, data=np.array([2.0], np.float32))], T((1, 4, 8), f), 0, None),
        ("MEAN", [T((1,), "int32", data=np.array([2], np.int32))], T((1, 4, 1), f), 0, None),
        ("ADD", [T((1,), f, data=np.array([1e-5], np.float32))], T((1, 4, 1), f), 0, None),
        ("RSQRT", [], T((1, 4, 1), f), 0, None),
    ])  # fmt: skip
    model = flatbuf.unpack(data)
    for t in model.subgraphs[0].tensors:
        t.quantization.min, t.quantization.max = [-1.0], [1.0]
    wide = flatbuf.unpack(calibrate.widen(flatbuf.pack(model), 3.0, keep_variance=True))
    ranges = {t.name.decode() if isinstance(t.name, bytes) else t.name: t.quantization.max[0]
              for t in wide.subgraphs[0].tensors}  # fmt: skip
    assert ranges["input"] == 4.0  # no op of the path writes the graph input
    assert ranges["l0_out"] == ranges["l1_out"] == ranges["l2_out"] == 1.0
    assert ranges["l3_out"] == 4.0  # RSQRT's output is widened
    every = flatbuf.unpack(calibrate.widen(flatbuf.pack(model), 3.0))
    assert all(t.quantization.max[0] == 4.0 for t in every.subgraphs[0].tensors)
