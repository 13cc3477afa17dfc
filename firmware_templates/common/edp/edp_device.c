/*
 * edp_device.c -- EDP v1 request dispatcher (device side). See edp_device.h and
 * docs/protocol.md.
 */
#include "edp_device.h"

#include <string.h>

/* Handlers that need scratch on the stack stay out of dispatch's frame, so RUN's invoke
 * (dispatch -> on_run -> backend) does not carry their buffers. */
#if defined(__GNUC__)
#define EDP_NOINLINE __attribute__((noinline))
#else
#define EDP_NOINLINE
#endif

/* As variables, so comparing a u16 field with them never warns "always false" when the
 * limits are set to 65535. */
static const uint32_t max_payload = EDP_MAX_PAYLOAD;
static const uint32_t max_runs = EDP_MAX_RUNS;

/* --- replies: streamed to backend.write (header, payload pieces, CRC-32) ------------------ */

static void tx_begin(edp_device *d, uint8_t type, uint8_t seq, size_t len)
{
    uint8_t h[EDP_HEADER_SIZE];
    h[0] = EDP_SYNC0;
    h[1] = EDP_SYNC1;
    h[2] = EDP_VERSION;
    h[3] = type;
    h[4] = seq;
    edp_put_u16(h + 5, (uint16_t)len);
    h[7] = edp_crc8(h + 2, 5);
    d->tx_crc = edp_crc32(0, h + 2, 6);
    d->b->write(d->b->ctx, h, sizeof h);
}

static void tx_put(edp_device *d, const void *p, size_t n)
{
    if (!n)
        return;
    d->tx_crc = edp_crc32(d->tx_crc, (const uint8_t *)p, n);
    d->b->write(d->b->ctx, (const uint8_t *)p, n);
}

static int tx_end(edp_device *d)
{
    uint8_t t[EDP_TRAILER_SIZE];
    edp_put_u32(t, d->tx_crc);
    d->b->write(d->b->ctx, t, sizeof t);
    return 0;
}

/* A whole reply of `len` bytes at `p` (len <= EDP_MAX_PAYLOAD). */
static int send(edp_device *d, uint8_t type, uint8_t seq, const void *p, size_t len)
{
    tx_begin(d, type, seq, len);
    tx_put(d, p, len);
    return tx_end(d);
}

/* Decimal digits of v into buf[11]; returns where they start. */
static const char *fmt_uint(char buf[11], uint32_t v)
{
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    return buf + i;
}

typedef struct {
    const void *p;
    size_t n;
} edp_piece;

/* A reply made of pieces, each cut to what still fits EDP_MAX_PAYLOAD. */
static int send_pieces(edp_device *d, uint8_t type, uint8_t seq, edp_piece *pc, int k)
{
    size_t total = 0;
    for (int i = 0; i < k; i++) {
        if (pc[i].n > EDP_MAX_PAYLOAD - total)
            pc[i].n = EDP_MAX_PAYLOAD - total;
        total += pc[i].n;
    }
    tx_begin(d, type, seq, total);
    for (int i = 0; i < k; i++)
        tx_put(d, pc[i].p, pc[i].n);
    return tx_end(d);
}

/* Our own loop, not libc's strlen: that one is ~200 B of word-at-a-time code on Cortex-M and
 * these strings are short protocol texts (GCC would turn the loop back into a strlen call). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static size_t str_len(const char *s)
{
    size_t n = 0;
    if (s)
        while (s[n])
            n++;
    return n;
}

/* ERR reply: u8 request type, u16 code, text "<what>[ <number>][<tail>]". Returns 0. */
static EDP_NOINLINE int err(edp_device *d, const edp_frame *f, uint16_t code, const char *what,
                            int has_num, uint32_t num, const char *tail)
{
    uint8_t head[3];
    char digits[11];
    head[0] = f->type;
    edp_put_u16(head + 1, code);
    edp_piece pc[5] = {{head, 3}, {what, str_len(what)}, {" ", 0}, {0, 0}, {tail, str_len(tail)}};
    if (has_num) {
        pc[2].n = 1;
        pc[3].p = fmt_uint(digits, num);
        pc[3].n = str_len((const char *)pc[3].p);
    }
    return send_pieces(d, EDP_ERR, f->seq, pc, 5);
}

