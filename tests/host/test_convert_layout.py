"""Host tier: folding layout-only TRANSPOSE ops in hand-built .tflite models, and the
flatbuffer editor under it (packing, alignment, compaction). LiteRT runs each model before
and after, so the folds are checked numerically, not just structurally."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from toolchain.convert import flatbuf
from toolchain.convert.layout import (
    compose_input_perm,
    compose_output_perm,
    fold_layout_transposes,
)
from toolchain.tflite_model import TFLiteModel

OPS = schema.BuiltinOperator
RNG = np.random.default_rng(7)


class Builder:
    """A tiny float32 TFLite model builder on the flatbuffer object API."""

    def __init__(self) -> None:
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.buffers = [schema.BufferT()]
        self.model.operatorCodes = []
        self.sg = schema.SubGraphT()
        self.sg.tensors, self.sg.operators = [], []
        self.model.subgraphs = [self.sg]

    def tensor(
        self,
        shape: tuple[int, ...],
        data: np.ndarray | None = None,
        *,
        dtype: int = schema.TensorType.FLOAT32,
        name: str = "",
    ) -> int:
        t = schema.TensorT()
        t.shape = list(shape)
        t.type = dtype
        t.name = name or f"t{len(self.sg.tensors)}"
        t.buffer = 0
        if data is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.model.buffers.append(b)
            t.buffer = len(self.model.buffers) - 1
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def const_i32(self, values: list[int]) -> int:
        return self.tensor(
            (len(values),), np.array(values, dtype=np.int32), dtype=schema.TensorType.INT32
        )

    def op(
        self,
        code: int,
        inputs: list[int],
        outputs: list[int],
        options: tuple[int, Any] | None = None,
    ) -> None:
        codes = [c.builtinCode for c in self.model.operatorCodes]
        if code not in codes:
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.model.operatorCodes.append(oc)
            codes.append(code)
        op = schema.OperatorT()
        op.opcodeIndex = codes.index(code)
        op.inputs, op.outputs = inputs, outputs
        if options is not None:
            op.builtinOptionsType, op.builtinOptions = options
        self.sg.operators.append(op)

    def transpose(self, x: int, perm: list[int], out_shape: tuple[int, ...]) -> int:
        y = self.tensor(out_shape)
        self.op(
            OPS.TRANSPOSE,
            [x, self.const_i32(perm)],
            [y],
            (schema.BuiltinOptions.TransposeOptions, schema.TransposeOptionsT()),
        )
        return y

    def reshape(self, x: int, shape: tuple[int, ...]) -> int:
        y = self.tensor(shape)
        opts = schema.ReshapeOptionsT()
        opts.newShape = list(shape)
        self.op(
            OPS.RESHAPE,
            [x, self.const_i32(list(shape))],
            [y],
            (schema.BuiltinOptions.ReshapeOptions, opts),
        )
        return y

    def fc(self, x: int, w: np.ndarray) -> int:
        y = self.tensor((1, w.shape[0]))
        wt = self.tensor(w.shape, w.astype(np.float32))
        bt = self.tensor((w.shape[0],), RNG.standard_normal(w.shape[0]).astype(np.float32))
        self.op(
            OPS.FULLY_CONNECTED,
            [x, wt, bt],
            [y],
            (schema.BuiltinOptions.FullyConnectedOptions, schema.FullyConnectedOptionsT()),
        )
        return y

    def concat(self, xs: list[int], shape: tuple[int, ...]) -> int:
        y = self.tensor(shape)
        opts = schema.ConcatenationOptionsT()
        opts.axis = 1
        self.op(OPS.CONCATENATION, xs, [y], (schema.BuiltinOptions.ConcatenationOptions, opts))
        return y

    def relu(self, x: int) -> int:
        y = self.tensor(tuple(self.sg.tensors[x].shape))
        self.op(OPS.RELU, [x], [y])
        return y

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        self.sg.inputs, self.sg.outputs = inputs, outputs
        return flatbuf.pack(self.model)


def run(data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs, strict=True):
        it.set_tensor(d["index"], x.astype(np.float32))
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def flatten_fc_model(with_concat: bool) -> bytes:
    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")  # NHWC
    t = b.transpose(x, [0, 3, 1, 2], (1, 4, 2, 3))  # back to NCHW, as onnx2tf does
    r = b.reshape(t, (1, 24))
    inputs = [x]
    if with_concat:
        v = b.tensor((1, 3), name="v")
        inputs.append(v)
        r = b.concat([v, r], (1, 27))
    y = b.fc(r, RNG.standard_normal((5, r and b.sg.tensors[r].shape[1])))
    return b.finish(inputs, [y])


@pytest.mark.parametrize("with_concat", [False, True])
def test_flatten_transpose_is_folded_into_fc_weights(with_concat: bool) -> None:
    data = flatten_fc_model(with_concat)
    assert TFLiteModel.from_bytes(data).op_histogram()["TRANSPOSE"] == 1
    res = fold_layout_transposes(data)
    assert res.removed == 1 and len(res.folded_into) == 1
    folded = TFLiteModel.from_bytes(res.data)
    assert "TRANSPOSE" not in folded.op_histogram()
    # the orphaned perm constant and transposed tensor are gone
    assert len(folded.main.tensors) == len(TFLiteModel.from_bytes(data).main.tensors) - 2
    for _ in range(3):
        xs = [RNG.standard_normal((1, 2, 3, 4))]
        if with_concat:
            xs.append(RNG.standard_normal((1, 3)))
        np.testing.assert_allclose(run(res.data, xs)[0], run(data, xs)[0], rtol=1e-5, atol=1e-5)


def test_transpose_feeding_something_else_is_left_alone() -> None:
    b = Builder()
    x = b.tensor((1, 2, 3, 4))
    t = b.transpose(b.relu(x), [0, 3, 1, 2], (1, 4, 2, 3))  # mid-graph, not at an input
    y = b.relu(t)  # not a reshape → FC chain; not a graph output either
    z = b.relu(y)
    data = b.finish([x], [z])
    res = fold_layout_transposes(data)
    assert res.removed == 0 and res.data == data


def test_io_transposes_are_dropped_and_reported() -> None:
    b = Builder()
    x = b.tensor((1, 4, 2, 3), name="x")  # NCHW input...
    t = b.transpose(x, [0, 2, 3, 1], (1, 2, 3, 4))  # ...made NHWC at once
    h = b.relu(t)
    y = b.transpose(h, [0, 3, 1, 2], (1, 4, 2, 3))  # and back to NCHW at the end
    data = b.finish([x], [y])
    res = fold_layout_transposes(data)
    assert res.removed == 2
    assert res.input_perms == {0: (0, 2, 3, 1)} and res.output_perms == {0: (0, 3, 1, 2)}
    m = TFLiteModel.from_bytes(res.data)
    assert m.op_histogram() == {"RELU": 1}
    assert m.inputs[0].shape == (1, 2, 3, 4) and m.outputs[0].shape == (1, 2, 3, 4)
    # the specs' perms compose: PyTorch NCHW → NHWC for both
    assert compose_input_perm((0, 1, 2, 3), res.input_perms[0]) == (0, 2, 3, 1)
    assert compose_output_perm((0, 1, 2, 3), res.output_perms[0]) == (0, 2, 3, 1)
    xn = RNG.standard_normal((1, 4, 2, 3))
    want = run(data, [xn])[0]
    got = run(res.data, [xn.transpose(0, 2, 3, 1)])[0]
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want)


def test_concat_between_layout_transposes_concatenates_channels_last() -> None:
    """DLA's aggregation as onnx2tf leaves it: NHWC → NCHW per input, concatenation on the
    NCHW channels, back to NHWC for each reader."""
    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")
    a, c = b.relu(x), b.relu(b.relu(x))
    ta = b.transpose(a, [0, 3, 1, 2], (1, 4, 2, 3))
    tc = b.transpose(c, [0, 3, 1, 2], (1, 4, 2, 3))
    cat = b.concat([ta, tc, ta], (1, 12, 2, 3))  # axis 1 = NCHW channels
    back1 = b.transpose(cat, [0, 2, 3, 1], (1, 2, 3, 12))
    back2 = b.transpose(cat, [0, 2, 3, 1], (1, 2, 3, 12))
    y1, y2 = b.relu(back1), b.relu(back2)
    data = b.finish([x], [y1, y2])
    res = fold_layout_transposes(data)
    assert res.removed == 4  # both input transposes and both readers
    m = TFLiteModel.from_bytes(res.data)
    assert "TRANSPOSE" not in m.op_histogram()
    cat_op = next(op for op in flatbuf.unpack(res.data).subgraphs[0].operators
                  if op.builtinOptionsType == schema.BuiltinOptions.ConcatenationOptions)  # fmt: skip
    assert cat_op.builtinOptions.axis == 3
    xn = RNG.standard_normal((1, 2, 3, 4))
    for want, got in zip(run(data, [xn]), run(res.data, [xn]), strict=True):
        np.testing.assert_array_equal(got, want)


def test_concat_read_in_its_transposed_layout_is_left_alone() -> None:
    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")
    ta = b.transpose(b.relu(x), [0, 3, 1, 2], (1, 4, 2, 3))
    tc = b.transpose(b.relu(x), [0, 3, 1, 2], (1, 4, 2, 3))
    cat = b.concat([ta, tc], (1, 8, 2, 3))
    back = b.transpose(cat, [0, 2, 3, 1], (1, 2, 3, 8))
    other = b.relu(cat)  # a reader that wants the NCHW concatenation
    data = b.finish([x], [b.relu(back), b.relu(other)])
    assert fold_layout_transposes(data).removed == 0


def _channel_norm_between_transposes(shared_axes: bool) -> bytes:
    """ConvNeXt's downsampling LayerNorm as onnx2tf leaves it: NHWC → NCHW, mean over the
    channels (axis 1), centre, scale by a per-channel constant, back to NHWC."""
    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")
    t = b.transpose(b.relu(x), [0, 3, 1, 2], (1, 4, 2, 3))
    axes = b.const_i32([1])
    mean_opts = schema.ReducerOptionsT()
    mean_opts.keepDims = True
    m = b.tensor((1, 1, 2, 3))
    b.op(OPS.MEAN, [t, axes], [m], (schema.BuiltinOptions.ReducerOptions, mean_opts))
    c = b.tensor((1, 4, 2, 3))
    b.op(OPS.SUB, [t, m], [c], (schema.BuiltinOptions.SubOptions, schema.SubOptionsT()))
    gamma = b.tensor((1, 4, 1, 1), RNG.standard_normal((1, 4, 1, 1)).astype(np.float32))
    g = b.tensor((1, 4, 2, 3))
    b.op(OPS.MUL, [c, gamma], [g], (schema.BuiltinOptions.MulOptions, schema.MulOptionsT()))
    back = b.transpose(g, [0, 2, 3, 1], (1, 2, 3, 4))
    outs = [b.relu(back)]
    if shared_axes:  # another reduction outside the region reads the same axes constant
        m2 = b.tensor((1, 1, 3, 4))
        b.op(OPS.MEAN, [b.relu(x), axes], [m2], (schema.BuiltinOptions.ReducerOptions, mean_opts))
        outs.append(m2)
    return b.finish([x], outs)


@pytest.mark.parametrize("shared_axes", [False, True])
def test_channel_norm_between_transposes_runs_channels_last(shared_axes: bool) -> None:
    data = _channel_norm_between_transposes(shared_axes)
    res = fold_layout_transposes(data)
    assert res.removed == 2
    m = TFLiteModel.from_bytes(res.data)
    assert "TRANSPOSE" not in m.op_histogram()
    for _ in range(3):
        xn = RNG.standard_normal((1, 2, 3, 4))
        for want, got in zip(run(data, [xn]), run(res.data, [xn]), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_region_with_a_reader_outside_is_left_alone() -> None:
    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")
    t = b.transpose(b.relu(x), [0, 3, 1, 2], (1, 4, 2, 3))
    r = b.relu(t)
    back = b.transpose(r, [0, 2, 3, 1], (1, 2, 3, 4))
    side = b.reshape(r, (1, 24))  # reads the NCHW tensor: the region is not closed
    data = b.finish([x], [b.relu(back), side])
    assert fold_layout_transposes(data).removed == 0


def test_pack_aligns_buffers_to_16_bytes_and_round_trips() -> None:
    data = flatten_fc_model(True)
    model = flatbuf.unpack(data)
    again = flatbuf.pack(model)
    assert again == data  # deterministic
    raw = schema.Model.GetRootAs(again, 0)
    for i in range(raw.BuffersLength()):
        buf = raw.Buffers(i)
        if buf.DataLength():
            offset = buf._tab.Vector(buf._tab.Offset(4))
            assert offset % 16 == 0, f"buffer {i} at {offset}"


def test_compact_renumbers_signatures_and_drops_unused() -> None:
    b = Builder()
    x = b.tensor((1, 4), name="x")
    b.tensor((7,), np.zeros(7, np.float32), name="unused_const")
    y = b.relu(x)
    sig = schema.SignatureDefT()
    sig.signatureKey = "serving_default"
    mi, mo = schema.TensorMapT(), schema.TensorMapT()
    mi.name, mi.tensorIndex, mo.name, mo.tensorIndex = "x", x, "y", y
    sig.inputs, sig.outputs = [mi], [mo]
    b.model.signatureDefs = [sig]
    data = b.finish([x], [y])
    model = flatbuf.unpack(data)
    flatbuf.compact(model)
    out = flatbuf.pack(model)
    m = TFLiteModel.from_bytes(out)
    assert [t.name for t in m.main.tensors] == ["x", "t2"]
    it = Interpreter(model_content=out)
    sig_list = it.get_signature_list()
    assert sig_list["serving_default"] == {"inputs": ["x"], "outputs": ["y"]}
    runner = it.get_signature_runner()
    res = runner(x=np.array([[-1, 2, -3, 4]], np.float32))
    np.testing.assert_array_equal(res["y"], [[0, 2, 0, 4]])


def _mean_after_transpose(axes: list[int], keep_dims: bool = True) -> bytes:
    """MobileViT v2's one-group GroupNorm as onnx2tf leaves it: the NHWC map transposed to
    NCHW only for the mean, which reduces ``axes``; the centring reads the NHWC map."""
    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")
    r = b.relu(x)
    t = b.transpose(r, [0, 3, 1, 2], (1, 4, 2, 3))
    opts = schema.ReducerOptionsT()
    opts.keepDims = keep_dims
    kept = [1 if i in axes else d for i, d in enumerate((1, 4, 2, 3))]
    m = b.tensor(tuple(kept) if keep_dims else tuple(d for i, d in enumerate(kept)
                                                    if i not in axes))  # fmt: skip
    b.op(OPS.MEAN, [t, b.const_i32(axes)], [m], (schema.BuiltinOptions.ReducerOptions, opts))
    return b.finish([x], [m, b.relu(r)])


@pytest.mark.parametrize("keep_dims", [True, False])
def test_transpose_before_a_full_mean_is_dropped(keep_dims: bool) -> None:
    data = _mean_after_transpose([1, 2, 3], keep_dims)
    res = fold_layout_transposes(data)
    assert res.removed == 1
    assert "TRANSPOSE" not in TFLiteModel.from_bytes(res.data).op_histogram()
    xn = RNG.standard_normal((1, 2, 3, 4))
    for want, got in zip(run(data, [xn]), run(res.data, [xn]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_transpose_before_a_mean_that_keeps_a_moved_axis_stays() -> None:
    # a spatial mean of the NCHW tensor keeps the channels, which the transpose moved
    assert fold_layout_transposes(_mean_after_transpose([2, 3])).removed == 0


def test_requantized_concat_inputs_between_layout_transposes_fold_too() -> None:
    """The int16x8 converter requantizes each input of a CONCATENATION after onnx2tf's
    NCHW transpose (TRANSPOSE → QUANTIZE → CONCATENATION: DLA in int16x8). The QUANTIZE
    moves before its TRANSPOSE, then the concatenation folds as above; bit-exact."""

    def q(shape: tuple[int, ...], scale: float) -> int:
        t = b.tensor(shape, dtype=schema.TensorType.INT8)
        qp = schema.QuantizationParametersT()
        qp.scale, qp.zeroPoint = [scale], [0]
        b.sg.tensors[t].quantization = qp
        return t

    b = Builder()
    x = b.tensor((1, 2, 3, 4), name="x")
    a, c = b.relu(x), b.relu(b.relu(x))
    ta = b.transpose(a, [0, 3, 1, 2], (1, 4, 2, 3))
    tc = b.transpose(c, [0, 3, 1, 2], (1, 4, 2, 3))
    qa, qc = q((1, 4, 2, 3), 0.02), q((1, 4, 2, 3), 0.02)
    b.op(OPS.QUANTIZE, [ta], [qa])
    b.op(OPS.QUANTIZE, [tc], [qc])
    cat = b.concat([qa, qc], (1, 8, 2, 3))
    cat_q = b.sg.tensors[cat]
    cat_q.type, cat_q.quantization = schema.TensorType.INT8, b.sg.tensors[qa].quantization
    back = q((1, 2, 3, 8), 0.02)
    b.op(OPS.TRANSPOSE, [cat, b.const_i32([0, 2, 3, 1])], [back],
         (schema.BuiltinOptions.TransposeOptions, schema.TransposeOptionsT()))  # fmt: skip
    y = b.tensor((1, 2, 3, 8))
    b.op(OPS.DEQUANTIZE, [back], [y])
    data = b.finish([x], [y])
    res = fold_layout_transposes(data)
    assert res.removed == 3
    hist = TFLiteModel.from_bytes(res.data).op_histogram()
    assert "TRANSPOSE" not in hist and hist["QUANTIZE"] == 2
    xn = RNG.standard_normal((1, 2, 3, 4))
    np.testing.assert_array_equal(run(res.data, [xn])[0], run(data, [xn])[0])
