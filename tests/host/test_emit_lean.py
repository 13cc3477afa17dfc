"""Host tier: lean model bytes (``toolchain.emit.lean``) and the byte budget
(``toolchain.tflite_budget``).

Every lean rule must leave TFLM's outputs bit-identical: checked with the tflite-micro
interpreter on every reference model TFLM runs (MLPerf Tiny as given, TFLM's examples, Arm
ML-Zoo), on randomized single-operator models of every operator our converter emits, and —
where a rule is a boundary — by showing that stepping over it breaks TFLM (FC bias scales,
an empty zero-point vector). The zoo, architecture suite and peer models are converted in
the benchmark (``python -m benchmarks.run lean``), not here: conversion takes minutes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.lean_bench import litert_outputs, random_samples, tflm_outputs
from toolchain.convert import flatbuf
from toolchain.emit.lean import TFLM_METADATA, lean_model
from toolchain.tflite_budget import CATEGORIES, byte_budget
from toolchain.tflite_model import TFLiteModel

REF = Path(
    os.environ.get("EDGEDEPLOY_REFERENCE", Path(__file__).parents[3] / "shared" / "reference")
)
ALL = sorted(p.relative_to(REF).as_posix() for p in REF.rglob("*.tflite")) if REF.is_dir() else []
#: files TFLM does not run: Ethos-U custom op, float/hybrid, uint8 (docs/emit.md)
NOT_TFLM = ("vela", "float32", "fp32", "mobilenet_v1_0.25_128_quant", "keras_lstm_mnist_ptq",
            "pretrainedResnet.tflite", "trained_lstm.tflite", "hello_world_float")  # fmt: skip
TFLM_RUNS = [r for r in ALL if not any(s in r for s in NOT_TFLM)]
KWS = "mlperf_tiny/kws/kws_ref_model.tflite"
HELLO = "tflm_models/hello_world/hello_world_int8.tflite"
#: big files: one input sample instead of two keeps the test short
BIG = 1_000_000


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def buffer_offsets(data: bytes) -> list[int]:
    """File offsets of the data of every non-empty buffer."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(data, 0)
    offs = []
    for i in range(root.BuffersLength()):
        b = root.Buffers(i)
        if b.DataLength():
            offs.append(int(b._tab.Vector(4)))
    return offs


def check_lean(full: TFLiteModel, *, samples: int = 2, seed: int = 0) -> TFLiteModel:
    """Lean ``full``, check the structure and that TFLM computes exactly the same."""
    lm = lean_model(full)
    lean = TFLiteModel.from_bytes(lm.data)
    # structure: nothing TFLM does not read is left, indices and data unchanged
    assert [len(sg.tensors) for sg in lean.subgraphs] == [len(sg.tensors) for sg in full.subgraphs]
    assert all(t.name == "" for sg in lean.subgraphs for t in sg.tensors)
    assert lean.description == "" and lean.weight_bytes() <= full.weight_bytes()
    for sf, sl in zip(full.subgraphs, lean.subgraphs, strict=True):
        assert [op.name for op in sf.operators] == [op.name for op in sl.operators]
        for tf_, tl in zip(sf.tensors, sl.tensors, strict=True):
            assert (tf_.shape, tf_.dtype, tf_.data_bytes) == (tl.shape, tl.dtype, tl.data_bytes)
            if tl.is_quantized:
                assert tl.scales == tf_.scales and tl.quantized_dimension == tf_.quantized_dimension
    assert lm.names["subgraphs"][0]["tensors"] == [t.name for t in full.main.tensors]
    assert all(o % 16 == 0 for o in buffer_offsets(lm.data)), "constant data must stay aligned"
    budget = byte_budget(lean)
    assert budget["names"] == 0 and sum(budget.values()) == lean.size
    assert lean.size - budget["constant_data"] <= full.size - byte_budget(full)["constant_data"]
    # behaviour: TFLM outputs bit-identical
    inputs = random_samples(full, np.random.default_rng(seed), samples)
    n = len(full.outputs)
    assert_same(tflm_outputs(full.data, inputs, n), tflm_outputs(lm.data, inputs, n))
    return lean


needs_ref = pytest.mark.skipif(not REF.is_dir(), reason=f"reference models not found at {REF}")


# --- the byte budget --------------------------------------------------------------------------


