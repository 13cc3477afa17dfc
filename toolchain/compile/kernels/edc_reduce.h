/* edgedeploy compiled runtime: int8/int16 MEAN and SUM over any set of axes. */
#ifndef EDC_REDUCE_H
#define EDC_REDUCE_H

#include "edc_runtime.h"

/* The kept dimensions (outer loop, one output each) and the reduced ones (summed), each with
 * its input element stride, outermost first, padded with extent 1. For MEAN, mult/shift already
 * include the division by `count` (TFLM's way); for SUM they are s_in / s_out alone. Either way
 * the kernel only sums, subtracts in_zero_point * count and requantizes once. */
typedef struct {
  int32_t keep_dims[6], keep_strides[6];
  int32_t red_dims[6], red_strides[6];
  int32_t count; /* elements summed per output */
  int32_t in_zero_point, out_zero_point, mult, shift;
} edc_mean_s8_params;

void edc_mean_s8(const edc_mean_s8_params *p, const int8_t *in, int8_t *out);
/* int16 MEAN: the same parameters and arithmetic, int16 data. */
void edc_mean_s16(const edc_mean_s8_params *p, const int16_t *in, int16_t *out);

#endif /* EDC_REDUCE_H */
