/* edgedeploy compiled runtime: int16x8 convolutions, bit-exact with TFLM's reference kernels. */
#include "edc_conv16.h"

#include "edc_fixedpoint.h"

#define EDC_WINDOW(lo, hi, k, origin, dil, size) \
  lo = 0;                                        \
  hi = k;                                        \
  while (lo < k && origin + dil * lo < 0) lo++;  \
  while (hi > lo && origin + dil * (hi - 1) >= size) hi--

static int16_t edc_out16(int64_t acc, const edc_conv16_params *p, int32_t oc) {
  const int32_t v = edc_mul_q64(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
  return (int16_t)edc_clamp(v, p->act_min, p->act_max);
}

void edc_conv_s16(const edc_conv16_params *p, const int16_t *in, int16_t *out) {
  const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, k_h = p->k_h, k_w = p->k_w;
  const int32_t fic = in_c / p->groups, oc_per_group = p->out_c / p->groups;
  int32_t b, oy, ox, oc, fy, fx, c, fy_lo, fy_hi, fx_lo, fx_hi;
  for (b = 0; b < p->batches; b++) {
    const int16_t *in_b = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < p->out_h; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      EDC_WINDOW(fy_lo, fy_hi, k_h, iy0, p->dil_h, in_h);
      for (ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        EDC_WINDOW(fx_lo, fx_hi, k_w, ix0, p->dil_w, in_w);
        for (oc = 0; oc < p->out_c; oc++) {
          const int8_t *w = p->weights + oc * k_h * k_w * fic;
          const int32_t g = oc / oc_per_group;
          int64_t acc = 0;
          for (fy = fy_lo; fy < fy_hi; fy++) {
            const int16_t *row = in_b + (iy0 + p->dil_h * fy) * in_w * in_c + g * fic;
            for (fx = fx_lo; fx < fx_hi; fx++) {
              const int16_t *x = row + (ix0 + p->dil_w * fx) * in_c;
              const int8_t *wk = w + (fy * k_w + fx) * fic;
              int32_t part = 0; /* |x*w| <= 2^22: an int32 run of 256 taps cannot overflow */
              for (c = 0; c < fic; c++) {
                part += (int32_t)x[c] * (int32_t)wk[c];
                if ((c & 255) == 255) {
                  acc += part;
                  part = 0;
                }
              }
              acc += part;
            }
          }
          if (p->bias) acc += p->bias[oc];
          *out++ = edc_out16(acc, p, oc);
        }
      }
    }
  }
}

void edc_dwconv_s16(const edc_conv16_params *p, const int16_t *in, int16_t *out) {
  const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, k_h = p->k_h, k_w = p->k_w;
  const int32_t dm = p->depth_mult;
  int32_t b, oy, ox, ic, m, fy, fx, fy_lo, fy_hi, fx_lo, fx_hi;
  for (b = 0; b < p->batches; b++) {
    const int16_t *in_b = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < p->out_h; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      EDC_WINDOW(fy_lo, fy_hi, k_h, iy0, p->dil_h, in_h);
      for (ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        EDC_WINDOW(fx_lo, fx_hi, k_w, ix0, p->dil_w, in_w);
        for (ic = 0; ic < in_c; ic++) {
          for (m = 0; m < dm; m++) {
            const int32_t oc = ic * dm + m;
            const int8_t *w = p->weights + oc * k_h * k_w;
            int64_t acc = 0;
            for (fy = fy_lo; fy < fy_hi; fy++) {
              const int16_t *x = in_b + ((iy0 + p->dil_h * fy) * in_w + ix0) * in_c + ic;
              for (fx = fx_lo; fx < fx_hi; fx++)
                acc += (int32_t)x[p->dil_w * fx * in_c] * (int32_t)w[fy * k_w + fx];
            }
            if (p->bias) acc += p->bias[oc];
            *out++ = edc_out16(acc, p, oc);
          }
        }
      }
    }
  }
}

void edc_fc_s16(const edc_fc16_params *p, const int16_t *in, int16_t *out) {
  const int32_t n = p->in_depth;
  int32_t b, o, i;
  for (b = 0; b < p->batches; b++) {
    const int16_t *x = in + b * n;
    const int8_t *w = p->weights;
    for (o = 0; o < p->out_depth; o++) {
      const int32_t k = p->per_channel ? o : 0;
      int64_t acc = p->bias ? p->bias[o] : 0;
      int32_t part = 0;
      for (i = 0; i < n; i++) {
        part += (int32_t)x[i] * (int32_t)w[i];
        if ((i & 255) == 255) {
          acc += part;
          part = 0;
        }
      }
      acc += part;
      w += n;
      {
        const int32_t v = edc_mul_q64(acc, p->mult[k], p->shift[k]) + p->out_offset;
        *out++ = (int16_t)edc_clamp(v, p->act_min, p->act_max);
      }
    }
  }
}
