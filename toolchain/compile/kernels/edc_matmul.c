/* edgedeploy compiled runtime: BATCH_MATMUL, bit-exact with TFLM's reference kernel. */
#include "edc_matmul.h"

#include "edc_fixedpoint.h"

void edc_matmul_s8(const edc_matmul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const int8_t *a = p->const1 ? (const int8_t *)p->const1 : in1;
  const int8_t *b = p->const2 ? (const int8_t *)p->const2 : in2;
  int32_t b0, b1, b2, i, j, k;
  for (b0 = 0; b0 < p->batch[0]; b0++)
    for (b1 = 0; b1 < p->batch[1]; b1++)
      for (b2 = 0; b2 < p->batch[2]; b2++) {
        const int8_t *pa = a + b0 * p->a_batch_stride[0] + b1 * p->a_batch_stride[1] +
                           b2 * p->a_batch_stride[2];
        const int8_t *pb = b + b0 * p->b_batch_stride[0] + b1 * p->b_batch_stride[1] +
                           b2 * p->b_batch_stride[2];
        for (i = 0; i < p->rows; i++) {
          const int8_t *ra = pa + i * p->a_row_stride;
          for (j = 0; j < p->cols; j++) {
            const int8_t *cb = pb + j * p->b_col_stride;
            int32_t acc = 0;
            for (k = 0; k < p->depth; k++)
              acc += ((int32_t)ra[k * p->a_depth_stride] + p->a_offset) *
                     ((int32_t)cb[k * p->b_depth_stride] + p->b_offset);
            acc = edc_mul_q(acc, p->out_mult, p->out_shift) + p->out_offset;
            *out++ = (int8_t)edc_clamp(acc, p->act_min, p->act_max);
          }
        }
      }
}

/* int16x8: zero points 0, 64-bit sums, TFLM's int64 requantization */
void edc_matmul_s16(const edc_matmul_params *p, const int16_t *in1, const int16_t *in2,
                    int16_t *out) {
  const int16_t *a = p->const1 ? (const int16_t *)p->const1 : in1;
  const int16_t *b = p->const2 ? (const int16_t *)p->const2 : in2;
  int32_t b0, b1, b2, i, j, k;
  for (b0 = 0; b0 < p->batch[0]; b0++)
    for (b1 = 0; b1 < p->batch[1]; b1++)
      for (b2 = 0; b2 < p->batch[2]; b2++) {
        const int16_t *pa = a + b0 * p->a_batch_stride[0] + b1 * p->a_batch_stride[1] +
                            b2 * p->a_batch_stride[2];
        const int16_t *pb = b + b0 * p->b_batch_stride[0] + b1 * p->b_batch_stride[1] +
                            b2 * p->b_batch_stride[2];
        for (i = 0; i < p->rows; i++) {
          const int16_t *ra = pa + i * p->a_row_stride;
          for (j = 0; j < p->cols; j++) {
            const int16_t *cb = pb + j * p->b_col_stride;
            int64_t acc = 0;
            int32_t r;
            for (k = 0; k < p->depth; k++)
              acc += (int64_t)ra[k * p->a_depth_stride] * (int64_t)cb[k * p->b_depth_stride];
            r = edc_mul_q64(acc, p->out_mult, p->out_shift) + p->out_offset;
            *out++ = (int16_t)edc_clamp(r, p->act_min, p->act_max);
          }
        }
      }
}
