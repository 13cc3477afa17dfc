"""int16x8 models our converter makes compile and are bit-exact with TFLM (host tier).

Converted in-test with int16 activations (seeded weights), compiled, built with the host gcc
and compared with the tflite-micro interpreter on random, all-min and all-max inputs
(:func:`benchmarks.compile_suite.check_model`, which ``python -m benchmarks.run
compile-suite`` runs over the whole zoo and architecture suite, int8 and int16x8):

* a small net (tests/support/int16_net.py) whose graph holds LOGISTIC, TANH, SUB, MUL,
  STRIDED_SLICE, CONCATENATION, PAD, MEAN, QUANTIZE, pools, convs, FC and SOFTMAX in int16;
* the architecture suite's EfficientNet-style model at 32 pixels (SiLU, squeeze-excite);
* its conv_attention model at 32 pixels, int8 (LayerNorm: SQUARED_DIFFERENCE, RSQRT;
  attention: BATCH_MATMUL, SOFTMAX);
* every zoo and suite model, int8 and int16x8, when ``EDGEDEPLOY_COMPILE_SUITE=1`` (about
  44 conversions: 10-20 min on two cores, too long for every CI run).

An int16 operator compile has no kernel for is one clear error naming it and its layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from benchmarks import compile_suite
from tests.support import int16_net
from tests.support.tflite_build import T, single_op
from toolchain.compile import compile_model
from toolchain.compile import hostrun as compiled
from toolchain.errors import CompileError
from toolchain.tflite_model import TFLiteModel

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")

FULL_SUITE = os.environ.get("EDGEDEPLOY_COMPILE_SUITE") == "1"


@pytest.fixture(scope="session")
def convert_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converter cache per test session (the emulated tier's int16 test shares it)."""
    return tmp_path_factory.getbasetemp() / "convert-cache"


@pytest.mark.slow
def test_int16x8_ops_net_is_bit_exact(tmp_path: Path, convert_cache: Path) -> None:
    path = int16_net.convert_int16(tmp_path / "net", convert_cache)
    row = compile_suite.check_model(path, "net16", tmp_path, inputs=4)
    assert set(row["ops"]) >= int16_net.OPS, row["ops"]
    assert row["compiled"], row.get("error")
    assert row["activations"] == "int16"
    assert row["runs"] == 6 and row["mismatches"] == 0 and row["bit_exact"]
    assert row["lower_bound_bytes"] <= row["arena_bytes"] <= row["tflm_greedy_bytes"] + 15


@pytest.mark.slow
def test_int16x8_efficientnet_style_is_bit_exact(tmp_path: Path) -> None:
    path = compile_suite.convert_model("efficientnet_style", "int16", tmp_path, size=32,
                                       cache=False)  # fmt: skip
    row = compile_suite.check_model(path, "effnet16", tmp_path, inputs=2)
    assert {"LOGISTIC", "MUL", "MEAN", "PAD", "DEPTHWISE_CONV_2D"} <= set(row["ops"])
    assert row["compiled"], row.get("error")
    assert row["activations"] == "int16" and row["bit_exact"], row


@pytest.mark.slow
def test_int8_conv_attention_is_bit_exact(tmp_path: Path) -> None:
    """LayerNorm as TFLiteConverter lowers it (MEAN, SQUARED_DIFFERENCE, RSQRT, MUL, SUB) and
    multi-head attention (BATCH_MATMUL, SOFTMAX): the suite's conv_attention at 32 pixels."""
    path = compile_suite.convert_model("conv_attention", "int8", tmp_path, size=32, cache=False)
    row = compile_suite.check_model(path, "attn8", tmp_path, inputs=2)
    assert {"BATCH_MATMUL", "RSQRT", "SQUARED_DIFFERENCE", "SOFTMAX"} <= set(row["ops"])
    assert row["compiled"], row.get("error")
    assert row["activations"] == "int8" and row["bit_exact"], row


@pytest.mark.slow
@pytest.mark.skipif(not FULL_SUITE, reason="the whole zoo and suite: EDGEDEPLOY_COMPILE_SUITE=1")
@pytest.mark.parametrize("activations", ["int8", "int16"])
@pytest.mark.parametrize("name", compile_suite.model_names())
def test_zoo_and_suite_model(name: str, activations: str, tmp_path: Path) -> None:
    """Every model converts, compiles and is bit-exact with TFLM; only an int16x8 model may
    instead have compile name the operator it lacks (ShuffleNet's int16 GATHER, which TFLM
    lacks too). Opt-in (44 conversions, 10–20 min here): CI runs the in-test models above."""
    row = compile_suite.run_one(name, activations, tmp_path, None, inputs=2)
    assert row["converted"], row.get("error")
    if activations == "int8":  # every operator of the int8 zoo and suite has a kernel
        assert row["compiled"], row.get("error")
    if not row["compiled"]:
        assert row["error"].startswith("operator "), row["error"]
        pytest.skip(f"not compiled: {row['error']}")
    assert row["bit_exact"], row


def _leaky_relu_int16() -> bytes:
    o = schema.LeakyReluOptionsT()
    o.alpha = 0.2
    x, y = T((1, 4, 4, 3), "int16", (1e-3,), (0,)), T((1, 4, 4, 3), "int16", (1e-3,), (0,))
    return single_op("LEAKY_RELU", [x], [y], schema.BuiltinOptions.LeakyReluOptions, o)


def test_int16_operator_without_kernel_is_one_clear_error(tmp_path: Path) -> None:
    """TFLM runs an int16 LEAKY_RELU; compile has no int16 kernel for it (int8 only)."""
    model = TFLiteModel.from_bytes(_leaky_relu_int16(), source="leaky16.tflite")
    with pytest.raises(CompileError) as err:
        compile_model(model, out_dir=tmp_path / "out", name="leaky16")
    msg, hint = err.value.message, err.value.hint or ""
    assert "operator 0 (LEAKY_RELU, output 'out0')" in msg
    assert "int16" in msg and "int8 only" in msg
    assert "--runtime tflm" in hint
    assert not (tmp_path / "out").exists()
    # and TFLM does run it: the hint is true
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(_leaky_relu_int16(), arena_size=1 << 16)
    interp.set_input(np.full((1, 4, 4, 3), -1000, np.int16), 0)
    interp.invoke()
    assert int(interp.get_output(0).ravel()[0]) == -200


def test_int16_operator_tflm_lacks_too_says_so(tmp_path: Path) -> None:
    x, y = T((1, 8), "int16", (1e-3,), (0,)), T((1, 8), "int16", (1e-3,), (0,))
    model = TFLiteModel.from_bytes(single_op("HARD_SWISH", [x], [y]), source="hs16.tflite")
    with pytest.raises(CompileError) as err:
        compile_model(model, out_dir=tmp_path / "out", name="hs16")
    assert "operator 0 (HARD_SWISH" in err.value.message
    assert "TFLM has no int16 kernel for it either" in err.value.message
    # the hint must not send the user to TFLM, which cannot run it either
    hint = err.value.hint or ""
    assert "--runtime tflm" not in hint
    assert "int8 activations" in hint
    from tflite_micro.python.tflite_micro import runtime  # and TFLM indeed cannot run it

    interp = runtime.Interpreter.from_bytes(single_op("HARD_SWISH", [x], [y]), arena_size=1 << 16)
    interp.set_input(np.zeros((1, 8), np.int16), 0)
    with pytest.raises(RuntimeError):  # "Unsupported type INT16" at invoke
        interp.invoke()
