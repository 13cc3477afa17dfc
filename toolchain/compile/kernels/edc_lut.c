/* edgedeploy compiled runtime: int8 table lookup. */
#include "edc_lut.h"

void edc_lut_s8(const edc_lut_s8_params *p, const int8_t *in, int8_t *out) {
  const int8_t *t = p->table + 128;
  int32_t i;
  for (i = 0; i < p->size; i++) out[i] = t[in[i]];
}
