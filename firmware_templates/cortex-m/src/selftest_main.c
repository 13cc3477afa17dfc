/*
 * selftest_main.c -- the self-test firmware (EDP fw_kind 1): no TFLM, no model. It proves the
 * board support, the UART link, the protocol and the tick counter on a target:
 *
 *   HELLO/TICKS/ECHO        as every firmware
 *   one uint8 tensor of SELFTEST_BYTES bytes: input 0 and output 0 are the same buffer, so
 *                           SET_INPUT + GET_OUTPUT/GET_INPUT_CRC echo it with a CRC
 *   RUN                     a fixed busy loop: 2 * SELFTEST_LOOP instructions in phase
 *                           "BUSY_LOOP_1X", then 6 * SELFTEST_LOOP in "BUSY_LOOP_3X" (the
 *                           per-op profile), so tick counts are deterministic under -icount
 *
 * Built with -DSELFTEST_FAULT_ON_RUN=1, RUN executes an undefined instruction instead, to test
 * the fault report.
 */
#include <string.h>

#include "board.h"
#include "edp_device.h"
#include "fw_common.h"
#include "fw_ticks.h"
#include "target_config.h"

#ifndef SELFTEST_BYTES
#define SELFTEST_BYTES 4096u
#endif
#ifndef SELFTEST_LOOP
#define SELFTEST_LOOP 25000u
#endif

static uint8_t s_buf[SELFTEST_BYTES];
static uint64_t s_profile[2];
static const char *const s_phase[2] = {"BUSY_LOOP_1X", "BUSY_LOOP_3X"};
static char s_text[384];
static edp_backend s_backend;
static edp_device s_dev;

static int st_tensor(void *ctx, int is_output, int index, edp_tensor *t)
{
    (void)ctx;
    (void)is_output;
    if (index != 0)
        return 1;
    memset(t, 0, sizeof *t);
    t->dtype = EDP_DTYPE_UINT8;
    t->ndim = 1;
    t->dims[0] = (int32_t)SELFTEST_BYTES;
    t->scale = 1.0f;
    t->zero_point = 0;
    t->data = s_buf;
    t->bytes = SELFTEST_BYTES;
    return 0;
}

static int st_invoke(void *ctx, int flags)
{
    (void)ctx;
#if SELFTEST_FAULT_ON_RUN
    __asm volatile("udf #0");
#endif
    if (flags & EDP_PROFILE_RESET)
        s_profile[0] = s_profile[1] = 0;
    uint64_t t0 = fw_ticks_now();
    fw_busy_loop(SELFTEST_LOOP);
    uint64_t t1 = fw_ticks_now();
    fw_busy_loop(3u * SELFTEST_LOOP);
    uint64_t t2 = fw_ticks_now();
    if (flags & EDP_PROFILE_ON) {
        s_profile[0] += t1 - t0;
        s_profile[1] += t2 - t1;
    }
    return 0;
}

static int st_op_profile(void *ctx, uint16_t i, uint16_t *op_index, const char **name,
                         uint64_t *ticks)
{
    (void)ctx;
    if (i >= 2)
        return 1;
    *op_index = i;
    *name = s_phase[i];
    *ticks = s_profile[i];
    return 0;
}

int main(void)
{
    fw_start();
    fw_text t;
    fw_text_init(&t, s_text, sizeof s_text);
    fw_text_kv(&t, "firmware", "edgedeploy self-test");
    fw_text_add_common(&t);
    fw_text_add(&t, "busy_loop=");
    fw_text_add_u32(&t, SELFTEST_LOOP);
    fw_text_add(&t, "\nops=BUSY_LOOP_1X,BUSY_LOOP_3X\n");

    s_backend.write = fw_link_write;
    s_backend.now = fw_link_now;
    s_backend.tensor = st_tensor;
    s_backend.invoke = st_invoke;
    s_backend.op_profile = st_op_profile;
    s_backend.hello.fw_kind = EDP_FW_SELFTEST;
    fw_hello_timing(&s_backend.hello);
    s_backend.hello.n_inputs = 1;
    s_backend.hello.n_outputs = 1;
    s_backend.hello.n_ops = 2;
    s_backend.hello.text = s_text;
    edp_device_init(&s_dev, &s_backend);
    fw_serve(&s_dev);
}
