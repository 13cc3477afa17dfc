#include "edp_fake.h"

#include <string.h>

static const char *const op_names[3] = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"};

static void fake_write(void *ctx, const uint8_t *p, size_t n)
{
    edp_fake *f = (edp_fake *)ctx;
    size_t room = f->tx_cap - f->tx_len;
    if (n > room)
        n = room; /* tests size tx generously; a short tx shows up as a bad frame */
    memcpy(f->tx + f->tx_len, p, n);
    f->tx_len += n;
}

static uint64_t fake_now(void *ctx)
{
    edp_fake *f = (edp_fake *)ctx;
    f->clock += 1000u;
    return f->clock;
}

static int fake_tensor(void *ctx, int is_output, int index, edp_tensor *t)
{
    edp_fake *f = (edp_fake *)ctx;
    if (index != 0)
        return 1;
    memset(t, 0, sizeof *t);
    t->ndim = 2;
    t->dims[0] = 1;
    if (is_output) {
        t->dtype = EDP_DTYPE_INT8;
        t->dims[1] = (int32_t)f->out_bytes;
        t->scale = 0.00390625f;
        t->zero_point = -128;
        t->data = f->out;
        t->bytes = f->out_bytes;
    } else {
        t->dtype = EDP_DTYPE_UINT8;
        t->dims[1] = (int32_t)f->in_bytes;
        t->scale = 0.5f;
        t->zero_point = 3;
        t->data = f->in;
        t->bytes = f->in_bytes;
    }
    return 0;
}

static int fake_invoke(void *ctx, int profile)
{
    edp_fake *f = (edp_fake *)ctx;
    if (f->in_bytes && f->in[0] == 0xFF)
        return 1;
    for (uint32_t i = 0; i < f->out_bytes; i++)
        f->out[i] = (uint8_t)(f->in[i % f->in_bytes] * 3u + 1u + f->invocations);
    if (!f->persist)
        memset(f->in, 0xEE, f->in_bytes);
    f->invocations++;
    if (profile & EDP_PROFILE_RESET)
        memset(f->op_ticks, 0, sizeof f->op_ticks);
    if (profile & EDP_PROFILE_ON)
        for (int k = 0; k < 3; k++)
            f->op_ticks[k] += (uint64_t)(k + 1) * 100u;
    return 0;
}

static int fake_op_profile(void *ctx, uint16_t i, uint16_t *op_index, const char **name,
                           uint64_t *ticks)
{
    edp_fake *f = (edp_fake *)ctx;
    if (i >= 3)
        return 1;
    *op_index = i;
    *name = op_names[i];
    *ticks = f->op_ticks[i];
    return 0;
}

static const char *fake_last_error(void *ctx)
{
    (void)ctx;
    return "fake failure";
}

void edp_fake_init(edp_fake *f, edp_backend *b, uint32_t in_bytes, uint32_t out_bytes,
                   int with_profiler)
{
    memset(f, 0, sizeof *f);
    memset(b, 0, sizeof *b);
    f->in_bytes = in_bytes < 1 ? 1 : in_bytes > EDP_FAKE_MAX_BYTES ? EDP_FAKE_MAX_BYTES : in_bytes;
    f->out_bytes = out_bytes > EDP_FAKE_MAX_BYTES ? EDP_FAKE_MAX_BYTES : out_bytes;
    b->ctx = f;
    b->write = fake_write;
    b->now = fake_now;
    b->tensor = fake_tensor;
    b->invoke = fake_invoke;
    b->op_profile = with_profiler ? fake_op_profile : 0;
    b->last_error = fake_last_error;
    b->hello.fw_kind = EDP_FW_SELFTEST;
    b->hello.clock_hz = 25000000u;
    b->hello.tick_unit = EDP_TICK_INSTRUCTIONS;
    b->hello.ticks_per_tick_count = 1;
    for (int k = 0; k < 32; k++)
        b->hello.model_sha256[k] = (uint8_t)k;
    b->hello.arena_bytes = 4096;
    b->hello.arena_used_bytes = 1234;
    b->hello.n_inputs = 1;
    b->hello.n_outputs = 1;
    b->hello.n_ops = 3;
    b->hello.text = "board=fake\ntarget=host\n";
}

void edp_fake_persist(edp_fake *f, edp_backend *b)
{
    f->persist = 1;
    b->inputs_persist = 1;
}
