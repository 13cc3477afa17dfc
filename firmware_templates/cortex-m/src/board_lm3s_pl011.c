/*
 * board_lm3s_pl011.c -- TI Stellaris LM3S6965 (and QEMU's lm3s6965evb): PLL to
 * EDGEDEPLOY_CLOCK_HZ from the 8 MHz crystal, UART0 (a PL011) on PA0/PA1.
 *
 * QEMU derives SysTick's clock from RCC.SYSDIV (200 MHz PLL / (SYSDIV + 1)), so the clock set
 * here is also what the tick counter runs at.
 */
#include "board.h"
#include "target_config.h"

#define SYSCTL_RIS (*(volatile uint32_t *)0x400FE050u)
#define SYSCTL_RCC (*(volatile uint32_t *)0x400FE060u)
#define SYSCTL_RCGC1 (*(volatile uint32_t *)0x400FE104u)
#define SYSCTL_RCGC2 (*(volatile uint32_t *)0x400FE108u)
#define GPIOA_AFSEL (*(volatile uint32_t *)0x40004420u)
#define GPIOA_DEN (*(volatile uint32_t *)0x4000451Cu)

#define RCC_BYPASS (1u << 11)
#define RCC_USESYSDIV (1u << 22)
#define RCC_PWRDN (1u << 13)
#define RCC_OSCSRC_MASK (3u << 4)
#define RCC_XTAL_MASK (0xFu << 6)
#define RCC_XTAL_8MHZ (0xEu << 6)
#define RCC_SYSDIV_MASK (0xFu << 23)
#define RIS_PLLLRIS (1u << 6)

#define UART_DR (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x000u))
#define UART_FR (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x018u))
#define UART_IBRD (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x024u))
#define UART_FBRD (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x028u))
#define UART_LCRH (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x02Cu))
#define UART_CR (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x030u))
#define UART_IMSC (*(volatile uint32_t *)(EDGEDEPLOY_UART_BASE + 0x038u))
#define IMSC_RXIM (1u << 4)
#define IMSC_RTIM (1u << 6)
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)
#define LCRH_8N1_FIFO 0x70u
#define CR_UARTEN_TXE_RXE 0x301u

#define PLL_HZ 200000000u

static void clock_init(void)
{
    uint32_t sysdiv = PLL_HZ / EDGEDEPLOY_CLOCK_HZ - 1u; /* 50 MHz: 3 */
    uint32_t rcc = SYSCTL_RCC;
    rcc |= RCC_BYPASS;
    rcc &= ~RCC_USESYSDIV;
    SYSCTL_RCC = rcc;
    rcc &= ~(RCC_XTAL_MASK | RCC_OSCSRC_MASK | RCC_PWRDN | RCC_SYSDIV_MASK);
    rcc |= RCC_XTAL_8MHZ | ((sysdiv & 0xFu) << 23) | RCC_USESYSDIV;
    SYSCTL_RCC = rcc;
    for (uint32_t i = 0; i < 100000u && !(SYSCTL_RIS & RIS_PLLLRIS); i++) {
    }
    SYSCTL_RCC = rcc & ~RCC_BYPASS;
}

void board_init(void)
{
    clock_init();
    SYSCTL_RCGC1 |= 1u; /* UART0 */
    SYSCTL_RCGC2 |= 1u; /* GPIO port A */
    GPIOA_AFSEL |= 0x3u;
    GPIOA_DEN |= 0x3u;
    /* divisor = clock / (16 * baud), fraction in 1/64 */
    uint32_t div64 = (4u * EDGEDEPLOY_CLOCK_HZ + EDGEDEPLOY_BAUD / 2u) / EDGEDEPLOY_BAUD;
    UART_CR = 0;
    UART_IBRD = div64 >> 6;
    UART_FBRD = div64 & 63u;
    UART_LCRH = LCRH_8N1_FIFO;
    UART_CR = CR_UARTEN_TXE_RXE;
}

void board_uart_putc(uint8_t c)
{
    while (UART_FR & FR_TXFF) {
    }
    UART_DR = c;
}

int board_uart_rx_ready(void)
{
    return !(UART_FR & FR_RXFE);
}

void board_uart_rx_irq_enable(void)
{
    UART_IMSC |= IMSC_RXIM | IMSC_RTIM;
}

int board_uart_getc(void)
{
    if (UART_FR & FR_RXFE)
        return -1;
    return (int)(UART_DR & 0xFFu);
}
