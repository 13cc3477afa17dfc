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

#endif /* EDC_SOFTMAX_H */
