/* edgedeploy compiled runtime: int8 depthwise convolution, bit-exact with TFLM's reference. */
#include "edc_dwconv.h"

#include "edc_fixedpoint.h"

/* Output rows [oy_lo, oy_hi) of one batch; `in` holds input rows from in_row0 on. */
static void edc_dwconv_s8_body(const edc_dwconv_s8_params *p, const int8_t *in_b, int8_t *out,
                               int32_t oy_lo, int32_t oy_hi, int32_t in_row0) {
  const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
  const int32_t k_h = p->k_h, k_w = p->k_w, dm = p->depth_mult;
  const int32_t in_offset = p->in_offset;
  const int32_t taps = k_h * k_w;
  int32_t oy, ox, ic, m, fy, fx;
  {
    for (oy = oy_lo; oy < oy_hi; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      const int32_t ry0 = iy0 - in_row0; /* the row's place in the buffer */
      int32_t fy_lo = 0, fy_hi = k_h;
      while (fy_lo < k_h && iy0 + p->dil_h * fy_lo < 0) fy_lo++;
      while (fy_hi > fy_lo && iy0 + p->dil_h * (fy_hi - 1) >= in_h) fy_hi--;
      for (ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int32_t fx_lo = 0, fx_hi = k_w;
        while (fx_lo < k_w && ix0 + p->dil_w * fx_lo < 0) fx_lo++;
        while (fx_hi > fx_lo && ix0 + p->dil_w * (fx_hi - 1) >= in_w) fx_hi--;
        const int32_t full = fy_lo == 0 && fy_hi == k_h && fx_lo == 0 && fx_hi == k_w;
        const int32_t xstep = p->dil_w * in_c;
        for (ic = 0; ic < in_c; ic++) {
          for (m = 0; m < dm; m++) {
            const int32_t oc = ic * dm + m;
            const int8_t *w = p->weights + oc * taps;
            int32_t acc;
            if (full) {
              acc = p->bias_folded[oc];
              for (fy = 0; fy < k_h; fy++) {
                const int8_t *x = in_b + ((ry0 + p->dil_h * fy) * in_w + ix0) * in_c + ic;
                for (fx = 0; fx < k_w; fx++) {
                  acc += (int32_t)*x * (int32_t)*w++;
                  x += xstep;
                }
              }
            } else {
              acc = p->bias ? p->bias[oc] : 0;
              for (fy = fy_lo; fy < fy_hi; fy++) {
                const int8_t *x = in_b + ((ry0 + p->dil_h * fy) * in_w + ix0) * in_c + ic;
                const int8_t *wk = w + fy * k_w;
                for (fx = fx_lo; fx < fx_hi; fx++)
                  acc += ((int32_t)x[fx * xstep] + in_offset) * (int32_t)wk[fx];
              }
            }
            acc = edc_mul_q(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
            *out++ = (int8_t)edc_clamp(acc, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

void edc_dwconv_s8(const edc_dwconv_s8_params *p, const int8_t *in, int8_t *out) {
  const int32_t in_bytes = p->in_h * p->in_w * p->in_c;
  const int32_t out_bytes = p->out_h * p->out_w * p->in_c * p->depth_mult;
  int32_t b;
  for (b = 0; b < p->batches; b++) {
    edc_dwconv_s8_body(p, in + b * in_bytes, out + b * out_bytes, 0, p->out_h, 0);
  }
}

void edc_dwconv_s8_rows(const edc_dwconv_s8_params *p, const int8_t *in, int8_t *out,
                        int32_t oy_lo, int32_t oy_hi, int32_t in_row0) {
  edc_dwconv_s8_body(p, in, out, oy_lo, oy_hi, in_row0);
}
