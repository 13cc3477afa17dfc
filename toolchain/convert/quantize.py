"""Stage 3: full-integer post-training quantization with TFLiteConverter (in the TF worker).

Only integer builtins are allowed (``TFLITE_BUILTINS_INT8``, or the int16x8 set): never
Flex/SELECT_TF_OPS. The representative dataset is the calibration data, transposed to the TF
layout and fed by signature input name (TFLite may order inputs differently from PyTorch).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from toolchain.convert.options import QuantOptions

log = logging.getLogger(__name__)


class QuantizeFailed(Exception):
    """TFLiteConverter refused the model; ``ops`` names the operators it blamed."""

    def __init__(self, message: str, ops: Sequence[str] = (), layers: Sequence[str] = ()):
        super().__init__(message)
        self.ops = list(ops)
        self.layers = list(layers)


def quantize(
    keras_model: Any,
    calib: Sequence[np.ndarray],
    in_perms: Sequence[tuple[int, ...]],
    options: QuantOptions,
    *,
    on_sample: Callable[[int, int], None] | None = None,
    range_margin: float = 0.0,
    range_method: str = "minmax",
    float_fallback: bool = False,
) -> bytes:
    """Quantize; ``calib`` holds one PyTorch-layout array ``(N, ...)`` per input.

    ``range_margin``: widen every calibrated activation range by this fraction;
    ``range_method``: ``"minmax"`` (the converter's) or ``"mse"`` (each range narrowed to
    its int8 error optimum) — see :mod:`toolchain.convert.calibrate`. ``float_fallback``
    (int16x8 only): ops without a 16x8 kernel stay float instead of failing (the int16
    model that :mod:`toolchain.convert.mixed` takes its int16 islands from).
    ``range_margin``/``range_method`` are int8 only; int16x8 ranges are widened by
    ``options.int16_headroom`` instead."""
    import tensorflow as tf

    names = list(keras_model.input_names)
    n = int(calib[0].shape[0])
    # (N, *sample) arrays: the batch axis is the sample axis, so the batch-1 perm applies
    tf_calib = [
        np.ascontiguousarray(np.transpose(a, perm)) for a, perm in zip(calib, in_perms, strict=True)
    ]

    def representative() -> Iterator[dict[str, np.ndarray]]:
        for i in range(n):
            if on_sample is not None:
                on_sample(i, n)
            if len(names) == 1:
                # a list, not a dict: some graphs (e.g. MobileNetV4-style UIB nets) come out
                # of TFLiteConverter without a SignatureDef, and its calibrator then refuses
                # dict samples ("model has 0 Signatures"); one input needs no names
                yield [tf_calib[0][i : i + 1]]  # type: ignore[misc]
                continue
            yield {name: a[i : i + 1] for name, a in zip(names, tf_calib, strict=True)}

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    types = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}
    if options.activations == "int16":
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if float_fallback:
            conv.target_spec.supported_ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_in, io_out = options.io_input, options.io_output
    if options.activations == "mixed":  # int16 graph I/O is spliced in from the int16x8 model
        io_in = "int8" if io_in == "int16" else io_in
        io_out = "int8" if io_out == "int16" else io_out
    conv.inference_input_type = types[io_in]
    conv.inference_output_type = types[io_out]
    if not options.per_channel:
        conv._experimental_disable_per_channel = True
    elif not options.per_channel_dense:
        # convolutions per channel, FULLY_CONNECTED per tensor (TFLM / MLPerf Tiny)
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    try:
        from toolchain.convert.calibrate import calibration_ranges, int16_ranges

        if options.activations == "int16":
            with int16_ranges(options.int16_headroom):
                return bytes(conv.convert())
        with calibration_ranges(margin=range_margin, method=range_method):
            return bytes(conv.convert())
    except Exception as exc:  # ConverterError and friends: the text names the op
        text = str(exc)
        raise QuantizeFailed(_summary(text), _ops_in(text), _layers_in(text)) from exc


_OP_PATTERNS = (
    re.compile(r"'(?:tf|tfl)\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"(?:op|operation|Op)[: ]+'?(?:tf|tfl)\.(\w+)'?"),
    re.compile(r"Quantization not yet supported for op: '?(\w+)'?"),
)


def _ops_in(text: str) -> list[str]:
    found: list[str] = []
    for pat in _OP_PATTERNS:
        for m in pat.finditer(text):
            name = m.group(1)
            if name not in found:
                found.append(name)
    return found


def _layers_in(text: str) -> list[str]:
    layers: list[str] = []
    for m in re.finditer(r'loc\(.*?"([^"]*?/[^"]*?)@', text):
        name = m.group(1)
        if name not in layers:
            layers.append(name)
    return layers[:8]


def _summary(text: str) -> str:
    text = re.sub(r"<frozen [^>]*>:\d+:\d+: |loc\([^)]*\): ", "", text)
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()]
    keep = [ln for ln in lines if "op" in ln.lower()] or lines or text.splitlines()[:3]
    return "\n".join(keep[:6])[:1500]
