/*
 * fw_ticks.h -- the firmware's 64-bit tick counter (ticks.c).
 *
 * Three sources, chosen at build time from target_config.h:
 *   EDGEDEPLOY_QEMU_ICOUNT  SysTick on the processor clock under QEMU -icount shift=N: one
 *                           counter step is a fixed number of guest *instructions*; the number
 *                           is measured at boot (fw_ticks_calibrate) with a loop of known length.
 *                           Each reading restarts the step phase, so an interval counts the
 *                           steps of its own instructions only: identical run to run.
 *   EDGEDEPLOY_HAS_DWT      DWT CYCCNT: core cycles.
 *   otherwise               SysTick counts at the core clock (EDGEDEPLOY_CLOCK_HZ).
 * SysTick always runs and interrupts every 2^24 counts to extend the counter to 64 bits.
 */
#ifndef EDGEDEPLOY_FW_TICKS_H
#define EDGEDEPLOY_FW_TICKS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start SysTick (and DWT where used). Interrupts must be enabled afterwards. */
void fw_ticks_init(void);

/* Current counter value (monotonic, in steps of fw_ticks_unit() * fw_ticks_per_count()). */
uint64_t fw_ticks_now(void);

/* EDP tick unit (EDP_TICK_*) and how many units one counter step is. */
uint8_t fw_ticks_unit(void);
uint32_t fw_ticks_per_count(void);

/* QEMU icount: run a busy loop of a known number of instructions and derive
 * fw_ticks_per_count() from the counter. Elsewhere a no-op. Call once after fw_ticks_init. */
void fw_ticks_calibrate(void);

/* A loop of exactly 2 * n instructions (n >= 1): "subs; bne" n times. Deterministic under
 * QEMU -icount; used for calibration and by the self-test firmware's RUN. */
void fw_busy_loop(uint32_t n);

/* Calibration record: instructions executed and counter steps seen (0 when not calibrated). */
extern uint32_t fw_ticks_calib_instructions;
extern uint32_t fw_ticks_calib_counts;

#ifdef __cplusplus
}
#endif

#endif /* EDGEDEPLOY_FW_TICKS_H */
