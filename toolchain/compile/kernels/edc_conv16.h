/* edgedeploy compiled runtime: int16x8 convolutions (int16 activations, int8 weights, int64
 * biases and accumulators): CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED. Input zero point
 * is 0 (TFLite's int16 scheme), so there is no offset to add. */
#ifndef EDC_CONV16_H
#define EDC_CONV16_H

#include "edc_runtime.h"

typedef struct {
  int32_t batches, in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w, groups, depth_mult; /* depth_mult: depthwise only */
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t out_offset, act_min, act_max;
  const int8_t *weights; /* conv: [out_c][k_h][k_w][in_c/groups]; depthwise: [out_c][k_h][k_w] */
  const int64_t *bias;   /* NULL when the layer has none */
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts, -31..30 */
} edc_conv16_params;

void edc_conv_s16(const edc_conv16_params *p, const int16_t *in, int16_t *out);
void edc_dwconv_s16(const edc_conv16_params *p, const int16_t *in, int16_t *out);

typedef struct {
  int32_t batches, in_depth, out_depth, per_channel;
  int32_t out_offset, act_min, act_max;
  const int8_t *weights; /* [out_depth][in_depth] */
  const int64_t *bias;   /* NULL when the layer has none */
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts, -31..30 */
} edc_fc16_params;

void edc_fc_s16(const edc_fc16_params *p, const int16_t *in, int16_t *out);

#endif /* EDC_CONV16_H */