#define ERR(code, what) err(d, f, (code), (what), 0, 0, 0)
#define ERRN(code, what, num, tail) err(d, f, (code), (what), 1, (uint32_t)(num), (tail))

/* --- state -------------------------------------------------------------------------------- */

void edp_device_init(edp_device *d, const edp_backend *b)
{
    memset(d, 0, sizeof *d);
    d->b = b;
    edp_parser_init(&d->parser, d->rx, sizeof d->rx, (uint16_t)EDP_MAX_PAYLOAD);
    d->n_inputs = b->hello.n_inputs < EDP_MAX_INPUTS ? b->hello.n_inputs : (uint8_t)EDP_MAX_INPUTS;
    uint32_t off = 0;
    for (uint8_t i = 0; i < d->n_inputs; i++) {
        edp_tensor t;
        if (!b->tensor || b->tensor(b->ctx, 0, i, &t) != 0 || (b->inputs_persist && !t.data)) {
            d->in_err[i] = 1;
            continue;
        }
        if (b->inputs_persist) {
            d->in_data[i] = t.data; /* received straight into the tensor */
        } else {
            if (t.bytes > (uint32_t)EDP_MAX_INPUT_BYTES - off) {
                d->in_err[i] = 2;
                continue;
            }
#if EDP_MAX_INPUT_BYTES > 0
            d->in_data[i] = d->shadow + off;
#endif
            off += t.bytes;
        }
        d->in_bytes[i] = t.bytes;
        d->in_room += t.bytes;
    }
    if (!b->inputs_persist)
        d->in_room = (uint32_t)EDP_MAX_INPUT_BYTES;
}

void edp_device_boot(edp_device *d)
{
    uint8_t p[2];
    p[0] = EDP_VERSION;
    p[1] = d->b->hello.fw_kind;
    send(d, EDP_BOOT, 0, p, 2);
}

void edp_device_feed(edp_device *d, uint8_t byte)
{
    edp_frame f;
    if (!edp_parser_feed(&d->parser, byte, &f))
        return;
    do {
        edp_device_dispatch(d, &f);
    } while (edp_parser_poll(&d->parser, &f));
}

/* --- requests ----------------------------------------------------------------------------- */

static EDP_NOINLINE int on_hello(edp_device *d, const edp_frame *f)
{
    if (d->b->refresh_hello)
        d->b->refresh_hello(d->b->ctx);
    const edp_hello *h = &d->b->hello;
    uint8_t p[59];
    p[0] = EDP_VERSION;
    p[1] = h->fw_kind;
    edp_put_u16(p + 2, (uint16_t)EDP_MAX_PAYLOAD);
    edp_put_u32(p + 4, h->clock_hz);
    p[8] = h->tick_unit;
    edp_put_u32(p + 9, h->ticks_per_tick_count);
    memcpy(p + 13, h->model_sha256, 32);
    edp_put_u32(p + 45, h->arena_bytes);
    edp_put_u32(p + 49, h->arena_used_bytes);
    p[53] = h->n_inputs;
    p[54] = h->n_outputs;
    edp_put_u16(p + 55, h->n_ops);
    /* text: the dispatcher's own limits, then the firmware's lines cut at a line end */
    char runs[11], room[11];
    edp_piece pc[6] = {
        {p, 59},
        {"edp.max_runs=", 13},
        {0, 0},
        {"\nedp.max_input_bytes=", 21},
        {0, 0},
        {"\n", 1},
    };
    pc[2].p = fmt_uint(runs, EDP_MAX_RUNS);
    pc[2].n = str_len((const char *)pc[2].p);
    pc[4].p = fmt_uint(room, d->in_room);
    pc[4].n = str_len((const char *)pc[4].p);
    size_t pos = 0;
    for (int i = 0; i < 6; i++)
        pos += pc[i].n; /* < 256 <= EDP_MAX_PAYLOAD: nothing is cut */
    size_t n = str_len(h->text), cap = EDP_MAX_PAYLOAD - pos;
    if (n > cap) {
        n = cap;
        while (n && h->text[n - 1] != '\n')
            n--;
    }
    edp_put_u16(p + 57, (uint16_t)(pos + n - 59));
    tx_begin(d, EDP_HELLO | EDP_REPLY, f->seq, pos + n);
    for (int i = 0; i < 6; i++)
        tx_put(d, pc[i].p, pc[i].n);
    tx_put(d, h->text, n);
    return tx_end(d);
}

