"""Stage 5: how far is the int8 model from the float one?

* :func:`fidelity` — per output: SQNR (dB), the SQNR of the input-dependent part (each
  side minus its mean over the samples: a near-constant output such as a confident
  classifier's logits or a random-weight net's is otherwise mostly scored on its constant),
  the share of the float output power that varies with the input, cosine similarity (mean
  over samples), max abs error, top-1 agreement for classifier-shaped outputs (``(N, K)``,
  K > 1).
* :func:`accuracy` — top-1 accuracy of float and int8 outputs against labels.
* :func:`layer_table` — per layer: the int8 intermediate tensors (LiteRT with
  ``experimental_preserve_all_tensors``) against the float ONNX model's (onnxruntime, which
  matches PyTorch), each TFLite tensor paired with the ONNX tensor of the same shape (up to
  the channels-last transpose) that it agrees with best. ``drop_db`` is how much SQNR the
  layer itself loses (its inputs' SQNR minus its output's); the worst layers lead the list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from toolchain.artifacts import TensorSpec, channels_last_perm
from toolchain.convert.runtime import make_interpreter

log = logging.getLogger(__name__)

#: ONNX ops that only move or rename data; an equally good match elsewhere is preferred.
_SHAPE_OPS = {"Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Transpose", "Dropout"}


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float | None:
    """``10·log10(Σref² / Σ(ref−test)²)``; +inf for an exact match, None for a zero reference."""
    r = np.asarray(ref, dtype=np.float64)
    e = r - np.asarray(test, dtype=np.float64)
    sig, noise = float(np.sum(r * r)), float(np.sum(e * e))
    if sig == 0.0:
        return None
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(sig / noise)


def centered_sqnr_db(ref: np.ndarray, test: np.ndarray) -> tuple[float | None, float | None]:
    """SQNR of the input-dependent part and that part's share of the float output power.

    Each side has its own mean over the samples (axis 0) removed, so a constant offset
    the int8 model reproduces is not counted as signal. (None, None) for fewer than two
    samples; (None, 0.0) when the float output does not vary at all (a net that ignores
    its input: only its graph counts)."""
    r = np.asarray(ref, dtype=np.float64)
    t = np.asarray(test, dtype=np.float64)
    if r.ndim == 0 or r.shape[0] < 2:
        return None, None
    rc = r - r.mean(axis=0, keepdims=True)
    tc = t - t.mean(axis=0, keepdims=True)
    total = float(np.sum(r * r))
    share = round(float(np.sum(rc * rc)) / total, 4) if total > 0 else None
    if share is not None and share < 1e-9:
        return None, 0.0
    return sqnr_db(rc, tc), share


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    b2 = b.reshape(b.shape[0], -1).astype(np.float64)
    na, nb = np.linalg.norm(a2, axis=1), np.linalg.norm(b2, axis=1)
    dot = np.sum(a2 * b2, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, dot / np.maximum(na * nb, 1e-300))
    return np.asarray(cos)


def fidelity(ref: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Metrics of one output; arrays are ``(N, ...)`` in the same layout."""
    ref = np.asarray(ref, dtype=np.float32)
    test = np.asarray(test, dtype=np.float32)
    varying = centered_sqnr_db(ref, test)
    out: dict[str, Any] = {
        "sqnr_db": _finite(sqnr_db(ref, test)),
        "sqnr_input_dependent_db": _finite(varying[0]),
        "input_dependent_power": varying[1],
        "cosine": float(np.mean(_cosine_rows(ref, test))),
        "max_abs_err": float(np.max(np.abs(ref - test))) if ref.size else 0.0,
        "top1_agreement": None,
        "samples": int(ref.shape[0]),
    }
    if ref.ndim == 2 and ref.shape[1] > 1:
        out["top1_agreement"] = float(np.mean(ref.argmax(1) == test.argmax(1)))
    return out


