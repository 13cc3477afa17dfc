/* edgedeploy compiled runtime: int8 CONV_2D (groups 1) as a matrix product, two output pixels
 * by two output channels at a time, with dual 16-bit multiply-accumulates (edc_simd.h).
 *
 * The compiler prepares the constants (toolchain/compile/select.py):
 *   k4       = k_h * k_w * in_c rounded up to a multiple of 4 (weights padded with zeros);
 *   weights  = pairs of output channels, word-interleaved: for channel pair j and word g,
 *              4 bytes of channel 2j then 4 bytes of channel 2j+1 (an odd last channel is
 *              paired with zeros);
 *   bias     = bias + in_offset * sum(weights of the channel): the input offset is folded in,
 *              so the inner loop multiplies raw int8 values. Padding is filled with the input
 *              zero point (pad_value), which then contributes exactly nothing, as in TFLM.
 * The scratch buffer (planned in the arena) holds two im2col columns, word-interleaved the
 * same way (2 * k4 bytes), and when in_c % 4 != 0 one more linear column (k4 bytes). Accumulation is exact int32, so only the order of the additions
 * differs from TFLM's reference kernel: the result is bit-exact.
 *
 * Dead filters: an output channel whose weights are all zero gives the same value at every
 * pixel (its accumulator is the bias alone), which the compiler computes with TFLM's
 * requantization. edc_conv_fast_live_s8 takes such a layer with its live channels only:
 * weights, bias, mult and shift hold the live_c live channels (packed as above), ch[j] is the
 * output channel of live channel j, and fill (out_c bytes) is copied to every output pixel
 * first: the dead channels' constants (the live channels' bytes there are overwritten). */
#ifndef EDC_CONV_FAST_H
#define EDC_CONV_FAST_H

#include "edc_runtime.h"

typedef struct {
  int32_t batches, in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w, k4;
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t pad_value, out_offset, act_min, act_max;
  int32_t small_acc; /* 1: accumulators proven small, edc_requant_small (edc_simd.h) applies */
  const int8_t *weights;
  const int32_t *bias;
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts (-30..30 with small_acc, else -31..30) */
  /* edc_conv_fast_live_s8 only (dead filters dropped; see above) */
  int32_t live_c;
  const uint16_t *ch;
  const int8_t *fill;
} edc_conv_fast_params;

void edc_conv_fast_s8(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                      int8_t *scratch);
void edc_conv_fast_live_s8(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                           int8_t *scratch);

/* Split ("patch") execution, batch 1: output rows [oy_lo, oy_hi) written from `out` on, `in`
 * holding the input rows from in_row0 on (every row the windows read). Same per-pixel
 * arithmetic as edc_conv_fast_s8. */
void edc_conv_fast_s8_rows(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                           int8_t *scratch, int32_t oy_lo, int32_t oy_hi, int32_t in_row0);

#endif /* EDC_CONV_FAST_H */
