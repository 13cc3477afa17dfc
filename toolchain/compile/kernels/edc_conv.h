/* edgedeploy compiled runtime: int8 2-D convolution (CONV_2D), NHWC activations. */
#ifndef EDC_CONV_H
#define EDC_CONV_H

#include "edc_runtime.h"

/* Weights are [out_c][k_h][k_w][in_c / groups] (TFLite's OHWI). mult/shift per output channel.
 * bias_folded[oc] = bias[oc] + in_offset * sum(weights of oc), computed on the host: where the
 * whole filter window lies inside the input (most pixels) the inner loop is a plain dot
 * product; border pixels add the offset per tap (TFLM skips taps outside the image). */
typedef struct {
  int32_t batches, in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w, groups;
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t in_offset, out_offset, act_min, act_max;
  const int8_t *weights;
  const int32_t *bias; /* NULL when the layer has none */
  const int32_t *bias_folded;
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts, -31..30 */
} edc_conv_s8_params;

void edc_conv_s8(const edc_conv_s8_params *p, const int8_t *in, int8_t *out);

/* Split ("patch") execution, batch 1: output rows [oy_lo, oy_hi) only, written from `out` on;
 * `in` holds the input rows from in_row0 on, every row the window reads (the planner sizes
 * the buffers; rows outside [0, in_h) are padding, never read). Same arithmetic per pixel. */
void edc_conv_s8_rows(const edc_conv_s8_params *p, const int8_t *in, int8_t *out, int32_t oy_lo,
                      int32_t oy_hi, int32_t in_row0);

#endif /* EDC_CONV_H */
