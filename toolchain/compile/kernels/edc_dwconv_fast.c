/* edgedeploy compiled runtime: int8 depthwise convolution (depth multiplier 1), four channels
 * per step. See edc_dwconv_fast.h. */
#include "edc_dwconv_fast.h"

#include "edc_fixedpoint.h"
#include "edc_simd.h"

/* Windows up to this many taps list their valid taps once per pixel (on the stack). */
#define EDC_DW_MAX_TAPS 25

/* Keep a loop rolled (GCC 8+): GCC -O2 would unroll the 3x3 window's row loop back into the
 * nine-tap form (see edc_dwconv_fast.h, `rolled`). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define EDC_DW_NO_UNROLL _Pragma("GCC unroll 1")
#else
#define EDC_DW_NO_UNROLL
#endif

/* TFLM's requantization; the short form where the compiler proved the accumulators small */
#define EDC_DW_RQ(acc, m, s) (small ? edc_requant_small(acc, m, s) : edc_requant(acc, m, s))

/* One tap for four channels: x and w words, offset added to x by SXTAB16, then
 * a0 += x0*w0, a1 += x1*w1, a2 += x2*w2, a3 += x3*w3. */
#define EDC_DW_TAP(xp, wp)                                               \
  do {                                                                   \
    const uint32_t xv_ = edc_read4(xp), wv_ = edc_read4(wp);             \
    const uint32_t xe_ = edc_sxtab16(off2, xv_), we_ = edc_sxtb16(wv_);  \
    const uint32_t xo_ = edc_sxtab16_r8(off2, xv_);                      \
    const uint32_t wo_ = edc_sxtb16_r8(wv_);                             \
    a0 = edc_smlabb(xe_, we_, a0);                                       \
    a2 = edc_smlatt(xe_, we_, a2);                                       \
    a1 = edc_smlabb(xo_, wo_, a1);                                       \
    a3 = edc_smlatt(xo_, wo_, a3);                                       \
  } while (0)

/* Four accumulators a0..a3 for channels c..c+3, started at the bias (or 0). */
#define EDC_DW_ACC4_INIT()                 \
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0; \
  if (bias) {                             \
    a0 = bias[c];                         \
    a1 = bias[c + 1];                     \
    a2 = bias[c + 2];                     \
    a3 = bias[c + 3];                     \
  }

/* Requantize a0..a3 and store them as channels c..c+3 of this output pixel. */
#define EDC_DW_STORE4()                                                                    \
  do {                                                                                     \
    out[c] = (int8_t)edc_clamp(EDC_DW_RQ(a0, mult[c], shift[c]) + out_offset, act_min,     \
                               act_max);                                                   \
    out[c + 1] =                                                                           \
        (int8_t)edc_clamp(EDC_DW_RQ(a1, mult[c + 1], shift[c + 1]) + out_offset, act_min, \
                          act_max);                                                        \
    out[c + 2] =                                                                           \
        (int8_t)edc_clamp(EDC_DW_RQ(a2, mult[c + 2], shift[c + 2]) + out_offset, act_min, \
                          act_max);                                                        \
    out[c + 3] =                                                                           \
        (int8_t)edc_clamp(EDC_DW_RQ(a3, mult[c + 3], shift[c + 3]) + out_offset, act_min, \
                          act_max);                                                        \
  } while (0)