@needs_ref
@pytest.mark.parametrize("rel", ALL)
def test_budget_adds_up_on_every_reference_file(rel: str) -> None:
    m = TFLiteModel.from_file(REF / rel)
    b = byte_budget(m)
    assert tuple(b) == CATEGORIES and all(v >= 0 for v in b.values())
    assert sum(b.values()) == m.size
    named = [t.name for sg in m.subgraphs for t in sg.tensors if t.name]
    # a name costs its length + 4 (length) + 1 (terminator) at least
    assert b["names"] >= sum(len(n.encode()) + 5 for n in named)
    assert b["constant_data"] >= max(
        (t.data_bytes for sg in m.subgraphs for t in sg.tensors), default=0
    )
    padding_share = b["padding"] / m.size
    assert padding_share < 0.1, b


@needs_ref
def test_budget_of_kws_counts_its_quantization_arrays() -> None:
    m = TFLiteModel.from_file(REF / KWS)
    b = byte_budget(m)
    # scale, min, max (4 B each) and zero point (8 B) values, plus a 4 B length per vector
    arrays = 0
    for t in flatbuf.unpack(m.data).subgraphs[0].tensors:
        q = t.quantization
        if q is None:
            continue
        for vec, size in ((q.scale, 4), (q.min, 4), (q.max, 4), (q.zeroPoint, 8)):
            if vec is not None:
                arrays += 4 + size * len(vec)
    assert arrays <= b["quantization"] <= arrays + 40 * len(m.main.tensors)
    assert b["constant_data"] == m.weight_bytes()


# --- reference models: TFLM bit-identical -----------------------------------------------------


@needs_ref
@pytest.mark.parametrize("rel", TFLM_RUNS)
def test_lean_reference_model_is_bit_identical_in_tflm(rel: str) -> None:
    full = TFLiteModel.from_file(REF / rel)
    check_lean(full, samples=1 if full.size > BIG else 2)


@needs_ref
@pytest.mark.parametrize("rel", [KWS, "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
                                 "mlperf_tiny/ad/ad01_int8.tflite", HELLO])  # fmt: skip
def test_litert_runs_the_compatible_variant_bit_identically(rel: str) -> None:
    full = TFLiteModel.from_file(REF / rel)
    compat = lean_model(full, reduce_zero_points=False)
    inputs = random_samples(full, np.random.default_rng(1), 2)
    assert_same(litert_outputs(full.data, inputs), litert_outputs(compat.data, inputs))
    assert compat.stats.zero_points_reduced == 0 and len(compat.data) < full.size


@needs_ref
def test_litert_rejects_reduced_zero_points_so_phones_keep_the_full_model() -> None:
    full = TFLiteModel.from_file(REF / KWS)
    lm = lean_model(full)
    assert lm.stats.zero_points_reduced > 0
    with pytest.raises(Exception, match="zero_point"):
        litert_outputs(lm.data, random_samples(full, np.random.default_rng(0), 1))


@needs_ref
def test_kws_rules_applied() -> None:
    full = TFLiteModel.from_file(REF / KWS)
    lm = lean_model(full)
    lean = TFLiteModel.from_bytes(lm.data)
    s = lm.stats
    assert "min_runtime_version" in s.metadata_removed
    assert s.names_removed >= len(full.main.tensors)
    for op in lean.main.operators:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = lean.main.tensors[op.inputs[1]]
            assert not lean.main.tensors[op.inputs[2]].is_quantized  # conv bias: no scales
            if w.per_channel:
                assert len(w.zero_points) == 1 and w.zero_points == (0,)
        if op.name == "FULLY_CONNECTED" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            assert lean.main.tensors[op.inputs[2]].is_quantized  # FC keeps its bias scale
    # overhead at most half of what it was
    bf, bl = byte_budget(full), byte_budget(lean)
    assert lean.size - bl["constant_data"] <= 0.5 * (full.size - bf["constant_data"])


# --- the boundaries of the rules: stepping over them breaks TFLM ------------------------------


def _edited(data: bytes, edit: Any) -> bytes:
    m = flatbuf.unpack(data)
    edit(m)
    return flatbuf.pack(m)


def _fc_biases(m: Any) -> list[Any]:
    sg = m.subgraphs[0]
    out = []
    for op in sg.operators:
        if flatbuf.op_name(m, op) == "FULLY_CONNECTED" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            out.append(sg.tensors[op.inputs[2]])
    return out


