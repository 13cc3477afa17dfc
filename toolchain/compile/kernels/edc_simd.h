/* edgedeploy compiled runtime: the few SIMD operations our fast kernels use.
 *
 * On a core with the Arm DSP extension (Cortex-M4/M7/M33/M55: __ARM_FEATURE_DSP) each
 * function is one instruction (GCC's ACLE intrinsics from <arm_acle.h>, or one line of inline
 * assembly where ACLE has no form with a rotation). Everywhere else (Cortex-M0+/M3, the host
 * build, the host tests) the same functions are portable C with exactly the same results, so
 * the same kernel source runs, and is tested, on both. Define EDC_PORTABLE_SIMD to force the
 * portable forms on an Arm core (the tests compare the two in QEMU).
 *
 *   edc_sxtb16(x)         halfwords (sext(x.b0), sext(x.b2))
 *   edc_sxtb16_r8(x)      halfwords (sext(x.b1), sext(x.b3))           (SXTB16 ..., ROR #8)
 *   edc_sxtab16(a, x)     halfwords (a.h0 + sext(x.b0), a.h1 + sext(x.b2)), each mod 2^16
 *   edc_sxtab16_r8(a, x)  halfwords (a.h0 + sext(x.b1), a.h1 + sext(x.b3))
 *   edc_smlad(a, b, acc)  acc + a.h0*b.h0 + a.h1*b.h1 (modulo 2^32, as SMLAD without the Q flag)
 *   edc_smlabb / edc_smlatt(a, b, acc)   acc + a.h0*b.h0 / acc + a.h1*b.h1
 *   edc_read4(p)          four bytes from any address as one little-endian word
 * Halfword h0 is bits 0-15, h1 bits 16-31 (little-endian, as on every Cortex-M).
 */
#ifndef EDC_SIMD_H
#define EDC_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(EDC_PORTABLE_SIMD)
#define EDC_SIMD_DSP 1
#include <arm_acle.h>
#else
#define EDC_SIMD_DSP 0
#endif

static inline uint32_t edc_read4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4); /* one LDR on cores that allow unaligned loads */
  return v;
}

#if EDC_SIMD_DSP

static inline uint32_t edc_sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int32_t)x); }
static inline uint32_t edc_sxtb16_r8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
static inline uint32_t edc_sxtab16(uint32_t a, uint32_t x) {
  return (uint32_t)__sxtab16((int32_t)a, (int32_t)x);
}
static inline uint32_t edc_sxtab16_r8(uint32_t a, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
  return r;
}
static inline int32_t edc_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return __smlad((int32_t)a, (int32_t)b, acc);
}
static inline int32_t edc_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabb((int32_t)a, (int32_t)b, acc);
}
static inline int32_t edc_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline int32_t edc_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlatt((int32_t)a, (int32_t)b, acc);
}

#else /* portable C, same results */

static inline int32_t edc__h0(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu); }
static inline int32_t edc__h1(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }
static inline int32_t edc__b(uint32_t x, int i) {
  return (int32_t)(int8_t)(uint8_t)((x >> (8 * i)) & 0xFFu);
}
static inline uint32_t edc__pack(int32_t lo, int32_t hi) {
  return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}
static inline uint32_t edc_sxtb16(uint32_t x) { return edc__pack(edc__b(x, 0), edc__b(x, 2)); }
static inline uint32_t edc_sxtb16_r8(uint32_t x) { return edc__pack(edc__b(x, 1), edc__b(x, 3)); }
static inline uint32_t edc_sxtab16(uint32_t a, uint32_t x) {
  return edc__pack(edc__h0(a) + edc__b(x, 0), edc__h1(a) + edc__b(x, 2));
}
static inline uint32_t edc_sxtab16_r8(uint32_t a, uint32_t x) {
  return edc__pack(edc__h0(a) + edc__b(x, 1), edc__h1(a) + edc__b(x, 3));
}
static inline int32_t edc_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(edc__h0(a) * edc__h0(b)) +
                   (uint32_t)(edc__h1(a) * edc__h1(b)));
}
static inline int32_t edc_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(edc__h0(a) * edc__h0(b)));
}
static inline int32_t edc_smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
}
static inline int32_t edc_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(edc__h1(a) * edc__h1(b)));
}

#endif

/* TFLM's MultiplyByQuantizedMultiplier for a multiplier m >= 0 (every multiplier the
 * compiler emits): x * m * 2^(shift - 31), rounded twice exactly like TFLM's reference code
 * (saturating rounding doubling high multiply, then rounding divide by a power of two, ties
 * away from zero). With m >= 0 the doubling high multiply's nudge reduces to one formula,
 * (x * m + 2^30) >> 31, the same for both signs of x*m; the saturating case (x = m = INT32_MIN)
 * cannot happen. */
static inline int32_t edc_requant(int32_t x, int32_t m, int32_t shift) {
  /* branch-free: left = max(shift, 0), right = max(-shift, 0); a zero right shift rounds
   * nothing (mask 0, remainder 0) */
  const int32_t left = shift > 0 ? shift : 0, right = left - shift;
  const uint32_t mask = (uint32_t)(((uint64_t)1 << right) - 1u);
  int32_t y = (int32_t)((uint32_t)x << left);
  uint32_t rem, threshold;
  y = (int32_t)(((int64_t)y * (int64_t)m + ((int64_t)1 << 30)) >> 31);
  rem = (uint32_t)y & mask;
  threshold = (mask >> 1) + (y < 0 ? 1u : 0u);
  return (y >> right) + (rem > threshold ? 1 : 0);
}

/* edc_requant for accumulators the compiler has proven small: |x * 2^max(shift, 0)| < 2^29
 * and shift >= -30 (toolchain/compile/select.py checks both for every layer it gives a fast
 * kernel, from the weights and biases). Same result as edc_requant, in fewer instructions:
 *   SRDHM(a, m) = (a*m + 2^30) >> 31 = (2a*m + 2^31) >> 32 = SMMULR(2a, m)   (2a fits);
 *   RDPOT(y, e) = RDPOT(2y, e + 1), and for a shift of at least 1 it is
 *                 (v + 2^(e'-1) - (v < 0)) >> e'  (no overflow: |2y| < 2^30).  */
static inline int32_t edc_requant_small(int32_t x, int32_t m, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0, right = left - shift;
  const int32_t y = edc_smmulr((int32_t)((uint32_t)x << (left + 1)), m);
  const int32_t y2 = (int32_t)((uint32_t)y << 1);
  return (y2 + (int32_t)(1u << right) + (y >> 31)) >> (right + 1);
}

#endif /* EDC_SIMD_H */
