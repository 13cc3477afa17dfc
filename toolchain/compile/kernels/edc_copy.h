/* edgedeploy compiled runtime: strided int8 / int16 copies for the data-movement operators
 * (TRANSPOSE, CONCATENATION, PAD/PADV2, STRIDED_SLICE, SPLIT/SPLIT_V): one generic
 * 6-D gather whose strides and offsets are computed on the host; GATHER. */
#ifndef EDC_COPY_H
#define EDC_COPY_H

#include "edc_runtime.h"

typedef struct {
  int32_t fill;       /* 1: first set out[0 .. out_size) to fill_value (PAD) */
  int32_t fill_value; /* a value of the element type */
  int32_t out_size;   /* output elements */
  int32_t in_base;  /* element offset of the first element read */
  int32_t out_base; /* element offset of the first element written */
  int32_t dims[6];  /* iteration extents, outermost first */
  int32_t in_strides[6];
  int32_t out_strides[6];
  const void *src; /* a constant input (in flash, e.g. a class token) replaces `in` when set */
} edc_copy_params;

/* GATHER with constant positions: for each batch, outer index and position k, the inner
 * block at index[batch * n_index + k] along the axis (positions checked on the host). */
typedef struct {
  int32_t batches, outer, axis_size, n_index, inner;
  const int32_t *index; /* batches x n_index */
} edc_gather_params;

void edc_gather_s8(const edc_gather_params *p, const int8_t *in, int8_t *out);

void edc_copy_s8(const edc_copy_params *p, const int8_t *in, int8_t *out);
void edc_copy_s16(const edc_copy_params *p, const int16_t *in, int16_t *out);

#endif /* EDC_COPY_H */