@needs_ref
def test_fully_connected_needs_its_bias_scale() -> None:
    """TFLM's per-tensor FULLY_CONNECTED checks the bias scale: without it Prepare fails.
    This is why rule 5 leaves FULLY_CONNECTED biases alone."""
    data = (REF / HELLO).read_bytes()
    assert _fc_biases(flatbuf.unpack(data)), "hello_world has FC layers with bias"

    def drop(m: Any) -> None:
        for t in _fc_biases(m):
            t.quantization = None

    broken = _edited(data, drop)
    full = TFLiteModel.from_bytes(data)
    with pytest.raises(RuntimeError):
        tflm_outputs(broken, random_samples(full, np.random.default_rng(0), 1), 1)
    lean = TFLiteModel.from_bytes(lean_model(full).data)
    assert all(
        lean.main.tensors[op.inputs[2]].is_quantized
        for op in lean.main.operators
        if op.name == "FULLY_CONNECTED"
    )


@needs_ref
def test_a_zero_point_must_stay_or_the_scales_are_ignored() -> None:
    """Without any zero point TFLM ignores a tensor's quantization: outputs change. Rule 4
    keeps one entry."""
    data = (REF / KWS).read_bytes()

    def drop_zero_points(m: Any) -> None:
        for t in m.subgraphs[0].tensors:
            q = t.quantization
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint) > 1:
                q.zeroPoint = None

    full = TFLiteModel.from_bytes(data)
    inputs = random_samples(full, np.random.default_rng(0), 1)
    try:
        broken = tflm_outputs(_edited(data, drop_zero_points), inputs, 1)
    except RuntimeError:
        return  # refused: just as much a failure
    assert not all(
        np.array_equal(a, b) for a, b in zip(broken, tflm_outputs(data, inputs, 1), strict=True)
    )


@needs_ref
def test_zero_points_are_reduced_only_when_all_equal() -> None:
    data = (REF / HELLO).read_bytes()
    state: dict[str, int] = {}

    def give_zero_points(m: Any) -> None:
        ts = [t for t in m.subgraphs[0].tensors if t.quantization is not None]
        a, b = ts[0], ts[1]
        a.quantization.scale = [1.0, 2.0, 3.0]
        a.quantization.zeroPoint = [0, 1, 0]
        b.quantization.scale = [1.0, 2.0, 3.0]
        b.quantization.zeroPoint = [7, 7, 7]
        state["a"], state["b"] = m.subgraphs[0].tensors.index(a), m.subgraphs[0].tensors.index(b)

    edited = TFLiteModel.from_bytes(_edited(data, give_zero_points))
    lean = TFLiteModel.from_bytes(lean_model(edited).data)
    assert lean.main.tensors[state["a"]].zero_points == (0, 1, 0)
    assert lean.main.tensors[state["b"]].zero_points == (7,)


@needs_ref
def test_duplicate_buffers_are_shared_and_tflm_metadata_is_kept() -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = (REF / KWS).read_bytes()
    state: dict[str, Any] = {}

    def duplicate(m: Any) -> None:
        sg = m.subgraphs[0]
        t = next(t for t in sg.tensors if m.buffers[t.buffer].data is not None
                 and len(m.buffers[t.buffer].data) >= 64)  # fmt: skip
        other = next(u for u in sg.tensors if u is not t and m.buffers[u.buffer].data is not None
                     and len(m.buffers[u.buffer].data) == len(m.buffers[t.buffer].data))  # fmt: skip
        other_i = sg.tensors.index(other)
        flatbuf.set_buffer_array(m, sg, other_i, flatbuf.buffer_array(m, t).astype(
            flatbuf._NUMPY_OF_TYPE[int(other.type)]) if other.type == t.type else None)  # fmt: skip
        state["pair"] = (sg.tensors.index(t), other_i)
        for name in ("OfflineMemoryAllocation", "something_else"):
            buf = schema.BufferT()
            buf.data = np.frombuffer(b"\x01\x00\x00\x00" * 4, dtype=np.uint8)
            m.buffers.append(buf)
            md = schema.MetadataT()
            md.name, md.buffer = name, len(m.buffers) - 1
            m.metadata.append(md)

    try:
        edited_bytes = _edited(data, duplicate)
    except (StopIteration, AttributeError, TypeError):
        pytest.skip("no pair of equal-sized constant tensors of one type")
    edited = TFLiteModel.from_bytes(edited_bytes)
    lm = lean_model(edited)
    lean = TFLiteModel.from_bytes(lm.data)
    a, b = state["pair"]
    if lean.main.tensors[a].dtype == lean.main.tensors[b].dtype:
        assert lean.main.tensors[a].buffer_index == lean.main.tensors[b].buffer_index
        assert lm.stats.buffers_deduplicated >= 1
    root = schema.Model.GetRootAs(lm.data, 0)
    kept = sorted(root.Metadata(i).Name().decode() for i in range(root.MetadataLength()))
    assert kept == ["OfflineMemoryAllocation"] and "something_else" in lm.stats.metadata_removed
    assert "OfflineMemoryAllocation" in TFLM_METADATA
    assert root.SignatureDefsLength() == 0


