/*
 * startup.c -- vector table and reset handler for any Cortex-M (Armv6-M .. Armv8.1-M).
 *
 * Reset: enable the FPU (hard-float and softfp builds: CPACR CP10/CP11 full access) before any
 * floating-point instruction can run, copy .data from flash, zero .bss, point VTOR at this
 * table, run C/C++ static constructors, then main(). The symbols come from linker.ld.
 */
#include <stdint.h>

#include "board.h"
#include "cm_regs.h"
#include "target_config.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;

extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);

/* Weak aliases of the fault reporter (fault.c) unless a board defines them. */
void NMI_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SecureFault_Handler(void);
void SVC_Handler(void);
void DebugMon_Handler(void);
void PendSV_Handler(void);

#ifndef EDGEDEPLOY_NUM_IRQS
#define EDGEDEPLOY_NUM_IRQS 32
#endif

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used)) const vector_t g_vectors[16 + EDGEDEPLOY_NUM_IRQS] = {
    (vector_t)(uintptr_t)&__stack_top__,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler,
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
    /* external interrupts: none used; they fall through to Default_Handler */
    [16 ... 16 + EDGEDEPLOY_NUM_IRQS - 1] = Default_Handler,
};

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    SCB_CPACR |= (0xFu << 20); /* CP10, CP11: full access */
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    uint32_t *src = &__data_load__, *dst = &__data_start__;
    while (dst < &__data_end__)
        *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;)
        *dst++ = 0;
    SCB_VTOR = (uint32_t)(uintptr_t)g_vectors;
    __asm volatile("dsb\n\tisb" ::: "memory");
    __libc_init_array();
    board_exit(main());
}
