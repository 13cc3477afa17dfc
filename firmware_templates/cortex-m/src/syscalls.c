/*
 * syscalls.c -- the little a bare-metal newlib-nano program needs beyond nosys.specs: a heap
 * bounded by the linker script, exit, and the C++ runtime hooks TFLM's objects reference.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "board.h"

extern uint8_t __heap_start__, __heap_end__;

void *__dso_handle = 0;

void _init(void)
{
}

void _fini(void)
{
}

void *_sbrk(ptrdiff_t incr)
{
    static uint8_t *brk = &__heap_start__;
    uint8_t *prev = brk;
    if (incr < 0 || (size_t)incr > (size_t)(&__heap_end__ - brk)) {
        errno = ENOMEM;
        return (void *)-1;
    }
    brk += incr;
    return prev;
}

void _exit(int code)
{
    board_exit(code);
}
