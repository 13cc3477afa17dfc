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
from collections.abc import Callable
from typing import Any

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


def _sat_shl(x: int, e: int) -> int:
    """gemmlowp's SaturatingRoundingMultiplyByPOT<e> for e > 0 (int32)."""
    threshold = (1 << (31 - e)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return _wrap32(x << e)


def _exp_quarter(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 (Taylor series around -1/8)."""
    constant_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap32(srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return _wrap32(constant_term + srdhm(constant_term, _wrap32(x + poly)))


_EXP_MULTS = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)


def exp_on_negative_values(a: int, ib: int) -> int:
    """exp(a) for a ≤ 0 in Q(ib).(31-ib); Q0.31 result (the C twin: edc_exp_neg)."""
    fb = 31 - ib
    quarter = 1 << (fb - 2)
    a_mod = _wrap32((a & (quarter - 1)) - quarter)
    result = _exp_quarter(_sat_shl(a_mod, ib) if ib > 0 else a_mod)
    remainder = _wrap32(a_mod - a)
    for k in range(-2, 5):
        if ib > k and remainder & (1 << (fb + k)):
            result = srdhm(result, _EXP_MULTS[k + 2])
    if ib > 5 and a < -(1 << (36 - ib)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _newton_reciprocal(a: int) -> int:
    """x ≈ 1/(1+a)·4 in Q2.29 for a in Q0.31 (three Newton-Raphson steps)."""
    v = a + INT32_MAX + (1 if a + INT32_MAX >= 0 else -1)
    half_den = v // 2 if v >= 0 else -((-v) // 2)  # C division truncates towards zero
    x = _wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        hdx = srdhm(half_den, x)
        one_minus = _wrap32((1 << 29) - hdx)
        x = _wrap32(x + _sat_shl(srdhm(x, one_minus), 2))
    return x


def one_over_one_plus_x(a: int) -> int:
    return _sat_shl(_newton_reciprocal(a), 1)


def one_minus_x_over_one_plus_x(a: int) -> int:
    return _sat_shl(_wrap32(_newton_reciprocal(a) - (1 << 29)), 2)


def logistic_q(a: int, ib: int) -> int:
    """gemmlowp logistic of a Q(ib) value; Q0.31 result."""
    if a == 0:
        return 1 << 30
    pos = a > 0
    absa = a if pos else _wrap32(-a)
    r = one_over_one_plus_x(exp_on_negative_values(_wrap32(-absa), ib))
    return r if pos else _wrap32(INT32_MAX - r)


def tanh_q(a: int, ib: int) -> int:
    """gemmlowp tanh of a Q(ib) value; Q0.31 result."""
    if a == 0:
        return 0
    neg = a < 0
    n = a if neg else _wrap32(-a)
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(n, ib + 1))
    return _wrap32(-t) if neg else t


def _frexp_multiplier(real: float) -> tuple[int, int]:
    """TFLM's logistic/tanh Prepare: frexp + round, without QuantizeMultiplier's fix-ups."""
    q, shift = math.frexp(real)
    return _wrap32(_round_half_away(q * (1 << 31))), shift


def _input_radius(integer_bits: int, left_shift: int) -> int:
    v = 1.0 * ((1 << integer_bits) - 1) * float(1 << (31 - integer_bits)) / float(1 << left_shift)
    return int(math.floor(v))


def _lut_q4_s8(in_scale: float, in_zp: int, inside: Callable[[int], int]) -> np.ndarray:
    """An int8 LOGISTIC/TANH as a 256-entry table (index x + 128), TFLM's integer arithmetic.

    The input is rescaled to Q4.27 (TFLM's Prepare: frexp multiplier, input radius); inputs
    beyond the radius saturate to -128/127, the others go through ``inside`` (the Q4 value
    to the int8 result before clamping).
    """
    mult, shift = _frexp_multiplier(float(np.float32(in_scale)) * float(1 << 27))
    radius = _input_radius(4, shift)
    out = np.empty(256, np.int8)
    for k in range(256):
        x = k - 128 - in_zp
        if x <= -radius:
            v = -128
        elif x >= radius:
            v = 127
        else:
            v = max(-128, min(127, inside(multiply_by_quantized_multiplier(x, mult, shift))))
        out[k] = v
    return out


def lut_logistic_s8(in_scale: float, in_zp: int) -> np.ndarray:
    """int8 LOGISTIC as a 256-entry table (index x + 128), TFLM's integer arithmetic."""
    return _lut_q4_s8(
        in_scale, in_zp, lambda q4: rounding_divide_by_pot(logistic_q(q4, 4), 23) - 128
    )


def lut_tanh_s8(in_scale: float, in_zp: int) -> np.ndarray:
    """int8 TANH as a 256-entry table (output scale 1/128, zero point 0, as TFLM computes)."""
    return _lut_q4_s8(in_scale, in_zp, lambda q4: rounding_divide_by_pot(tanh_q(q4, 4), 24))


def lut_requantize_s8(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 → int8 QUANTIZE (TFLM's Requantize) as a 256-entry table."""
    mult, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    out = np.empty(256, np.int8)
    for k in range(256):
        v = multiply_by_quantized_multiplier(k - 128 - in_zp, mult, shift) + out_zp
        out[k] = max(-128, min(127, v))
    return out


def _wrap16(x: int) -> int:
    return (x + 2**15) % 2**16 - 2**15


def _srdhm16(a: int, b: int) -> int:
    if a == b == -(2**15):
        return 2**15 - 1
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else 1 - (1 << 14)
    v = ab + nudge
    return _wrap16(abs(v) >> 15 if v >= 0 else -(abs(v) >> 15))


def _sdhm16(a: int, b: int) -> int:
    """TFLM's non-rounding SaturatingDoublingHighMul (int16)."""
    if a == b == -(2**15):
        return 2**15 - 1
    ab = a * b
    return _wrap16(abs(ab) >> 15 if ab >= 0 else -(abs(ab) >> 15))


def _sat_lshift16(x: int, amount: int) -> int:
    return max(-(2**15), min(2**15 - 1, x * (1 << amount)))


def _to_int16_multiplier(m: int) -> int:
    if m >= INT32_MAX - (1 << 15):
        return 2**15 - 1
    return (m + (1 << 15)) >> 16


def lut_hard_swish_s8(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 HARD_SWISH as a 256-entry table, TFLM's int16 fixed-point arithmetic."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(in_scale)
    om, oe = quantize_multiplier(float(f32(hires / f32(out_scale))))
    rm, re_ = quantize_multiplier(float(f32(hires / f32(3.0 / 32768.0))))
    if oe > 0:
        raise ValueError("HARD_SWISH output multiplier exponent > 0 (TFLM rejects it)")
    om16, rm16 = _to_int16_multiplier(om), _to_int16_multiplier(rm)
    out = np.empty(256, np.int8)
    for k in range(256):
        x = _wrap16(k - 128 - in_zp)
        hi = _wrap16(x * 128)
        pre_out = _srdhm16(hi, om16)
        r = hi
        if re_ > 0:
            r = _sat_lshift16(r, re_ - 1)
        r = _srdhm16(r, rm16)
        if re_ > 0:
            r = _sat_lshift16(r, 1)
        if re_ < 0:
            r = rounding_divide_by_pot(r, -re_)
        r = _wrap16((r + (1 << 15)) >> 1)
        v = _sdhm16(r, pre_out)
        v = _wrap16(rounding_divide_by_pot(v, -oe) + out_zp)
        out[k] = max(-128, min(127, v))
    return out


def lut_relu_s8(
    in_scale: float,
    in_zp: int,
    out_scale: float,
    out_zp: int,
    lo_f: float = 0.0,
    hi_f: float | None = None,
) -> np.ndarray:
    """Standalone int8 RELU / RELU_0_TO_1 / RELU_N1_TO_1 (TFLite's ReluX: requantize, then
    clamp at the quantized bounds ``lo_f``..``hi_f``; ``hi_f`` None = no upper bound)."""
    f32 = np.float32
    mult, shift = quantize_multiplier(float(f32(in_scale) / f32(out_scale)))
    lo = max(-128, out_zp + _round_half_away(float(f32(lo_f) / f32(out_scale))))
    hi = 127
    if hi_f is not None:
        hi = min(127, out_zp + _round_half_away(float(f32(hi_f) / f32(out_scale))))
    out = np.empty(256, np.int8)
    for k in range(256):
        v = out_zp + multiply_by_quantized_multiplier(k - 128 - in_zp, mult, shift)
        out[k] = min(hi, max(lo, v))
    return out


def lut_relu6_s8(in_scale: float, in_zp: int) -> np.ndarray:
    """Standalone int8 RELU6 (TFLM clamps the input codes to [zero, six]; no requantization)."""
    six = max(
        -128, min(127, _round_half_away(float(np.float32(6.0) / np.float32(in_scale))) + in_zp)
    )
    return np.asarray([min(six, max(in_zp, k - 128)) for k in range(256)], np.int8)


def lut_leaky_relu_s8(
    in_scale: float, in_zp: int, out_scale: float, out_zp: int, alpha: float
) -> np.ndarray:
    """int8 LEAKY_RELU with TFLM's identity and alpha multipliers (float32 products)."""
    f32 = np.float32
    ma, sa = quantize_multiplier(float(f32(in_scale) * f32(alpha) / f32(out_scale)))
    mi, si = quantize_multiplier(float(f32(in_scale) / f32(out_scale)))
    neg = ma < 0
    out = np.empty(256, np.int8)
    for k in range(256):
        x = k - 128 - in_zp
        if x >= 0:
            v = out_zp + multiply_by_quantized_multiplier(x, mi, si)
        else:
            a = multiply_by_quantized_multiplier(x, -ma if neg else ma, sa)
            v = out_zp + (-a if neg else a)
        out[k] = min(127, max(-128, v))
    return out


def _libm_expf() -> Any:
    """The C library's expf (what TFLM's int16 softmax tables are built with on this host)."""
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    fn = lib.expf
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return fn


def _roundf(x: np.float32) -> np.float32:
    """std::round on a float (halves away from zero), exact: done on the double value."""
    if not np.isfinite(x) or abs(float(x)) >= 2**23:
        return x
    return np.float32(_round_half_away(float(x)))


def lut_int16(
    input_scale: float, input_zp: int, output_scale: float, output_zp: int, fn: Any
) -> np.ndarray:
    """TFLite's LUTPopulateInt16<float> (513 entries, 512 interpolation steps), in float32."""
    f = np.float32
    imin, imax = -32768, 32767
    input_min = f(input_scale) * f(imin - input_zp)
    input_max = f(input_scale) * f(imax - input_zp)
    output_min = f(output_scale) * f(imin - output_zp)
    output_max = f(output_scale) * f(imax - output_zp)
    steps = 512
    step = (input_max - input_min) / f(steps)
    half_step = step / f(2)
    inv = f(65536) / (output_max - output_min)
    out = np.empty(steps + 1, np.int16)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(steps):
            base = input_min + f(i) * step
            val = f(fn(base))
            val_mid = f(fn(base + half_step))
            val_next = f(fn(input_min + f(i + 1) * step))
            sample = _roundf(val * inv)
            interp = _roundf((val_next * inv + _roundf(val * inv)) / f(2))
            mid = _roundf(val_mid * inv)
            bias = _roundf((interp - mid) / f(2))
            out[i] = int(min(max(sample - bias, f(imin)), f(imax)))
        out[steps] = int(min(max(_roundf(f(fn(input_max)) * inv), f(imin)), f(imax)))
    return out


def softmax16_tables() -> tuple[np.ndarray, np.ndarray]:
    """The exp and 1/(1+x) tables TFLM's int16 softmax builds at Prepare."""
    expf = _libm_expf()
    rng = 65535
    f = np.float32
    exp_lut = lut_int16(float(f(10.0) / f(rng)), 32767, float(f(2.0) / f(rng)), 0, expf)
    inv_lut = lut_int16(
        float(f(1.0) / f(rng)),
        -32768,
        float(f(2.0) / f(rng)),
        0,
        lambda v: f(1.0) / (f(1.0) + f(v)),
    )
    return exp_lut, inv_lut


def softmax16_params(beta: float, input_scale: float) -> tuple[int, int]:
    """int16 softmax input (multiplier, shift): in_scale·beta rescaled to [-10, 0] over 65535."""
    real = float(np.float32(input_scale)) * float(np.float32(beta)) / (10.0 / 65535.0)
    return quantize_multiplier(real)


def sigmoid_table_u16() -> np.ndarray:
    """The 256-entry table TFLM's int16 LOGISTIC and TANH interpolate in: sigmoid(i / 24) in
    unsigned Q0.16, each node lifted by half the chord's error at the midpoint to the next
    node (which balances the linear interpolation's error on this concave curve), rounded;
    the last node is the saturated 1.0 (65535). Checked equal, entry for entry, with TFLM's."""

    def s(t: np.ndarray) -> np.ndarray:
        return 65536.0 / (1.0 + np.exp(-t / 24.0))

    i = np.arange(256, dtype=np.float64)
    lifted = s(i) + (s(i + 0.5) - (s(i) + s(i + 1.0)) / 2.0) / 2.0
    v = np.floor(lifted + 0.5)
    v[-1] = 65535.0
    return np.minimum(v, 65535).astype(np.uint16)


def _checked_log2(x: float) -> tuple[bool, int]:
    """TFLite's CheckedLog2 (float arithmetic): (is a power of two within 1e-3, rounded log2)."""
    f = np.float32
    with np.errstate(divide="ignore"):
        lg = f(np.log(f(x))) * (f(1.0) / f(np.log(f(2.0))))
    r = _roundf(f(lg))
    return bool(abs(float(f(lg - r))) < 1e-3), int(r)


def logistic16_params(input_scale: float, tanh: bool) -> tuple[int, int]:
    """(input multiplier, right shift) of TFLM's int16 LOGISTIC / TANH Prepare, with the
    power-of-two case resolved the way the kernel resolves it (multiplier 3 << shift)."""
    pot, log2 = _checked_log2(input_scale)
    left_shift = (15 - 3) + log2
    pot = pot and (left_shift in ((0, 1) if tanh else (0,)))
    if pot:
        return 3 << left_shift, 0
    multiplier = float(np.float32(input_scale)) * 4096.0 * 3.0
    left_shift = 0
    while multiplier <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        multiplier *= 2.0
    m = int(multiplier)
    if not 0 < m <= 32767:
        raise ValueError(f"input scale {input_scale:g} is out of the int16 LOGISTIC/TANH range")
    return m, left_shift


def output_scale_is_q15(scale: float) -> bool:
    """TFLM's int16 LOGISTIC/TANH output check: log2(scale) rounds to -15 (exactly a power of
    two within 1e-3)."""
    pot, log2 = _checked_log2(scale)
    return pot and log2 == -15


# --- RSQRT (TFLM elementwise.cc: GetInvSqrtQuantizedMultiplierExp, then two rescales) --------

#: gemmlowp F3 constants: 1.5 and 1 in Q3.28, sqrt(2)/2 in Q0.31
_F3_HALF_THREE = (1 << 28) + (1 << 27)
_F3_ONE = 1 << 28
_F0_HALF_SQRT2 = 1518500250


def inv_sqrt_multiplier_exp(x: int) -> tuple[int, int]:
    """TFLite's GetInvSqrtQuantizedMultiplierExp(x, reverse_shift=-1) for x ≥ 0: (Q31
    multiplier, left shift) with 1/sqrt(x) ≈ m · 2^(shift-31) (five Newton-Raphson steps in
    gemmlowp's Q3.28)."""
    if x <= 1:
        return INT32_MAX, 0
    shift = 11
    while x >= (1 << 29):
        x //= 4
        shift += 1
    pairs = (32 - x.bit_length() - 1) // 2 - 1
    shift -= pairs
    x <<= 2 * pairs
    f_in = x >> 1
    half_in = rounding_divide_by_pot(f_in, 1)
    v = _F3_ONE
    for _ in range(5):
        v3 = _sat_shl(srdhm(srdhm(v, v), v), 6)
        v = _sat_shl(_wrap32(srdhm(_F3_HALF_THREE, v) - srdhm(half_in, v3)), 3)
    v = srdhm(v, _F0_HALF_SQRT2)
    if shift < 0:
        v = _wrap32(v << -shift)
        shift = 0
    return v, -shift


def rsqrt_params(in_scale: float, out_scale: float) -> tuple[int, int]:
    """TFLM's SetRsqrtOutputMultiplier, 1 / (sqrt(in_scale) * out_scale), evaluated in double
    from the float32 scales: the tflite-micro interpreter's results match this one and not a
    float32 ``sqrtf`` product (checked on every int16 input code of several models)."""
    f32 = np.float32
    return quantize_multiplier(1.0 / (math.sqrt(float(f32(in_scale))) * float(f32(out_scale))))


def rsqrt_q(code: int, in_zp: int, out_zp: int, mult: int, shift: int, lo: int, hi: int) -> int:
    """One int8/int16 RSQRT output as TFLM's RsqrtEvalQuantized computes it. TFLM fails the
    invoke on a code below the zero point (negative input); we return ``hi`` there, as for 0."""
    value = code - in_zp
    if value <= 0:
        return hi
    m, s = inv_sqrt_multiplier_exp(value)
    data = multiply_by_quantized_multiplier(1, m, s + 20)
    out = multiply_by_quantized_multiplier(data, mult, shift - 20) + out_zp
    return max(lo, min(hi, out))


def lut_rsqrt_s8(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 RSQRT as a 256-entry table (codes below the zero point: 127, see :func:`rsqrt_q`)."""
    mult, shift = rsqrt_params(in_scale, out_scale)
    return np.array([rsqrt_q(k - 128, in_zp, out_zp, mult, shift, -128, 127)
                     for k in range(256)], np.int8)  # fmt: skip


def squared_difference_params(
    s1: float, s2: float, out_scale: float, left_shift: int
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """TFLM's SQUARED_DIFFERENCE PrepareQuantized: the two input multipliers (≤ 1) and the
    output multiplier, from float32 scales as TFLM reads them."""
    f32 = np.float32
    twice_max = 2.0 * float(max(f32(s1), f32(s2)))
    m1 = quantize_multiplier(float(f32(s1)) / twice_max)
    m2 = quantize_multiplier(float(f32(s2)) / twice_max)
    den = float(f32(1 << (left_shift * 2)) * f32(out_scale))  # int * float: a float product
    return m1, m2, quantize_multiplier(twice_max * twice_max / den)
