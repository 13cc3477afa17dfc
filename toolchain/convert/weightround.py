"""Weight rounding chosen on data, baked into the float ONNX weights (before onnx2tf).

TFLiteConverter quantizes a convolution's weights per output channel with the scale
``s = max|w| / 127`` and rounds each ``w / s`` to the nearest integer (a FULLY_CONNECTED
layer: one scale for the tensor). Rounding to nearest is the best choice per weight, not
per layer: the errors of a layer's weights add up in its output. Two measured techniques
change that, both on the calibration data, both in the ONNX model's initializers:

* ``"bias"`` — empirical bias correction: per output channel, subtract from the bias the
  mean output shift ``(round(W/s)·s − W)·E[x]`` that nearest rounding causes, ``E[x]``
  measured on the calibration data (the weights stay as they are).
* ``"gptq"`` — error-compensating rounding (the GPTQ / Optimal Brain Quantization method,
  the closed-form relative of AdaRound): per layer, with ``H = Σ x xᵀ`` the second moment
  of the layer's input patches on the calibration data, the columns of ``W`` are rounded
  one at a time and the rounding error of each is pushed onto the columns not yet rounded
  through ``H⁻¹``, which minimises ``‖(Q − W)·X‖²`` — the layer's output error — far
  better than nearest rounding. The chosen integers are baked into the float weights as
  ``q·s``, with each channel's largest weight kept at exactly ``±127·s``, so the
  converter's own ``max|w|/127`` gives back ``s`` and its rounding gives back ``q``
  exactly (checked after conversion: :func:`check_baked`).

The float model that is exported changes (by the int8 weight error, on purpose); the
float reference the report compares against stays the user's model. BatchNorm is already
folded into the convolutions here (the exporter folds it in eval mode, the
``bn-into-next-conv`` rewrite folds the rest), so the weights rounded are the ones the
converter quantizes. A per-channel multiply the converter folds into a convolution later
keeps the grid (its scale moves with it); anything else that changes a weight shows in
:func:`check_baked`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("none", "bias", "gptq")
#: calibration samples run through the float ONNX model at once
CHUNK = 8
#: dampening of H's diagonal (fraction of its mean), as in GPTQ
DAMP = 0.01
#: layers with more input columns than this are left to nearest rounding (time, memory)
MAX_COLUMNS = 8192
#: input positions (patches) that estimate a layer's H: this many per column of W, at
#: least MIN_POSITIONS; a large early feature map reaches that from a few images
POSITIONS_PER_COLUMN = 128
MIN_POSITIONS = 65536
#: columns rounded between two matrix updates of the rest
BLOCK = 128


@dataclass
class _Layer:
    node: Any
    weight: str  # initializer name
    kind: str  # "conv" | "gemm" | "matmul"
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    trans_b: bool = False
    per_channel: bool = True


def _ints(node: Any, name: str, default: Sequence[int]) -> tuple[int, ...]:
    for a in node.attribute:
        if a.name == name:
            return tuple(int(v) for v in a.ints) if a.ints else (int(a.i),)
    return tuple(default)


def weighted_nodes(model: Any) -> Iterator[tuple[Any, list[int]]]:
    """(node, weight dims) of every ONNX node whose second input is a constant that no
    other node reads (the layers whose weights can be changed on their own)."""
    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    for n in model.graph.node:
        if len(n.input) < 2 or n.input[1] not in inits or uses.get(n.input[1], 0) != 1:
            continue
        yield n, list(inits[n.input[1]].dims)


def _layers(model: Any, per_channel: bool, per_channel_dense: bool) -> list[_Layer]:
    """The Conv (2-D) / Gemm / MatMul nodes with a constant weight used only by them."""
    out = []
    for n, dims in weighted_nodes(model):
        if n.op_type == "Conv" and len(dims) == 4:
            if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in n.attribute):
                continue
            p = _ints(n, "pads", (0, 0, 0, 0))
            out.append(
                _Layer(n, n.input[1], "conv", groups=_ints(n, "group", (1,))[0],
                       kernel=(dims[2], dims[3]),
                       stride=_ints(n, "strides", (1, 1)),  # type: ignore[arg-type]
                       dilation=_ints(n, "dilations", (1, 1)),  # type: ignore[arg-type]
                       pads=(p[0], p[1], p[2], p[3]), per_channel=per_channel)
            )  # fmt: skip
        elif n.op_type == "Gemm" and len(dims) == 2:
            tb = bool(_ints(n, "transB", (0,))[0])
            if _ints(n, "transA", (0,))[0]:
                continue
            out.append(_Layer(n, n.input[1], "gemm", trans_b=tb,
                              per_channel=per_channel and per_channel_dense))  # fmt: skip
        elif n.op_type == "MatMul" and len(dims) == 2:
            out.append(_Layer(n, n.input[1], "matmul",
                              per_channel=per_channel and per_channel_dense))  # fmt: skip
    return out


def _w2d(w: np.ndarray, layer: _Layer) -> np.ndarray:
    """The weight as (groups, out per group, columns)."""
    if layer.kind == "conv":
        o = w.shape[0]
        return w.reshape(layer.groups, o // layer.groups, -1)
    if layer.kind == "gemm":
        return (w if layer.trans_b else w.T)[None]
    return w.T[None]


def _from2d(w2: np.ndarray, shape: tuple[int, ...], layer: _Layer) -> np.ndarray:
    if layer.kind == "conv":
        return w2.reshape(shape)
    m = w2[0]
    return m if (layer.kind == "gemm" and layer.trans_b) else m.T


def _patches(x: Any, layer: _Layer) -> Any:
    """The layer's input as (groups, columns, positions) (torch, float32)."""
    import torch.nn.functional as F

    if layer.kind != "conv":
        x2 = x.reshape(-1, x.shape[-1])
        return x2.T[None]
    if layer.kernel == (1, 1) and layer.stride == (1, 1) and not any(layer.pads):
        n, c, hh, ww = x.shape  # a pointwise conv: the pixels are the patches
        g = layer.groups
        return x.reshape(n, g, c // g, hh * ww).permute(1, 2, 0, 3).reshape(g, c // g, -1)
    t, lft, b, r = layer.pads
    if any(layer.pads):
        x = F.pad(x, (lft, r, t, b))
    cols = F.unfold(x, layer.kernel, dilation=layer.dilation, stride=layer.stride)
    n, d, pos = cols.shape
    g = layer.groups
    return cols.reshape(n, g, d // g, pos).permute(1, 2, 0, 3).reshape(g, d // g, n * pos)


def _columns_positions(layer: _Layer, shape: tuple[int, ...]) -> tuple[int, int]:
    """(columns of W per group, patches per sample) for an input of ``shape``."""
    if layer.kind != "conv":
        return shape[-1], max(1, int(np.prod(shape[1:-1])) if len(shape) > 2 else 1)
    kh, kw = layer.kernel
    t, lft, b, r = layer.pads
    oh = (shape[2] + t + b - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    ow = (shape[3] + lft + r - layer.dilation[1] * (kw - 1) - 1) // layer.stride[1] + 1
    return shape[1] // layer.groups * kh * kw, max(1, oh * ow)


def _scales(w2: np.ndarray, per_channel: bool) -> np.ndarray:
    """Scales shaped (g, o, 1): max|w|/127 per output channel or for the whole tensor."""
    if per_channel:
        m = np.abs(w2).max(axis=2, keepdims=True)
    else:
        m = np.full(w2.shape[:2] + (1,), np.abs(w2).max())
    return np.where(m > 0, m / 127.0, 1.0)


def _gptq(w2: np.ndarray, h: Any, scale: np.ndarray, per_channel: bool) -> np.ndarray:
    """Integers (g, o, d) for weights ``w2`` (g, o, d) with input moments ``h`` (g, d, d)."""
    import torch

    w = torch.from_numpy(w2.astype(np.float64)).clone()
    s = torch.from_numpy(scale)
    g, o, d = w.shape
    # pinned: each channel's (or the tensor's) largest weight stays at ±127 exactly, so the
    # converter's max|w|/127 gives back this scale
    absw = w.abs()
    pin = absw == (absw.amax(dim=2, keepdim=True) if per_channel else absw.amax())
    pin_val = torch.sign(w) * 127.0
    # columns with the most input energy first ("act order"): their errors are then
    # compensated by the many columns after them
    order = torch.argsort(torch.diagonal(h, dim1=1, dim2=2).sum(0), descending=True)
    w, pin, pin_val = w[:, :, order], pin[:, :, order], pin_val[:, :, order]
    h = h[:, order][:, :, order].clone()
    diag = torch.diagonal(h, dim1=1, dim2=2)
    dead = diag == 0
    diag[dead] = 1.0
    diag += DAMP * diag.mean(dim=1, keepdim=True)
    try:
        hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        u = torch.linalg.cholesky(hinv, upper=True)
    except RuntimeError:  # not positive definite even dampened: nearest rounding
        return np.clip(np.round(w2 / scale), -127, 127)
    q = torch.zeros_like(w)
    sc = s[:, :, 0]
    for i1 in range(0, d, BLOCK):  # GPTQ's lazy batches: one matmul per block of columns
        i2 = min(i1 + BLOCK, d)
        w1 = w[:, :, i1:i2].clone()
        u1 = u[:, i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        for j in range(i2 - i1):
            col = w1[:, :, j]
            qj = torch.clamp(torch.round(col / sc), -127, 127)
            qj = torch.where(pin[:, :, i1 + j], pin_val[:, :, i1 + j], qj)
            q[:, :, i1 + j] = qj
            err = (col - qj * sc) / u1[:, j, j].unsqueeze(1)  # (g, o)
            w1[:, :, j:] -= err.unsqueeze(2) * u1[:, j, j:].unsqueeze(1)
            err1[:, :, j] = err
        if i2 < d:
            w[:, :, i2:] -= torch.bmm(err1, u[:, i1:i2, i2:])
    out = torch.empty_like(q)
    out[:, :, order] = q
    return out.numpy()


def apply(
    onnx_bytes: bytes,
    calib: Sequence[np.ndarray],
    input_names: Sequence[str],
    *,
    method: str,
    per_channel: bool = True,
    per_channel_dense: bool = False,
    samples: int = 64,
) -> tuple[bytes, dict[str, Any]]:
    """``onnx_bytes`` with its weights (``gptq``) or biases (``bias``) changed; a record.

    ``calib``: one PyTorch-layout array ``(N, ...)`` per input; the first ``samples`` are
    used. The record says the method, the layers changed, the baked integers' checksums
    (for :func:`check_baked`) and the time taken."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    if method not in METHODS:
        raise ValueError(f"unknown weight rounding {method!r}")
    t0 = time.perf_counter()
    model = onnx.load_from_string(onnx_bytes)
    layers = _layers(model, per_channel, per_channel_dense)
    if method == "none" or not layers:
        return onnx_bytes, {"method": method, "layers": 0}
    inits = {i.name: i for i in model.graph.initializer}
    uniq = list(dict.fromkeys(ly.node.input[0] for ly in layers))  # the layers' inputs
    probe = onnx.load_from_string(onnx_bytes)
    have = {o.name for o in probe.graph.output}
    for name in uniq:
        if name not in have:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    n = min(samples, int(calib[0].shape[0]))
    hs: dict[int, Any] = {}
    means: dict[int, Any] = {}
    count: dict[int, int] = {}
    budget: dict[int, int] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for i in range(0, n, CHUNK):
            got = [
                sess.run(
                    uniq,
                    {
                        nm: np.asarray(a[j : j + 1], np.float32)
                        for nm, a in zip(input_names, calib, strict=True)
                    },
                )
                for j in range(i, min(n, i + CHUNK))
            ]  # fmt: skip  (batch 1: the exported graph's shapes are static)
            outs = {nm: np.concatenate([g[u] for g in got]) for u, nm in enumerate(uniq)}
            for k, ly in enumerate(layers):
                if count.get(k, 0) >= budget.get(k, 1 << 62):
                    continue  # enough positions for this layer's H already
                x = torch.from_numpy(outs[ly.node.input[0]])
                columns, per_image = _columns_positions(ly, tuple(x.shape))
                if columns > MAX_COLUMNS:
                    continue
                budget[k] = max(POSITIONS_PER_COLUMN * columns, MIN_POSITIONS)
                # only as many images as this layer still needs
                x = x[: max(1, -(-(budget[k] - count.get(k, 0)) // per_image))]
                cols = _patches(x, ly)
                if method == "gptq":  # the input moments H
                    hk = torch.einsum("gdp,gep->gde", cols, cols).double()
                    hs[k] = hs[k] + hk if k in hs else hk
                else:  # bias: only the input means
                    mk = cols.sum(dim=2).double()
                    means[k] = means[k] + mk if k in means else mk
                count[k] = count.get(k, 0) + cols.shape[2]
        changed = 0
        baked: list[str] = []
        for k, ly in enumerate(layers):
            if k not in count:
                continue  # too many columns: left to the converter's rounding
            init = inits[ly.weight]
            w = numpy_helper.to_array(init).astype(np.float32)
            w2 = _w2d(w, ly).astype(np.float64)
            scale = _scales(w2, ly.per_channel)
            rtn = np.clip(np.round(w2 / scale), -127, 127)
            if method == "gptq":
                q = _gptq(w2, hs[k] / count[k], scale, ly.per_channel)
                new2 = (q * scale).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(_from2d(new2, w.shape, ly), init.name))
                changed += 1
                baked.append(_signature(q))
                log.debug("%s: %d of %d integers moved off nearest rounding",
                          ly.node.name, int(np.sum(q != rtn)), q.size)  # fmt: skip
            else:  # bias: the mean shift of nearest rounding, per output channel
                mu = (means[k] / count[k]).numpy()  # (g, d)
                shift = np.einsum("god,gd->go", rtn * scale - w2, mu).reshape(-1)
                changed += _add_bias(model, inits, ly, -shift)
    finally:
        torch.set_num_threads(threads)
    rec = {
        "method": method,
        "layers": changed,
        "layers_seen": len(layers),
        "samples": n,
        "baked": baked,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return model.SerializeToString(), rec


def _signature(q: np.ndarray) -> str:
    """A layout-free fingerprint of a layer's integers: the hash of their sorted values
    (the converter transposes weights; nearest rounding would change the multiset)."""
    import hashlib

    return hashlib.sha1(np.sort(q.astype(np.int8).reshape(-1)).tobytes()).hexdigest()[:16]


def check_baked(tflite: bytes, record: dict[str, Any]) -> dict[str, Any]:
    """How many of the baked layers' integers the converted model holds exactly.

    Every constant int8 tensor of the model is fingerprinted like :func:`_signature`; a
    baked layer counts when one of them matches. Returns ``{"exact": k, "of": n}``."""
    from toolchain.convert.runtime import make_interpreter
    from toolchain.tflite_model import TFLiteModel

    want = list(record.get("baked") or [])
    if not want:
        return {"exact": 0, "of": 0}
    parsed = TFLiteModel.from_bytes(tflite)
    consts = [t.index for t in parsed.main.tensors if t.is_constant and t.dtype == "int8"]
    interp = make_interpreter(tflite)
    have = set()
    for i in consts:
        try:
            have.add(_signature(np.asarray(interp.get_tensor(i))))
        except ValueError:  # a tensor LiteRT does not expose
            continue
    return {"exact": sum(1 for w in want if w in have), "of": len(want)}


def _add_bias(model: Any, inits: dict[str, Any], ly: _Layer, delta: np.ndarray) -> bool:
    """Add ``delta`` (one value per output) to the layer's bias (a new one if it has none);
    ``inits``: the model's initializers by name. False when the layer was left alone (a
    MatMul has no bias input; a bias of another shape)."""
    from onnx import numpy_helper

    node = ly.node
    delta = delta.astype(np.float32)
    if ly.kind == "matmul":
        return False  # MatMul has no bias input; left alone
    if len(node.input) >= 3 and node.input[2] in inits:
        init = inits[node.input[2]]
        b = numpy_helper.to_array(init).astype(np.float32)
        if b.shape != delta.shape:
            return False
        init.CopyFrom(numpy_helper.from_array(b + delta, init.name))
        return True
    name = f"{ly.weight}__bias_corrected"
    model.graph.initializer.append(numpy_helper.from_array(delta, name))
    if len(node.input) == 2:
        node.input.append(name)
    else:
        node.input[2] = name
    return True
