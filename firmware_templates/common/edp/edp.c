/*
 * edp.c -- EDP v1 framing: CRC-8, CRC-32, encoder and the resynchronising parser.
 * See edp.h and docs/protocol.md.
 */
#include "edp.h"

#include <string.h>

uint8_t edp_crc8(const uint8_t *p, size_t n)
{
    uint8_t c = 0;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (uint8_t)((c & 0x80u) ? (((unsigned)c << 1) ^ 0x07u) : ((unsigned)c << 1));
    }
    return c;
}

/* Nibble table of the reflected IEEE polynomial 0xEDB88320: 64 bytes of flash. */
static const uint32_t crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t edp_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    while (n--) {
        c ^= *p++;
        c = (c >> 4) ^ crc32_nibble[c & 15u];
        c = (c >> 4) ^ crc32_nibble[c & 15u];
    }
    return ~c;
}

size_t edp_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                  size_t len)
{
    if (len > 65535u || cap < len + EDP_OVERHEAD)
        return 0;
    if (len && payload != out + EDP_HEADER_SIZE)
        memmove(out + EDP_HEADER_SIZE, payload, len);
    out[0] = EDP_SYNC0;
    out[1] = EDP_SYNC1;
    out[2] = EDP_VERSION;
    out[3] = type;
    out[4] = seq;
    edp_put_u16(out + 5, (uint16_t)len);
    out[7] = edp_crc8(out + 2, 5);
    edp_put_u32(out + EDP_HEADER_SIZE + len, edp_crc32(0, out + 2, 6 + len));
    return len + EDP_OVERHEAD;
}

void edp_parser_init(edp_parser *p, uint8_t *buf, size_t cap, uint16_t max_payload)
{
    p->buf = buf;
    p->cap = cap;
    if (cap < EDP_OVERHEAD)
        max_payload = 0;
    else if ((size_t)max_payload + EDP_OVERHEAD > cap)
        max_payload = (uint16_t)(cap - EDP_OVERHEAD);
    p->max_payload = max_payload;
    p->dropped = 0;
    edp_parser_reset(p);
}

void edp_parser_reset(edp_parser *p)
{
    p->have = 0;
    p->pending = 0;
    p->done = 0;
}

/* Judge the candidate after its last byte (buf[have-1]) arrived.
 * Returns 1: complete valid frame, 0: need more bytes, -1: not a frame. */
static int judge(const edp_parser *p)
{
    const uint8_t *b = p->buf;
    size_t n = p->have;
    if (n == 1)
        return b[0] == EDP_SYNC0 ? 0 : -1;
    if (n == 2)
        return b[1] == EDP_SYNC1 ? 0 : -1;
    if (n < EDP_HEADER_SIZE)
        return 0;
    size_t len = edp_get_u16(b + 5);
    if (n == EDP_HEADER_SIZE) {
        if (b[2] != EDP_VERSION || len > p->max_payload || edp_crc8(b + 2, 5) != b[7])
            return -1;
        return 0;
    }
    if (n < len + EDP_OVERHEAD)
        return 0;
    return edp_crc32(0, b + 2, 6 + len) == edp_get_u32(b + EDP_HEADER_SIZE + len) ? 1 : -1;
}

/* Drop the rejected candidate and resume hunting at the byte after its SYNC0. */
static void resync(edp_parser *p)
{
    size_t total = p->have + p->pending;
    size_t i = 1;
    while (i < total && p->buf[i] != EDP_SYNC0)
        i++;
    if (i < total)
        memmove(p->buf, p->buf + i, total - i);
    p->have = 0;
    p->pending = total - i;
}

static void drop_done(edp_parser *p)
{
    if (p->done) {
        if (p->pending)
            memmove(p->buf, p->buf + p->done, p->pending);
        p->have = 0;
        p->done = 0;
    }
}

static int run(edp_parser *p, edp_frame *out)
{
    while (p->pending) {
        p->have++;
        p->pending--;
        int r = judge(p);
        if (r > 0) {
            out->type = p->buf[3];
            out->seq = p->buf[4];
            out->len = edp_get_u16(p->buf + 5);
            out->payload = p->buf + EDP_HEADER_SIZE;
            p->done = p->have;
            return 1;
        }
        if (r < 0) {
            if (p->have > 2) /* a header was matched: count it as a dropped frame */
                p->dropped++;
            resync(p);
        }
    }
    return 0;
}

int edp_parser_feed(edp_parser *p, uint8_t byte, edp_frame *out)
{
    drop_done(p);
    if (p->cap < EDP_OVERHEAD)
        return 0;
    /* Invariant: have + pending < cap here (an incomplete candidate is shorter than a frame,
     * and a completed one was just dropped), so there is room for one byte. */
    p->buf[p->have + p->pending] = byte;
    p->pending++;
    return run(p, out);
}

int edp_parser_poll(edp_parser *p, edp_frame *out)
{
    drop_done(p);
    return run(p, out);
}
