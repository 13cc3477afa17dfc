/*
 * edp.h -- the edgedeploy device protocol (EDP) v1: framing, CRCs, incremental parser.
 *
 * Spec: docs/protocol.md. Plain C99, no allocation, no libc beyond memcpy/memmove/memset.
 *
 * Frame (all integers little-endian):
 *   0xA5 0x5A | version | type | seq | len (u16) | hcrc (CRC-8 of bytes 2..6) |
 *   payload[len] | crc (CRC-32 of bytes 2 .. 8+len-1, u32)
 */
#ifndef EDP_H
#define EDP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDP_VERSION 1u
#define EDP_SYNC0 0xA5u
#define EDP_SYNC1 0x5Au
#define EDP_HEADER_SIZE 8u
#define EDP_TRAILER_SIZE 4u
#define EDP_OVERHEAD (EDP_HEADER_SIZE + EDP_TRAILER_SIZE)
/* The smallest max_payload any EDP peer may announce. */
#define EDP_MIN_PAYLOAD 256u

/* Largest payload this build sends or accepts (announced in HELLO). Override with -D. */
#ifndef EDP_MAX_PAYLOAD
#define EDP_MAX_PAYLOAD 1024u
#endif
#if EDP_MAX_PAYLOAD < EDP_MIN_PAYLOAD || EDP_MAX_PAYLOAD > 65535u
#error "EDP_MAX_PAYLOAD must be in 256..65535"
#endif

/* Bytes of buffer a parser (or a frame encoder) needs for payloads up to `max_payload`. */
#define EDP_FRAME_CAP(max_payload) ((size_t)(max_payload) + EDP_OVERHEAD)

/* Message types. A success reply is `request | EDP_REPLY`. */
enum {
    EDP_HELLO = 0x01,
    EDP_TENSOR_INFO = 0x02,
    EDP_SET_INPUT = 0x03,
    EDP_RUN = 0x04,
    EDP_GET_OUTPUT = 0x05,
    EDP_TICKS = 0x06,
    EDP_GET_TIMES = 0x07,
    EDP_GET_PROFILE = 0x08,
    EDP_ECHO = 0x09,
    EDP_GET_INPUT_CRC = 0x0A,
    EDP_BOOT = 0x40,
    EDP_REPLY = 0x80,
    EDP_ERR = 0xFF
};

/* Error codes carried by an ERR reply. */
enum {
    EDP_E_UNKNOWN_TYPE = 1,
    EDP_E_BAD_LENGTH = 2,
    EDP_E_BAD_INDEX = 3,
    EDP_E_OVERRUN = 4,
    EDP_E_NOT_READY = 5,
    EDP_E_INVOKE_FAILED = 6,
    EDP_E_TOO_MANY = 7,
    EDP_E_NO_MODEL = 8,
    EDP_E_GAP = 9,        /* SET_INPUT offset beyond what was received: write in order */
    EDP_E_UNSUPPORTED = 10 /* the firmware does not implement this (e.g. no op profiler) */
};

/* CRC-8, poly 0x07, init 0, no reflection, xorout 0 (CRC-8/SMBUS). */
uint8_t edp_crc8(const uint8_t *p, size_t n);

/* CRC-32 (IEEE 802.3, identical to zlib.crc32): start with crc = 0, chain by passing the
 * previous result. */
uint32_t edp_crc32(uint32_t crc, const uint8_t *p, size_t n);

/* Encode one frame into out[0 .. cap). Returns the frame size, or 0 when cap is too small or
 * len > 65535. `payload` may be NULL when len is 0, and may be `out + EDP_HEADER_SIZE` (a
 * payload built in place is not copied). */
size_t edp_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                  size_t len);

/* A received frame. `payload` points into the parser's buffer and stays valid until the next
 * call of edp_parser_feed/edp_parser_poll on the same parser. */
typedef struct {
    uint8_t type;
    uint8_t seq;
    uint16_t len;
    const uint8_t *payload;
} edp_frame;

/* Incremental parser. Opaque in spirit: touch it only through the functions below. */
typedef struct edp_parser {
    uint8_t *buf;         /* caller-supplied, EDP_FRAME_CAP(max_payload) bytes */
    size_t cap;
    uint16_t max_payload; /* frames with a larger len are "not a frame" */
    size_t have;          /* bytes of the candidate frame at buf[0..have) */
    size_t pending;       /* bytes after the candidate not yet examined (after a resync) */
    size_t done;          /* size of the frame last returned (dropped on the next call) */
    uint32_t dropped;     /* candidate frames rejected (bad hcrc/version/len/crc) */
} edp_parser;

/* `buf` must hold EDP_FRAME_CAP(max_payload) bytes; a smaller cap lowers max_payload to fit. */
void edp_parser_init(edp_parser *p, uint8_t *buf, size_t cap, uint16_t max_payload);

/* Forget any partial frame (e.g. after the link was reset). */
void edp_parser_reset(edp_parser *p);

/* Feed one received byte. Returns 1 and fills *out when a valid frame completed, else 0.
 * After a 1, call edp_parser_poll until it returns 0: a resync can leave further complete
 * frames among the bytes already received. */
int edp_parser_feed(edp_parser *p, uint8_t byte, edp_frame *out);

/* Continue with bytes already buffered (after a resync). Returns 1 with *out filled when one
 * more frame completed, else 0 (feed more bytes). */
int edp_parser_poll(edp_parser *p, edp_frame *out);

/* Little-endian helpers (unaligned-safe). */
static inline void edp_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void edp_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void edp_put_u64(uint8_t *p, uint64_t v)
{
    edp_put_u32(p, (uint32_t)v);
    edp_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t edp_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}
static inline uint32_t edp_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

#ifdef __cplusplus
}
#endif

#endif /* EDP_H */
