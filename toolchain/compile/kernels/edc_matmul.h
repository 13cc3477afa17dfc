/* edgedeploy compiled runtime: BATCH_MATMUL (int8, and int16x8 with 64-bit sums), bit-exact
 * with TFLM's reference kernel: out[b][i][j] = requantize(sum_k (A[b][i][k] + a_offset) *
 * (B[b][k][j] + b_offset)). Every layout question (adj_x / adj_y transposes, broadcast batch
 * dimensions) is folded on the host into element strides, so one loop nest serves them all. */
#ifndef EDC_MATMUL_H
#define EDC_MATMUL_H

#include "edc_runtime.h"

typedef struct {
  int32_t batch[3];          /* output batch dimensions (the leading ones, left-padded with 1) */
  int32_t a_batch_stride[3]; /* element strides of A per batch dimension (0 = broadcast) */
  int32_t b_batch_stride[3];
  int32_t rows, depth, cols; /* M, K, N */
  int32_t a_row_stride, a_depth_stride; /* A(i, k) at i * a_row_stride + k * a_depth_stride */
  int32_t b_depth_stride, b_col_stride; /* B(k, j) at k * b_depth_stride + j * b_col_stride */
  int32_t a_offset, b_offset, out_offset;
  int32_t out_mult, out_shift, act_min, act_max;
  /* a constant operand (in flash) replaces the pointer argument when set */
  const void *const1, *const2;
} edc_matmul_params;

void edc_matmul_s8(const edc_matmul_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void edc_matmul_s16(const edc_matmul_params *p, const int16_t *a, const int16_t *b,
                    int16_t *out);

#endif /* EDC_MATMUL_H */