def _finite(v: float | None) -> float | None:
    """JSON has no infinity: an exact match is reported as 999 dB."""
    if v is None:
        return None
    return 999.0 if math.isinf(v) else round(v, 3)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of ``(N, K)`` scores against integer ``labels``."""
    scores = np.asarray(outputs).reshape(len(labels), -1)
    return float(100.0 * np.mean(scores.argmax(1) == labels))


# --- per layer --------------------------------------------------------------------------------


#: ONNX activations that TFLite fuses into the op before them (CONV_2D + RELU → CONV_2D)
_FUSED_ACTIVATIONS = {"Relu", "Clip", "Tanh"}
#: below this cosine, a TFLite tensor is not taken to be an ONNX tensor (int8 noise keeps
#: even a 15 dB layer above 0.98)
MIN_MATCH_COSINE = 0.9
#: TFLite ops that only move data: their output is as good as their input
_PASS_OPS = {"PAD", "PADV2", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "MAX_POOL_2D"}


def onnx_intermediates(
    onnx_bytes: bytes, samples: Sequence[Sequence[np.ndarray]], input_names: Sequence[str]
) -> dict[str, tuple[str, str, np.ndarray]]:
    """Every node output of the float ONNX model on ``samples`` (PyTorch layout, batch 1
    each): tensor name → (layer name, op type, array ``(K, ...)``).

    The layer name of a fusable activation includes the node it follows
    (``/conv/Conv+/Relu``), since TFLite computes both in one op."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(onnx_bytes)
    existing = {o.name for o in model.graph.output}
    producers: dict[str, tuple[str, str]] = {}
    for node in model.graph.node:
        name = node.name
        if node.op_type in _FUSED_ACTIVATIONS and node.input and node.input[0] in producers:
            prev, prev_op = producers[node.input[0]]
            if prev_op not in _FUSED_ACTIVATIONS:
                name = f"{prev}+{node.name}"
        for out in node.output:
            if out:
                producers[out] = (name, node.op_type)
                if out not in existing:
                    model.graph.output.append(onnx.ValueInfoProto(name=out))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    per: dict[str, list[np.ndarray]] = {}
    try:
        sess = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in sess.get_outputs()]
        per = {n: [] for n in names}
        for sample in samples:
            res = sess.run(names, dict(zip(input_names, sample, strict=True)))
            for n, r in zip(names, res, strict=True):
                per[n].append(np.asarray(r))
    except Exception as exc:  # noqa: BLE001 - ORT cannot run every graph; the table is optional
        log.warning("per-layer table skipped: onnxruntime cannot run the ONNX model (%s)", exc)
        return {}
    result: dict[str, tuple[str, str, np.ndarray]] = {}
    for n, arrs in per.items():
        if n in producers and arrs and arrs[0].dtype.kind == "f" and arrs[0].ndim >= 1:
            result[n] = (*producers[n], np.concatenate(arrs))
    return result


def tflite_intermediates(
    data: bytes, samples: Sequence[Sequence[np.ndarray]], in_specs: Sequence[TensorSpec]
) -> dict[int, np.ndarray]:
    """Every quantized op output of the int8 model on ``samples``, dequantized, TFLite layout:
    tensor index → array ``(K, ...)``."""
    from toolchain.tflite_model import TFLiteModel

    model = TFLiteModel.from_bytes(data)
    interp = make_interpreter(data, preserve_all_tensors=True)
    det = interp.get_input_details()
    wanted = {
        t
        for op in model.main.operators
        for t in op.outputs
        if model.main.tensors[t].scale is not None
    }
    # each sample's values are dequantized straight into their rows of one array per tensor
    # (the same float32 subtract and multiply as ``(q - zp) * scale``: the same values),
    # instead of a list of per-sample arrays concatenated at the end (measured: that copy
    # was a third of MobileViT v2's per-layer table)
    got: dict[int, np.ndarray] = {}
    k = len(samples)
    for i, sample in enumerate(samples):
        for spec, arr in zip(in_specs, sample, strict=True):
            interp.set_tensor(det[spec.tflite_index]["index"], spec.to_tflite(arr))
        interp.invoke()
        for t in wanted:
            info = model.main.tensors[t]
            q = interp.get_tensor(t)
            rows = q.shape[0] if q.ndim else 1
            if t not in got:
                got[t] = np.empty((k * rows, *q.shape[1:]), dtype=np.float32)
            dst = got[t][i * rows : (i + 1) * rows]
            np.subtract(q, np.float32(info.zero_point or 0), out=dst, dtype=np.float32)
            np.multiply(dst, np.float32(info.scale or 1.0), out=dst)
    return got


