/* edgedeploy compiled runtime: int8 nearest-neighbour resize (RESIZE_NEAREST_NEIGHBOR), NHWC.
 * The source row/column of every output row/column is computed on the host (TFLM's rule). */
#ifndef EDC_RESIZE_H
#define EDC_RESIZE_H

#include "edc_runtime.h"

typedef struct {
  int32_t batches, in_h, in_w, channels, out_h, out_w;
  const int32_t *y_map; /* out_h entries: input row */
  const int32_t *x_map; /* out_w entries: input column */
} edc_resize_nn_params;

void edc_resize_nn_s8(const edc_resize_nn_params *p, const int8_t *in, int8_t *out);

#endif /* EDC_RESIZE_H */