/* Output rows [oy_lo, oy_hi) of one batch from `in_b` (input rows from in_row0 on). */
static inline void edc_dwconv_fast_body(const edc_dwconv_fast_params *p, const int8_t *in_b,
                                        int8_t *out, const int small, const int rolled,
                                        int32_t oy_lo, int32_t oy_hi, int32_t in_row0) {
  const int32_t in_h = p->in_h, in_w = p->in_w, C = p->channels;
  const int32_t k_h = p->k_h, k_w = p->k_w, taps = k_h * k_w;
  const int32_t c4 = C & ~3;
  const uint32_t off2 = ((uint32_t)p->in_offset & 0xFFFFu) * 0x00010001u;
  const int32_t in_offset = p->in_offset;
  const int32_t row_stride = in_w * C, dy = p->dil_h * in_w * C, dx = p->dil_w * C;
  const int32_t *const bias = p->bias, *const mult = p->mult;
  const int8_t *const shift = p->shift;
  const int32_t out_offset = p->out_offset, act_min = p->act_min, act_max = p->act_max;
  const int8_t *const weights = p->weights;
  const int is3x3 = k_h == 3 && k_w == 3;
  int32_t oy, ox, c, fy, fx;
  {
    for (oy = oy_lo; oy < oy_hi; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t fy_lo = 0, fy_hi = k_h;
      while (fy_lo < k_h && iy0 + p->dil_h * fy_lo < 0) fy_lo++;
      while (fy_hi > fy_lo && iy0 + p->dil_h * (fy_hi - 1) >= in_h) fy_hi--;
      for (ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int32_t fx_lo = 0, fx_hi = k_w;
        const int8_t *x0;
        const int8_t *wg = weights;
        while (fx_lo < k_w && ix0 + p->dil_w * fx_lo < 0) fx_lo++;
        while (fx_hi > fx_lo && ix0 + p->dil_w * (fx_hi - 1) >= in_w) fx_hi--;
        x0 = in_b + (iy0 - in_row0) * row_stride + ix0 * C; /* tap (0, 0), maybe outside */
        if (is3x3 && fy_lo == 0 && fx_lo == 0 && fy_hi == 3 && fx_hi == 3 && rolled) {
          /* the whole window is inside: three rows of three taps, one moving pointer (fewer
           * live addresses than nine: the unrolled form spilled them on the M4) */
          for (c = 0; c < c4; c += 4, wg += 36) {
            const int8_t *r = x0 + c, *w = wg;
            EDC_DW_ACC4_INIT();
            EDC_DW_NO_UNROLL
            for (fy = 0; fy < 3; fy++, r += dy, w += 12) {
              EDC_DW_TAP(r, w);
              EDC_DW_TAP(r + dx, w + 4);
              EDC_DW_TAP(r + 2 * dx, w + 8);
            }
            EDC_DW_STORE4();
          }
        } else if (is3x3 && fy_lo == 0 && fx_lo == 0 && fy_hi == 3 && fx_hi == 3) {
          /* the whole window is inside: nine taps unrolled */
          for (c = 0; c < c4; c += 4, wg += 36) {
            const int8_t *r0 = x0 + c, *r1 = r0 + dy, *r2 = r1 + dy;
            EDC_DW_ACC4_INIT();
            EDC_DW_TAP(r0, wg);
            EDC_DW_TAP(r0 + dx, wg + 4);
            EDC_DW_TAP(r0 + 2 * dx, wg + 8);
            EDC_DW_TAP(r1, wg + 12);
            EDC_DW_TAP(r1 + dx, wg + 16);
            EDC_DW_TAP(r1 + 2 * dx, wg + 20);
            EDC_DW_TAP(r2, wg + 24);
            EDC_DW_TAP(r2 + dx, wg + 28);
            EDC_DW_TAP(r2 + 2 * dx, wg + 32);
            EDC_DW_STORE4();
          }
        } else if (is3x3 && fy_lo == 0 && fy_hi == 3) {
          /* all three rows inside, some columns cut (left/right edge): a column of three
           * taps unrolled per step */
          for (c = 0; c < c4; c += 4, wg += 36) {
            EDC_DW_ACC4_INIT();
            for (fx = fx_lo; fx < fx_hi; fx++) {
              const int8_t *xc = x0 + c + fx * dx, *wc = wg + 4 * fx;
              EDC_DW_TAP(xc, wc);
              EDC_DW_TAP(xc + dy, wc + 12);
              EDC_DW_TAP(xc + 2 * dy, wc + 24);
            }
            EDC_DW_STORE4();
          }
        } else if (taps <= EDC_DW_MAX_TAPS) {
          /* window cut by the padding: the valid taps' offsets listed once for the pixel */
          int32_t xo[EDC_DW_MAX_TAPS], wo[EDC_DW_MAX_TAPS];
          int32_t n = 0, t;
          for (fy = fy_lo; fy < fy_hi; fy++) {
            for (fx = fx_lo; fx < fx_hi; fx++, n++) {
              xo[n] = fy * dy + fx * dx;
              wo[n] = 4 * (fy * k_w + fx);
            }
          }
          for (c = 0; c < c4; c += 4, wg += 4 * taps) {
            const int8_t *xc = x0 + c;
            EDC_DW_ACC4_INIT();
            for (t = 0; t < n; t++) EDC_DW_TAP(xc + xo[t], wg + wo[t]);
            EDC_DW_STORE4();
          }
        } else {
          for (c = 0; c < c4; c += 4, wg += 4 * taps) {
            EDC_DW_ACC4_INIT();
            for (fy = fy_lo; fy < fy_hi; fy++) {
              const int8_t *xp = x0 + c + fy * dy + fx_lo * dx;
              const int8_t *wp = wg + 4 * (fy * k_w + fx_lo);
              for (fx = fx_lo; fx < fx_hi; fx++, xp += dx, wp += 4) EDC_DW_TAP(xp, wp);
            }
            EDC_DW_STORE4();
          }
        }
        /* channels past the last multiple of 4: weights lane c & 3 of the last group */
        for (c = c4; c < C; c++) {
          int32_t acc = bias ? bias[c] : 0;
          const int8_t *wl = weights + c4 * taps + (c & 3);
          for (fy = fy_lo; fy < fy_hi; fy++) {
            for (fx = fx_lo; fx < fx_hi; fx++) {
              const int32_t xv = x0[c + fy * dy + fx * dx];
              acc += (xv + in_offset) * (int32_t)wl[4 * (fy * k_w + fx)];
            }
          }
          out[c] = (int8_t)edc_clamp(EDC_DW_RQ(acc, mult[c], shift[c]) + out_offset, act_min,
                                     act_max);
        }
        out += C;
      }
    }
  }
}

