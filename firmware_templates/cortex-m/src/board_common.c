/*
 * board_common.c -- what every board shares: write helpers over board_uart_putc, and the
 * exit path (semihosting exit under QEMU, a system reset on a real board).
 */
#include "board.h"
#include "cm_regs.h"
#include "target_config.h"

#if EDGEDEPLOY_SEMIHOSTING
#include "semihost.h"
#endif

void board_uart_write(const uint8_t *p, size_t n)
{
    while (n--)
        board_uart_putc(*p++);
}

void board_uart_puts(const char *s)
{
    while (*s)
        board_uart_putc((uint8_t)*s++);
}

void board_report(const char *s)
{
    board_uart_puts(s);
#if EDGEDEPLOY_SEMIHOSTING
    semihost_write0(s);
#endif
}

void board_exit(int code)
{
#if EDGEDEPLOY_SEMIHOSTING
    semihost_exit(code);
#else
    (void)code;
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = SCB_AIRCR_VECTKEY | SCB_AIRCR_SYSRESETREQ;
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
#endif
}
