/*
 * fuzz_edp.c -- fuzz harness for the EDP C library (libFuzzer, or a standalone randomized
 * driver with -DEDP_FUZZ_STANDALONE).
 *
 * An input is a device configuration and a script of records: raw noise bytes, or frames
 * of any type/seq/payload encoded with valid CRCs (optionally with one bit flipped), so the
 * fuzzer reaches the dispatcher, not only the CRC checks. Checked on every input:
 *   1. the incremental parser finds exactly the frames a naive reference scanner finds;
 *   2. everything the device writes parses as back-to-back valid reply frames (xx|0x80,
 *      ERR or BOOT) no longer than EDP_MAX_PAYLOAD, and each reply echoes a request's seq;
 *   3. ASan/UBSan find no memory or undefined-behaviour error.
 * A violation calls abort().
 */
#include "edp_fake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static edp_fake fake;
static edp_backend backend;
static edp_device device;
static uint8_t tx[1u << 16];
static uint8_t stream[1u << 17];
static uint8_t pbuf[EDP_FRAME_CAP(EDP_MAX_PAYLOAD)];

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* Naive reference: a valid complete frame at i is taken whole, otherwise move on by one. */
static size_t frame_at(const uint8_t *s, size_t n, size_t i, uint16_t max_payload)
{
    if (n - i < EDP_OVERHEAD || s[i] != EDP_SYNC0 || s[i + 1] != EDP_SYNC1 ||
        s[i + 2] != EDP_VERSION || edp_crc8(s + i + 2, 5) != s[i + 7])
        return 0;
    size_t len = edp_get_u16(s + i + 5);
    if (len > max_payload || n - i < len + EDP_OVERHEAD)
        return 0;
    if (edp_crc32(0, s + i + 2, 6 + len) != edp_get_u32(s + i + 8 + len))
        return 0;
    return len + EDP_OVERHEAD;
}

static void check_parser(const uint8_t *s, size_t n, uint16_t max_payload)
{
    edp_parser p;
    edp_frame f;
    size_t i = 0;
    edp_parser_init(&p, pbuf, EDP_FRAME_CAP(max_payload), max_payload);
    for (size_t k = 0; k < n; k++) {
        int got = edp_parser_feed(&p, s[k], &f);
        while (got) {
            /* the reference's next frame must be this one */
            size_t size = 0;
            while (i < n && (size = frame_at(s, n, i, max_payload)) == 0)
                i++;
            CHECK(size != 0);
            CHECK(f.len + EDP_OVERHEAD == size);
            CHECK(f.type == s[i + 3] && f.seq == s[i + 4]);
            CHECK(f.payload - pbuf <= (long)(sizeof pbuf - f.len));
            CHECK(memcmp(f.payload, s + i + 8, f.len) == 0);
            i += size;
            got = edp_parser_poll(&p, &f);
        }
        CHECK(p.have + p.pending <= p.cap);
    }
    /* no frame the parser missed. The bytes it still holds (a candidate waiting for more
     * input, e.g. a header announcing a long payload) may hide a frame that is not missed
     * but pending: the parser reaches it once the candidate completes or fails its CRC. */
    size_t held = p.have + p.pending;
    while (i + held < n) {
        CHECK(frame_at(s, n, i, max_payload) == 0);
        i++;
    }
}

static unsigned long reply_count[256];

