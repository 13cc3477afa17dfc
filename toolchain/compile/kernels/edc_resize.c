/* edgedeploy compiled runtime: int8 nearest-neighbour resize. */
#include "edc_resize.h"

#include <string.h>

void edc_resize_nn_s8(const edc_resize_nn_params *p, const int8_t *in, int8_t *out) {
  const int32_t c = p->channels;
  int32_t b, y, x;
  for (b = 0; b < p->batches; b++) {
    const int8_t *in_b = in + b * p->in_h * p->in_w * c;
    for (y = 0; y < p->out_h; y++) {
      const int8_t *row = in_b + p->y_map[y] * p->in_w * c;
      for (x = 0; x < p->out_w; x++) {
        memcpy(out, row + p->x_map[x] * c, (size_t)c);
        out += c;
      }
    }
  }
}
