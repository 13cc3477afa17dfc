"""int16x8 models our converter makes compile and are bit-exact with TFLM (host tier).

Architecture-suite models converted in-test with ``--activations int16`` (seeded weights,
32-pixel inputs to keep conversion short), compiled, built with the host gcc and compared
with the tflite-micro interpreter on random, all-min and all-max inputs
(:func:`benchmarks.compile_suite.check_model`, which ``python -m benchmarks.run
compile-suite`` runs over the whole zoo and suite). Between them they put every int16 kernel
an int16x8 conversion of the suite emits into a converter-made graph: LOGISTIC and MUL
(SiLU, squeeze-excite), MEAN, PAD, CONCATENATION, STRIDED_SLICE, ADD, convolutions, FC.
An int16 operator compile has no kernel for is one clear error naming it and its layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from benchmarks import compile_suite
from tests.support.tflite_build import T, single_op
from toolchain.compile import compile_model
from toolchain.compile import hostrun as compiled
from toolchain.errors import CompileError
from toolchain.tflite_model import TFLiteModel

pytestmark = pytest.mark.skipif(not compiled.have_gcc(), reason="needs the host gcc")

#: model → int16 operators its converted graph must contain
SUITE_INT16 = {
    "efficientnet_style": {"LOGISTIC", "MUL", "MEAN", "PAD", "DEPTHWISE_CONV_2D"},
    "splitv_net": {"CONCATENATION", "STRIDED_SLICE", "ADD", "MEAN"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SUITE_INT16))
def test_int16x8_suite_model_is_bit_exact(name: str, tmp_path: Path) -> None:
    path = compile_suite.convert_model(name, "int16", tmp_path, size=32, cache=False)
    row = compile_suite.check_model(path, name, tmp_path, inputs=2)
    assert SUITE_INT16[name] <= set(row["ops"]), row["ops"]
    assert row["compiled"], row.get("error")
    assert row["activations"] == "int16"
    assert row["runs"] == 4 and row["mismatches"] == 0 and row["bit_exact"]
    assert row["lower_bound_bytes"] <= row["arena_bytes"] <= row["tflm_greedy_bytes"] + 15


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
