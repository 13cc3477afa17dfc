/*
 * fw_common.h -- what the TFLM benchmark firmware and the self-test firmware share: start-up
 * (board, tick counter, calibration), the EDP link hooks, the request loop, and a small text
 * builder for the HELLO "key=value" lines.
 */
#ifndef EDGEDEPLOY_FW_COMMON_H
#define EDGEDEPLOY_FW_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "edp_device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* board_init, fw_ticks_init, interrupts on, fw_ticks_calibrate. */
void fw_start(void);

/* edp_backend.write / edp_backend.now over the board UART and the tick counter. */
void fw_link_write(void *ctx, const uint8_t *p, size_t n);
uint64_t fw_link_now(void *ctx);

/* Fill the timing fields of an edp_hello (clock_hz, tick_unit, ticks_per_tick_count). */
void fw_hello_timing(edp_hello *h);

/* Painted-stack high-water mark. fw_stack_paint() fills the main stack's reserved region
 * (linker.ld: __stack_limit__ .. __stack_top__) below the current stack pointer with a
 * pattern; call it first thing in main. fw_stack_peak_bytes() is then the deepest the stack
 * has reached since (bytes from the top down to the lowest word no longer holding the
 * pattern); fw_stack_reserved_bytes() is the region's size. A peak equal to the reserved
 * size means the stack may have overflowed it. */
void fw_stack_paint(void);
uint32_t fw_stack_peak_bytes(void);
uint32_t fw_stack_reserved_bytes(void);

/* Send BOOT, then feed every received byte to the dispatcher, forever. */
void fw_serve(edp_device *d) __attribute__((noreturn));

typedef struct {
    char *buf;
    size_t cap; /* including the terminating NUL */
    size_t len;
} fw_text;

void fw_text_init(fw_text *t, char *buf, size_t cap);
void fw_text_add(fw_text *t, const char *s);
void fw_text_add_u32(fw_text *t, uint32_t v);
/* "key=value\n" */
void fw_text_kv(fw_text *t, const char *key, const char *value);
/* board=, target=, compiler=, ticks= (the timing source and its calibration) lines. */
void fw_text_add_common(fw_text *t);
/* HELLO's stack lines as of now: cuts the text back to its first `fixed` bytes, then adds
 * stack_peak_bytes= and stack_reserved_bytes= (the painted stack's high-water mark, see
 * fw_stack_paint). Returns the text so a caller can add its own lines after them. */
fw_text fw_text_stack_lines(char *buf, size_t cap, size_t fixed);

#ifdef __cplusplus
}
#endif

#endif /* EDGEDEPLOY_FW_COMMON_H */