def module_path(node_name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1`` (the PyTorch module); for a
    fused ``/conv/Conv+/Relu`` the first node's module."""
    parts = [p for p in node_name.split("+")[0].split("/") if p][:-1]
    keep: list[str] = []
    for p in parts:
        if (
            keep
            and p.startswith(keep[-1] + ".")
            or keep
            and "." in p
            and p.split(".")[0] == keep[-1].split(".")[-1]
        ):
            keep[-1] = p
        else:
            keep.append(p)
    return ".".join(keep)


def onnx_origin(onnx_bytes: bytes, op_name: str, limit: int = 4) -> str:
    """Where ONNX nodes of the type that became TFLite op ``op_name`` (``SIN``, ``Erf``) are:
    ``"ONNX /act/Sin (PyTorch module act)"``; empty when there is none."""
    import onnx

    wanted = op_name.lower().replace("_", "")
    nodes = [n for n in onnx.load_from_string(onnx_bytes).graph.node
             if n.op_type.lower() == wanted]  # fmt: skip
    return ", ".join(
        f"ONNX {n.name} (PyTorch module {module_path(n.name) or '<top level>'})"
        for n in nodes[:limit]
    )


#: how many TFLite shapes' prepared candidates :func:`layer_table` keeps at a time
_PREPARED_SHAPES = 12
#: a candidate ONNX tensor prepared for matching: (tensor name, node, op, views), each view
#: (array, its rows as unit vectors, which rows are all zero)
_Prepared = tuple[str, str, str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def _unit_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``a`` (one per sample) scaled to unit length, and which rows are zero."""
    a2 = a.reshape(a.shape[0], -1)
    na = np.linalg.norm(a2.astype(np.float64), axis=1)
    return (a2 / np.maximum(na, 1e-300)[:, None]).astype(np.float32), na == 0


def _prepare(
    cands: list[tuple[str, str, str, np.ndarray]], shape: tuple[int, ...]
) -> list[_Prepared]:
    """Each candidate's views in TFLite shape ``shape`` (as is and channels-last: a
    ``1×8×8×8`` tensor fits both), normalised once for :func:`_match`."""
    out: list[_Prepared] = []
    for tname, node, op, arr in cands:
        views = []
        if arr.shape[1:] == shape:
            views.append(arr)
        perm = channels_last_perm(arr.ndim)
        if arr.ndim >= 3 and tuple(arr.shape[p] for p in perm)[1:] == shape:
            views.append(np.transpose(arr, perm))
        out.append((tname, node, op, [(a, *_unit_rows(a)) for a in views]))
    return out


#: candidates whose mean cosine is within this of the best are ties: cosine ignores scale,
#: so ``x+3`` and ``(x+3)/6`` tie (a hard-sigmoid's shift and its output); the tie goes to
#: the one closest in value (least error energy)
COSINE_TIE = 1e-4


def _match(tfl: np.ndarray, cands: list[_Prepared]) -> tuple[Any, float]:
    """The ONNX candidate ``tfl`` agrees with best (mean cosine over samples, ties within
    :data:`COSINE_TIE` broken by the least squared error, then by preferring a real op to
    a data-movement op), in TFLite layout (``cands`` from :func:`_prepare` for ``tfl``'s
    shape)."""
    scored: list[tuple[float, Any]] = []
    unit_t, zero_t = _unit_rows(tfl)
    for tname, node, op, views in cands:
        for a, unit_a, zero_a in views:
            if a.shape[0] != tfl.shape[0]:  # a batch-4 tensor (MobileViT patches) vs batch 1
                continue
            cos_rows = np.where(zero_t & zero_a, 1.0, np.sum(unit_t * unit_a, axis=1))
            scored.append((float(np.mean(cos_rows)), (tname, node, op, a)))
    if not scored:
        return None, -2.0
    best_cos = max(c for c, _ in scored)
    ties = [(c, b) for c, b in scored if c >= best_cos - COSINE_TIE]
    if len(ties) == 1:
        return ties[0][1], ties[0][0]
    t64 = tfl.astype(np.float64)

    def key(item: tuple[float, Any]) -> tuple[float, bool]:
        err = float(np.sum((item[1][3].astype(np.float64) - t64) ** 2))
        return err, item[1][2] in _SHAPE_OPS

    cos, best = min(ties, key=key)
    return best, cos


def layer_table(
    onnx_bytes: bytes,
    tflite_bytes: bytes,
    samples: Sequence[Sequence[np.ndarray]],
    in_specs: Sequence[TensorSpec],
    onnx_ref: dict[str, tuple[str, str, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:
    """One row per TFLite operator (see module doc), in graph order."""
    from toolchain.tflite_model import TFLiteModel

    model = TFLiteModel.from_bytes(tflite_bytes)
    sg = model.main
    ref = (
        onnx_ref
        if onnx_ref is not None
        else onnx_intermediates(onnx_bytes, samples, [s.name for s in in_specs])
    )
    q = tflite_intermediates(tflite_bytes, samples, in_specs)
    by_numel: dict[int, list[tuple[str, str, str, np.ndarray]]] = {}
    for tname, (node, onnx_op, arr) in ref.items():
        by_numel.setdefault(int(arr[0].size), []).append((tname, node, onnx_op, arr))

    sqnr_of: dict[int, float] = {}
    # graph inputs: the error of quantizing the input itself
    for spec in in_specs:
        t = sg.inputs[spec.tflite_index]
        vals = np.concatenate([spec.to_tflite(s[spec.index]) for s in samples]).astype(np.float32)
        if spec.scale is not None:
            deq = (vals - np.float32(spec.zero_point or 0)) * np.float32(spec.scale)
            ref_in = np.concatenate([np.transpose(s[spec.index], spec.perm) for s in samples])
            v = sqnr_db(ref_in, deq)
            if v is not None:
                sqnr_of[t] = v
    rows: list[dict[str, Any]] = []
    prepared: dict[tuple[int, ...], list[_Prepared]] = {}  # by TFLite shape
    for op in sg.operators:
        for t in op.outputs:
            if t not in q:
                continue
            tfl = q[t]
            cands: list[_Prepared] = []
            if op.name not in _PASS_OPS:
                key = tuple(int(d) for d in tfl.shape[1:])
                if key not in prepared:
                    if len(prepared) >= _PREPARED_SHAPES:  # bound the memory: drop the oldest
                        del prepared[next(iter(prepared))]
                    prepared[key] = _prepare(by_numel.get(int(tfl[0].size), []), key)
                cands = prepared[key]
            best, cos = _match(tfl, cands)
            info = sg.tensors[t]
            row: dict[str, Any] = {
                "index": op.index,
                "op": op.name,
                "tensor": info.name,
                "shape": list(info.shape),
                "onnx_node": None,
                "onnx_op": None,
                "module": None,
                "sqnr_db": None,
                "drop_db": None,
                "cosine": None,
            }
            if best is not None and cos > MIN_MATCH_COSINE:
                _, node, onnx_op, arr = best
                s = sqnr_db(arr, tfl)
                row.update(
                    onnx_node=node,
                    onnx_op=onnx_op,
                    module=module_path(node),
                    cosine=round(cos, 6),
                    sqnr_db=_finite(s),
                )
                if s is not None:
                    sqnr_of[t] = s
                    ins = [sqnr_of[i] for i in op.inputs if i in sqnr_of]
                    if ins:
                        row["drop_db"] = _finite(min(ins) - s) if not math.isinf(s) else 0.0
            elif op.name in _PASS_OPS or op.name == "CONCATENATION":
                ins = [sqnr_of[i] for i in op.inputs if i in sqnr_of]
                if ins:
                    sqnr_of[t] = min(ins)
            rows.append(row)
    return rows


def worst_layers(rows: Sequence[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` layers that lose the most SQNR themselves (largest ``drop_db``)."""
    scored = [r for r in rows if r.get("drop_db") is not None]
    scored.sort(key=lambda r: -float(r["drop_db"]))
    return [
        {k: r[k] for k in ("index", "op", "module", "onnx_node", "sqnr_db", "drop_db")}
        for r in scored[:n]
    ]
