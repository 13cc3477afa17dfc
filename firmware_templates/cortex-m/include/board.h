/*
 * board.h -- the board-support contract. One board_<name>.c implements it per board family:
 *
 *   board_mps2_cmsdk.c     Arm MPS2/MPS2+ FPGA images (QEMU mps2-an386/an500/an505): CMSDK UART
 *   board_lm3s_pl011.c     TI Stellaris LM3S6965 (QEMU lm3s6965evb): PL011 UART
 *   board_generic_cmsis.c  any other Cortex-M: small weak hooks a user overrides (see there)
 *
 * Timing (SysTick / DWT) is common to every Cortex-M and lives in ticks.c.
 */
#ifndef EDGEDEPLOY_BOARD_H
#define EDGEDEPLOY_BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Clocks and the UART at EDGEDEPLOY_BAUD (8N1). Called once from main, before anything else. */
void board_init(void);

/* Blocking write of one byte to the UART. Must also work from the HardFault handler. */
void board_uart_putc(uint8_t c);

/* One received byte (0..255), or -1 when none is waiting. Never blocks. */
int board_uart_getc(void);

/* Nothing to do until the host sends more: under QEMU with a known UART interrupt
 * (EDGEDEPLOY_UART_IRQ), sleep in WFI until a byte arrives, with SysTick paused so that the
 * emulator idles instead of running the polling loop (-icount sleep=off would otherwise race
 * through virtual time). Elsewhere it returns at once (the caller polls). */
void board_idle(void);

/* For board_idle: a received byte is waiting / let the UART raise its receive interrupt. */
int board_uart_rx_ready(void);
void board_uart_rx_irq_enable(void);

/* Exit codes (QEMU's exit status under semihosting). */
#define EDGEDEPLOY_EXIT_FAULT 3
#define EDGEDEPLOY_EXIT_BOOT_FAILED 4

/* Stop: exit code to the emulator (semihosting) where the target has it, else reset the core. */
void board_exit(int code) __attribute__((noreturn));

/* Blocking write of n bytes / a NUL-terminated string (board.c helpers over board_uart_putc). */
void board_uart_write(const uint8_t *p, size_t n);
void board_uart_puts(const char *s);

/* A diagnostic text (fault report, boot failure): to the UART, and to the emulator's console
 * where semihosting is available, so that it is seen even when no host is reading the UART. */
void board_report(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* EDGEDEPLOY_BOARD_H */