/* Look up tensor (is_output, index) or answer the error; returns 1 when *t is valid. */
static int get_tensor(edp_device *d, const edp_frame *f, int is_output, uint8_t index,
                      edp_tensor *t)
{
    const edp_backend *b = d->b;
    uint8_t count = is_output ? b->hello.n_outputs : b->hello.n_inputs;
    if (!b->tensor) {
        ERR(EDP_E_NO_MODEL, "this firmware has no model");
        return 0;
    }
    if (index >= count) {
        ERRN(EDP_E_BAD_INDEX, is_output ? "no such output; outputs:" : "no such input; inputs:",
             count, 0);
        return 0;
    }
    memset(t, 0, sizeof *t);
    if (b->tensor(b->ctx, is_output, index, t) != 0 || t->ndim > EDP_MAX_DIMS) {
        ERRN(EDP_E_BAD_INDEX, "backend cannot describe tensor", index, 0);
        return 0;
    }
    return 1;
}

static EDP_NOINLINE int on_tensor_info(edp_device *d, const edp_frame *f)
{
    edp_tensor t;
    if (f->len != 2)
        return ERR(EDP_E_BAD_LENGTH, "TENSOR_INFO takes 2 bytes");
    if (!get_tensor(d, f, f->payload[0] != 0, f->payload[1], &t))
        return 0;
    uint8_t p[2 + 4 * EDP_MAX_DIMS + 12];
    size_t pos = 2;
    p[0] = t.dtype;
    p[1] = t.ndim;
    for (uint8_t i = 0; i < t.ndim; i++, pos += 4)
        edp_put_u32(p + pos, (uint32_t)t.dims[i]);
    uint32_t bits;
    memcpy(&bits, &t.scale, 4);
    edp_put_u32(p + pos, bits);
    edp_put_u32(p + pos + 4, (uint32_t)t.zero_point);
    edp_put_u32(p + pos + 8, t.bytes);
    return send(d, EDP_TENSOR_INFO | EDP_REPLY, f->seq, p, pos + 12);
}

/* Check that input `i` has usable storage; answers the error otherwise. */
static int input_ok(edp_device *d, const edp_frame *f, uint8_t i)
{
    if (!d->b->tensor)
        return ERR(EDP_E_NO_MODEL, "this firmware has no model"), 0;
    if (i >= d->b->hello.n_inputs)
        return ERRN(EDP_E_BAD_INDEX, "no such input; inputs:", d->b->hello.n_inputs, 0), 0;
    if (i >= d->n_inputs)
        return ERRN(EDP_E_TOO_MANY, "inputs beyond EDP_MAX_INPUTS", EDP_MAX_INPUTS, 0), 0;
    if (d->in_err[i] == 1)
        return ERRN(EDP_E_BAD_INDEX, "backend cannot describe input", i, 0), 0;
    if (d->in_err[i] == 2)
        return ERRN(EDP_E_TOO_MANY, "input shadow copies exceed EDP_MAX_INPUT_BYTES",
                    EDP_MAX_INPUT_BYTES, "; rebuild with a larger -DEDP_MAX_INPUT_BYTES"),
               0;
    return 1;
}

