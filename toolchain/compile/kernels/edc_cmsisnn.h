/* edgedeploy compiled runtime: calls into Arm's CMSIS-NN (the user's checkout, never shipped
 * with edgedeploy; `edgedeploy compile --cmsis-nn DIR`). Each function turns one layer's
 * constant parameters into CMSIS-NN's argument structs and calls the library; the scratch
 * buffer a call needs was sized on the host (the library's *_get_buffer_size for this CPU)
 * and planned into the model's static arena. Build with -I<CMSIS-NN>/Include and the
 * library's sources. */
#ifndef EDC_CMSISNN_H
#define EDC_CMSISNN_H

#include "edc_runtime.h"

/* CONV_2D (arm_convolve_wrapper_s8) and DEPTHWISE_CONV_2D (arm_depthwise_conv_wrapper_s8):
 * TFLite layouts (filter OHWI / 1HWC), per-channel multiplier and shift. */
typedef struct {
  int32_t batches, in_h, in_w, in_c;
  int32_t out_h, out_w, out_c, k_h, k_w, depth_mult;
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t in_offset, out_offset, act_min, act_max;
  int32_t scratch_bytes;
  const int8_t *weights;
  const int32_t *bias;
  const int32_t *mult;
  const int32_t *shift;
} edc_cmsis_conv_params;

/* FULLY_CONNECTED (arm_fully_connected_wrapper_s8). */
typedef struct {
  int32_t batches, in_depth, out_depth, per_channel;
  int32_t in_offset, out_offset, act_min, act_max;
  int32_t scratch_bytes;
  const int8_t *weights;
  const int32_t *bias;
  const int32_t *mult;
  const int32_t *shift;
} edc_cmsis_fc_params;

/* AVERAGE_POOL_2D / MAX_POOL_2D (arm_avgpool_s8 / arm_max_pool_s8). */
typedef struct {
  int32_t batches, in_h, in_w, channels, out_h, out_w, k_h, k_w;
  int32_t stride_h, stride_w, pad_h, pad_w, act_min, act_max;
  int32_t scratch_bytes;
} edc_cmsis_pool_params;

/* SOFTMAX (arm_softmax_s8). */
typedef struct {
  int32_t outer, depth, input_multiplier, input_left_shift, diff_min;
} edc_cmsis_softmax_params;

/* ADD / MUL of same-shape operands (arm_elementwise_add_s8 / arm_elementwise_mul_s8). */
typedef struct {
  int32_t size;
  int32_t in1_offset, in2_offset, out_offset, left_shift;
  int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
  int32_t act_min, act_max;
} edc_cmsis_eltwise_params;

/* The kernels: 0 on success, the library's (negative) status otherwise. ``scratch`` is the
 * layer's planned arena scratch (NULL when the library needs none). */
int edc_cmsis_conv_s8(const edc_cmsis_conv_params *p, const int8_t *in, int8_t *out,
                      int8_t *scratch);
int edc_cmsis_dwconv_s8(const edc_cmsis_conv_params *p, const int8_t *in, int8_t *out,
                        int8_t *scratch);
int edc_cmsis_fc_s8(const edc_cmsis_fc_params *p, const int8_t *in, int8_t *out,
                    int8_t *scratch);
int edc_cmsis_avgpool_s8(const edc_cmsis_pool_params *p, const int8_t *in, int8_t *out,
                         int8_t *scratch);
int edc_cmsis_maxpool_s8(const edc_cmsis_pool_params *p, const int8_t *in, int8_t *out,
                         int8_t *scratch);
int edc_cmsis_softmax_s8(const edc_cmsis_softmax_params *p, const int8_t *in, int8_t *out);
int edc_cmsis_add_s8(const edc_cmsis_eltwise_params *p, const int8_t *a, const int8_t *b,
                     int8_t *out);
int edc_cmsis_mul_s8(const edc_cmsis_eltwise_params *p, const int8_t *a, const int8_t *b,
                     int8_t *out);

/* The library's own scratch size for a layer, as this build of it computes it: the model's
 * init checks the host-computed (planned) size against it. */
int32_t edc_cmsis_conv_buffer_size(const edc_cmsis_conv_params *p);
int32_t edc_cmsis_dwconv_buffer_size(const edc_cmsis_conv_params *p);
int32_t edc_cmsis_fc_buffer_size(const edc_cmsis_fc_params *p);
int32_t edc_cmsis_avgpool_buffer_size(const edc_cmsis_pool_params *p);

#endif /* EDC_CMSISNN_H */
