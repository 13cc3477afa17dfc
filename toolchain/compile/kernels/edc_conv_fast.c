/* edgedeploy compiled runtime: int8 CONV_2D as two-by-two blocks of dual 16-bit MACs.
 * See edc_conv_fast.h for the layouts the compiler prepares. */
#include "edc_conv_fast.h"

#include <string.h>

#include "edc_fixedpoint.h"
#include "edc_simd.h"

/* Byte k of column `col` (0 or 1) in the word-interleaved scratch. */
#define EDC_COL_AT(k, col) ((((k) >> 2) << 3) + ((col) << 2) + ((k) & 3))

/* One im2col column (output pixel oy, ox) into the interleaved scratch; in_b holds the input
 * rows from in_row0 on. */
static void edc_conv_fast_column(const edc_conv_fast_params *p, const int8_t *in_b, int32_t oy,
                                 int32_t ox, int8_t *scratch, int32_t col, int32_t in_row0) {
  const int32_t in_c = p->in_c, k_w = p->k_w;
  const int8_t pad = (int8_t)p->pad_value;
  const int32_t iy0 = oy * p->stride_h - p->pad_h;
  const int32_t ix0 = ox * p->stride_w - p->pad_w;
  int32_t k = 0, fy, fx, c;
  if ((in_c & 3) == 0) {
    /* whole words: channel runs start on multiples of 4 */
    for (fy = 0; fy < p->k_h; fy++) {
      const int32_t iy = iy0 + fy * p->dil_h;
      for (fx = 0; fx < k_w; fx++) {
        const int32_t ix = ix0 + fx * p->dil_w;
        int8_t *dst = scratch + EDC_COL_AT(k, col);
        if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
          const uint32_t v = (uint32_t)(uint8_t)pad * 0x01010101u;
          for (c = 0; c < in_c; c += 4, dst += 8) memcpy(dst, &v, 4);
        } else {
          const int8_t *src = in_b + ((iy - in_row0) * p->in_w + ix) * in_c;
          for (c = 0; c < in_c; c += 4, dst += 8) memcpy(dst, src + c, 4);
        }
        k += in_c;
      }
    }
  } else {
    /* channel runs of any length: the column linearly into the second half of the scratch
     * (rows of a window inside the input in one copy), then word by word into place */
    int8_t *lin = scratch + 2 * p->k4;
    const int32_t row_bytes = k_w * in_c;
    const int32_t x_inside = ix0 >= 0 && ix0 + (k_w - 1) * p->dil_w < p->in_w;
    int8_t *dst = lin;
    int32_t g;
    for (fy = 0; fy < p->k_h; fy++, dst += row_bytes) {
      const int32_t iy = iy0 + fy * p->dil_h;
      if (iy < 0 || iy >= p->in_h) {
        memset(dst, pad, (size_t)row_bytes);
      } else if (x_inside && p->dil_w == 1) {
        memcpy(dst, in_b + ((iy - in_row0) * p->in_w + ix0) * in_c, (size_t)row_bytes);
      } else {
        for (fx = 0; fx < k_w; fx++) {
          const int32_t ix = ix0 + fx * p->dil_w;
          if (ix < 0 || ix >= p->in_w) {
            memset(dst + fx * in_c, pad, (size_t)in_c);
          } else {
            memcpy(dst + fx * in_c, in_b + ((iy - in_row0) * p->in_w + ix) * in_c, (size_t)in_c);
          }
        }
      }
    }
    for (k = p->k_h * row_bytes; k < p->k4; k++) lin[k] = 0; /* zero weights there */
    for (g = 0; g < p->k4; g += 4) memcpy(scratch + 2 * g + 4 * col, lin + g, 4);
  }
}

/* Requantization constants copied out of the parameters (stores through int8_t pointers
 * could alias them, which would make the compiler reload them after every store). */
typedef struct {
  const int32_t *mult;
  const int8_t *shift;
  int32_t out_offset, act_min, act_max, small_acc;
} edc_conv_fast_rq;

static inline int8_t edc_conv_fast_out(const edc_conv_fast_rq *q, int32_t acc, int32_t oc,
                                       const int small) {
  acc = (small ? edc_requant_small(acc, q->mult[oc], q->shift[oc])
                      : edc_requant(acc, q->mult[oc], q->shift[oc])) +
        q->out_offset;
  return (int8_t)edc_clamp(acc, q->act_min, q->act_max);
}

/* Two columns (o1 NULL: only the first is wanted) times every output channel (live: every
 * live channel, written to output channel ch[j]). */
