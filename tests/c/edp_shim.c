/*
 * edp_shim.c -- a ctypes-friendly wrapper around the EDP C library for the host tests
 * (tests/support/edp_c.py): one fake device, and a parser that serialises the frames it finds.
 */
#include "edp_fake.h"

#include <string.h>

static edp_fake fake;
static edp_backend backend;
static edp_device device;

void shim_device_init(uint32_t in_bytes, uint32_t out_bytes, int with_profiler, int persist)
{
    edp_fake_init(&fake, &backend, in_bytes, out_bytes, with_profiler);
    if (persist)
        edp_fake_persist(&fake, &backend);
    edp_device_init(&device, &backend);
}

/* Feed n bytes; replies (if any) are copied to out (cap bytes); returns their length. */
size_t shim_device_feed(const uint8_t *data, size_t n, uint8_t *out, size_t cap)
{
    fake.tx = out;
    fake.tx_cap = cap;
    fake.tx_len = 0;
    for (size_t i = 0; i < n; i++)
        edp_device_feed(&device, data[i]);
    return fake.tx_len;
}

size_t shim_device_boot(uint8_t *out, size_t cap)
{
    fake.tx = out;
    fake.tx_cap = cap;
    fake.tx_len = 0;
    edp_device_boot(&device);
    return fake.tx_len;
}

uint32_t shim_device_dropped(void) { return device.parser.dropped; }

/* Parse a byte stream with a fresh parser of max_payload; frames are serialised to out as
 * type, seq, len(u16 LE), payload. Returns the number of frames; *used = bytes written;
 * *dropped = candidate frames rejected. */
static uint8_t pbuf[EDP_FRAME_CAP(65535)];

int shim_parse(const uint8_t *data, size_t n, uint16_t max_payload, uint8_t *out, size_t cap,
               size_t *used, uint32_t *dropped)
{
    edp_parser p;
    edp_frame f;
    int frames = 0;
    size_t pos = 0;
    edp_parser_init(&p, pbuf, EDP_FRAME_CAP(max_payload), max_payload);
    for (size_t i = 0; i < n; i++) {
        int got = edp_parser_feed(&p, data[i], &f);
        while (got) {
            if (pos + 4u + f.len <= cap) {
                out[pos] = f.type;
                out[pos + 1] = f.seq;
                edp_put_u16(out + pos + 2, f.len);
                memcpy(out + pos + 4, f.payload, f.len);
                pos += 4u + f.len;
            }
            frames++;
            got = edp_parser_poll(&p, &f);
        }
    }
    *used = pos;
    *dropped = p.dropped;
    return frames;
}