# --- randomized single-operator models of every operator our converter emits -----------------
# (the ops in benchmarks/results/*.json; RELU_0_TO_1 is left out: the tflite-micro Python
# interpreter does not register it, so even the full model fails to allocate there)

SEED = int(os.environ.get("EDGEDEPLOY_LEAN_SEED", "20261204"))


def _single_op_models(rng: np.random.Generator) -> dict[str, tuple[Any, list[int]]]:
    """op name → (tf function of one input, input shape), with random sizes and weights."""
    import tensorflow as tf

    h, w = (int(v) for v in rng.integers(3, 9, size=2))
    c, k = int(rng.integers(1, 9)), int(rng.integers(2, 9))
    r = lambda *s: tf.constant(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    four = [1, h, w, c]
    return {
        "CONV_2D": (lambda x: tf.nn.conv2d(x, r(3, 3, c, k), 1, "SAME") + r(k), four),
        "DEPTHWISE_CONV_2D": (
            lambda x: tf.nn.depthwise_conv2d(x, r(3, 3, c, 1), [1, 1, 1, 1], "SAME") + r(c),
            four,
        ),
        "FULLY_CONNECTED": (lambda x: tf.matmul(x, r(c * 4, k)) + r(k), [1, c * 4]),
        "TRANSPOSE_CONV": (
            lambda x: tf.nn.conv2d_transpose(x, r(3, 3, k, c), [1, 2 * h, 2 * w, k], 2, "SAME"),
            four,
        ),
        "ADD": (lambda x: x + r(*four), four),
        "SUB": (lambda x: x - r(*four), four),
        "MUL": (lambda x: x * r(*four), four),
        "AVERAGE_POOL_2D": (lambda x: tf.nn.avg_pool2d(x, 2, 1, "VALID"), four),
        "MAX_POOL_2D": (lambda x: tf.nn.max_pool2d(x, 2, 1, "VALID"), four),
        "RESHAPE": (lambda x: tf.reshape(x * 2.0, [1, h * w, c]), four),
        "SOFTMAX": (lambda x: tf.nn.softmax(x), [1, k * 3]),
        "CONCATENATION": (lambda x: tf.concat([x, x * 0.5], axis=3), four),
        "MEAN": (lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True), four),
        "PAD": (lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), four),
        "MIRROR_PAD": (lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT"), four),
        "HARD_SWISH": (lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, four),
        "LOGISTIC": (lambda x: tf.sigmoid(x), four),
        "TANH": (lambda x: tf.tanh(x), four),
        "STRIDED_SLICE": (lambda x: x[:, 1:, :, :], four),
        "TRANSPOSE": (lambda x: tf.transpose(x, [0, 2, 1, 3]), four),
        "GATHER": (lambda x: tf.gather(x, [0, c - 1, 0], axis=3), four),
        "BATCH_MATMUL": (lambda x: tf.matmul(x, x * 0.5, transpose_b=True), [1, h, k]),
        "SQUARED_DIFFERENCE": (lambda x: tf.math.squared_difference(x, r(*four)), four),
        "RSQRT": (lambda x: tf.math.rsqrt(x * x + 1.0), four),
    }


def _convert(fn: Any, shape: list[int], rng: np.random.Generator) -> bytes:
    import tensorflow as tf

    spec = tf.TensorSpec(shape, tf.float32)
    concrete = tf.function(fn, input_signature=[spec]).get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
    conv.representative_dataset = lambda: ([s] for s in samples)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


@pytest.fixture(scope="module")
def single_op_models() -> dict[str, bytes]:
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(SEED)
    out = {op: _convert(fn, shape, rng) for op, (fn, shape) in _single_op_models(rng).items()}
    return out


OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL",
       "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "SOFTMAX", "CONCATENATION", "MEAN", "PAD",
       "MIRROR_PAD", "HARD_SWISH", "LOGISTIC", "TANH", "STRIDED_SLICE",
       "TRANSPOSE", "GATHER", "BATCH_MATMUL", "SQUARED_DIFFERENCE", "RSQRT"]  # fmt: skip


