"""Quantization parameters computed on the host, exactly as TFLM's kernels compute them at Prepare.

Everything here runs in Python doubles (IEEE binary64, like the C++ ``double`` TFLM uses) and
float32 where TFLM uses ``float``, so the generated constants equal the ones TFLM's
interpreter derives from the same .tflite. The fixed-point helpers at the end
(:func:`srdhm`, :func:`rounding_divide_by_pot`, :func:`multiply_by_quantized_multiplier`)
mirror the C in ``kernels/edc_fixedpoint.h`` so Python-side precomputation and tests can use
the same arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: TFLite ActivationFunctionType values.
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3

_QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767), "uint8": (0, 255)}


def _round_half_away(x: float) -> int:
    """C's ``std::round``: halves go away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``real`` → (Q31 multiplier, shift) with real ≈ m · 2^(shift-31) (double rounding mode)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_gt_one(real: float) -> tuple[int, int]:
    m, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError(f"multiplier {real} is not ≥ 1")
    return m, shift


def qrange(dtype: str) -> tuple[int, int]:
    return _QRANGE[dtype]


def activation_range(act: int, scale: float, zero_point: int, dtype: str) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized: float32 division, std::round, clamp to type."""
    qmin, qmax = _QRANGE[dtype]
    s = np.float32(scale)

    def q(f: float) -> int:
        return zero_point + _round_half_away(float(np.float32(f) / s))

    if act == ACT_NONE:
        return qmin, qmax
    if act == ACT_RELU:
        return max(qmin, q(0.0)), qmax
    if act == ACT_RELU6:
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == ACT_RELU_N1_TO_1:
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"fused activation {act} is not supported")


def per_channel_multipliers(
    input_scale: float, filter_scales: tuple[float, ...], output_scale: float, channels: int
) -> tuple[list[int], list[int]]:
    """Conv/depthwise/FC per-channel (multiplier, shift): in·filter[c]/out in doubles."""
    mults, shifts = [], []
    for c in range(channels):
        fs = filter_scales[c] if len(filter_scales) > 1 else filter_scales[0]
        eff = (
            float(np.float32(input_scale)) * float(np.float32(fs)) / float(np.float32(output_scale))
        )
        m, s = quantize_multiplier(eff)
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """int8 softmax: (input_multiplier, input_left_shift, diff_min), 5 integer bits."""
    integer_bits = 5
    real = min(
        float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << (31 - integer_bits)),
        float((1 << 31) - 1),
    )
    mult, left_shift = quantize_multiplier_gt_one(real)
    max_input_rescaled = (
        1.0 * ((1 << integer_bits) - 1) * float(1 << (31 - integer_bits)) / float(1 << left_shift)
    )
    diff_min = -int(math.floor(max_input_rescaled))
    return mult, left_shift, diff_min


# --- the fixed-point arithmetic (reference implementations for tests) ----------------------


def _wrap32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def srdhm(a: int, b: int) -> int:
    """Saturating rounding doubling high multiply of two int32 values."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    q = abs(v) >> 31
    return q if v >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, m: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rounding_divide_by_pot(srdhm(_wrap32(x * (1 << left)), m), right)
