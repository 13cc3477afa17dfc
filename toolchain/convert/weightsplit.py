"""Two-term int8 weights for the layers whose weight rounding the output cannot afford.

Why (measured on DLA-60, docs/convert.md): int8 weights are quantized per output channel
with ``s = max|w| / 127``; for ordinary weights (max/rms 2–5, no outliers) that gives each
layer a local weight SQNR of 42–46 dB, the best a uniform 8-bit grid gives. A deep net with
a normalisation after every convolution can amplify a perturbation of an early feature map
by 20–30 dB on the way to its logits (DLA-60: 45 dB at ``level0`` → 19.7 dB at the logits,
about 1 dB more per convolution of its 50-layer trunk), so those few small early layers'
int8 weights alone cap the model at 17 dB however the activations are quantized. No
rescaling helps (nothing to equalise) and better rounding (gptq) buys about 5 dB.

What: a chosen layer ``y = conv(x, W) + b`` becomes ``y = conv(x, W₁) + b + conv(x, W₂)``
with ``W₁ = round(W/s)·s`` (exactly the integers the converter would take) and ``W₂ = W −
W₁`` (the rounding residual, quantized by the converter with its own per-channel scale,
about 1/254 of ``s``): two layers of the same shape and an ADD, all TFLM builtins (CONV_2D /
DEPTHWISE_CONV_2D / FULLY_CONNECTED, ADD). It is exact in float (``W₁ + W₂ = W`` to float32
rounding); in int8 the layer's weights then carry about 15 bits. The price: the layer's
weight bytes twice (plus its quantization parameters), one ADD, and in int8 one more
rounded activation (the sum); with int16 activations that rounding is negligible.

Which layers: each candidate's weights-only contribution is measured on the calibration
data (onnxruntime, only that layer's weights rounded to nearest on the converter's grid,
SQNR of the outputs' input-dependent part); the layers are taken in order of noise power
per byte until the predicted weights-only SQNR (the remaining layers' noise powers
added) reaches the target or the byte budget (a fraction of the model's bytes) is spent. The record says what was measured,
chosen, predicted and measured after the split (all layers rounded, the split ones as two
terms), and the bytes added.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: name suffixes of the two halves (node and initializer names)
MAIN, RESIDUAL = "__wsplit_main", "__wsplit_residual"
#: default weights-only target (dB, input-dependent SQNR of the outputs on calibration data)
DEFAULT_TARGET_DB = 35.0
#: default byte budget: the added bytes as a fraction of the model's (estimated)
DEFAULT_BUDGET = 0.10
#: calibration samples the sensitivities are measured on
SAMPLES = 32


#: bytes per output channel of a quantized layer besides its weights (TFLite): weight
#: scale (4) and zero point (8), bias (int32 with int8 activations, int64 with int16), bias
#: scale (4) and zero point (8)
CHANNEL_BYTES = 32
#: bytes of one more layer, an ADD and their tensors' descriptions (names, shapes,
#: quantization tables; measured 300-1,000, longer onnx2tf names in small models)
LAYER_BYTES = 1000


@dataclass
class _Cand:
    node: Any
    weight: str
    kind: str  # "conv" | "gemm" | "matmul"
    per_channel: bool
    size: int  # weights (= int8 bytes)
    out_channels: int


def _candidates(model: Any, per_channel: bool, per_channel_dense: bool) -> list[_Cand]:
    """Conv / Gemm / MatMul nodes with a constant weight used by them alone."""
    from toolchain.convert.weightround import weighted_nodes

    out = []
    for n, dims in weighted_nodes(model):
        if n.name.endswith((MAIN, RESIDUAL)):
            continue
        size = int(np.prod(dims))
        if n.op_type == "Conv" and len(dims) == 4:
            out.append(_Cand(n, n.input[1], "conv", per_channel, size, dims[0]))
        elif n.op_type == "Gemm" and len(dims) == 2:
            if any(a.name == "transA" and a.i for a in n.attribute):
                continue
            tb = any(a.name == "transB" and a.i for a in n.attribute)
            out.append(_Cand(n, n.input[1], "gemm", per_channel and per_channel_dense, size,
                             dims[0] if tb else dims[1]))  # fmt: skip
        elif n.op_type == "MatMul" and len(dims) == 2:
            out.append(_Cand(n, n.input[1], "matmul", per_channel and per_channel_dense, size,
                             dims[1]))  # fmt: skip
    return out


def _bytes(c: _Cand) -> int:
    """A layer's bytes in the .tflite, estimated: weights and per-channel parameters."""
    return c.size + CHANNEL_BYTES * c.out_channels


