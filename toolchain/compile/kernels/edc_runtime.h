/* edgedeploy compiled runtime: types shared by every generated model and its firmware.
 * Same file for every model. C99, no libc beyond stdint.h/stddef.h/string.h. */
#ifndef EDC_RUNTIME_H
#define EDC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Tensor types, TFLite TensorType numbers (same as EDP_DTYPE_* in the device protocol). */
#define EDC_DTYPE_FLOAT32 0
#define EDC_DTYPE_INT32 2
#define EDC_DTYPE_UINT8 3
#define EDC_DTYPE_INT16 7
#define EDC_DTYPE_INT8 9

/* One model input or output: type, shape, quantization and size in bytes. */
typedef struct {
  uint8_t dtype;
  uint8_t ndim;
  int32_t dims[6];
  float scale;
  int32_t zero_point;
  uint32_t bytes;
} edc_tensor_info;

/* Profiling hooks: with -DEDC_PROFILE the generated invoke function calls these around every
 * operator; the firmware defines them. Without EDC_PROFILE they compile to nothing. */
void edc_profile_begin(uint16_t op);
void edc_profile_end(uint16_t op);
#ifdef EDC_PROFILE
#define EDC_PROFILE_BEGIN(op) edc_profile_begin(op)
#define EDC_PROFILE_END(op) edc_profile_end(op)
#else
#define EDC_PROFILE_BEGIN(op) ((void)0)
#define EDC_PROFILE_END(op) ((void)0)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define EDC_ALIGNED(n) __attribute__((aligned(n)))
/* a kernel body specialised per call site (its constant flags folded away) */
#define EDC_INLINE static inline __attribute__((always_inline))
#else
#define EDC_ALIGNED(n)
#define EDC_INLINE static inline
#endif

#ifdef __cplusplus
}
#endif

#endif /* EDC_RUNTIME_H */
