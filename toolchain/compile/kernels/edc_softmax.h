/* edgedeploy compiled runtime: int8 softmax over the last dimension (SOFTMAX). */
#ifndef EDC_SOFTMAX_H
#define EDC_SOFTMAX_H

#include "edc_runtime.h"

typedef struct {
  int32_t outer, depth;
  int32_t input_multiplier, input_left_shift, diff_min;
} edc_softmax_s8_params;

/* int8 in, int8 out (output scale 1/256, zero point -128). */
void edc_softmax_s8(const edc_softmax_s8_params *p, const int8_t *in, int8_t *out);

/* int16 in and out (zero points 0, output scale 1/32768): exp and 1/(1+x) by interpolated
 * 513-entry tables built on the host exactly as TFLM builds them at Prepare. */
typedef struct {
  int32_t outer, depth;
  int32_t input_multiplier, input_shift;
  const int16_t *exp_lut;
  const int16_t *one_over_one_plus_x_lut;
} edc_softmax_s16_params;

void edc_softmax_s16(const edc_softmax_s16_params *p, const int16_t *in, int16_t *out);

#endif /* EDC_SOFTMAX_H */
