/*
 * compiled_main.c -- the compiled-model benchmark firmware (EDP fw_kind 3): no interpreter,
 * no TFLM library. The model is plain C from `edgedeploy compile` (model/, bound in
 * include/compiled_binding.h): one static arena, straight-line kernel calls.
 *
 * It serves the same EDP requests as the TFLM firmware: the host uploads inputs, RUNs N
 * inferences after W warm-ups (ticks around each invoke; per-op ticks from the compiled
 * model's EDC_PROFILE hooks), and reads the outputs back. The model's side of the backend
 * (tensors, invoke, per-op profile, HELLO's model fields) is compiled/edc_backend.c, shared
 * with the host build. The main stack is painted at boot; HELLO's text carries its
 * high-water mark (stack_peak_bytes), measured when HELLO is asked, so a HELLO after a RUN
 * reports the deepest the stack went during inference.
 */
#include <stdint.h>

#include "board.h"
#include "compiled_binding.h"
#include "edc_backend.h"
#include "edp_device.h"
#include "fw_common.h"
#include "fw_ticks.h"
#include "target_config.h"

/* --- the EDP backend: the model's part is compiled/edc_backend.c ------------------------- */

static char s_text[640];
static size_t s_text_fixed; /* length of the text before the stack lines */
static edp_backend s_backend;
static edp_device s_dev;

/* HELLO: rewrite the stack lines with the high-water mark as of now. */
static void be_refresh_hello(void *ctx)
{
    (void)ctx;
    (void)fw_text_stack_lines(s_text, sizeof s_text, s_text_fixed);
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

    edc_backend_init(&s_backend);
    edp_hello *h = &s_backend.hello;
    fw_hello_timing(h);

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
    s_backend.refresh_hello = be_refresh_hello;
    edp_device_init(&s_dev, &s_backend);
    fw_serve(&s_dev);
}