static int on_set_input(edp_device *d, const edp_frame *f)
{
    if (f->len < 5)
        return ERR(EDP_E_BAD_LENGTH, "SET_INPUT takes u8 index, u32 offset, data");
    uint8_t i = f->payload[0];
    uint32_t off = edp_get_u32(f->payload + 1), n = (uint32_t)f->len - 5u;
    if (!input_ok(d, f, i))
        return 0;
    uint32_t size = d->in_bytes[i];
    if (off > size || n > size - off)
        return ERRN(EDP_E_OVERRUN, "write past the end of the input; its size is", size, 0);
    if (off > d->in_valid[i])
        return ERRN(EDP_E_GAP, "write the input in order; received so far:", d->in_valid[i], 0);
    uint8_t *s = d->in_data[i];
    memcpy(s + off, f->payload + 5, n);
    uint32_t end = off + n;
    if (off == d->in_valid[i]) {
        d->in_crc[i] = edp_crc32(d->in_crc[i], s + off, n);
        d->in_valid[i] = end;
    } else if (end > d->in_valid[i]) {
        d->in_valid[i] = end;
        d->in_crc[i] = edp_crc32(0, s, end);
    } else if (n) { /* rewrote bytes inside the valid prefix */
        d->in_crc[i] = edp_crc32(0, s, d->in_valid[i]);
    }
    d->have_outputs = 0;
    uint8_t p[8];
    edp_put_u32(p, end);
    edp_put_u32(p + 4, end == d->in_valid[i] ? d->in_crc[i] : edp_crc32(0, s, end));
    return send(d, EDP_SET_INPUT | EDP_REPLY, f->seq, p, 8);
}

static int on_run(edp_device *d, const edp_frame *f)
{
    const edp_backend *b = d->b;
    if (f->len != 5)
        return ERR(EDP_E_BAD_LENGTH, "RUN takes u16 warmup, u16 runs, u8 flags");
    uint16_t warmup = edp_get_u16(f->payload), runs = edp_get_u16(f->payload + 2);
    int profile = (f->payload[4] & 1u) != 0;
    if (!b->invoke || !b->tensor)
        return ERR(EDP_E_NO_MODEL, "this firmware has no model");
    if (runs > max_runs)
        return ERRN(EDP_E_TOO_MANY, "too many runs; at most", EDP_MAX_RUNS, " per RUN");
    if (profile && !b->op_profile)
        return ERR(EDP_E_UNSUPPORTED, "this firmware has no per-op profiler");
    for (uint8_t i = 0; i < b->hello.n_inputs; i++) {
        if (!input_ok(d, f, i))
            return 0;
        if (d->in_valid[i] != d->in_bytes[i])
            return ERRN(EDP_E_NOT_READY, "input not fully uploaded; input", i, 0);
    }
    d->have_times = d->have_outputs = d->have_profile = 0;
    uint64_t total = 0;
    for (uint32_t k = 0; k < (uint32_t)warmup + runs; k++) {
        /* TFLM reuses input buffers for intermediates: refill before every invoke (a
         * persisting backend's inputs were received in place and are still intact). */
        for (uint8_t i = 0; i < d->n_inputs && !b->inputs_persist; i++) {
            edp_tensor t;
            if (b->tensor(b->ctx, 0, i, &t) != 0 || t.bytes != d->in_bytes[i] || !t.data)
                return ERRN(EDP_E_INVOKE_FAILED, "input tensor changed; input", i, 0);
            memcpy(t.data, d->in_data[i], t.bytes);
        }
        int flags = 0;
        if (profile && k >= warmup)
            flags = EDP_PROFILE_ON | (k == warmup ? EDP_PROFILE_RESET : 0);
        uint64_t t0 = b->now(b->ctx);
        int rc = b->invoke(b->ctx, flags);
        uint64_t t1 = b->now(b->ctx);
        if (rc != 0) {
            const char *why = b->last_error ? b->last_error(b->ctx) : 0;
            return err(d, f, EDP_E_INVOKE_FAILED, "invoke failed: ", 0, 0, why ? why : "?");
        }
        if (k >= warmup) {
            d->times[k - warmup] = t1 - t0;
            total += t1 - t0;
        }
    }
    d->n_times = runs;
    d->have_times = d->have_outputs = 1;
    d->have_profile = (uint8_t)(profile && runs > 0);
    uint8_t p[11];
    p[0] = 0;
    edp_put_u16(p + 1, runs);
    edp_put_u64(p + 3, total);
    return send(d, EDP_RUN | EDP_REPLY, f->seq, p, 11);
}

