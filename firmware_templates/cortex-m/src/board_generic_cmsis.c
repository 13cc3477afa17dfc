/*
 * board_generic_cmsis.c -- any Cortex-M board: four small hooks that you implement for your
 * board (with your vendor's CMSIS device files or HAL) in a file of your own, listed in
 * USER_SRCS (see the Makefile), without editing this one:
 *
 *   void edgedeploy_clock_init(void);          core clock = EDGEDEPLOY_CLOCK_HZ (optional)
 *   void edgedeploy_uart_init(uint32_t baud);  the UART that the host's serial port sees
 *   void edgedeploy_uart_putc(uint8_t c);      blocking
 *   int  edgedeploy_uart_getc(void);           a byte or -1, never blocking
 *
 * The defaults here are weak: the clock hook does nothing (keep the reset clock, or call your
 * vendor's SystemInit from it), and the UART hooks do nothing, so a project without hooks
 * builds and links but is silent on the wire (make prints a warning).
 * SysTick/DWT timing needs no hook (ticks.c).
 */
#include "board.h"
#include "target_config.h"

__attribute__((weak)) void edgedeploy_clock_init(void)
{
}

__attribute__((weak)) void edgedeploy_uart_init(uint32_t baud)
{
    (void)baud;
}

__attribute__((weak)) void edgedeploy_uart_putc(uint8_t c)
{
    (void)c;
}

__attribute__((weak)) int edgedeploy_uart_getc(void)
{
    return -1;
}

void board_init(void)
{
    edgedeploy_clock_init();
    edgedeploy_uart_init(EDGEDEPLOY_BAUD);
}

void board_uart_putc(uint8_t c)
{
    edgedeploy_uart_putc(c);
}

int board_uart_getc(void)
{
    return edgedeploy_uart_getc();
}

/* No interrupt-driven idle on generic boards: the request loop polls. */
int board_uart_rx_ready(void)
{
    return 1;
}

void board_uart_rx_irq_enable(void)
{
}
