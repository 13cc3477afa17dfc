/* edgedeploy compiled runtime: int8 fully connected, bit-exact with TFLM's reference kernel. */
#include "edc_fc.h"

#include "edc_fixedpoint.h"

void edc_fc_s8(const edc_fc_s8_params *p, const int8_t *in, int8_t *out) {
  const int32_t n = p->in_depth;
  int32_t b, o, i;
  for (b = 0; b < p->batches; b++) {
    const int8_t *x = in + b * n;
    const int8_t *w = p->weights;
    for (o = 0; o < p->out_depth; o++) {
      const int32_t k = p->per_channel ? o : 0;
      int32_t acc = p->bias[o];
      for (i = 0; i < n; i++) acc += (int32_t)x[i] * (int32_t)w[i];
      w += n;
      acc = edc_mul_q(acc, p->mult[k], p->shift[k]) + p->out_offset;
      *out++ = (int8_t)edc_clamp(acc, p->act_min, p->act_max);
    }
  }
}
