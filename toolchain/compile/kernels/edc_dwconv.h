/* edgedeploy compiled runtime: int8 depthwise convolution (DEPTHWISE_CONV_2D), NHWC. */
#ifndef EDC_DWCONV_H
#define EDC_DWCONV_H

#include "edc_runtime.h"

/* Weights are [out_c][k_h][k_w] (channel-major, unlike TFLite's [1][k_h][k_w][out_c]);
 * out_c = in_c * depth_mult; output channel c reads input channel c / depth_mult.
 * bias_folded[oc] = bias[oc] + in_offset * sum(weights of oc) (host-computed): a plain dot
 * product where the whole window is inside the input, the offset added per tap elsewhere. */
typedef struct {
  int32_t batches, in_h, in_w, in_c;
  int32_t out_h, out_w, depth_mult;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t in_offset, out_offset, act_min, act_max;
  const int8_t *weights;
  const int32_t *bias; /* NULL when the layer has none */
  const int32_t *bias_folded;
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts, -31..30 */
} edc_dwconv_s8_params;

void edc_dwconv_s8(const edc_dwconv_s8_params *p, const int8_t *in, int8_t *out);

/* Split execution, batch 1: output rows [oy_lo, oy_hi) written from `out` on, `in` holding the
 * input rows from in_row0 on (see edc_conv_s8_rows). */
void edc_dwconv_s8_rows(const edc_dwconv_s8_params *p, const int8_t *in, int8_t *out,
                        int32_t oy_lo, int32_t oy_hi, int32_t in_row0);

#endif /* EDC_DWCONV_H */
