/* edgedeploy compiled runtime: int8 fully connected layer (FULLY_CONNECTED). */
#ifndef EDC_FC_H
#define EDC_FC_H

#include "edc_runtime.h"

/* Weights are [out_depth][in_depth]. `bias` already holds bias + in_offset * sum(weights row)
 * (folded on the host), so the inner loop is a plain dot product. mult/shift have out_depth
 * entries when per_channel, else one. */
typedef struct {
  int32_t batches, in_depth, out_depth, per_channel;
  int32_t out_offset, act_min, act_max;
  const int8_t *weights;
  const int32_t *bias;
  const int32_t *mult;
  const int8_t *shift; /* per-channel shifts, -31..30 */
} edc_fc_s8_params;

void edc_fc_s8(const edc_fc_s8_params *p, const int8_t *in, int8_t *out);

#endif /* EDC_FC_H */
