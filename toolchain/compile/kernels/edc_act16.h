/* edgedeploy compiled runtime: int16x8 element-wise operators, bit-exact with TFLM's
 * reference kernels:
 *   LOGISTIC / TANH (int16): TFLM's interpolated lookup in a 256-entry table of
 *     sigmoid(i / 24) in unsigned Q0.16 (tanh(x) = 2 sigmoid(2x) - 1); the table and the
 *     input rescaling (multiplier, right shift) are computed on the host.
 *   QUANTIZE between int8 and int16 and int16 -> int16 (TFLM's Requantize: one fixed-point
 *     multiply, double rounding, then the output zero point and a clamp), and int16 RELU,
 *     RELU6 and LEAKY_RELU, which are the same arithmetic with other clamps/multipliers. */
#ifndef EDC_ACT16_H
#define EDC_ACT16_H

#include "edc_runtime.h"

typedef struct {
  int32_t size;
  int32_t input_multiplier; /* 1..32767 */
  int32_t input_left_shift; /* the input is (x * multiplier + round) >> this, 0..31 */
  const uint16_t *sigmoid;  /* 256 entries: round(65536 * sigmoid(i / 24)), capped */
} edc_act16_params;

void edc_logistic_s16(const edc_act16_params *p, const int16_t *in, int16_t *out);
void edc_tanh_s16(const edc_act16_params *p, const int16_t *in, int16_t *out);

/* y = clamp(out_zero_point + M(x - in_zero_point), out_min, out_max) where M multiplies by
 * (pos_mult, pos_shift) for x - in_zero_point >= 0 and by (neg_mult, neg_shift) below, the
 * product negated when neg_negate (TFLM's Requantize, ReluQuantized, Relu6 and
 * QuantizeLeakyRelu are all this shape). */
typedef struct {
  int32_t size;
  int32_t in_zero_point, out_zero_point;
  int32_t pos_mult, pos_shift;
  int32_t neg_mult, neg_shift, neg_negate;
  int32_t out_min, out_max;
} edc_requant_params;

void edc_requant_s16_s16(const edc_requant_params *p, const int16_t *in, int16_t *out);
void edc_requant_s16_s8(const edc_requant_params *p, const int16_t *in, int8_t *out);
void edc_requant_s8_s16(const edc_requant_params *p, const int8_t *in, int16_t *out);

/* int16 RSQRT as TFLM's RsqrtEvalQuantized: 1/sqrt(x - in_zero_point) as a Q31 multiplier and
 * shift (GetInvSqrtQuantizedMultiplierExp: five Newton-Raphson steps in Q3.28), applied to 1
 * at 2^20 and rescaled by (pos_mult, pos_shift); x at the zero point (or below it, where TFLM
 * fails the invoke) gives out_max. neg_* are unused. */
void edc_rsqrt_s16(const edc_requant_params *p, const int16_t *in, int16_t *out);

#endif /* EDC_ACT16_H */
