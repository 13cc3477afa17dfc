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

void board_idle(void)
{
#if EDGEDEPLOY_QEMU_ICOUNT && defined(EDGEDEPLOY_UART_IRQ)
    /* The interrupt is enabled in the NVIC only here, with PRIMASK set: it wakes WFI but its
     * handler never runs. A byte that arrived before WFI leaves it pending: no lost wake-up. */
    uint32_t pm = cm_irq_save();
    if (!board_uart_rx_ready()) {
        uint32_t csr = SYST_CSR & (SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE);
        SYST_CSR = csr & ~SYST_CSR_ENABLE;
        NVIC_ISER(EDGEDEPLOY_UART_IRQ / 32u) = 1u << (EDGEDEPLOY_UART_IRQ % 32u);
        __asm volatile("dsb\n\twfi\n\tisb" ::: "memory");
        NVIC_ICER(EDGEDEPLOY_UART_IRQ / 32u) = 1u << (EDGEDEPLOY_UART_IRQ % 32u);
        SYST_CSR = csr;
    }
    NVIC_ICPR(EDGEDEPLOY_UART_IRQ / 32u) = 1u << (EDGEDEPLOY_UART_IRQ % 32u);
    cm_irq_restore(pm);
#endif
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