static int on_get_output(edp_device *d, const edp_frame *f)
{
    edp_tensor t;
    if (f->len != 7)
        return ERR(EDP_E_BAD_LENGTH, "GET_OUTPUT takes u8 index, u32 offset, u16 length");
    uint32_t off = edp_get_u32(f->payload + 1);
    uint16_t want = edp_get_u16(f->payload + 5);
    if (!get_tensor(d, f, 1, f->payload[0], &t))
        return 0;
    if (!d->have_outputs)
        return ERR(EDP_E_NOT_READY, "no outputs: RUN after the last SET_INPUT first");
    if (want > max_payload)
        return ERRN(EDP_E_BAD_LENGTH, "length above max_payload", EDP_MAX_PAYLOAD, 0);
    if (off > t.bytes)
        return ERRN(EDP_E_OVERRUN, "read past the end of the output; its size is", t.bytes, 0);
    uint32_t n = t.bytes - off < want ? t.bytes - off : want;
    return send(d, EDP_GET_OUTPUT | EDP_REPLY, f->seq, t.data + off, n);
}

static int on_ticks(edp_device *d, const edp_frame *f)
{
    if (f->len != 0)
        return ERR(EDP_E_BAD_LENGTH, "TICKS takes no payload");
    uint8_t p[8];
    edp_put_u64(p, d->b->now(d->b->ctx));
    return send(d, EDP_TICKS | EDP_REPLY, f->seq, p, 8);
}

static int on_get_times(edp_device *d, const edp_frame *f)
{
    if (f->len != 4)
        return ERR(EDP_E_BAD_LENGTH, "GET_TIMES takes u16 first, u16 count");
    uint16_t first = edp_get_u16(f->payload), count = edp_get_u16(f->payload + 2);
    if (!d->have_times)
        return ERR(EDP_E_NOT_READY, "no times: RUN first");
    if (first > d->n_times)
        return ERRN(EDP_E_OVERRUN, "first past the recorded runs:", d->n_times, 0);
    if (count > d->n_times - first)
        count = (uint16_t)(d->n_times - first);
    if (count > (EDP_MAX_PAYLOAD - 4u) / 8u)
        count = (uint16_t)((EDP_MAX_PAYLOAD - 4u) / 8u);
    uint8_t p[8];
    edp_put_u16(p, first);
    edp_put_u16(p + 2, count);
    tx_begin(d, EDP_GET_TIMES | EDP_REPLY, f->seq, 4u + 8u * count);
    tx_put(d, p, 4);
    for (uint16_t k = 0; k < count; k++) {
        edp_put_u64(p, d->times[first + k]);
        tx_put(d, p, 8);
    }
    return tx_end(d);
}

/* One GET_PROFILE page: how many entries from `first` fit, their payload size, and (when
 * `emit`) the entries streamed. Called twice: the size goes in the header first. */
