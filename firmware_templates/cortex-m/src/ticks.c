/*
 * ticks.c -- 64-bit tick counter from SysTick (and DWT CYCCNT where the core has it).
 * See fw_ticks.h for the units.
 */
#include "fw_ticks.h"

#include "cm_regs.h"
#include "edp_device.h"
#include "target_config.h"

/* SysTick reload; a smaller value (for tests of the 64-bit extension) makes it wrap sooner. */
#ifndef EDGEDEPLOY_SYSTICK_RELOAD
#define EDGEDEPLOY_SYSTICK_RELOAD SYST_MAX_RELOAD
#endif
#define PERIOD ((uint64_t)EDGEDEPLOY_SYSTICK_RELOAD + 1u)

/* Instructions of the calibration loop (2 per iteration). */
#define CALIB_ITERATIONS 200000u

static volatile uint32_t s_wraps;
static uint8_t s_unit = EDP_TICK_SYSTICK;
static uint32_t s_per_count = 1;
uint32_t fw_ticks_calib_instructions;
uint32_t fw_ticks_calib_counts;

#if EDGEDEPLOY_HAS_DWT && !EDGEDEPLOY_QEMU_ICOUNT
static int s_use_dwt;
static uint32_t s_dwt_last, s_dwt_high;
#endif

/* GCC hands inline assembly to the assembler in "divided" syntax on Thumb-1-only cores
 * (Armv6-M, Armv8-M Baseline) and in unified syntax elsewhere; say which one this is. */
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define ASM_UNIFIED ".syntax unified\n\t"
#define ASM_RESTORE "\n\t.syntax divided"
#else
#define ASM_UNIFIED ""
#define ASM_RESTORE ""
#endif

__attribute__((noinline)) void fw_busy_loop(uint32_t n)
{
    __asm volatile(ASM_UNIFIED "1:\n\tsubs %0, %0, #1\n\tbne 1b" ASM_RESTORE : "+l"(n) : : "cc");
}

void fw_ticks_init(void)
{
    SYST_CSR = 0;
    SYST_RVR = EDGEDEPLOY_SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
#if !EDGEDEPLOY_QEMU_ICOUNT
    /* The counter reads 0 until its first reload, one clock after enabling: wait for it, or
     * the first reading would look like a full period ahead of the second. (Bounded: a core
     * whose SysTick has no clock never reloads.) */
    for (uint32_t i = 0; i < 1000u && SYST_CVR == 0; i++) {
    }
#endif
#if EDGEDEPLOY_QEMU_ICOUNT
    s_unit = EDP_TICK_INSTRUCTIONS;
#elif EDGEDEPLOY_HAS_DWT
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* unlock (Cortex-M7); ignored elsewhere */
    if (!(DWT_CTRL & DWT_CTRL_NOCYCCNT)) {
        DWT_CYCCNT = 0;
        DWT_CTRL |= DWT_CTRL_CYCCNTENA;
        s_use_dwt = 1;
        s_unit = EDP_TICK_CYCLES;
    }
#endif
}

#if !EDGEDEPLOY_QEMU_ICOUNT
static uint64_t systick_now(void)
{
    uint32_t pm = cm_irq_save();
    uint32_t hi = s_wraps, val = SYST_CVR;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) { /* wrapped, interrupt not taken yet */
        val = SYST_CVR;
        hi++;
    }
    cm_irq_restore(pm);
    return (uint64_t)hi * PERIOD + (EDGEDEPLOY_SYSTICK_RELOAD - val);
}
#endif

#if EDGEDEPLOY_QEMU_ICOUNT
/*
 * Under -icount one counter step is a fixed number of instructions (40 at 25 MHz), and where
 * an interval starts within a step depends on how long the firmware polled the UART before
 * -- which depends on the host. So every reading also re-phases the counter: writing CVR
 * restarts QEMU's SysTick at that very instruction, and the next reading counts whole steps
 * from there. An interval's count then depends only on the instructions executed in it:
 * identical run to run. The partial step at each reading (less than one step) is dropped,
 * so the absolute counter runs slightly slow; intervals are exact to within one step.
 */
static uint64_t s_base;

static uint64_t icount_now(void)
{
    uint32_t pm = cm_irq_save();
    uint32_t wraps = s_wraps, val = SYST_CVR;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
        val = SYST_CVR;
        wraps++;
    }
    /* after a restart CVR reads 0 until the first step, then RELOAD, RELOAD-1, ... */
    s_base += (uint64_t)wraps * PERIOD + (val ? PERIOD - val : 0u);
    SYST_CVR = 0;
    SCB_ICSR = SCB_ICSR_PENDSTCLR;
    s_wraps = 0;
    uint64_t now = s_base;
    cm_irq_restore(pm);
    return now;
}
#endif

uint64_t fw_ticks_now(void)
{
#if EDGEDEPLOY_QEMU_ICOUNT
    return icount_now();
#else
#if EDGEDEPLOY_HAS_DWT
    if (s_use_dwt) {
        uint32_t pm = cm_irq_save();
        uint32_t lo = DWT_CYCCNT;
        if (lo < s_dwt_last)
            s_dwt_high++;
        s_dwt_last = lo;
        uint64_t v = ((uint64_t)s_dwt_high << 32) | lo;
        cm_irq_restore(pm);
        return v;
    }
#endif
    return systick_now();
#endif
}

void SysTick_Handler(void)
{
    s_wraps++;
#if EDGEDEPLOY_HAS_DWT && !EDGEDEPLOY_QEMU_ICOUNT
    (void)fw_ticks_now(); /* sample CYCCNT at least once per 2^24 cycles: no wrap is missed */
#endif
}

uint8_t fw_ticks_unit(void)
{
    return s_unit;
}

uint32_t fw_ticks_per_count(void)
{
    return s_per_count;
}

void fw_ticks_calibrate(void)
{
#if EDGEDEPLOY_QEMU_ICOUNT
    uint64_t t0 = icount_now();
    fw_busy_loop(CALIB_ITERATIONS);
    uint64_t t1 = icount_now();
    uint32_t counts = (uint32_t)(t1 - t0);
    fw_ticks_calib_instructions = 2u * CALIB_ITERATIONS;
    fw_ticks_calib_counts = counts;
    if (counts == 0 || counts > fw_ticks_calib_instructions) {
        /* Coarser than one instruction per step is all we can express; a finer counter
         * (large -icount shift) is reported in SysTick counts instead. */
        s_unit = EDP_TICK_SYSTICK;
        s_per_count = 1;
        return;
    }
    s_per_count = (fw_ticks_calib_instructions + counts / 2u) / counts;
#endif
}
