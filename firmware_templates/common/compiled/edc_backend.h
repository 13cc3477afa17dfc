/*
 * edc_backend.h -- the EDP backend of a compiled model (`edgedeploy compile`, EDP fw_kind 3),
 * shared by the Cortex-M compiled-model firmware (src/compiled_main.c) and the host build
 * (firmware_templates/host/compiled_host_main.c): tensors, invoke, the per-op profile (the
 * compiled model's EDC_PROFILE hooks edc_profile_begin/end) and the HELLO fields that come
 * from the model. The model is bound by include/compiled_binding.h.
 *
 * What differs between the two stays in the mains: the link (write/now), the HELLO timing
 * fields and text, refresh_hello, and the serving loop.
 */
#ifndef EDC_BACKEND_H
#define EDC_BACKEND_H

#include <stdint.h>

#include "edp_device.h"

/* The tick counter the per-op profile reads: fw_ticks.h's on Cortex-M; the host build
 * defines it (CLOCK_MONOTONIC nanoseconds). */
uint64_t fw_ticks_now(void);

/* Set the model's HELLO fields in be->hello (fw_kind, model SHA-256, arena, tensor and op
 * counts) and the model callbacks (tensor, invoke, op_profile, last_error). The caller sets
 * the rest (write, now, the timing fields, text, refresh_hello) and calls EDC_MODEL_INIT
 * itself. */
void edc_backend_init(edp_backend *be);

#endif /* EDC_BACKEND_H */
