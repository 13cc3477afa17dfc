/* edgedeploy compiled runtime: integer fixed-point arithmetic shared by the kernels.
 *
 * These are the rounding rules TFLite Micro's reference kernels use (gemmlowp-style Q31
 * arithmetic with "double rounding"), re-derived so that our kernels are bit-exact with it:
 *   edc_srdhm(a, b)        round(a * b / 2^31), saturating the one overflow case
 *   edc_rdpot(x, e)        x / 2^e rounded to nearest, ties away from zero
 *   edc_mul_q(x, m, s)     x * m * 2^(s - 31) with the two roundings above
 */
#ifndef EDC_FIXEDPOINT_H
#define EDC_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t edc_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  {
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30));
    const int64_t v = ab + nudge;
    /* division truncating towards zero, without a library call */
    const int64_t q = v >= 0 ? (v >> 31) : -((-v) >> 31);
    return (int32_t)q;
  }
}

static inline int32_t edc_rdpot(int32_t x, int e) {
  const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

static inline int32_t edc_shl(int32_t x, int e) { return (int32_t)((uint32_t)x << e); }

static inline int32_t edc_mul_q(int32_t x, int32_t m, int32_t shift) {
  if (shift > 0) return edc_srdhm(edc_shl(x, shift), m);
  return edc_rdpot(edc_srdhm(x, m), -shift);
}

/* The int64 variant TFLM uses for int16x8 layers with 64-bit accumulators: the multiplier is
 * reduced to 16 bits and the result rounded once (shift in -31..7). */
static inline int32_t edc_mul_q64(int64_t x, int32_t m, int32_t shift) {
  const int64_t reduced = m < 0x7FFF0000 ? (int64_t)((m + (1 << 15)) >> 16) : (int64_t)0x7FFF;
  const int total_shift = 15 - shift;
  x = x * reduced + ((int64_t)1 << (total_shift - 1));
  return (int32_t)(x >> total_shift);
}

/* gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent. */
static inline int32_t edc_sat_shl(int32_t x, int e) {
  const int32_t threshold = (int32_t)((1u << (31 - e)) - 1u);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return edc_shl(x, e);
}

static inline int32_t edc_clamp(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

static inline int edc_clz32(uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return x ? __builtin_clz(x) : 32;
#else
  int n = 0;
  if (!x) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    n++;
  }
  return n;
#endif
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static inline int32_t edc_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668; /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28);
  const int32_t x2 = edc_srdhm(x, x);
  const int32_t x3 = edc_srdhm(x2, x);
  const int32_t x4 = edc_srdhm(x2, x2);
  const int32_t x4_over_4 = edc_rdpot(x4, 2);
  const int32_t poly = edc_rdpot(edc_srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + edc_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given with `ib` integer bits (Q(ib).(31-ib)); result Q0.31. */
static inline int32_t edc_exp_neg(int32_t a, int ib) {
  static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308,
                                   39332535,   720401,     242};
  const int fb = 31 - ib;
  const int32_t quarter = (int32_t)1 << (fb - 2);
  const int32_t a_mod = (a & (quarter - 1)) - quarter;
  int32_t result = edc_exp_quarter(ib > 0 ? edc_sat_shl(a_mod, ib) : a_mod);
  const int32_t remainder = a_mod - a;
  int k;
  for (k = -2; k <= 4; k++) {
    if (ib > k) {
      if (remainder & ((int32_t)1 << (fb + k))) result = edc_srdhm(result, mults[k + 2]);
    }
  }
  if (ib > 5) {
    const int32_t clamp = -((int32_t)1 << (36 - ib));
    if (a < clamp) result = 0;
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, three steps). */
static inline int32_t edc_one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + (int64_t)INT32_MAX;
  const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t c48_17 = 1515870810;
  const int32_t cneg32_17 = -1010580540;
  const int32_t one_q2 = 1 << 29;
  int32_t x = c48_17 + edc_srdhm(half_den, cneg32_17);
  int i;
  for (i = 0; i < 3; i++) {
    const int32_t hdx = edc_srdhm(half_den, x);
    const int32_t one_minus = one_q2 - hdx;
    x = x + edc_sat_shl(edc_srdhm(x, one_minus), 2);
  }
  return edc_sat_shl(x, 1);
}

#endif /* EDC_FIXEDPOINT_H */
