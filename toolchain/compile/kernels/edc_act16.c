/* edgedeploy compiled runtime: int16 LOGISTIC, TANH and QUANTIZE (see edc_act16.h). */
#include "edc_act16.h"

#include "edc_fixedpoint.h"

static inline int32_t rescale(const edc_act16_params *p, int16_t x) {
  const int32_t s = p->input_left_shift;
  const int32_t round = s > 0 ? (int32_t)1 << (s - 1) : 0;
  return ((int32_t)x * p->input_multiplier + round) >> s;
}

void edc_logistic_s16(const edc_act16_params *p, const int16_t *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->size; i++) {
    const int32_t v = rescale(p, in[i]);
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t hi = a >> 9; /* table index; the low 9 bits interpolate */
    uint32_t r;
    if (hi >= 255u) {
      r = 0x7FFFu << 10;
    } else {
      const uint32_t lo_v = p->sigmoid[hi], hi_v = p->sigmoid[hi + 1];
      r = (lo_v << 9) + (a & 0x1FFu) * (hi_v - lo_v);
    }
    /* sigmoid(-x) = 1 - sigmoid(x); round half up back to Q0.15 */
    r = v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
    out[i] = (int16_t)(r >> 10);
  }
}

void edc_tanh_s16(const edc_act16_params *p, const int16_t *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->size; i++) {
    const int32_t v = rescale(p, in[i]);
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t hi = a >> 8;
    int32_t r;
    if (hi >= 255u) {
      r = (int32_t)(0xFFFFu << 8);
    } else {
      const uint32_t lo_v = p->sigmoid[hi], hi_v = p->sigmoid[hi + 1];
      r = (int32_t)((lo_v << 8) + (a & 0xFFu) * (hi_v - lo_v));
    }
    /* tanh(x) = 2 sigmoid(2x) - 1, odd */
    r = v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
    out[i] = (int16_t)(r >> 8);
  }
}

#define EDC_REQUANT_BODY(OUT_T)                                                        \
  int32_t i;                                                                         \
  for (i = 0; i < p->size; i++) {                                                    \
    const int32_t x = (int32_t)in[i] - p->in_zero_point;                             \
    int32_t v;                                                                       \
    if (x >= 0) {                                                                    \
      v = edc_mul_q(x, p->pos_mult, p->pos_shift);                                   \
    } else {                                                                         \
      v = edc_mul_q(x, p->neg_mult, p->neg_shift);                                   \
      if (p->neg_negate) v = -v;                                                     \
    }                                                                                \
    out[i] = (OUT_T)edc_clamp(v + p->out_zero_point, p->out_min, p->out_max);        \
  }

void edc_requant_s16_s16(const edc_requant_params *p, const int16_t *in, int16_t *out) {
  EDC_REQUANT_BODY(int16_t)
}

void edc_requant_s16_s8(const edc_requant_params *p, const int16_t *in, int8_t *out) {
  EDC_REQUANT_BODY(int8_t)
}

void edc_requant_s8_s16(const edc_requant_params *p, const int8_t *in, int16_t *out) {
  EDC_REQUANT_BODY(int16_t)
}

/* 1/sqrt(x) = m * 2^(shift - 31) for x >= 2 (gemmlowp fixed point, Q3.28 Newton-Raphson). */
static int32_t inv_sqrt_q31(int32_t x, int32_t *shift_out) {
  int32_t shift = 11, pairs, half_in, v;
  int k;
  while (x >= (1 << 29)) {
    x /= 4;
    shift++;
  }
  pairs = (int32_t)((edc_clz32((uint32_t)x) - 1) / 2 - 1);
  shift -= pairs;
  x = edc_shl(x, (int)(2 * pairs));
  half_in = edc_rdpot(x >> 1, 1);
  v = 1 << 28; /* 1.0 in Q3.28 */
  for (k = 0; k < 5; k++) {
    const int32_t v3 = edc_sat_shl(edc_srdhm(edc_srdhm(v, v), v), 6);
    const uint32_t d = (uint32_t)edc_srdhm((1 << 28) + (1 << 27), v) - (uint32_t)edc_srdhm(half_in, v3);
    v = edc_sat_shl((int32_t)d, 3);
  }
  v = edc_srdhm(v, 1518500250); /* sqrt(2)/2 in Q0.31 */
  if (shift < 0) {
    v = edc_shl(v, (int)-shift);
    shift = 0;
  }
  *shift_out = -shift;
  return v;
}

void edc_rsqrt_s16(const edc_requant_params *p, const int16_t *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->size; i++) {
    const int32_t value = (int32_t)in[i] - p->in_zero_point;
    int32_t r = p->out_max;
    if (value > 0) {
      int32_t m = INT32_MAX, s = 0, data;
      if (value > 1) m = inv_sqrt_q31(value, &s);
      data = edc_mul_q(1, m, s + 20);
      r = edc_clamp(edc_mul_q(data, p->pos_mult, p->pos_shift - 20) + p->out_zero_point,
                    p->out_min, p->out_max);
    }
    out[i] = (int16_t)r;
  }
}
