/* edgedeploy compiled runtime: int8 pooling, bit-exact with TFLM's reference kernels. */
#include "edc_pool.h"

#include "edc_fixedpoint.h"

/* The in-image window of one output pixel: [y_lo, y_hi) x [x_lo, x_hi) in filter coordinates. */
#define EDC_POOL_WINDOW()                                                  \
  const int32_t iy0 = oy * p->stride_h - p->pad_h;                         \
  const int32_t ix0 = ox * p->stride_w - p->pad_w;                         \
  const int32_t y_lo = iy0 < 0 ? -iy0 : 0;                                 \
  const int32_t y_hi = p->k_h < p->in_h - iy0 ? p->k_h : p->in_h - iy0;    \
  const int32_t x_lo = ix0 < 0 ? -ix0 : 0;                                 \
  const int32_t x_hi = p->k_w < p->in_w - ix0 ? p->k_w : p->in_w - ix0

void edc_avgpool_s8(const edc_pool_params *p, const int8_t *in, int8_t *out) {
  const int32_t ch = p->channels;
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; b++) {
    const int8_t *in_b = in + b * p->in_h * p->in_w * ch;
    for (oy = 0; oy < p->out_h; oy++) {
      for (ox = 0; ox < p->out_w; ox++) {
        EDC_POOL_WINDOW();
        const int32_t count = (y_hi - y_lo) * (x_hi - x_lo);
        for (c = 0; c < ch; c++) {
          int32_t acc = 0;
          for (fy = y_lo; fy < y_hi; fy++) {
            const int8_t *x = in_b + ((iy0 + fy) * p->in_w + ix0) * ch + c;
            for (fx = x_lo; fx < x_hi; fx++) acc += x[fx * ch];
          }
          if (count > 0) {
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          *out++ = (int8_t)edc_clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void edc_maxpool_s8(const edc_pool_params *p, const int8_t *in, int8_t *out) {
  const int32_t ch = p->channels;
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; b++) {
    const int8_t *in_b = in + b * p->in_h * p->in_w * ch;
    for (oy = 0; oy < p->out_h; oy++) {
      for (ox = 0; ox < p->out_w; ox++) {
        EDC_POOL_WINDOW();
        for (c = 0; c < ch; c++) {
          int32_t m = -128;
          for (fy = y_lo; fy < y_hi; fy++) {
            const int8_t *x = in_b + ((iy0 + fy) * p->in_w + ix0) * ch + c;
            for (fx = x_lo; fx < x_hi; fx++) {
              const int32_t v = x[fx * ch];
              if (v > m) m = v;
            }
          }
          *out++ = (int8_t)edc_clamp(m, p->act_min, p->act_max);
        }
      }
    }
  }
}

void edc_avgpool_s16(const edc_pool_params *p, const int16_t *in, int16_t *out) {
  const int32_t ch = p->channels;
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; b++) {
    const int16_t *in_b = in + b * p->in_h * p->in_w * ch;
    for (oy = 0; oy < p->out_h; oy++) {
      for (ox = 0; ox < p->out_w; ox++) {
        EDC_POOL_WINDOW();
        const int32_t count = (y_hi - y_lo) * (x_hi - x_lo);
        for (c = 0; c < ch; c++) {
          int32_t acc = 0;
          for (fy = y_lo; fy < y_hi; fy++) {
            const int16_t *x = in_b + ((iy0 + fy) * p->in_w + ix0) * ch + c;
            for (fx = x_lo; fx < x_hi; fx++) acc += x[fx * ch];
          }
          if (count > 0) {
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          *out++ = (int16_t)edc_clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void edc_maxpool_s16(const edc_pool_params *p, const int16_t *in, int16_t *out) {
  const int32_t ch = p->channels;
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; b++) {
    const int16_t *in_b = in + b * p->in_h * p->in_w * ch;
    for (oy = 0; oy < p->out_h; oy++) {
      for (ox = 0; ox < p->out_w; ox++) {
        EDC_POOL_WINDOW();
        for (c = 0; c < ch; c++) {
          int32_t m = -32768;
          for (fy = y_lo; fy < y_hi; fy++) {
            const int16_t *x = in_b + ((iy0 + fy) * p->in_w + ix0) * ch + c;
            for (fx = x_lo; fx < x_hi; fx++) {
              const int32_t v = x[fx * ch];
              if (v > m) m = v;
            }
          }
          *out++ = (int16_t)edc_clamp(m, p->act_min, p->act_max);
        }
      }
    }
  }
}
