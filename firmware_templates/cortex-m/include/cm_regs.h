/*
 * cm_regs.h -- the few architectural Cortex-M core registers this firmware touches (System
 * Control Block, SysTick, DWT, FPU access control). These addresses are fixed by the Armv6-M /
 * Armv7-M / Armv8-M architecture, so no vendor CMSIS header is needed; a board that has its
 * own CMSIS device header may include it alongside.
 */
#ifndef EDGEDEPLOY_CM_REGS_H
#define EDGEDEPLOY_CM_REGS_H

#include <stdint.h>

#define CM_REG(addr) (*(volatile uint32_t *)(addr))

/* System Control Block */
#define SCB_ICSR CM_REG(0xE000ED04u)
#define SCB_VTOR CM_REG(0xE000ED08u)
#define SCB_AIRCR CM_REG(0xE000ED0Cu)
#define SCB_SHCSR CM_REG(0xE000ED24u)
#define SCB_CFSR CM_REG(0xE000ED28u) /* Armv7-M / Armv8-M Mainline only */
#define SCB_HFSR CM_REG(0xE000ED2Cu)
#define SCB_MMFAR CM_REG(0xE000ED34u)
#define SCB_BFAR CM_REG(0xE000ED38u)
#define SCB_CPACR CM_REG(0xE000ED88u)

#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define SCB_AIRCR_VECTKEY (0x05FAu << 16)
#define SCB_AIRCR_SYSRESETREQ (1u << 2)

/* NVIC */
#define NVIC_ISER(n) CM_REG(0xE000E100u + 4u * (n))
#define NVIC_ICER(n) CM_REG(0xE000E180u + 4u * (n))
#define NVIC_ICPR(n) CM_REG(0xE000E280u + 4u * (n))

/* SysTick */
#define SYST_CSR CM_REG(0xE000E010u)
#define SYST_RVR CM_REG(0xE000E014u)
#define SYST_CVR CM_REG(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1: processor clock */
#define SYST_MAX_RELOAD 0x00FFFFFFu

/* DWT cycle counter (Armv7-M / Armv8-M Mainline, when implemented) */
#define DEMCR CM_REG(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL CM_REG(0xE0001000u)
#define DWT_CYCCNT CM_REG(0xE0001004u)
#define DWT_LAR CM_REG(0xE0001FB0u) /* lock access (Cortex-M7) */
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CTRL_NOCYCCNT (1u << 25)

/* Which fault status registers exist: v6-M (M0/M0+) and v8-M Baseline have none. */
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__) || \
    defined(__ARM_ARCH_8_1M_MAIN__)
#define CM_HAS_FAULT_STATUS 1
#else
#define CM_HAS_FAULT_STATUS 0
#endif

static inline uint32_t cm_irq_save(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void cm_irq_restore(uint32_t primask)
{
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
}

#endif /* EDGEDEPLOY_CM_REGS_H */
