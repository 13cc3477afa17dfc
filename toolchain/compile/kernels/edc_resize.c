/* edgedeploy compiled runtime: int8 / int16 nearest-neighbour and int8 bilinear resize. */
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

void edc_resize_nn_s16(const edc_resize_nn_params *p, const int16_t *in, int16_t *out) {
  const int32_t c = p->channels;
  int32_t b, y, x;
  for (b = 0; b < p->batches; b++) {
    const int16_t *in_b = in + b * p->in_h * p->in_w * c;
    for (y = 0; y < p->out_h; y++) {
      const int16_t *row = in_b + p->y_map[y] * p->in_w * c;
      for (x = 0; x < p->out_w; x++) {
        memcpy(out, row + p->x_map[x] * c, (size_t)c * sizeof(int16_t));
        out += c;
      }
    }
  }
}

void edc_resize_bilinear_s8(const edc_resize_bilinear_params *p, const int8_t *in, int8_t *out) {
  const int32_t c = p->channels, row = p->in_w * c;
  int32_t b, y, x, k;
  for (b = 0; b < p->batches; b++) {
    const int8_t *in_b = in + b * p->in_h * row;
    for (y = 0; y < p->out_h; y++) {
      const int32_t *ty = p->y_tab + 3 * y;
      const int64_t wy1 = ty[2], wy0 = 1024 - ty[2];
      for (x = 0; x < p->out_w; x++) {
        const int32_t *tx = p->x_tab + 3 * x;
        const int64_t wx1 = tx[2], wx0 = 1024 - tx[2];
        const int8_t *a = in_b + ty[0] * row + tx[0] * c; /* y0, x0 */
        const int8_t *bq = in_b + ty[1] * row + tx[0] * c; /* y1, x0 */
        const int8_t *cq = in_b + ty[0] * row + tx[1] * c; /* y0, x1 */
        const int8_t *d = in_b + ty[1] * row + tx[1] * c; /* y1, x1 */
        for (k = 0; k < c; k++) {
          const int64_t v = a[k] * wy0 * wx0 + bq[k] * wy1 * wx0 + cq[k] * wy0 * wx1 +
                            d[k] * wy1 * wx1;
          const int64_t r = v > 0 ? (1 << 19) : -(1 << 19);
          *out++ = (int8_t)((v + r) / (1 << 20));
        }
      }
    }
  }
}
