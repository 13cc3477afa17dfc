/* edgedeploy compiled runtime: strided int8 / int16 copies. */
#include "edc_copy.h"

#include <string.h>

#define EDC_COPY_BODY(T)                                                                         \
  int32_t i0, i1, i2, i3, i4, i5;                                                              \
  const int32_t n5 = p->dims[5];                                                               \
  const int32_t contiguous = p->in_strides[5] == 1 && p->out_strides[5] == 1;                  \
  const T *base_ = p->src ? (const T *)p->src : in;                                            \
  for (i0 = 0; i0 < p->dims[0]; i0++)                                                          \
    for (i1 = 0; i1 < p->dims[1]; i1++)                                                        \
      for (i2 = 0; i2 < p->dims[2]; i2++)                                                      \
        for (i3 = 0; i3 < p->dims[3]; i3++)                                                    \
          for (i4 = 0; i4 < p->dims[4]; i4++) {                                                \
            const T *src = base_ + p->in_base + i0 * p->in_strides[0] + i1 * p->in_strides[1] +   \
                           i2 * p->in_strides[2] + i3 * p->in_strides[3] +                     \
                           i4 * p->in_strides[4];                                              \
            T *dst = out + p->out_base + i0 * p->out_strides[0] + i1 * p->out_strides[1] +     \
                     i2 * p->out_strides[2] + i3 * p->out_strides[3] + i4 * p->out_strides[4]; \
            if (contiguous) {                                                                  \
              memcpy(dst, src, (size_t)n5 * sizeof(T));                                        \
            } else {                                                                           \
              for (i5 = 0; i5 < n5; i5++) dst[i5 * p->out_strides[5]] = src[i5 * p->in_strides[5]]; \
            }                                                                                  \
          }

void edc_copy_s8(const edc_copy_params *p, const int8_t *in, int8_t *out) {
  if (p->fill) memset(out, (uint8_t)p->fill_value, (size_t)p->out_size);
  {
    EDC_COPY_BODY(int8_t)
  }
}

void edc_copy_s16(const edc_copy_params *p, const int16_t *in, int16_t *out) {
  if (p->fill) {
    int32_t i;
    for (i = 0; i < p->out_size; i++) out[i] = (int16_t)p->fill_value;
  }
  {
    EDC_COPY_BODY(int16_t)
  }
}

void edc_gather_s8(const edc_gather_params *p, const int8_t *in, int8_t *out) {
  int32_t b, o, k;
  for (b = 0; b < p->batches; b++) {
    const int32_t *index = p->index + b * p->n_index;
    for (o = 0; o < p->outer; o++) {
      const int8_t *src = in + (b * p->outer + o) * p->axis_size * p->inner;
      for (k = 0; k < p->n_index; k++) {
        memcpy(out, src + index[k] * p->inner, (size_t)p->inner);
        out += p->inner;
      }
    }
  }
}
