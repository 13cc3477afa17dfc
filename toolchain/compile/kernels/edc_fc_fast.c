/* edgedeploy compiled runtime: int8 fully connected, four rows per step. See edc_fc_fast.h. */
#include "edc_fc_fast.h"

#include "edc_fixedpoint.h"
#include "edc_simd.h"

/* Requantization constants as locals (stores through int8_t pointers may alias *p). */
typedef struct {
  const int32_t *mult;
  const int8_t *shift;
  int32_t per_channel, out_offset, act_min, act_max, small_acc;
} edc_fc_fast_rq;

static inline int8_t edc_fc_out(const edc_fc_fast_rq *q, int32_t acc, int32_t o) {
  const int32_t k = q->per_channel ? o : 0;
  acc = (q->small_acc ? edc_requant_small(acc, q->mult[k], q->shift[k])
                      : edc_requant(acc, q->mult[k], q->shift[k])) +
        q->out_offset;
  return (int8_t)edc_clamp(acc, q->act_min, q->act_max);
}

void edc_fc_fast_s8(const edc_fc_fast_params *p, const int8_t *in, int8_t *out) {
  const int32_t n = p->in_depth, n4 = n & ~3, tail = n - n4, rows = p->out_depth;
  const int32_t rows4 = rows & ~3;
  const int32_t *const bias = p->bias;
  const edc_fc_fast_rq rq = {p->mult,    p->shift,   p->per_channel, p->out_offset,
                             p->act_min, p->act_max, p->small_acc};
  const edc_fc_fast_rq *const q = &rq;
  int32_t b, o, i;
  for (b = 0; b < p->batches; b++) {
    const int8_t *x = in + b * n;
    const int8_t *w = p->weights;
    for (o = 0; o < rows4; o += 4) {
      int32_t a0 = bias[o], a1 = bias[o + 1], a2 = bias[o + 2], a3 = bias[o + 3];
      const int8_t *xp = x;
      for (i = 0; i < n4; i += 4, xp += 4, w += 16) {
        const uint32_t xv = edc_read4(xp);
        const uint32_t x02 = edc_sxtb16(xv), x13 = edc_sxtb16_r8(xv);
        uint32_t wv = edc_read4(w);
        a0 = edc_smlad(edc_sxtb16(wv), x02, a0);
        a0 = edc_smlad(edc_sxtb16_r8(wv), x13, a0);
        wv = edc_read4(w + 4);
        a1 = edc_smlad(edc_sxtb16(wv), x02, a1);
        a1 = edc_smlad(edc_sxtb16_r8(wv), x13, a1);
        wv = edc_read4(w + 8);
        a2 = edc_smlad(edc_sxtb16(wv), x02, a2);
        a2 = edc_smlad(edc_sxtb16_r8(wv), x13, a2);
        wv = edc_read4(w + 12);
        a3 = edc_smlad(edc_sxtb16(wv), x02, a3);
        a3 = edc_smlad(edc_sxtb16_r8(wv), x13, a3);
      }
      for (i = 0; i < tail; i++) {
        const int32_t xv = xp[i];
        a0 += xv * w[i];
        a1 += xv * w[tail + i];
        a2 += xv * w[2 * tail + i];
        a3 += xv * w[3 * tail + i];
      }
      w += 4 * tail;
      out[o] = edc_fc_out(q, a0, o);
      out[o + 1] = edc_fc_out(q, a1, o + 1);
      out[o + 2] = edc_fc_out(q, a2, o + 2);
      out[o + 3] = edc_fc_out(q, a3, o + 3);
    }
    for (; o < rows; o++) {
      int32_t acc = bias[o];
      for (i = 0; i < n4; i += 4, w += 4) {
        const uint32_t xv = edc_read4(x + i), wv = edc_read4(w);
        acc = edc_smlad(edc_sxtb16(wv), edc_sxtb16(xv), acc);
        acc = edc_smlad(edc_sxtb16_r8(wv), edc_sxtb16_r8(xv), acc);
      }
      for (; i < n; i++, w++) acc += (int32_t)x[i] * (int32_t)*w;
      out[o] = edc_fc_out(q, acc, o);
    }
    out += rows;
  }
}
