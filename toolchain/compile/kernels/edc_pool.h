/* edgedeploy compiled runtime: int8 pooling (AVERAGE_POOL_2D, MAX_POOL_2D), NHWC. */
#ifndef EDC_POOL_H
#define EDC_POOL_H

#include "edc_runtime.h"

typedef struct {
  int32_t batches, in_h, in_w, channels;
  int32_t out_h, out_w, k_h, k_w;
  int32_t stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max;
} edc_pool_params;

void edc_avgpool_s8(const edc_pool_params *p, const int8_t *in, int8_t *out);
void edc_maxpool_s8(const edc_pool_params *p, const int8_t *in, int8_t *out);
void edc_avgpool_s16(const edc_pool_params *p, const int16_t *in, int16_t *out);
void edc_maxpool_s16(const edc_pool_params *p, const int16_t *in, int16_t *out);

#endif /* EDC_POOL_H */
