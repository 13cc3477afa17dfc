/*
 * fault.c -- HardFault (and MemManage/BusFault/UsageFault/SecureFault, and any unexpected
 * exception) report over the UART, as plain text between EDP frames (a host parser skips it as
 * garbage; a human or the QEMU runner reads it):
 *
 *   \r\n!!! EDGEDEPLOY FAULT HardFault
 *   r0=... r1=... r2=... r3=... r12=... lr=... pc=... xpsr=...
 *   cfsr=... hfsr=... mmfar=... bfar=... exc_return=... msp=... psp=...
 *   !!! END FAULT\r\n
 *
 * Under QEMU (semihosting) the same text goes to the emulator's stdout and the firmware exits
 * with status EDGEDEPLOY_EXIT_FAULT; on a board the core resets (the host then sees BOOT).
 */
#include <stdint.h>

#include "board.h"
#include "cm_regs.h"
#include "target_config.h"

static char s_report[320];
static unsigned s_len;

static void put(const char *s)
{
    while (*s && s_len < sizeof s_report - 1)
        s_report[s_len++] = *s++;
}

static void put_hex(const char *name, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[12];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 8; i++)
        buf[2 + i] = digits[(v >> (28 - 4 * i)) & 0xFu];
    buf[10] = ' ';
    buf[11] = 0;
    put(name);
    put("=");
    put(buf);
}

static const char *exception_name(uint32_t ipsr)
{
    switch (ipsr & 0x1FFu) {
    case 2:
        return "NMI";
    case 3:
        return "HardFault";
    case 4:
        return "MemManage";
    case 5:
        return "BusFault";
    case 6:
        return "UsageFault";
    case 7:
        return "SecureFault";
    default:
        return "UnexpectedException";
    }
}

/* Called from the assembly entry with the exception frame and EXC_RETURN. */
__attribute__((used, noreturn)) void fault_report(const uint32_t *frame, uint32_t exc_return)
{
    uint32_t ipsr, msp, psp;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    __asm volatile("mrs %0, msp" : "=r"(msp));
    __asm volatile("mrs %0, psp" : "=r"(psp));
    s_len = 0;
    put("\r\n!!! EDGEDEPLOY FAULT ");
    put(exception_name(ipsr));
    put("\r\n");
    put_hex("r0", frame[0]);
    put_hex("r1", frame[1]);
    put_hex("r2", frame[2]);
    put_hex("r3", frame[3]);
    put_hex("r12", frame[4]);
    put_hex("lr", frame[5]);
    put_hex("pc", frame[6]);
    put_hex("xpsr", frame[7]);
    put("\r\n");
#if CM_HAS_FAULT_STATUS
    put_hex("cfsr", SCB_CFSR);
    put_hex("hfsr", SCB_HFSR);
    put_hex("mmfar", SCB_MMFAR);
    put_hex("bfar", SCB_BFAR);
#endif
    put_hex("exc_return", exc_return);
    put_hex("msp", msp);
    put_hex("psp", psp);
    put("\r\n!!! END FAULT\r\n");
    s_report[s_len] = 0;
    board_report(s_report);
    board_exit(EDGEDEPLOY_EXIT_FAULT);
}

/* Pick the stack the frame was pushed on (EXC_RETURN bit 2) and hand it to fault_report.
 * Thumb-1 only, so it assembles for Armv6-M too. */
__attribute__((naked)) void HardFault_Handler(void)
{
    __asm volatile("movs r0, #4\n\t"
                   "mov r1, lr\n\t"
                   "tst r0, r1\n\t"
                   "beq 1f\n\t"
                   "mrs r0, psp\n\t"
                   "b 2f\n"
                   "1:\n\t"
                   "mrs r0, msp\n"
                   "2:\n\t"
                   "ldr r2, =fault_report\n\t"
                   "bx r2\n\t"
                   ".ltorg\n");
}

/* Every other exception reports the same way unless a board defines its own handler. */
void Default_Handler(void) __attribute__((alias("HardFault_Handler")));
void NMI_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SecureFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
