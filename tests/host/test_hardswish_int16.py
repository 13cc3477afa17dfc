"""HardSwish with int16x8 activations (issue 15): the hardswish-relu6 rewrite.

TFLiteConverter has no int16x8 HARD_SWISH kernel, so MobileNetV3 and LCNet could not take
int16 activations at all. The rewrite (``toolchain/convert/rewrites/basic.py``) spells
HardSwish as ``(x / 6) · Relu6(x + 3)``: exact in float, and an order TFLiteConverter does
not fuse back into HARD_SWISH. Fast structural checks, then one real int16x8 conversion of
a tiny net: clean, no HARD_SWISH, runs in the tflite-micro interpreter, and the compiled
runtime is bit-exact with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.onnx_export import onnx_bytes
from tests.support.onnx_export import op_counts as _ops
from toolchain.convert import rewrites


def _onnx(model: nn.Module, *shape: int) -> bytes:
    return onnx_bytes(model.eval(), torch.randn(*shape))


class _Spelled(nn.Module):
    """``x · hardsigmoid(x)`` (a spelled-out hardswish) and an SE-style gate
    ``y · hardsigmoid(z)`` that is not one."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        x = x * F.hardsigmoid(x)
        return x * F.hardsigmoid(self.c2(x))


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.act, self.fc = nn.Hardswish(), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.c2(self.act(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def test_hardswish_becomes_mul_add_relu6_exactly() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardswish(), nn.Conv2d(4, 4, 1), nn.Hardswish())
    data = _onnx(model, 1, 3, 9, 9)
    assert _ops(data)["HardSwish"] == 2
    new, recs = rewrites.rewrite_onnx(data, ["fold-constants", "hardswish-relu6"])
    rec = {r.name: r for r in recs}["hardswish-relu6"]
    # the equivalence check ran on onnxruntime (random inputs: both sides of -3 and 3)
    assert rec.applied == 2 and rec.max_rel_err is not None and rec.max_rel_err <= 1e-5
    ops = _ops(new)
    assert "HardSwish" not in ops and ops["Clip"] == 2 and ops["Add"] == 2 and ops["Mul"] == 4
    # the order TFLiteConverter leaves alone: the 1/6 scales x, not the gate
    g = onnx.load_from_string(new).graph
    sixth = {i.name for i in g.initializer if onnx.numpy_helper.to_array(i).size == 1
             and abs(float(onnx.numpy_helper.to_array(i)) - 1 / 6) < 1e-7}  # fmt: skip
    first_mul = next(n for n in g.node if n.op_type == "Mul")
    assert first_mul.input[1] in sixth and first_mul.input[0] == g.node[0].output[0]


def test_spelled_out_hardswish_is_taken_and_a_gate_is_not() -> None:
    data = _onnx(_Spelled(), 1, 3, 8, 8)
    assert _ops(data)["HardSigmoid"] == 2
    new, recs = rewrites.rewrite_onnx(data, ["fold-constants", "hardswish-relu6"])
    rec = {r.name: r for r in recs}["hardswish-relu6"]
    assert rec.applied == 1 and "x * HardSigmoid(x)" in rec.details[0]
    assert rec.max_rel_err is not None and rec.max_rel_err <= 1e-5
    assert _ops(new)["HardSigmoid"] == 1  # the gate of another tensor stays (hardsigmoid-relu6)


def test_int16_attempts_get_the_rewrite_and_int8_ones_do_not() -> None:
    assert "hardswish-relu6" not in rewrites.DEFAULT
    assert "hardswish-relu6" in rewrites.for_activations(rewrites.DEFAULT, "int16")
    assert rewrites.for_activations(rewrites.DEFAULT, "int8") == rewrites.DEFAULT
    # mixed precision takes exactly MIXED (the lead's one-line decision)
    mixed = rewrites.for_activations(rewrites.DEFAULT, "mixed")
    assert set(mixed) == set(rewrites.DEFAULT) | set(rewrites.MIXED)
    assert rewrites.for_activations((), "int16") == ()  # --plain stays plain
    # it runs before hardsigmoid-relu6, which would spell x * HardSigmoid(x) in a fusable order
    known = rewrites.KNOWN
    assert known.index("hardswish-relu6") < known.index("hardsigmoid-relu6")


@pytest.fixture(scope="module")
def int16_tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from toolchain.convert import QuantOptions, convert

    torch.manual_seed(0)
    calib = np.random.default_rng(0).normal(0, 1, (16, 3, 12, 12)).astype(np.float32)
    out = tmp_path_factory.mktemp("hswish16")
    return convert(_Tiny().eval(), calib=calib, input_shapes=[(1, 3, 12, 12)], out_dir=out,
                   cache=False, options=QuantOptions(activations="int16"))  # fmt: skip


def test_int16x8_conversion_with_hardswish_is_clean(int16_tiny: Any) -> None:
    rep = int16_tiny.report
    lint = rep["lint"]
    assert not lint["problems"]
    assert lint["TRANSPOSE"] == lint["QUANTIZE"] == lint["DEQUANTIZE"] == 0
    assert rep["conversion"]["activations"] == "int16"
    assert "hardswish-relu6" in rep["conversion"]["rewrites_applied"]
    assert "HARD_SWISH" not in rep["ops"]
    assert rep["ops"]["MUL"] == 4 and rep["ops"]["ADD"] == 2  # Relu6 fused into the ADD
    assert rep["fidelity"]["output"]["sqnr_db"] >= 40.0


def test_int16x8_hardswish_runs_in_tflm_and_compiles_bit_exact(
    int16_tiny: Any, tmp_path: Path
) -> None:
    from tflite_micro.python.tflite_micro import runtime

    from toolchain.compile import compile_model
    from toolchain.compile import hostrun as compiled

    path = Path(int16_tiny.tflite_path)
    interp = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    assert np.dtype(interp.get_input_details(0)["dtype"]) == np.int16
    if not compiled.have_gcc():
        pytest.skip("needs the host gcc")
    cm = compile_model(path, out_dir=tmp_path / "c", name="hswish16")
    assert {"ADD", "MUL"} <= set(cm.ops) and cm.inputs[0]["dtype"] == "int16"
    lib = compiled.build([cm], tmp_path / "hswish16.so")
    run = compiled.Runner(lib, cm.name)
    rng = np.random.default_rng(5)
    shape = tuple(cm.inputs[0]["shape"])
    outs = [(tuple(t["shape"]), np.dtype(t["dtype"])) for t in cm.outputs]
    for x in (rng.integers(-32768, 32768, shape, dtype=np.int16),
              rng.integers(-4000, 4000, shape, dtype=np.int16),
              np.full(shape, -32768, np.int16), np.full(shape, 32767, np.int16)):  # fmt: skip
        interp.set_input(x, 0)
        interp.invoke()
        want = interp.get_output(0)
        (got,) = run([x], outs)
        assert np.array_equal(want, got), f"{want.ravel()[:6]} vs {got.ravel()[:6]}"


def test_peer_suite_has_the_int16_and_decomposed_int8_runs() -> None:
    from benchmarks import peer_suite

    runs = peer_suite.strategies(["int16", "hswish-int8", "after"])
    assert peer_suite.OPTION_RUNS["int16"] == {"activations": "int16"}
    assert "after" not in peer_suite.OPTION_RUNS
    assert runs["int16"].rewrite_names == rewrites.DEFAULT  # the strategy adds INT16
    hs = runs["hswish-int8"].rewrite_names
    assert set(hs) == set(rewrites.DEFAULT) | {"hardswish-relu6"}
    assert hs.index("hardswish-relu6") < hs.index("hardsigmoid-relu6")
