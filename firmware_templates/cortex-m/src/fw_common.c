/*
 * fw_common.c -- start-up, EDP link hooks, the request loop and the HELLO text builder
 * (fw_common.h).
 */
#include "fw_common.h"

#include "board.h"
#include "fw_ticks.h"
#include "target_config.h"

void fw_start(void)
{
    board_init();
#if EDGEDEPLOY_QEMU_ICOUNT && defined(EDGEDEPLOY_UART_IRQ)
    board_uart_rx_irq_enable();
#endif
    fw_ticks_init();
    __asm volatile("cpsie i" ::: "memory");
    fw_ticks_calibrate();
}

/* --- painted stack ---------------------------------------------------------------------- */

#define FW_STACK_PAINT 0xED57AC4Bu
/* Words left unpainted just below the stack pointer at the time of painting (the painter's
 * own frame and anything an interrupt may push meanwhile). */
#define FW_STACK_GUARD_WORDS 16u

extern uint32_t __stack_limit__, __stack_top__; /* linker.ld */

void fw_stack_paint(void)
{
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    volatile uint32_t *p = &__stack_limit__;
    uint32_t *end = sp - FW_STACK_GUARD_WORDS;
    while ((uint32_t *)p < end)
        *p++ = FW_STACK_PAINT;
}

uint32_t fw_stack_peak_bytes(void)
{
    const volatile uint32_t *p = &__stack_limit__;
    const uint32_t *top = &__stack_top__;
    while ((const uint32_t *)p < top && *p == FW_STACK_PAINT)
        p++;
    return (uint32_t)((uintptr_t)top - (uintptr_t)p);
}

uint32_t fw_stack_reserved_bytes(void)
{
    return (uint32_t)((uintptr_t)&__stack_top__ - (uintptr_t)&__stack_limit__);
}

void fw_link_write(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    board_uart_write(p, n);
}

uint64_t fw_link_now(void *ctx)
{
    (void)ctx;
    return fw_ticks_now();
}

void fw_hello_timing(edp_hello *h)
{
    h->clock_hz = EDGEDEPLOY_CLOCK_HZ;
    h->tick_unit = fw_ticks_unit();
    h->ticks_per_tick_count = fw_ticks_per_count();
}

void fw_serve(edp_device *d)
{
    edp_device_boot(d);
    for (;;) {
        int c = board_uart_getc();
        if (c >= 0)
            edp_device_feed(d, (uint8_t)c);
        else
            board_idle();
    }
}

void fw_text_init(fw_text *t, char *buf, size_t cap)
{
    t->buf = buf;
    t->cap = cap;
    t->len = 0;
    if (cap)
        buf[0] = 0;
}

void fw_text_add(fw_text *t, const char *s)
{
    while (*s && t->len + 1 < t->cap)
        t->buf[t->len++] = *s++;
    if (t->cap)
        t->buf[t->len] = 0;
}

void fw_text_add_u32(fw_text *t, uint32_t v)
{
    char digits[11];
    int i = 10;
    digits[i] = 0;
    do {
        digits[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    fw_text_add(t, digits + i);
}

fw_text fw_text_stack_lines(char *buf, size_t cap, size_t fixed)
{
    fw_text t;
    t.buf = buf;
    t.cap = cap;
    t.len = fixed;
    buf[fixed] = 0;
    fw_text_add(&t, "stack_peak_bytes=");
    fw_text_add_u32(&t, fw_stack_peak_bytes());
    fw_text_add(&t, "\nstack_reserved_bytes=");
    fw_text_add_u32(&t, fw_stack_reserved_bytes());
    fw_text_add(&t, "\n");
    return t;
}

void fw_text_kv(fw_text *t, const char *key, const char *value)
{
    fw_text_add(t, key);
    fw_text_add(t, "=");
    fw_text_add(t, value);
    fw_text_add(t, "\n");
}

void fw_text_add_common(fw_text *t)
{
    fw_text_kv(t, "board", EDGEDEPLOY_BOARD_NAME);
    fw_text_kv(t, "target", EDGEDEPLOY_TARGET_NAME);
    fw_text_kv(t, "cpu", EDGEDEPLOY_CPU_DESC);
    fw_text_kv(t, "compiler", "gcc " __VERSION__);
    fw_text_add(t, "ticks=");
    switch (fw_ticks_unit()) {
    case EDP_TICK_INSTRUCTIONS:
        fw_text_add(t, "SysTick under QEMU -icount; calibrated ");
        fw_text_add_u32(t, fw_ticks_calib_instructions);
        fw_text_add(t, " instructions / ");
        fw_text_add_u32(t, fw_ticks_calib_counts);
        fw_text_add(t, " counts\n");
        break;
    case EDP_TICK_CYCLES:
        fw_text_add(t, "DWT CYCCNT\n");
        break;
    default:
        fw_text_add(t, "SysTick at clock_hz");
        if (EDGEDEPLOY_QEMU_ICOUNT) {
            fw_text_add(t, " (QEMU calibration failed: ");
            fw_text_add_u32(t, fw_ticks_calib_instructions);
            fw_text_add(t, " instructions / ");
            fw_text_add_u32(t, fw_ticks_calib_counts);
            fw_text_add(t, " counts)");
        }
        fw_text_add(t, "\n");
        break;
    }
}
