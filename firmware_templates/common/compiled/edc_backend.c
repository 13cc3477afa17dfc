/*
 * edc_backend.c -- the EDP backend of a compiled model, shared by the Cortex-M firmware and the
 * host build (see edc_backend.h).
 */
#include "edc_backend.h"

#include <stdint.h>
#include <string.h>

#include "compiled_binding.h"
#include "edc_runtime.h"

/* --- per-op profile: the compiled model calls these around each operator (EDC_PROFILE) --- */

static uint64_t s_op_ticks[EDGEDEPLOY_N_OPS];
static uint64_t s_op_start;
static int s_profiling;

/* Not inlined: with the firmware's link-time optimisation each of the model's calls would
 * otherwise grow by the hook's body (~0.7 KB on IC); a call costs a few instructions per op. */
__attribute__((noinline)) void edc_profile_begin(uint16_t op)
{
    (void)op;
    if (s_profiling)
        s_op_start = fw_ticks_now();
}

__attribute__((noinline)) void edc_profile_end(uint16_t op)
{
    if (s_profiling && op < EDGEDEPLOY_N_OPS)
        s_op_ticks[op] += fw_ticks_now() - s_op_start;
}

/* --- the EDP backend ----------------------------------------------------------------------- */

static int be_tensor(void *ctx, int is_output, int index, edp_tensor *out)
{
    (void)ctx;
    int count = is_output ? EDGEDEPLOY_N_OUTPUTS : EDGEDEPLOY_N_INPUTS;
    if (index < 0 || index >= count)
        return 1;
    const edc_tensor_info *ti = is_output ? &EDC_MODEL_OUTPUTS[index] : &EDC_MODEL_INPUTS[index];
    if (ti->ndim > EDP_MAX_DIMS)
        return 1;
    memset(out, 0, sizeof *out);
    out->dtype = ti->dtype;
    out->ndim = ti->ndim;
    for (int i = 0; i < ti->ndim; i++)
        out->dims[i] = ti->dims[i];
    out->scale = ti->scale;
    out->zero_point = ti->zero_point;
    /* outputs are read only by the host; the dispatcher's type is not const */
    out->data = is_output ? (uint8_t *)(uintptr_t)EDC_MODEL_OUTPUT(index)
                          : (uint8_t *)EDC_MODEL_INPUT(index);
    out->bytes = ti->bytes;
    return out->data ? 0 : 1;
}

static int be_invoke(void *ctx, int flags)
{
    (void)ctx;
    if (flags & EDP_PROFILE_RESET)
        memset(s_op_ticks, 0, sizeof s_op_ticks);
    s_profiling = (flags & EDP_PROFILE_ON) != 0;
    int rc = EDC_MODEL_INVOKE();
    s_profiling = 0;
    return rc;
}

static int be_op_profile(void *ctx, uint16_t i, uint16_t *op_index, const char **name,
                         uint64_t *ticks)
{
    (void)ctx;
    if (i >= EDGEDEPLOY_N_OPS)
        return 1;
    *op_index = i;
    *name = EDC_MODEL_OP_NAMES[i];
    *ticks = s_op_ticks[i];
    return 0;
}

static const char *be_last_error(void *ctx)
{
    (void)ctx;
    return "the compiled model's invoke returned an error";
}

void edc_backend_init(edp_backend *be)
{
    edp_hello *h = &be->hello;
    h->fw_kind = EDP_FW_COMPILED;
    memcpy(h->model_sha256, EDC_MODEL_SHA256, sizeof h->model_sha256);
    h->arena_bytes = (uint32_t)EDGEDEPLOY_ARENA_BYTES;
    h->arena_used_bytes = (uint32_t)EDGEDEPLOY_ARENA_BYTES; /* planned offline: all of it */
    h->n_inputs = (uint8_t)EDGEDEPLOY_N_INPUTS;
    h->n_outputs = (uint8_t)EDGEDEPLOY_N_OUTPUTS;
    h->n_ops = (uint16_t)EDGEDEPLOY_N_OPS;
    be->tensor = be_tensor;
    be->invoke = be_invoke;
    be->op_profile = be_op_profile;
    be->last_error = be_last_error;
    /* inputs kept intact by the planner: the dispatcher receives them straight into the
     * arena and keeps no shadow copy (build with -DEDP_MAX_INPUT_BYTES=0u) */
    be->inputs_persist = (uint8_t)(EDC_MODEL_INPUTS_KEPT != 0);
}