static void check_replies(const uint8_t seen[256])
{
    size_t i = 0;
    while (i < fake.tx_len) {
        size_t size = frame_at(tx, fake.tx_len, i, EDP_MAX_PAYLOAD);
        CHECK(size != 0); /* no garbage between replies */
        uint8_t type = tx[i + 3], seq = tx[i + 4];
        CHECK(type == EDP_ERR || type == EDP_BOOT || (type & EDP_REPLY));
        reply_count[type == EDP_ERR ? tx[i + 8 + 1] : type]++; /* ERR: count by code */
        CHECK(type == EDP_BOOT || seen[seq]);
        i += size;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint32_t in_bytes = 1u + edp_get_u16(data) % 2048u;
    uint32_t out_bytes = edp_get_u16(data + 2) % 2048u;
    int profiler = data[4] & 1;
    edp_fake_init(&fake, &backend, in_bytes, out_bytes, profiler);
    if (data[4] & 2)
        backend.op_profile = 0;
    if (data[4] & 8) /* the compiled model's mode: inputs received in place, no shadow */
        edp_fake_persist(&fake, &backend);
    edp_device_init(&device, &backend);
    fake.tx = tx;
    fake.tx_cap = sizeof tx;
    fake.tx_len = 0;
    if (data[4] & 4)
        edp_device_boot(&device);

    size_t pos = 5, n = 0;
    uint8_t seen[256]; /* seqs of the requests sent so far */
    memset(seen, 0, sizeof seen);
    uint8_t payload[EDP_MAX_PAYLOAD + 64];
    while (pos < size && n < sizeof stream - EDP_FRAME_CAP(EDP_MAX_PAYLOAD + 64)) {
        uint8_t op = data[pos++];
        size_t start = n;
        if (op & 0x80) { /* raw bytes */
            size_t k = op & 0x3Fu;
            if (k > size - pos)
                k = size - pos;
            memcpy(stream + n, data + pos, k);
            n += k;
            pos += k;
        } else { /* a frame */
            if (size - pos < 4)
                break;
            uint8_t type = data[pos], seq = data[pos + 1];
            size_t len = edp_get_u16(data + pos + 2) % (EDP_MAX_PAYLOAD + 64u);
            pos += 4;
            if (len > size - pos)
                len = size - pos;
            memcpy(payload, data + pos, len);
            pos += len;
            if (type == EDP_RUN && len >= 2 && edp_get_u16(payload) > 8) /* bound the work */
                edp_put_u16(payload, (uint16_t)(edp_get_u16(payload) % 8u));
            size_t fl = edp_encode(stream + n, sizeof stream - n, type, seq, payload, len);
            CHECK(fl == len + EDP_OVERHEAD);
            seen[seq] = 1;
            if ((op & 0x40) && fl) { /* flip one bit (may hit seq: mark that one too) */
                size_t at = (size_t)op * 7u % fl;
                stream[n + at] ^= (uint8_t)(1u << (op & 7u));
                seen[stream[n + 4]] = 1;
            }
            n += fl;
        }
        for (size_t k = start; k < n; k++)
            edp_device_feed(&device, stream[k]);
        check_replies(seen);
        fake.tx_len = 0;
        CHECK(device.parser.have + device.parser.pending <= device.parser.cap);
    }
    check_parser(stream, n, EDP_MAX_PAYLOAD);
    check_parser(stream, n, EDP_MIN_PAYLOAD);
    return 0;
}

#ifdef EDP_FUZZ_STANDALONE
/* Randomized driver: ./fuzz_edp ITERATIONS SEED */
static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Append one frame record with a plausible payload for request `type`. */
static size_t gen_frame(uint8_t *buf, size_t pos, size_t cap, uint32_t in_bytes)
{
    uint8_t p[1100];
    size_t len = 0;
    uint32_t r = rnd();
    uint8_t type = (uint8_t)(r % 8u ? 1u + rnd() % 11u : rnd());
    switch (type) {
    case EDP_SET_INPUT: { /* mostly in-order chunks of input 0 */
        uint32_t off = r % 4u ? (rnd() % 3u) * 512u : rnd() % (in_bytes + 8u);
        uint32_t n = rnd() % 2u ? 512u : rnd() % 1030u;
        if (r % 3u == 0) { /* the whole input at once */
            off = 0;
            n = in_bytes;
        }
        p[0] = (uint8_t)(r % 16u ? 0 : rnd() % 3u);
        edp_put_u32(p + 1, off);
        len = 5u + (n > 1019u ? 1019u : n);
        for (size_t j = 5; j < len; j++)
            p[j] = (uint8_t)(rnd() % 64u ? rnd() % 200u : 0xFFu);
        break;
    }
    case EDP_RUN:
        edp_put_u16(p, (uint16_t)(rnd() % 3u));
        edp_put_u16(p + 2, (uint16_t)(rnd() % 8u ? rnd() % 6u : rnd() % 100u));
        p[4] = (uint8_t)(rnd() % 2u);
        len = r % 16u ? 5u : rnd() % 8u;
        break;
    case EDP_GET_OUTPUT:
        p[0] = (uint8_t)(r % 16u ? 0 : rnd() % 3u);
        edp_put_u32(p + 1, r % 4u ? (rnd() % 4u) * 500u : rnd());
        edp_put_u16(p + 5, (uint16_t)(rnd() % 4u ? rnd() % 1025u : rnd()));
        len = r % 16u ? 7u : rnd() % 9u;
        break;
    case EDP_GET_TIMES:
    case EDP_GET_PROFILE:
        edp_put_u16(p, (uint16_t)(rnd() % 4u ? rnd() % 4u : rnd()));
        edp_put_u16(p + 2, (uint16_t)(rnd() % 4u ? rnd() % 200u : rnd()));
        len = r % 16u ? 4u : rnd() % 6u;
        break;
    case EDP_TENSOR_INFO:
        p[0] = (uint8_t)(rnd() % 2u);
        p[1] = (uint8_t)(rnd() % 4u ? 0 : rnd());
        len = r % 16u ? 2u : rnd() % 4u;
        break;
    case EDP_GET_INPUT_CRC:
        p[0] = (uint8_t)(rnd() % 4u ? 0 : rnd());
        len = r % 16u ? 1u : rnd() % 3u;
        break;
    default:
        len = r % 4u ? 0 : rnd() % 1100u;
        for (size_t j = 0; j < len; j++)
            p[j] = (uint8_t)rnd();
    }
    if (pos + 5u + len > cap)
        return pos;
    buf[pos++] = (uint8_t)(rnd() % 16u == 1 ? 0x40u | (rnd() & 0x3Fu) : 0);
    buf[pos++] = type;
    buf[pos++] = (uint8_t)rnd();
    edp_put_u16(buf + pos, (uint16_t)len);
    pos += 2;
    memcpy(buf + pos, p, len);
    return pos + len;
}

int main(int argc, char **argv)
{
    static uint8_t buf[1u << 15];
    unsigned long iters = argc > 1 ? strtoul(argv[1], 0, 10) : 10000ul;
    rng_state = argc > 2 ? strtoull(argv[2], 0, 10) * 2654435761u + 1u : 88172645463325252ull;
    for (unsigned long it = 0; it < iters; it++) {
        size_t size = 5u + rnd() % 12000u, pos = 5;
        for (size_t k = 0; k < 5; k++)
            buf[k] = (uint8_t)rnd();
        buf[1] = (uint8_t)(rnd() % 4u ? 0 : buf[1] & 0x03); /* inputs up to 256 B or 1 KiB */
        uint32_t in_bytes = 1u + edp_get_u16(buf) % 2048u;
        while (pos + 1100u < sizeof buf && pos < size) {
            if (rnd() % 6u == 0) { /* noise record */
                size_t k = rnd() % 40u;
                buf[pos++] = (uint8_t)(0x80u | k);
                for (size_t j = 0; j < k; j++)
                    buf[pos++] = (uint8_t)(rnd() % 5u ? rnd() : EDP_SYNC0);
            } else {
                pos = gen_frame(buf, pos, sizeof buf, in_bytes);
            }
        }
        LLVMFuzzerTestOneInput(buf, pos);
    }
    printf("fuzz_edp: %lu random inputs OK; replies by type:", iters);
    for (int t = 0; t < 256; t++)
        if (reply_count[t])
            printf(" %02x:%lu", t, reply_count[t]);
    printf("\n");
    return 0;
}
#endif
