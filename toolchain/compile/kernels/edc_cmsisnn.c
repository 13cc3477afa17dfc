/* edgedeploy compiled runtime: the CMSIS-NN calls (see edc_cmsisnn.h). Written for
 * edgedeploy; CMSIS-NN itself comes from the user's checkout at build time. */
#include "edc_cmsisnn.h"

#include "arm_nnfunctions.h"

static cmsis_nn_dims dims(int32_t n, int32_t h, int32_t w, int32_t c)
{
  cmsis_nn_dims d;
  d.n = n;
  d.h = h;
  d.w = w;
  d.c = c;
  return d;
}

static cmsis_nn_context context(int8_t *scratch, int32_t bytes)
{
  cmsis_nn_context ctx;
  ctx.buf = bytes > 0 ? scratch : NULL;
  ctx.size = bytes > 0 ? bytes : 0;
  return ctx;
}

static cmsis_nn_conv_params conv_params(const edc_cmsis_conv_params *p)
{
  cmsis_nn_conv_params c;
  c.input_offset = p->in_offset;
  c.output_offset = p->out_offset;
  c.stride.h = p->stride_h;
  c.stride.w = p->stride_w;
  c.padding.h = p->pad_h;
  c.padding.w = p->pad_w;
  c.dilation.h = p->dil_h;
  c.dilation.w = p->dil_w;
  c.activation.min = p->act_min;
  c.activation.max = p->act_max;
  return c;
}

static cmsis_nn_dw_conv_params dw_params(const edc_cmsis_conv_params *p)
{
  cmsis_nn_dw_conv_params c;
  c.input_offset = p->in_offset;
  c.output_offset = p->out_offset;
  c.ch_mult = p->depth_mult;
  c.stride.h = p->stride_h;
  c.stride.w = p->stride_w;
  c.padding.h = p->pad_h;
  c.padding.w = p->pad_w;
  c.dilation.h = p->dil_h;
  c.dilation.w = p->dil_w;
  c.activation.min = p->act_min;
  c.activation.max = p->act_max;
  return c;
}

static cmsis_nn_per_channel_quant_params channel_quant(const int32_t *mult, const int32_t *shift)
{
  cmsis_nn_per_channel_quant_params q;
  /* CMSIS-NN takes non-const pointers but only reads them */
  q.multiplier = (int32_t *)(uintptr_t)mult;
  q.shift = (int32_t *)(uintptr_t)shift;
  return q;
}

static cmsis_nn_pool_params pool_params(const edc_cmsis_pool_params *p)
{
  cmsis_nn_pool_params c;
  c.stride.h = p->stride_h;
  c.stride.w = p->stride_w;
  c.padding.h = p->pad_h;
  c.padding.w = p->pad_w;
  c.activation.min = p->act_min;
  c.activation.max = p->act_max;
  return c;
}

int edc_cmsis_conv_s8(const edc_cmsis_conv_params *p, const int8_t *in, int8_t *out,
                      int8_t *scratch)
{
  const cmsis_nn_context ctx = context(scratch, p->scratch_bytes);
  const cmsis_nn_conv_params cp = conv_params(p);
  const cmsis_nn_per_channel_quant_params q = channel_quant(p->mult, p->shift);
  const cmsis_nn_dims id = dims(p->batches, p->in_h, p->in_w, p->in_c);
  const cmsis_nn_dims fd = dims(p->out_c, p->k_h, p->k_w, p->in_c);
  const cmsis_nn_dims bd = dims(1, 1, 1, p->out_c);
  const cmsis_nn_dims od = dims(p->batches, p->out_h, p->out_w, p->out_c);
  return (int)arm_convolve_wrapper_s8(&ctx, &cp, &q, &id, in, &fd, p->weights, &bd, p->bias,
                                      &od, out);
}

int32_t edc_cmsis_conv_buffer_size(const edc_cmsis_conv_params *p)
{
  const cmsis_nn_conv_params cp = conv_params(p);
  const cmsis_nn_dims id = dims(p->batches, p->in_h, p->in_w, p->in_c);
  const cmsis_nn_dims fd = dims(p->out_c, p->k_h, p->k_w, p->in_c);
  const cmsis_nn_dims od = dims(p->batches, p->out_h, p->out_w, p->out_c);
  return arm_convolve_wrapper_s8_get_buffer_size(&cp, &id, &fd, &od);
}

int edc_cmsis_dwconv_s8(const edc_cmsis_conv_params *p, const int8_t *in, int8_t *out,
                        int8_t *scratch)
{
  const cmsis_nn_context ctx = context(scratch, p->scratch_bytes);
  const cmsis_nn_dw_conv_params cp = dw_params(p);
  const cmsis_nn_per_channel_quant_params q = channel_quant(p->mult, p->shift);
  const cmsis_nn_dims id = dims(p->batches, p->in_h, p->in_w, p->in_c);
  const cmsis_nn_dims fd = dims(1, p->k_h, p->k_w, p->out_c);
  const cmsis_nn_dims bd = dims(1, 1, 1, p->out_c);
  const cmsis_nn_dims od = dims(p->batches, p->out_h, p->out_w, p->out_c);
  return (int)arm_depthwise_conv_wrapper_s8(&ctx, &cp, &q, &id, in, &fd, p->weights, &bd,
                                            p->bias, &od, out);
}

