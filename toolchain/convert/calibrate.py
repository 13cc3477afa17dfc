"""Calibration range choices for TFLiteConverter's int8 path (runs in the TF worker).

TFLiteConverter sets every activation range to the min/max seen on the calibration data.
On data it has not seen, values beyond that range are clipped, and a clip costs far more
than rounding: with 48 calibration images the held-out SQNR of a small CNN was 21 dB
against 33 dB on the calibration images themselves. :func:`calibration_ranges` with
``margin`` makes the converter use ``[min·(1+m), max·(1+m)]`` instead (``m`` =
``range_margin``): the recorded
min/max of every activation are widened in the calibrated model before the converter
quantizes it (a wrapper around ``Calibrator.calibrate``, the step between the two), so
zero stays where it was (a ReLU output keeps min 0) and everything else in the
converter's path is unchanged. :func:`mse_ranges` uses the same seam to narrow each range
to its int8 MSE optimum instead (``--calibration-range mse``). Neither applies to int16x8:
TFLiteConverter's int16 path discards that result and calls ``calibrate_and_quantize``,
which feeds the data again and quantizes from the C++ calibrator's own statistics.
:func:`int16_ranges` gives int16x8 its seam (``QuantOptions.int16_headroom``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from toolchain.convert import flatbuf

log = logging.getLogger(__name__)


def _variance_path(model: Any, sg: Any) -> set[int]:
    """The tensors that feed an RSQRT through squares, means and the epsilon ADD (a
    LayerNorm's variance): heavy-tailed, so widening their ranges costs the small
    variances their resolution, and RSQRT magnifies it (timm ViT in int16x8: 35.7 dB
    unwidened, 8.9 dB with every range 4x)."""
    ops = sg.operators or []
    producer = {int(t): op for op in ops for t in op.outputs}
    out: set[int] = set()
    todo = [int(op.inputs[0]) for op in ops if flatbuf.op_name(model, op) == "RSQRT"]
    while todo:  # back from RSQRT: ADD (+ epsilon), MEAN/SUM, down to the square
        t = todo.pop()
        if t in out:
            continue
        out.add(t)
        op = producer.get(t)
        kind = flatbuf.op_name(model, op) if op is not None else ""
        ins = [int(i) for i in (op.inputs if op is not None else []) if i >= 0]
        if kind in ("MEAN", "SUM"):
            todo.append(ins[0])
        elif kind == "ADD":  # the epsilon: follow the operand that is not a constant
            todo.extend(i for i in ins if producer.get(i) is not None)
        # the square (MUL x·x, SQUARED_DIFFERENCE) ends the path: its inputs are the
        # normalised tensor itself, whose range is not the variance's
    return out


def widen(calibrated: bytes, margin: float, *, keep_variance: bool = False) -> bytes:
    """A calibrated (float, min/max-annotated) .tflite with every range widened;
    ``keep_variance``: not the tensors of a normalisation's variance (:func:`_variance_path`)."""
    model = flatbuf.unpack(calibrated)
    n = 0
    for sg in model.subgraphs or []:
        skip = _variance_path(model, sg) if keep_variance else set()
        for i, t in enumerate(sg.tensors or []):
            if i in skip:
                continue
            q = t.quantization
            if q is None or q.min is None or q.max is None or not len(q.min):
                continue
            q.min = [float(v) * (1.0 + margin) for v in q.min]
            q.max = [float(v) * (1.0 + margin) for v in q.max]
            n += 1
    log.info("calibration ranges of %d tensors widened by %.0f %%", n, 100 * margin)
    return flatbuf.pack(model)


HIST_BINS = 2048
_GRID = 48


@contextlib.contextmanager
def calibration_ranges(*, margin: float = 0.0, method: str = "minmax") -> Iterator[None]:
    """While active, TFLiteConverter's calibrated activation ranges are changed between
    calibration and quantization: ``method="mse"`` first narrows each to the range with the
    smallest int8 error on the calibration values (:func:`mse_ranges`), then ``margin``
    widens every range by that fraction (:func:`widen`)."""
    if margin <= 0 and method == "minmax":
        yield
        return
    from tensorflow.lite.python.optimize import calibrator

    original = calibrator.Calibrator.calibrate

    def calibrate(self: Any, dataset_gen: Any) -> Any:
        samples = list(dataset_gen())
        model = bytes(original(self, lambda: iter(samples)))
        if method == "mse":
            model = mse_ranges(model, samples)
        return widen(model, margin) if margin > 0 else model

    calibrator.Calibrator.calibrate = calibrate
    try:
        yield
    finally:
        calibrator.Calibrator.calibrate = original


@contextlib.contextmanager
def int16_ranges(factor: float) -> Iterator[None]:
    """While active, TFLiteConverter's int16x8 quantization uses every calibrated range
    widened ``factor``-fold (``[min·f, max·f]``; int16 scales are symmetric, so each scale
    grows ``f``-fold: log2(f) of int16's 15 bits buy headroom for inputs beyond the
    calibration data). ``factor == 1``: the converter's own path, unchanged.

    How: the converter calls ``Calibrator.calibrate`` (its result kept here) and then
    ``calibrate_and_quantize``; the latter is replaced by widening that calibrated model
    (:func:`widen`) and quantizing it with a fresh calibrator that is fed no data, so the
    model's recorded min/max are what the quantizer reads (it also calibrates once
    instead of twice)."""
    if factor == 1.0:
        yield
        return
    from tensorflow.lite.python.optimize import calibrator

    cls = calibrator.Calibrator
    original_calibrate = cls.calibrate
    original_quantize = cls.calibrate_and_quantize

    def calibrate(self: Any, dataset_gen: Any) -> Any:
        model = bytes(original_calibrate(self, dataset_gen))
        self._edgedeploy_calibrated = model
        return model

    def calibrate_and_quantize(
        self: Any,
        dataset_gen: Any,
        input_type: Any,
        output_type: Any,
        allow_float: bool,
        activations_type: Any = None,
        bias_type: Any = None,
        resize_input: bool = True,
        disable_per_channel: bool = False,
        disable_per_channel_quantization_for_dense_layers: bool = False,
    ) -> Any:
        import tensorflow as tf

        model = getattr(self, "_edgedeploy_calibrated", None)
        if model is None:
            self._feed_tensors(dataset_gen, resize_input)
            model = bytes(self._calibrator.Calibrate())
        fresh = cls(widen(model, factor - 1.0, keep_variance=True))

        def num(t: Any) -> int:
            return int(np.dtype(t.as_numpy_dtype()).num)

        return fresh._calibrator.QuantizeModel(
            num(input_type),
            num(output_type),
            allow_float,
            num(activations_type or tf.int8),
            num(bias_type or tf.int32),
            disable_per_channel,
            disable_per_channel_quantization_for_dense_layers,
        )

    cls.calibrate = calibrate
    cls.calibrate_and_quantize = calibrate_and_quantize
    try:
        yield
    finally:
        cls.calibrate = original_calibrate
        cls.calibrate_and_quantize = original_quantize


def mse_ranges(calibrated: bytes, samples: list[Any]) -> bytes:
    """The calibrated model with every activation range narrowed to the one that minimises
    the expected int8 error on the calibration values.

    The calibrated (float) model runs on the calibration samples in LiteRT with every
    tensor kept; each activation's values go into a histogram over its recorded
    ``[min, max]``, and ``[lo, hi]`` is chosen on a grid inside it to minimise
    ``Σ rounding error² (step²/12 per value inside) + Σ clipping error² (outside)`` for
    256 levels. Zero stays inside (a ReLU output keeps ``lo = 0``). Heavy-tailed
    activations (a linear conv's output with max/rms ≈ 10) gain the most; a clipped
    outlier on unseen data costs more than rounding, which the measurement on held-out
    data includes."""
    from ai_edge_litert.interpreter import Interpreter

    model = flatbuf.unpack(calibrated)
    sg = model.subgraphs[0]
    ranged = {
        i: (float(min(t.quantization.min)), float(max(t.quantization.max)))
        for i, t in enumerate(sg.tensors or [])
        if t.quantization is not None
        and t.quantization.min is not None
        and len(t.quantization.min) == 1
        and t.type == 0  # float32 activations
    }
    if not ranged:
        return calibrated
    interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inputs = [int(d["index"]) for d in interp.get_input_details()]
    sig = interp._get_full_signature_list().get("serving_default", {}).get("inputs", {})
    hists = {i: np.zeros(HIST_BINS) for i in ranged}
    for sample in samples:
        if isinstance(sample, dict):
            feed = {int(sig[name]): value for name, value in sample.items()}
        else:
            feed = dict(zip(inputs, sample, strict=True))
        for idx, value in feed.items():
            interp.set_tensor(idx, np.asarray(value, dtype=np.float32))
        interp.invoke()
        for i, (lo, hi) in ranged.items():
            if hi <= lo:
                continue
            try:
                v = interp.get_tensor(i)
            except ValueError:  # not kept (e.g. a constant folded away)
                continue
            h, _ = np.histogram(v, bins=HIST_BINS, range=(lo, hi))
            hists[i] += h
    n = 0
    for i, (lo, hi) in ranged.items():
        best = _best_range(hists[i], lo, hi)
        if best is None:
            continue
        q = sg.tensors[i].quantization
        q.min, q.max = [best[0]], [best[1]]
        n += 1
    log.info("calibration ranges of %d tensors set to their int8 MSE optimum", n)
    return flatbuf.pack(model)


def _best_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    """``[a, b] ⊆ [lo, hi]`` (containing 0) with the least int8 error for ``hist``."""
    total = hist.sum()
    if total <= 0 or hi <= lo:
        return None
    edges = np.linspace(lo, hi, len(hist) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fracs = np.linspace(1.0 / _GRID, 1.0, _GRID)
    a_cands = [0.0] if lo >= 0 else list(lo * fracs)
    b_cands = [0.0] if hi <= 0 else list(hi * fracs)
    best, best_err = (lo, hi), np.inf
    for a in a_cands:
        below = centres < a
        err_below = float((hist[below] * (centres[below] - a) ** 2).sum())
        for b in b_cands:
            if b - a <= 0:
                continue
            above = centres > b
            inside = total - hist[below].sum() - hist[above].sum()
            step = (b - a) / 255.0
            err = err_below + float((hist[above] * (centres[above] - b) ** 2).sum())
            err += inside * step * step / 12.0
            if err < best_err:
                best, best_err = (float(a), float(b)), err
    return best