@pytest.mark.parametrize("op", OPS)
def test_single_operator_model_is_bit_identical_in_tflm(
    op: str, single_op_models: dict[str, bytes]
) -> None:
    full = TFLiteModel.from_bytes(single_op_models[op], source=f"<{op} seed {SEED}>")
    assert op in full.op_names(), f"the converter did not emit {op}: {full.op_names()}"
    check_lean(full, samples=3, seed=SEED)


# --- the emit stage and its CLI --------------------------------------------------------------


@needs_ref
def test_emit_is_lean_for_mcu_targets_and_full_for_phones(tmp_path: Path) -> None:
    import json

    from toolchain.cli import main
    from toolchain.emit import emit

    src = REF / "tflm_models/micro_speech/micro_speech_quantized.tflite"
    full = TFLiteModel.from_file(src)
    r = emit(src, out_dir=tmp_path / "mcu", target="mps2-an386", golden_count=1)
    assert r.lean is not None and r.lean.bytes_after < full.size
    report = json.loads((tmp_path / "mcu" / "emit_report.json").read_text())
    assert report["lean"]["tflm_outputs_identical"] is True
    assert report["lean"]["budget_after"]["names"] == 0 < report["lean"]["budget_before"]["names"]
    names = json.loads((tmp_path / "mcu" / "micro_speech_quantized_tensors.json").read_text())
    assert names["subgraphs"][0]["tensors"] == [t.name for t in full.main.tensors]
    assert names["lean_sha256"] == report["lean"]["sha256"]
    cc = (tmp_path / "mcu" / "micro_speech_quantized_model_data.cc").read_text()
    assert f"= {r.lean.bytes_after};" in cc  # the array holds the lean bytes

    phone = emit(src, out_dir=tmp_path / "phone", target="android-arm64", golden_count=0)
    assert phone.lean is None and phone.symbols.tensor_names is None
    assert not (tmp_path / "phone" / "micro_speech_quantized_tensors.json").exists()

    assert main(["emit", str(src), "--out", str(tmp_path / "cli"), "--no-lean",
                 "--golden-count", "0"]) == 0  # fmt: skip
    cc = (tmp_path / "cli" / "micro_speech_quantized_model_data.cc").read_text()
    assert f"= {full.size};" in cc
    assert not (tmp_path / "cli" / "micro_speech_quantized_tensors.json").exists()


@needs_ref
def test_emit_lean_takes_golden_arrays_named_like_the_input_tensors(tmp_path: Path) -> None:
    """The lean model has no tensor names; golden data is matched against the full model's."""
    from toolchain.emit import emit

    src = REF / KWS
    full = TFLiteModel.from_file(src)
    x = np.random.default_rng(3).integers(-128, 128, size=(2, *full.inputs[0].shape))
    # a second array: only matching by the input tensor's name picks the right one
    arrays = {full.inputs[0].name: x.astype(np.int8), "labels": np.arange(2)}
    np.savez(tmp_path / "g.npz", **arrays)
    r = emit(src, out_dir=tmp_path / "o", golden_data=tmp_path / "g.npz", check_litert=False)
    assert r.lean is not None and r.golden is not None and r.golden.count == 2
    np.testing.assert_array_equal(r.golden.inputs[0], x.astype(np.int8))


@needs_ref
def test_inspect_prints_the_byte_budget(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from toolchain.cli import main

    assert main(["inspect", str(REF / KWS), "--json", "--no-tensors"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(info["budget"].values()) == info["bytes"] == 53_936
    assert info["budget"]["names"] > 5_000 and info["budget"]["quantization"] > 19_000
    assert main(["inspect", str(REF / KWS), "--no-tensors"]) == 0
    out = capsys.readouterr().out
    assert "bytes of the file" in out and "quantization" in out and "padding" in out


@needs_ref
def test_buffers_keep_their_numbers_when_tflm_compression_metadata_names_them() -> None:
    from ai_edge_litert import schema_py_generated as schema

    def add_compression(m: Any) -> None:
        buf = schema.BufferT()
        buf.data = np.frombuffer(b"\x00" * 16, dtype=np.uint8)
        m.buffers.append(buf)
        md = schema.MetadataT()
        md.name, md.buffer = "COMPRESSION_METADATA", len(m.buffers) - 1
        m.metadata = [*(m.metadata or []), md]

    edited = TFLiteModel.from_bytes(_edited((REF / KWS).read_bytes(), add_compression))
    lm = lean_model(edited)
    lean = TFLiteModel.from_bytes(lm.data)
    assert lm.stats.buffers_removed == 0
    assert [t.buffer_index for t in lean.main.tensors if t.is_constant] == [
        t.buffer_index for t in edited.main.tensors if t.is_constant
    ]
