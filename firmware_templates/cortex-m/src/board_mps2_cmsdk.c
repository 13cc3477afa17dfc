/*
 * board_mps2_cmsdk.c -- Arm MPS2/MPS2+ FPGA images (AN386 Cortex-M4, AN500 Cortex-M7, AN505
 * Cortex-M33) and QEMU's models of them: UART0 is a CMSDK APB UART at EDGEDEPLOY_UART_BASE.
 *
 * QEMU's CMSDK UART transmits only with CTRL.TX_EN set and BAUDDIV >= 16 (it drops output
 * otherwise); on the FPGA, BAUDDIV = core clock / baud.
 */
#include "board.h"
#include "target_config.h"

#define UART_DATA (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x08u))
#define UART_INTSTATUS (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x10u))

#define STATE_TX_FULL (1u << 0)
#define STATE_RX_FULL (1u << 1)
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)
#define CTRL_RX_INT_EN (1u << 3)
#define INT_RX (1u << 1)

void board_init(void)
{
    uint32_t div = EDGEDEPLOY_CLOCK_HZ / EDGEDEPLOY_BAUD;
    UART_CTRL = 0;
    UART_BAUDDIV = div < 16u ? 16u : div;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

void board_uart_putc(uint8_t c)
{
    while (UART_STATE & STATE_TX_FULL) {
    }
    UART_DATA = c;
}

int board_uart_rx_ready(void)
{
    return (UART_STATE & STATE_RX_FULL) != 0;
}

void board_uart_rx_irq_enable(void)
{
    UART_CTRL |= CTRL_RX_INT_EN;
}

int board_uart_getc(void)
{
    if (!(UART_STATE & STATE_RX_FULL))
        return -1;
    int c = (int)(UART_DATA & 0xFFu);
    UART_INTSTATUS = INT_RX; /* the receive interrupt is sticky: clear it (write 1) */
    return c;
}
