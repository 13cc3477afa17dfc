/*
 * compiled_main.c -- the compiled-model benchmark firmware (EDP fw_kind 3): no interpreter,
 * no TFLM library. The model is plain C from `edgedeploy compile` (model/, bound in
 * include/compiled_binding.h): one static arena, straight-line kernel calls.
 *
 * It serves the same EDP requests as the TFLM firmware: the host uploads inputs, RUNs N
 * inferences after W warm-ups (ticks around each invoke; per-op ticks from the compiled
 * model's EDC_PROFILE hooks), and reads the outputs back. The main stack is painted at boot;
 * HELLO's text carries its high-water mark (stack_peak_bytes), measured when HELLO is asked,
 * so a HELLO after a RUN reports the deepest the stack went during inference.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "compiled_binding.h"
#include "edc_runtime.h"
#include "edp_device.h"
#include "fw_common.h"
#include "fw_ticks.h"
#include "target_config.h"

/* --- per-op profile: the compiled model calls these around each operator (EDC_PROFILE) --- */

static uint64_t s_op_ticks[EDGEDEPLOY_N_OPS];
static uint64_t s_op_start;
static int s_profiling;

void edc_profile_begin(uint16_t op)
{
    (void)op;
    if (s_profiling)
        s_op_start = fw_ticks_now();
}

void edc_profile_end(uint16_t op)
{
    if (s_profiling && op < EDGEDEPLOY_N_OPS)
        s_op_ticks[op] += fw_ticks_now() - s_op_start;
}

/* --- the EDP backend ----------------------------------------------------------------------- */

static char s_text[640];
static size_t s_text_fixed; /* length of the text before the stack lines */
static edp_backend s_backend;
static edp_device s_dev;

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

/* HELLO: rewrite the stack lines with the high-water mark as of now. */
static void be_refresh_hello(void *ctx)
{
    (void)ctx;
    fw_text t;
    t.buf = s_text;
    t.cap = sizeof s_text;
    t.len = s_text_fixed;
    s_text[t.len] = 0;
    fw_text_add(&t, "stack_peak_bytes=");
    fw_text_add_u32(&t, fw_stack_peak_bytes());
    fw_text_add(&t, "\nstack_reserved_bytes=");
    fw_text_add_u32(&t, fw_stack_reserved_bytes());
    fw_text_add(&t, "\n");
}

static void boot_failure(const char *what)
{
    board_report("\r\n!!! EDGEDEPLOY BOOT FAILED: ");
    board_report(what);
    board_report("\r\n");
    board_exit(EDGEDEPLOY_EXIT_BOOT_FAILED);
}

int main(void)
{
    fw_stack_paint();
    fw_start();
    if (EDC_MODEL_INIT() != 0)
        boot_failure("the compiled model's init failed");

    edp_hello *h = &s_backend.hello;
    h->fw_kind = EDP_FW_COMPILED;
    fw_hello_timing(h);
    memcpy(h->model_sha256, EDC_MODEL_SHA256, sizeof h->model_sha256);
    h->arena_bytes = (uint32_t)EDGEDEPLOY_ARENA_BYTES;
    h->arena_used_bytes = (uint32_t)EDGEDEPLOY_ARENA_BYTES; /* planned offline: all of it */
    h->n_inputs = (uint8_t)EDGEDEPLOY_N_INPUTS;
    h->n_outputs = (uint8_t)EDGEDEPLOY_N_OUTPUTS;
    h->n_ops = (uint16_t)EDGEDEPLOY_N_OPS;

    fw_text t;
    fw_text_init(&t, s_text, sizeof s_text);
    fw_text_kv(&t, "firmware", "edgedeploy compiled model");
    fw_text_add_common(&t);
    fw_text_kv(&t, "model", EDGEDEPLOY_MODEL_NAME);
    fw_text_kv(&t, "runtime", EDGEDEPLOY_COMPILED_DESC);
    fw_text_kv(&t, "ops", EDGEDEPLOY_OPS_TEXT);
    s_text_fixed = t.len;
    h->text = s_text;
    be_refresh_hello(0);

    s_backend.write = fw_link_write;
    s_backend.now = fw_link_now;
    s_backend.tensor = be_tensor;
    s_backend.invoke = be_invoke;
    s_backend.op_profile = be_op_profile;
    s_backend.last_error = be_last_error;
    s_backend.refresh_hello = be_refresh_hello;
    edp_device_init(&s_dev, &s_backend);
    fw_serve(&s_dev);
}
