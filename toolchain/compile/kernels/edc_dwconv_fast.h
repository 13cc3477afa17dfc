/* edgedeploy compiled runtime: int8 DEPTHWISE_CONV_2D with depth multiplier 1, four channels at
 * a time with 16-bit SIMD (edc_simd.h): SXTAB16 adds the input offset to two channels at once,
 * SMLABB/SMLATT accumulate them. Weights are [channels / 4, rounded up][k_h * k_w][4] (zero
 * padded): the four weights of a tap are one word and a group's taps are consecutive. A 3x3
 * window wholly inside the input is unrolled. Channels beyond the last multiple of 4 take a
 * scalar path. Exact int32 accumulation: bit-exact with TFLM's reference kernel. */
#ifndef EDC_DWCONV_FAST_H
#define EDC_DWCONV_FAST_H

#include "edc_runtime.h"

typedef struct {
  int32_t batches, in_h, in_w, channels;
  int32_t out_h, out_w;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t in_offset, out_offset, act_min, act_max;
  int32_t small_acc; /* 1: accumulators proven small, edc_requant_small (edc_simd.h) applies */
  /* 3x3 windows inside the image: 1: row by row with one moving pointer, 0: nine taps
   * unrolled. Chosen per core at compile time (select.py, ROLLED_DW_CORES): rolled measured
   * 7..9 % fewer instructions per depthwise layer on the Cortex-M4 (the unrolled form spills
   * its tap addresses there), but more on the M7 and the M3. */
  int32_t rolled;
  const int8_t *weights;
  const int32_t *bias; /* NULL when the layer has none */
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts (-30..30 with small_acc, else -31..30) */
} edc_dwconv_fast_params;

void edc_dwconv_fast_s8(const edc_dwconv_fast_params *p, const int8_t *in, int8_t *out);

/* Split execution, batch 1: output rows [oy_lo, oy_hi) written from `out` on, `in` holding the
 * input rows from in_row0 on (see edc_conv_fast_s8_rows). */
void edc_dwconv_fast_s8_rows(const edc_dwconv_fast_params *p, const int8_t *in, int8_t *out,
                             int32_t oy_lo, int32_t oy_hi, int32_t in_row0);

#endif /* EDC_DWCONV_FAST_H */