EDC_INLINE void edc_conv_fast_block(const edc_conv_fast_params *p, const int8_t *cols,
                                 int8_t *o0, int8_t *o1, const int small, const int live) {
  const int32_t out_c = live ? p->live_c : p->out_c, groups = p->k4 >> 2;
  const uint16_t *const ch = p->ch;
  const int8_t *w = p->weights;
  const int32_t *bias = p->bias;
  const edc_conv_fast_rq rq = {p->mult,    p->shift,   p->out_offset,
                               p->act_min, p->act_max, p->small_acc};
  const edc_conv_fast_rq *q = &rq;
  int32_t oc;
  for (oc = 0; oc < out_c; oc += 2) {
    const int32_t b0 = bias[oc];
    const int32_t b1 = oc + 1 < out_c ? bias[oc + 1] : 0;
    int32_t a00 = b0, a01 = b0, a10 = b1, a11 = b1; /* a<channel><column> */
    const int8_t *x = cols;
    int32_t g;
    for (g = 0; g < groups; g++) {
      const uint32_t xa = edc_read4(x), xb = edc_read4(x + 4);
      const uint32_t wa = edc_read4(w), wb = edc_read4(w + 4);
      const uint32_t xa02 = edc_sxtb16(xa), xa13 = edc_sxtb16_r8(xa);
      const uint32_t xb02 = edc_sxtb16(xb), xb13 = edc_sxtb16_r8(xb);
      uint32_t w02 = edc_sxtb16(wa), w13 = edc_sxtb16_r8(wa);
      a00 = edc_smlad(w02, xa02, a00);
      a00 = edc_smlad(w13, xa13, a00);
      a01 = edc_smlad(w02, xb02, a01);
      a01 = edc_smlad(w13, xb13, a01);
      w02 = edc_sxtb16(wb);
      w13 = edc_sxtb16_r8(wb);
      a10 = edc_smlad(w02, xa02, a10);
      a10 = edc_smlad(w13, xa13, a10);
      a11 = edc_smlad(w02, xb02, a11);
      a11 = edc_smlad(w13, xb13, a11);
      x += 8;
      w += 8;
    }
    {
      const int32_t c0 = live ? ch[oc] : oc;
      o0[c0] = edc_conv_fast_out(q, a00, oc, small);
      if (o1) o1[c0] = edc_conv_fast_out(q, a01, oc, small);
    }
    if (oc + 1 < out_c) {
      const int32_t c1 = live ? ch[oc + 1] : oc + 1;
      o0[c1] = edc_conv_fast_out(q, a10, oc + 1, small);
      if (o1) o1[c1] = edc_conv_fast_out(q, a11, oc + 1, small);
    }
  }
}

/* Output pixels [i_lo, i_hi) (row-major) of one batch, written from out_b on; in_b holds the
 * input rows from in_row0 on. `small` and `live` are constants at every call site, so each
 * caller gets its own copy of the loop with its requantization (and channel mapping) fixed. */
EDC_INLINE void edc_conv_fast_pixels(const edc_conv_fast_params *p, const int8_t *in_b,
                                     int8_t *out_b, int8_t *scratch, int32_t i_lo, int32_t i_hi,
                                     int32_t in_row0, const int small, const int live) {
  const int32_t out_c = p->out_c, out_w = p->out_w;
  int32_t i;
  for (i = i_lo; i < i_hi; i += 2) {
    const int32_t two = i + 1 < i_hi;
    int8_t *o0 = out_b + (i - i_lo) * out_c, *o1 = two ? o0 + out_c : NULL;
    if (live) {
      /* the dead channels' constants (the live ones are overwritten below) */
      memcpy(o0, p->fill, (size_t)out_c);
      if (two) memcpy(o1, p->fill, (size_t)out_c);
    }
    edc_conv_fast_column(p, in_b, i / out_w, i % out_w, scratch, 0, in_row0);
    /* a last odd pixel fills the second column with itself (its results are dropped) */
    edc_conv_fast_column(p, in_b, (i + two) / out_w, (i + two) % out_w, scratch, 1, in_row0);
    edc_conv_fast_block(p, scratch, o0, o1, small, live);
  }
}

/* Pixels [i_lo, i_hi) of every batch (one batch when a row range is asked for). */
EDC_INLINE void edc_conv_fast_range(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                                    int8_t *scratch, int32_t i_lo, int32_t i_hi, int32_t in_row0,
                                    int32_t batches, const int live) {
  const int32_t n_pix = p->out_h * p->out_w;
  int32_t b;
  for (b = 0; b < batches; b++) {
    const int8_t *in_b = in + b * p->in_h * p->in_w * p->in_c;
    int8_t *out_b = out + b * n_pix * p->out_c;
    if (p->small_acc) {
      edc_conv_fast_pixels(p, in_b, out_b, scratch, i_lo, i_hi, in_row0, 1, live);
    } else {
      edc_conv_fast_pixels(p, in_b, out_b, scratch, i_lo, i_hi, in_row0, 0, live);
    }
  }
}

/* Every output channel computed (shared by the whole-tensor and the row-range entry). */
static void edc_conv_fast_dense(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                                int8_t *scratch, int32_t i_lo, int32_t i_hi, int32_t in_row0,
                                int32_t batches) {
  edc_conv_fast_range(p, in, out, scratch, i_lo, i_hi, in_row0, batches, 0);
}

void edc_conv_fast_s8(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                      int8_t *scratch) {
  edc_conv_fast_dense(p, in, out, scratch, 0, p->out_h * p->out_w, 0, p->batches);
}

void edc_conv_fast_live_s8(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                           int8_t *scratch) {
  edc_conv_fast_range(p, in, out, scratch, 0, p->out_h * p->out_w, 0, p->batches, 1);
}

void edc_conv_fast_s8_rows(const edc_conv_fast_params *p, const int8_t *in, int8_t *out,
                           int8_t *scratch, int32_t oy_lo, int32_t oy_hi, int32_t in_row0) {
  edc_conv_fast_dense(p, in, out, scratch, oy_lo * p->out_w, oy_hi * p->out_w, in_row0, 1);
}
