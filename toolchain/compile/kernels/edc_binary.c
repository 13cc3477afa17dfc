/* edgedeploy compiled runtime: int8 ADD/SUB/MUL, bit-exact with TFLM's reference kernels. */
#include "edc_binary.h"

#include "edc_fixedpoint.h"

static inline int32_t add_one(const edc_binary_params *p, int32_t x1, int32_t x2) {
  const int32_t a = edc_mul_q(edc_shl(x1 + p->in1_offset, p->left_shift), p->in1_mult, p->in1_shift);
  const int32_t b = edc_mul_q(edc_shl(x2 + p->in2_offset, p->left_shift), p->in2_mult, p->in2_shift);
  const int32_t r = edc_mul_q(a + b, p->out_mult, p->out_shift) + p->out_offset;
  return edc_clamp(r, p->act_min, p->act_max);
}

static inline int32_t sub_one(const edc_binary_params *p, int32_t x1, int32_t x2) {
  const int32_t a = edc_mul_q(edc_shl(x1 + p->in1_offset, p->left_shift), p->in1_mult, p->in1_shift);
  const int32_t b = edc_mul_q(edc_shl(x2 + p->in2_offset, p->left_shift), p->in2_mult, p->in2_shift);
  const int32_t r = edc_mul_q(a - b, p->out_mult, p->out_shift) + p->out_offset;
  return edc_clamp(r, p->act_min, p->act_max);
}

static inline int32_t mul_one(const edc_binary_params *p, int32_t x1, int32_t x2) {
  const int32_t prod = (x1 + p->in1_offset) * (x2 + p->in2_offset);
  const int32_t r = edc_mul_q(prod, p->out_mult, p->out_shift) + p->out_offset;
  return edc_clamp(r, p->act_min, p->act_max);
}

/* TFLM's SQUARED_DIFFERENCE: (x1 - x2)^2 at twice the larger input scale; the square of two
 * left-shifted, halved int8 (or int16 with left_shift 0) differences stays below 2^31. */
static inline int32_t sqdiff_one(const edc_binary_params *p, int32_t x1, int32_t x2) {
  const int32_t a = edc_mul_q(edc_shl(x1 + p->in1_offset, p->left_shift), p->in1_mult, p->in1_shift);
  const int32_t b = edc_mul_q(edc_shl(x2 + p->in2_offset, p->left_shift), p->in2_mult, p->in2_shift);
  const int32_t d = a - b;
  const int32_t r = edc_mul_q(d * d, p->out_mult, p->out_shift) + p->out_offset;
  return edc_clamp(r, p->act_min, p->act_max);
}

/* One row of elements (strides sa, sb): the only copy of ONE's inlined arithmetic per
 * operator, shared by the plain and the broadcast walks (not inlined twice: smaller code; the
 * strided loads cost nothing extra on Cortex-M, post-increment by a register). */
#define EDC_BINARY_ROW_T(NAME, ONE, T)                                                       \
  static __attribute__((noinline)) void NAME(const edc_binary_params *p, const T *a,       \
                                             const T *b, int32_t sa, int32_t sb, int32_t n, \
                                             T *out) {                                       \
    int32_t i;                                                                               \
    for (i = 0; i < n; i++) out[i] = (T)ONE(p, a[i * sa], b[i * sb]);                        \
  }

#define EDC_BINARY_BODY_T(ROW, T)                                                            \
  const T *a = p->const1 ? (const T *)p->const1 : in1;                                   \
  const T *b = p->const2 ? (const T *)p->const2 : in2;                                   \
  if (!p->broadcast) {                                                                  \
    ROW(p, a, b, 1, 1, p->size, out);                                                   \
  } else {                                                                              \
    int32_t i0, i1, i2, i3, i4;                                                         \
    for (i0 = 0; i0 < p->dims[0]; i0++)                                                 \
      for (i1 = 0; i1 < p->dims[1]; i1++)                                               \
        for (i2 = 0; i2 < p->dims[2]; i2++)                                             \
          for (i3 = 0; i3 < p->dims[3]; i3++)                                           \
            for (i4 = 0; i4 < p->dims[4]; i4++) {                                       \
              const T *pa = a + i0 * p->s1[0] + i1 * p->s1[1] + i2 * p->s1[2] +    \
                                 i3 * p->s1[3] + i4 * p->s1[4];                         \
              const T *pb = b + i0 * p->s2[0] + i1 * p->s2[1] + i2 * p->s2[2] +    \
                                 i3 * p->s2[3] + i4 * p->s2[4];                         \
              ROW(p, pa, pb, p->s1[5], p->s2[5], p->dims[5], out);                      \
              out += p->dims[5];                                                        \
            }                                                                           \
  }

EDC_BINARY_ROW_T(add_row_s8, add_one, int8_t)
EDC_BINARY_ROW_T(sub_row_s8, sub_one, int8_t)
EDC_BINARY_ROW_T(mul_row_s8, mul_one, int8_t)
EDC_BINARY_ROW_T(sqdiff_row_s8, sqdiff_one, int8_t)
EDC_BINARY_ROW_T(add_row_s16, add_one, int16_t)
EDC_BINARY_ROW_T(sub_row_s16, sub_one, int16_t)
EDC_BINARY_ROW_T(mul_row_s16, mul_one, int16_t)
EDC_BINARY_ROW_T(sqdiff_row_s16, sqdiff_one, int16_t)

#define EDC_BINARY_BODY(ONE) EDC_BINARY_BODY_T(ONE, int8_t)

void edc_add_s8(const edc_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  EDC_BINARY_BODY(add_row_s8)
}

void edc_sub_s8(const edc_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  EDC_BINARY_BODY(sub_row_s8)
}

void edc_mul_s8(const edc_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  EDC_BINARY_BODY(mul_row_s8)
}

void edc_add_s16(const edc_binary_params *p, const int16_t *in1, const int16_t *in2, int16_t *out) {
  EDC_BINARY_BODY_T(add_row_s16, int16_t)
}

void edc_sub_s16(const edc_binary_params *p, const int16_t *in1, const int16_t *in2, int16_t *out) {
  EDC_BINARY_BODY_T(sub_row_s16, int16_t)
}

/* int16 x int16 products reach 2^30: they fit the int32 accumulator of mul_one */
void edc_mul_s16(const edc_binary_params *p, const int16_t *in1, const int16_t *in2, int16_t *out) {
  EDC_BINARY_BODY_T(mul_row_s16, int16_t)
}

void edc_sqdiff_s8(const edc_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  EDC_BINARY_BODY(sqdiff_row_s8)
}

void edc_sqdiff_s16(const edc_binary_params *p, const int16_t *in1, const int16_t *in2,
                    int16_t *out) {
  EDC_BINARY_BODY_T(sqdiff_row_s16, int16_t)
}
