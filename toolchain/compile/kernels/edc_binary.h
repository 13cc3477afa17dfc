/* edgedeploy compiled runtime: int8 element-wise binary operators (ADD, SUB, MUL) with
 * numpy-style broadcasting over up to 6 dimensions. */
#ifndef EDC_BINARY_H
#define EDC_BINARY_H

#include "edc_runtime.h"

typedef struct {
  int32_t size;      /* output elements */
  int32_t broadcast; /* 0: both inputs have the output's shape (one flat loop) */
  int32_t dims[6];   /* output shape, left-padded with 1 */
  int32_t s1[6];     /* element strides of input 1 per output dimension (0 = broadcast) */
  int32_t s2[6];
  int32_t in1_offset, in2_offset, out_offset, left_shift;
  int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
  int32_t act_min, act_max;
  /* a constant operand (weights-like, in flash) replaces the pointer argument when set */
  const void *const1, *const2;
} edc_binary_params;

void edc_add_s8(const edc_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void edc_sub_s8(const edc_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void edc_mul_s8(const edc_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
/* int16x8 ADD: the same arithmetic with left_shift 15 (TFLM's general-scale int16 path). */
void edc_add_s16(const edc_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void edc_sub_s16(const edc_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void edc_mul_s16(const edc_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);
/* SQUARED_DIFFERENCE (TFLM's integer path: left_shift 7 for int8, 0 for int16). */
void edc_sqdiff_s8(const edc_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void edc_sqdiff_s16(const edc_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);

#endif /* EDC_BINARY_H */