static size_t profile_page(edp_device *d, uint16_t first, uint16_t count, uint16_t total,
                           int emit, uint16_t *n_out)
{
    const edp_backend *b = d->b;
    size_t pos = 6;
    uint16_t n = 0;
    while (n < count && first + n < total) {
        uint16_t op_index = 0;
        const char *name = 0;
        uint64_t ticks = 0;
        if (b->op_profile(b->ctx, (uint16_t)(first + n), &op_index, &name, &ticks) != 0)
            break;
        size_t nl = str_len(name);
        if (nl > 255)
            nl = 255;
        if (pos + 11 > EDP_MAX_PAYLOAD)
            break;
        if (pos + 11 + nl > EDP_MAX_PAYLOAD) {
            if (n) /* the next page has room for the whole name */
                break;
            nl = EDP_MAX_PAYLOAD - pos - 11;
        }
        if (emit) {
            uint8_t e[11];
            edp_put_u16(e, op_index);
            edp_put_u64(e + 2, ticks);
            e[10] = (uint8_t)nl;
            tx_put(d, e, 11);
            tx_put(d, name, nl);
        }
        pos += 11 + nl;
        n++;
    }
    *n_out = n;
    return pos;
}

static EDP_NOINLINE int on_get_profile(edp_device *d, const edp_frame *f)
{
    const edp_backend *b = d->b;
    if (f->len != 4)
        return ERR(EDP_E_BAD_LENGTH, "GET_PROFILE takes u16 first, u16 count");
    uint16_t first = edp_get_u16(f->payload), count = edp_get_u16(f->payload + 2);
    uint16_t total = b->hello.n_ops;
    if (!b->op_profile)
        return ERR(EDP_E_UNSUPPORTED, "this firmware has no per-op profiler");
    if (!d->have_profile)
        return ERR(EDP_E_NOT_READY, "no profile: RUN with flags bit0 set first");
    if (first > total)
        return ERRN(EDP_E_OVERRUN, "first past the last op; ops:", total, 0);
    uint16_t n = 0, n2 = 0;
    size_t pos = profile_page(d, first, count, total, 0, &n);
    uint8_t p[6];
    edp_put_u16(p, total);
    edp_put_u16(p + 2, first);
    edp_put_u16(p + 4, n);
    tx_begin(d, EDP_GET_PROFILE | EDP_REPLY, f->seq, pos);
    tx_put(d, p, 6);
    (void)profile_page(d, first, n, total, 1, &n2);
    return tx_end(d);
}

static int on_get_input_crc(edp_device *d, const edp_frame *f)
{
    if (f->len != 1)
        return ERR(EDP_E_BAD_LENGTH, "GET_INPUT_CRC takes u8 index");
    uint8_t i = f->payload[0];
    if (!input_ok(d, f, i))
        return 0;
    uint8_t p[4];
    edp_put_u32(p, edp_crc32(0, d->in_data[i], d->in_bytes[i]));
    return send(d, EDP_GET_INPUT_CRC | EDP_REPLY, f->seq, p, 4);
}

static int dispatch(edp_device *d, const edp_frame *f)
{
    switch (f->type) {
    case EDP_HELLO:
        return f->len ? ERR(EDP_E_BAD_LENGTH, "HELLO takes no payload") : on_hello(d, f);
    case EDP_TENSOR_INFO:
        return on_tensor_info(d, f);
    case EDP_SET_INPUT:
        return on_set_input(d, f);
    case EDP_RUN:
        return on_run(d, f);
    case EDP_GET_OUTPUT:
        return on_get_output(d, f);
    case EDP_TICKS:
        return on_ticks(d, f);
    case EDP_GET_TIMES:
        return on_get_times(d, f);
    case EDP_GET_PROFILE:
        return on_get_profile(d, f);
    case EDP_ECHO:
        return send(d, EDP_ECHO | EDP_REPLY, f->seq, f->payload, f->len);
    case EDP_GET_INPUT_CRC:
        return on_get_input_crc(d, f);
    default:
        return ERRN(EDP_E_UNKNOWN_TYPE, "unknown request type", f->type, 0);
    }
}

void edp_device_dispatch(edp_device *d, const edp_frame *f)
{
    if (f->type == 0 || f->type >= EDP_BOOT)
        return; /* replies, BOOT, ERR: never answered */
    d->requests++;
    (void)dispatch(d, f);
}