static void edc_dwconv_fast_rows_any(const edc_dwconv_fast_params *p, const int8_t *in,
                                     int8_t *out, int32_t oy_lo, int32_t oy_hi, int32_t in_row0) {
  /* the body with its requantization and 3x3 window form fixed (GCC -O2 inlines some of the
   * four calls; forcing all four inline measured 0.35 % fewer instructions on person_detect's
   * M4 run for 8 KB more flash) */
  if (p->small_acc) {
    if (p->rolled) {
      edc_dwconv_fast_body(p, in, out, 1, 1, oy_lo, oy_hi, in_row0);
    } else {
      edc_dwconv_fast_body(p, in, out, 1, 0, oy_lo, oy_hi, in_row0);
    }
  } else if (p->rolled) {
    edc_dwconv_fast_body(p, in, out, 0, 1, oy_lo, oy_hi, in_row0);
  } else {
    edc_dwconv_fast_body(p, in, out, 0, 0, oy_lo, oy_hi, in_row0);
  }
}

void edc_dwconv_fast_s8(const edc_dwconv_fast_params *p, const int8_t *in, int8_t *out) {
  const int32_t in_bytes = p->in_h * p->in_w * p->channels;
  const int32_t out_bytes = p->out_h * p->out_w * p->channels;
  int32_t b;
  for (b = 0; b < p->batches; b++) {
    edc_dwconv_fast_rows_any(p, in + b * in_bytes, out + b * out_bytes, 0, p->out_h, 0);
  }
}

void edc_dwconv_fast_s8_rows(const edc_dwconv_fast_params *p, const int8_t *in, int8_t *out,
                             int32_t oy_lo, int32_t oy_hi, int32_t in_row0) {
  edc_dwconv_fast_rows_any(p, in, out, oy_lo, oy_hi, in_row0);
}