def _cost(c: _Cand) -> int:
    """Bytes the split adds, estimated: a second layer of the same shape and an ADD."""
    return _bytes(c) + LAYER_BYTES


def _out_axis(c: _Cand, w: np.ndarray) -> int:
    if c.kind == "conv":
        return 0
    if c.kind == "gemm":
        tb = any(a.name == "transB" and a.i for a in c.node.attribute)
        return 0 if tb else 1
    return 1


def nearest(w: np.ndarray, per_channel: bool, axis: int = 0) -> np.ndarray:
    """``w`` on the converter's int8 grid: ``round(w/s)·s``, ``s = max|w|/127`` per slice
    along ``axis`` (per output channel) or for the whole tensor (float32)."""
    w64 = np.asarray(w, np.float64)
    if per_channel:
        red = tuple(i for i in range(w64.ndim) if i != axis)
        m = np.abs(w64).max(axis=red, keepdims=True)
    else:
        m = np.full((1,) * w64.ndim, np.abs(w64).max())
    s = np.where(m > 0, m / 127.0, 1.0)
    return (np.clip(np.round(w64 / s), -127, 127) * s).astype(np.float32)


def split_terms(w: np.ndarray, per_channel: bool, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(W₁, W₂)``: ``W₁`` the int8-grid weights, ``W₂ = W − W₁`` (float32)."""
    w = np.asarray(w, np.float32)
    main = nearest(w, per_channel, axis)
    return main, (w - main).astype(np.float32)


def split(onnx_bytes: bytes, names: Sequence[str], *, per_channel: bool = True,
          per_channel_dense: bool = False) -> bytes:  # fmt: skip
    """``onnx_bytes`` with each named node (Conv / Gemm / MatMul with a constant weight)
    replaced by its two-term form (see the module doc). Exact in float."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    cands = {c.node.name: c for c in _candidates(model, per_channel, per_channel_dense)}
    missing = [n for n in names if n not in cands]
    if missing:
        raise ValueError(f"cannot split {missing}: not a Conv/Gemm/MatMul with its own weight")
    inits = {i.name: i for i in model.graph.initializer}
    new_nodes = []
    want = set(names)
    for n in model.graph.node:
        if n.name not in want:
            new_nodes.append(n)
            continue
        c = cands[n.name]
        w = numpy_helper.to_array(inits[c.weight])
        main, res = split_terms(w, c.per_channel, _out_axis(c, w))
        wm, wr = c.weight + MAIN, c.weight + RESIDUAL
        model.graph.initializer.remove(inits[c.weight])
        model.graph.initializer.extend(
            [numpy_helper.from_array(main, wm), numpy_helper.from_array(res, wr)]
        )
        y = n.output[0]
        ym, yr = y + MAIN, y + RESIDUAL
        m_node = onnx.NodeProto()
        m_node.CopyFrom(n)
        m_node.name = n.name + MAIN
        m_node.input[1] = wm
        m_node.output[0] = ym
        r_node = onnx.NodeProto()
        r_node.CopyFrom(n)
        r_node.name = n.name + RESIDUAL
        del r_node.input[:]
        r_node.input.extend([n.input[0], wr])  # no bias: the main term carries it
        r_node.output[0] = yr
        if c.kind == "gemm":  # C (the bias) is optional; beta only scales it
            kept = [a for a in r_node.attribute if a.name != "beta"]
            del r_node.attribute[:]
            r_node.attribute.extend(kept)
        add = helper.make_node("Add", [ym, yr], [y], name=n.name + "__wsplit_add")
        new_nodes.extend([m_node, r_node, add])
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return model.SerializeToString()


def _out_elements(model: Any, layers: Sequence[_Cand]) -> dict[str, int]:
    """Elements of each layer's output (ONNX shape inference; 0 where unknown)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in [*inferred.graph.value_info, *inferred.graph.output]
    }
    out = {}
    for c in layers:
        d = dims.get(c.node.output[0])
        out[c.node.name] = int(np.prod(d)) if d and all(v > 0 for v in d) else 0
    return out


def _session(model: Any, feeds: Sequence[str]) -> Any:
    """An onnxruntime session whose ``feeds`` initializers can be overridden per run."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    for name in feeds:
        a = numpy_helper.to_array(inits[name])
        m.graph.input.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))  # fmt: skip
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    so.log_severity_level = 3  # the overridable initializers are on purpose: no warnings
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(sess: Any, calib: Sequence[np.ndarray], input_names: Sequence[str], n: int,
         extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:  # fmt: skip
    outs: list[list[np.ndarray]] = []
    for j in range(n):  # batch 1: the exported graph's shapes are static
        feed = {nm: np.asarray(a[j : j + 1], np.float32) for nm, a in zip(input_names, calib,
                                                                          strict=True)}  # fmt: skip
        outs.append(sess.run(None, {**feed, **(extra or {})}))
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def _noise(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> tuple[float, float]:
    """(signal, noise) power of the outputs' input-dependent parts, summed over outputs."""
    sig = noise = 0.0
    for r, t in zip(ref, got, strict=True):
        r64 = np.asarray(r, np.float64)
        t64 = np.asarray(t, np.float64)
        rc = r64 - r64.mean(axis=0, keepdims=True)
        tc = t64 - t64.mean(axis=0, keepdims=True)
        sig += float(np.sum(rc * rc))
        noise += float(np.sum((tc - rc) ** 2))
    return sig, noise


def _r(v: float) -> float | None:
    """``v`` rounded for the report; None when not finite (JSON has no infinity)."""
    return round(v, 2) if math.isfinite(v) else None


def _db(sig: float, noise: float) -> float:
    if noise <= 0.0:
        return math.inf
    return 10.0 * math.log10(sig / noise) if sig > 0 else -math.inf


def apply(
    onnx_bytes: bytes,
    calib: Sequence[np.ndarray],
    input_names: Sequence[str],
    *,
    target_db: float = DEFAULT_TARGET_DB,
    budget: float = DEFAULT_BUDGET,
    per_channel: bool = True,
    per_channel_dense: bool = False,
    samples: int = SAMPLES,
) -> tuple[bytes, dict[str, Any]]:
    """``onnx_bytes`` with the layers chosen (see the module doc) in two-term form; a record.

    ``calib``: one PyTorch-layout array ``(N, ...)`` per input (the first ``samples`` used);
    ``target_db``: the weights-only SQNR aimed at; ``budget``: at most this fraction of the
    model's bytes (estimated: its layers' weights and per-channel parameters) is added. The record (the report's ``conversion.techniques.
    weight_split``) has the per-layer measurements (``layers``: name, dB, weights), the
    layers ``chosen``, ``weights_only_db`` before / predicted / measured after, and
    ``added_weight_bytes``. A model whose weights already meet the target is returned as is.
    """
    import onnx
    from onnx import numpy_helper

    if not 0.0 <= budget <= 1.0:
        raise ValueError(f"weight-split budget {budget} is not between 0 and 1")
    t0 = time.perf_counter()
    model = onnx.load_from_string(onnx_bytes)
    cands = _candidates(model, per_channel, per_channel_dense)
    rec: dict[str, Any] = {"target_db": target_db, "budget": budget, "chosen": []}
    if not cands:
        return onnx_bytes, {**rec, "layers": [], "seconds": 0.0}
    n = min(samples, int(calib[0].shape[0]))
    if n < 2:
        raise ValueError("weight split needs at least 2 calibration samples")
    inits = {i.name: i for i in model.graph.initializer}
    weights = {c.weight: numpy_helper.to_array(inits[c.weight]) for c in cands}
    rounded = {
        c.weight: nearest(weights[c.weight], c.per_channel, _out_axis(c, weights[c.weight]))
        for c in cands
    }
    sess = _session(model, [c.weight for c in cands])
    ref = _run(sess, calib, input_names, n)
    sig, noise_all = _noise(ref, _run(sess, calib, input_names, n, rounded))
    per_layer: list[tuple[_Cand, float]] = []
    for c in cands:
        _, nz = _noise(ref, _run(sess, calib, input_names, n, {c.weight: rounded[c.weight]}))
        per_layer.append((c, nz))
    total_w = sum(c.size for c in cands)
    total_b = sum(_bytes(c) for c in cands)
    rec["layers"] = [
        {"name": c.node.name, "db": _r(_db(sig, nz)), "weights": c.size} for c, nz in per_layer
    ]
    rec["weights_only_db"] = {"before": _r(_db(sig, noise_all))}
    rec["samples"] = n
    # greedy: most noise per weight byte first, until the target or the budget
    remaining = sum(nz for _, nz in per_layer)
    chosen: list[_Cand] = []
    spent = 0
    if _db(sig, noise_all) < target_db:
        for c, nz in sorted(per_layer, key=lambda t: -t[1] / _cost(t[0])):
            if _db(sig, remaining) >= target_db:
                break
            if nz <= 0.0 or spent + _cost(c) > budget * total_b:
                continue  # exact on the grid already, or too dear
            chosen.append(c)
            spent += _cost(c)
            remaining -= nz
    rec["weights_only_db"]["predicted"] = _r(_db(sig, max(remaining, 0.0)))
    rec["chosen"] = [c.node.name for c in chosen]
    rec["added_weights"] = sum(c.size for c in chosen)
    rec["added_weight_fraction"] = round(rec["added_weights"] / total_w, 4) if total_w else 0.0
    rec["added_channels"] = sum(c.out_channels for c in chosen)
    rec["added_bytes_estimate"] = spent
    rec["added_fraction_estimate"] = round(spent / total_b, 4) if total_b else 0.0
    if not chosen:
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        return onnx_bytes, rec
    # arena: the two terms and their sum are alive at once; the largest split output says
    # how much more a TFLM arena may need (the budget counts bytes only)
    rec["largest_split_output_elements"] = max(_out_elements(model, chosen).values(), default=0)
    new = split(onnx_bytes, rec["chosen"], per_channel=per_channel,
                per_channel_dense=per_channel_dense)  # fmt: skip
    # measured: every layer on the converter's grid, the chosen ones as two terms
    after = onnx.load_from_string(new)
    ai = {i.name: i for i in after.graph.initializer}
    feeds = {}
    for c2 in _candidates(after, per_channel, per_channel_dense) + [
        _Cand(c.node, c.weight + suffix, c.kind, c.per_channel, c.size, c.out_channels)
        for c in chosen
        for suffix in (MAIN, RESIDUAL)
    ]:
        w = numpy_helper.to_array(ai[c2.weight])
        feeds[c2.weight] = nearest(w, c2.per_channel, _out_axis(c2, w))
    sess2 = _session(after, list(feeds))
    _, nz_after = _noise(ref, _run(sess2, calib, input_names, n, feeds))
    rec["weights_only_db"]["after"] = _r(_db(sig, nz_after))
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    log.info(
        "weight split: %d layers (%.1f %% more weights), weights-only %.1f -> %.1f dB",
        len(chosen), 100 * rec["added_weight_fraction"],
        rec["weights_only_db"]["before"], rec["weights_only_db"]["after"],
    )  # fmt: skip
    return new, rec
