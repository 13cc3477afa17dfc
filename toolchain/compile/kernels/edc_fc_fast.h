/* edgedeploy compiled runtime: int8 FULLY_CONNECTED, four output rows at a time with dual
 * 16-bit MACs (edc_simd.h). The compiler prepares the weights (toolchain/compile/select.py):
 * rows in groups of four; within a group, for each word g of depth4 = in_depth & ~3, the word
 * of row 0, 1, 2, 3; then the group's tails (in_depth - depth4 bytes of row 0, 1, 2, 3). The
 * last out_depth % 4 rows follow one by one ([depth4 bytes][tail]). `bias` holds
 * bias + in_offset * sum(row), as for edc_fc. Bit-exact with TFLM's reference kernel. */
#ifndef EDC_FC_FAST_H
#define EDC_FC_FAST_H

#include "edc_runtime.h"

typedef struct {
  int32_t batches, in_depth, out_depth, per_channel;
  int32_t out_offset, act_min, act_max;
  int32_t small_acc; /* 1: accumulators proven small, edc_requant_small (edc_simd.h) applies */
  const int8_t *weights;
  const int32_t *bias;
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts (-30..30 with small_acc, else -31..30) */
} edc_fc_fast_params;

void edc_fc_fast_s8(const edc_fc_fast_params *p, const int8_t *in, int8_t *out);

#endif /* EDC_FC_FAST_H */
