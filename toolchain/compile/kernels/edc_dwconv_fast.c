/* edgedeploy compiled runtime: int8 depthwise convolution (depth multiplier 1), four channels
 * per step. See edc_dwconv_fast.h. */
#include "edc_dwconv_fast.h"

#include "edc_fixedpoint.h"
#include "edc_simd.h"

static inline int8_t edc_dw_out(const edc_dwconv_fast_params *p, int32_t acc, int32_t c) {
  acc = edc_requant(acc, p->mult[c], p->shift[c]) + p->out_offset;
  return (int8_t)edc_clamp(acc, p->act_min, p->act_max);
}

void edc_dwconv_fast_s8(const edc_dwconv_fast_params *p, const int8_t *in, int8_t *out) {
  const int32_t in_h = p->in_h, in_w = p->in_w, C = p->channels;
  const int32_t k_h = p->k_h, k_w = p->k_w;
  const int32_t c4 = C & ~3;
  const uint32_t off2 = ((uint32_t)p->in_offset & 0xFFFFu) * 0x00010001u;
  const int32_t row_stride = in_w * C, dy = p->dil_h * in_w * C, dx = p->dil_w * C;
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; b++) {
    const int8_t *in_b = in + b * in_h * row_stride;
    for (oy = 0; oy < p->out_h; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t fy_lo = 0, fy_hi = k_h;
      while (fy_lo < k_h && iy0 + p->dil_h * fy_lo < 0) fy_lo++;
      while (fy_hi > fy_lo && iy0 + p->dil_h * (fy_hi - 1) >= in_h) fy_hi--;
      for (ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int32_t fx_lo = 0, fx_hi = k_w;
        const int8_t *x0, *w0;
        while (fx_lo < k_w && ix0 + p->dil_w * fx_lo < 0) fx_lo++;
        while (fx_hi > fx_lo && ix0 + p->dil_w * (fx_hi - 1) >= in_w) fx_hi--;
        x0 = in_b + (iy0 + p->dil_h * fy_lo) * row_stride + (ix0 + p->dil_w * fx_lo) * C;
        w0 = p->weights + (fy_lo * k_w + fx_lo) * C;
        for (c = 0; c < c4; c += 4) {
          int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
          const int8_t *xr = x0 + c, *wr = w0 + c;
          if (p->bias) {
            a0 = p->bias[c];
            a1 = p->bias[c + 1];
            a2 = p->bias[c + 2];
            a3 = p->bias[c + 3];
          }
          for (fy = fy_lo; fy < fy_hi; fy++, xr += dy, wr += k_w * C) {
            const int8_t *xp = xr, *wp = wr;
            for (fx = fx_lo; fx < fx_hi; fx++, xp += dx, wp += C) {
              const uint32_t xv = edc_read4(xp), wv = edc_read4(wp);
              const uint32_t xe = edc_sxtab16(off2, xv), xo = edc_sxtab16_r8(off2, xv);
              const uint32_t we = edc_sxtb16(wv), wo = edc_sxtb16_r8(wv);
              a0 = edc_smlabb(xe, we, a0);
              a2 = edc_smlatt(xe, we, a2);
              a1 = edc_smlabb(xo, wo, a1);
              a3 = edc_smlatt(xo, wo, a3);
            }
          }
          out[c] = edc_dw_out(p, a0, c);
          out[c + 1] = edc_dw_out(p, a1, c + 1);
          out[c + 2] = edc_dw_out(p, a2, c + 2);
          out[c + 3] = edc_dw_out(p, a3, c + 3);
        }
        for (; c < C; c++) {
          int32_t acc = p->bias ? p->bias[c] : 0;
          const int8_t *xr = x0 + c, *wr = w0 + c;
          for (fy = fy_lo; fy < fy_hi; fy++, xr += dy, wr += k_w * C) {
            const int8_t *xp = xr, *wp = wr;
            for (fx = fx_lo; fx < fx_hi; fx++, xp += dx, wp += C)
              acc += ((int32_t)*xp + p->in_offset) * (int32_t)*wp;
          }
          out[c] = edc_dw_out(p, acc, c);
        }
        out += C;
      }
    }
  }
}
