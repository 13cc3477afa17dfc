/* edgedeploy compiled runtime: int8 element-wise functions as 256-entry lookup tables
 * (QUANTIZE int8->int8, LOGISTIC, TANH, HARD_SWISH...). The tables are computed on the host
 * with TFLM's integer arithmetic, so a lookup is bit-exact with TFLM's kernels. */
#ifndef EDC_LUT_H
#define EDC_LUT_H

#include "edc_runtime.h"

typedef struct {
  int32_t size;
  const int8_t *table; /* 256 entries, indexed by x + 128 */
} edc_lut_s8_params;

void edc_lut_s8(const edc_lut_s8_params *p, const int8_t *in, int8_t *out);

#endif /* EDC_LUT_H */
