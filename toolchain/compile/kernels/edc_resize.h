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
void edc_resize_nn_s16(const edc_resize_nn_params *p, const int16_t *in, int16_t *out);

/* RESIZE_BILINEAR (int8): per output row y the rows y0/y1 and the 10-bit fraction fy (and the
 * same per column), computed on the host with TFLM's integer rule; 20-bit blend, rounded. */
typedef struct {
  int32_t batches, in_h, in_w, channels, out_h, out_w;
  const int32_t *y_tab; /* out_h x {y0, y1, fy} */
  const int32_t *x_tab; /* out_w x {x0, x1, fx} */
} edc_resize_bilinear_params;

void edc_resize_bilinear_s8(const edc_resize_bilinear_params *p, const int8_t *in, int8_t *out);

#endif /* EDC_RESIZE_H */
