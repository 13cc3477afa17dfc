/*
 * semihost.h -- Arm semihosting calls (BKPT 0xAB), used only on targets whose profile sets
 * firmware.semihosting_exit (QEMU: -semihosting-config enable=on,target=native). On a board
 * without a debugger attached a semihosting call faults, so nothing else may call these.
 */
#ifndef EDGEDEPLOY_SEMIHOST_H
#define EDGEDEPLOY_SEMIHOST_H

#ifdef __cplusplus
extern "C" {
#endif

/* SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit: QEMU exits with status `code`. */
void semihost_exit(int code) __attribute__((noreturn));

/* SYS_WRITE0: a NUL-terminated string to the debugger's console (QEMU's stdout). */
void semihost_write0(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* EDGEDEPLOY_SEMIHOST_H */
