/* edgedeploy compiled runtime: int8/int16 MEAN and SUM, bit-exact with TFLM's reference kernel
 * (QuantizedMeanOrSum: one kernel, the host folds MEAN's 1/count into the multiplier). */
#include "edc_reduce.h"

#include "edc_fixedpoint.h"

static int32_t sum_reduced(const edc_mean_s8_params *p, const int8_t *x) {
  int32_t s = 0, r0, r1, r2, r3, r4, r5;
  for (r0 = 0; r0 < p->red_dims[0]; r0++)
    for (r1 = 0; r1 < p->red_dims[1]; r1++)
      for (r2 = 0; r2 < p->red_dims[2]; r2++)
        for (r3 = 0; r3 < p->red_dims[3]; r3++)
          for (r4 = 0; r4 < p->red_dims[4]; r4++) {
            const int8_t *q = x + r0 * p->red_strides[0] + r1 * p->red_strides[1] +
                              r2 * p->red_strides[2] + r3 * p->red_strides[3] +
                              r4 * p->red_strides[4];
            for (r5 = 0; r5 < p->red_dims[5]; r5++) s += q[r5 * p->red_strides[5]];
          }
  return s;
}

void edc_mean_s8(const edc_mean_s8_params *p, const int8_t *in, int8_t *out) {
  int32_t k0, k1, k2, k3, k4, k5;
  const int32_t bias = p->in_zero_point * p->count;
  for (k0 = 0; k0 < p->keep_dims[0]; k0++)
    for (k1 = 0; k1 < p->keep_dims[1]; k1++)
      for (k2 = 0; k2 < p->keep_dims[2]; k2++)
        for (k3 = 0; k3 < p->keep_dims[3]; k3++)
          for (k4 = 0; k4 < p->keep_dims[4]; k4++)
            for (k5 = 0; k5 < p->keep_dims[5]; k5++) {
              const int8_t *x = in + k0 * p->keep_strides[0] + k1 * p->keep_strides[1] +
                                k2 * p->keep_strides[2] + k3 * p->keep_strides[3] +
                                k4 * p->keep_strides[4] + k5 * p->keep_strides[5];
              const int32_t v = edc_mul_q(sum_reduced(p, x) - bias, p->mult, p->shift) +
                                p->out_zero_point;
              *out++ = (int8_t)edc_clamp(v, -128, 127);
            }
}

static int32_t sum_reduced16(const edc_mean_s8_params *p, const int16_t *x) {
  int32_t s = 0, r0, r1, r2, r3, r4, r5;
  for (r0 = 0; r0 < p->red_dims[0]; r0++)
    for (r1 = 0; r1 < p->red_dims[1]; r1++)
      for (r2 = 0; r2 < p->red_dims[2]; r2++)
        for (r3 = 0; r3 < p->red_dims[3]; r3++)
          for (r4 = 0; r4 < p->red_dims[4]; r4++) {
            const int16_t *q = x + r0 * p->red_strides[0] + r1 * p->red_strides[1] +
                              r2 * p->red_strides[2] + r3 * p->red_strides[3] +
                              r4 * p->red_strides[4];
            for (r5 = 0; r5 < p->red_dims[5]; r5++) s += q[r5 * p->red_strides[5]];
          }
  return s;
}

void edc_mean_s16(const edc_mean_s8_params *p, const int16_t *in, int16_t *out) {
  int32_t k0, k1, k2, k3, k4, k5;
  const int32_t bias = p->in_zero_point * p->count;
  for (k0 = 0; k0 < p->keep_dims[0]; k0++)
    for (k1 = 0; k1 < p->keep_dims[1]; k1++)
      for (k2 = 0; k2 < p->keep_dims[2]; k2++)
        for (k3 = 0; k3 < p->keep_dims[3]; k3++)
          for (k4 = 0; k4 < p->keep_dims[4]; k4++)
            for (k5 = 0; k5 < p->keep_dims[5]; k5++) {
              const int16_t *x = in + k0 * p->keep_strides[0] + k1 * p->keep_strides[1] +
                                k2 * p->keep_strides[2] + k3 * p->keep_strides[3] +
                                k4 * p->keep_strides[4] + k5 * p->keep_strides[5];
              const int32_t v = edc_mul_q(sum_reduced16(p, x) - bias, p->mult, p->shift) +
                                p->out_zero_point;
              *out++ = (int16_t)edc_clamp(v, -32768, 32767);
            }
}
