/* edgedeploy compiled runtime: int8 softmax, bit-exact with TFLM's reference kernel
 * (exp in Q5.26, sum in Q12.19, reciprocal by Newton-Raphson). */
#include "edc_softmax.h"

#include "edc_fixedpoint.h"

void edc_softmax_s8(const edc_softmax_s8_params *p, const int8_t *in, int8_t *out) {
  const int32_t depth = p->depth;
  int32_t i, c;
  for (i = 0; i < p->outer; i++) {
    const int8_t *x = in + i * depth;
    int8_t *y = out + i * depth;
    int32_t max_v = -128, sum = 0, headroom, bits_over_unit, scale, exponent;
    for (c = 0; c < depth; c++)
      if (x[c] > max_v) max_v = x[c];
    for (c = 0; c < depth; c++) {
      const int32_t diff = (int32_t)x[c] - max_v;
      if (diff >= p->diff_min) {
        const int32_t r = edc_srdhm(edc_shl(diff, p->input_left_shift), p->input_multiplier);
        sum += edc_rdpot(edc_exp_neg(r, 5), 12);
      }
    }
    headroom = edc_clz32((uint32_t)sum);
    bits_over_unit = 12 - headroom;
    scale = edc_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - (1u << 31)));
    exponent = bits_over_unit + 31 - 8;
    for (c = 0; c < depth; c++) {
      const int32_t diff = (int32_t)x[c] - max_v;
      if (diff >= p->diff_min) {
        const int32_t r = edc_srdhm(edc_shl(diff, p->input_left_shift), p->input_multiplier);
        const int32_t v = edc_rdpot(edc_srdhm(scale, edc_exp_neg(r, 5)), exponent) - 128;
        y[c] = (int8_t)edc_clamp(v, -128, 127);
      } else {
        y[c] = -128;
      }
    }
  }
}

/* Table lookup with linear interpolation: 512 segments of 128 input steps. */
static int16_t lut16(int16_t v, const int16_t *lut) {
  const int32_t index = 256 + (v >> 7);
  const int32_t offset = v & 0x7f;
  const int32_t base = lut[index];
  const int32_t slope = lut[index + 1] - lut[index];
  return (int16_t)(base + ((slope * offset + 64) >> 7));
}

void edc_softmax_s16(const edc_softmax_s16_params *p, const int16_t *in, int16_t *out) {
  const int32_t depth = p->depth;
  int32_t i, c;
  for (i = 0; i < p->outer; i++) {
    const int16_t *x = in + i * depth;
    int16_t *y = out + i * depth;
    int32_t max_v = -32768, sum = 0, headroom, shifted, right_shift;
    int16_t recip;
    int64_t round;
    for (c = 0; c < depth; c++)
      if (x[c] > max_v) max_v = x[c];
    for (c = 0; c < depth; c++) {
      const int32_t scaled = edc_mul_q(x[c] - max_v, p->input_multiplier, p->input_shift);
      y[c] = lut16((int16_t)edc_clamp(scaled + 32767, -32768, 32767), p->exp_lut);
      sum += y[c];
    }
    headroom = edc_clz32((uint32_t)sum);
    shifted = (int32_t)((((int64_t)sum << (headroom - 1)) + (1 << 13)) >> 14);
    recip = lut16((int16_t)edc_clamp(shifted - ((1 << 15) + (1 << 16)), -32768, 32767),
                  p->one_over_one_plus_x_lut);
    right_shift = 31 - headroom;
    round = (int64_t)1 << (right_shift - 1);
    for (c = 0; c < depth; c++) {
      const int32_t r = (int32_t)(((int64_t)y[c] * recip + round) >> right_shift);
      y[c] = (int16_t)edc_clamp(r, 0, 32767);
    }
  }
}