int32_t edc_cmsis_dwconv_buffer_size(const edc_cmsis_conv_params *p)
{
  const cmsis_nn_dw_conv_params cp = dw_params(p);
  const cmsis_nn_dims id = dims(p->batches, p->in_h, p->in_w, p->in_c);
  const cmsis_nn_dims fd = dims(1, p->k_h, p->k_w, p->out_c);
  const cmsis_nn_dims od = dims(p->batches, p->out_h, p->out_w, p->out_c);
  return arm_depthwise_conv_wrapper_s8_get_buffer_size(&cp, &id, &fd, &od);
}

int edc_cmsis_fc_s8(const edc_cmsis_fc_params *p, const int8_t *in, int8_t *out,
                    int8_t *scratch)
{
  const cmsis_nn_context ctx = context(scratch, p->scratch_bytes);
  cmsis_nn_fc_params fp;
  fp.input_offset = p->in_offset;
  fp.filter_offset = 0; /* int8 weights are symmetric */
  fp.output_offset = p->out_offset;
  fp.activation.min = p->act_min;
  fp.activation.max = p->act_max;
  cmsis_nn_quant_params q;
  q.multiplier = (int32_t *)(uintptr_t)p->mult;
  q.shift = (int32_t *)(uintptr_t)p->shift;
  q.is_per_channel = p->per_channel;
  const cmsis_nn_dims id = dims(p->batches, 1, 1, p->in_depth);
  const cmsis_nn_dims fd = dims(p->in_depth, 1, 1, p->out_depth);
  const cmsis_nn_dims bd = dims(1, 1, 1, p->out_depth);
  const cmsis_nn_dims od = dims(p->batches, 1, 1, p->out_depth);
  return (int)arm_fully_connected_wrapper_s8(&ctx, &fp, &q, &id, in, &fd, p->weights, &bd,
                                             p->bias, &od, out);
}

int32_t edc_cmsis_fc_buffer_size(const edc_cmsis_fc_params *p)
{
  const cmsis_nn_dims fd = dims(p->in_depth, 1, 1, p->out_depth);
  return arm_fully_connected_s8_get_buffer_size(&fd);
}

int edc_cmsis_avgpool_s8(const edc_cmsis_pool_params *p, const int8_t *in, int8_t *out,
                         int8_t *scratch)
{
  const cmsis_nn_context ctx = context(scratch, p->scratch_bytes);
  const cmsis_nn_pool_params pp = pool_params(p);
  const cmsis_nn_dims id = dims(p->batches, p->in_h, p->in_w, p->channels);
  const cmsis_nn_dims fd = dims(1, p->k_h, p->k_w, 1);
  const cmsis_nn_dims od = dims(p->batches, p->out_h, p->out_w, p->channels);
  return (int)arm_avgpool_s8(&ctx, &pp, &id, in, &fd, &od, out);
}

int32_t edc_cmsis_avgpool_buffer_size(const edc_cmsis_pool_params *p)
{
  return arm_avgpool_s8_get_buffer_size(p->out_w, p->channels);
}

int edc_cmsis_maxpool_s8(const edc_cmsis_pool_params *p, const int8_t *in, int8_t *out,
                         int8_t *scratch)
{
  const cmsis_nn_context ctx = context(scratch, p->scratch_bytes);
  const cmsis_nn_pool_params pp = pool_params(p);
  const cmsis_nn_dims id = dims(p->batches, p->in_h, p->in_w, p->channels);
  const cmsis_nn_dims fd = dims(1, p->k_h, p->k_w, 1);
  const cmsis_nn_dims od = dims(p->batches, p->out_h, p->out_w, p->channels);
  return (int)arm_max_pool_s8(&ctx, &pp, &id, in, &fd, &od, out);
}

int edc_cmsis_softmax_s8(const edc_cmsis_softmax_params *p, const int8_t *in, int8_t *out)
{
  arm_softmax_s8(in, p->outer, p->depth, p->input_multiplier, p->input_left_shift, p->diff_min,
                 out);
  return 0;
}

int edc_cmsis_add_s8(const edc_cmsis_eltwise_params *p, const int8_t *a, const int8_t *b,
                     int8_t *out)
{
  return (int)arm_elementwise_add_s8(a, b, p->in1_offset, p->in1_mult, p->in1_shift,
                                     p->in2_offset, p->in2_mult, p->in2_shift, p->left_shift,
                                     out, p->out_offset, p->out_mult, p->out_shift, p->act_min,
                                     p->act_max, p->size);
}

int edc_cmsis_mul_s8(const edc_cmsis_eltwise_params *p, const int8_t *a, const int8_t *b,
                     int8_t *out)
{
  return (int)arm_elementwise_mul_s8(a, b, p->in1_offset, p->in2_offset, out, p->out_offset,
                                     p->out_mult, p->out_shift, p->act_min, p->act_max,
                                     p->size);
}
