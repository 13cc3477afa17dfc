/* Minimal bare-metal harness for the compile benchmark (not the edgedeploy firmware): runs one
 * compiled model on QEMU mps2-an386 with -icount shift=0 and prints the SysTick ticks of each
 * inference over semihosting (1 tick = 40 instructions at the an386's 25 MHz; the harness
 * prints a calibration loop's count to prove it). Build: -DEDC_NAME=kws -include kws.h. */
#include <stdint.h>
#include <string.h>

#define EDC_CAT2(a, b) a##b
#define EDC_CAT(a, b) EDC_CAT2(a, b)
#define M(x) EDC_CAT(EDC_NAME, x)

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
int main(void);
void Reset_Handler(void);
void SysTick_Handler(void);
void Default_Handler(void);
void Default_Handler(void) {
  for (;;) {
  }
}
typedef void (*vec)(void);
__attribute__((section(".isr_vector"), used)) const vec g_vectors[16] = {
    (vec)(uintptr_t)&__stack_top__, Reset_Handler,   Default_Handler, Default_Handler,
    Default_Handler,                Default_Handler, Default_Handler, 0,
    0,                              0,               0,               Default_Handler,
    Default_Handler,                0,               Default_Handler, SysTick_Handler};

#define REG(a) (*(volatile uint32_t *)(a))
static volatile uint32_t wraps;
void SysTick_Handler(void) { wraps++; }

static int semihost(int op, const void *arg) {
  register int r0 __asm("r0") = op;
  register const void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}
static void put(const char *s) { semihost(0x04, s); }
static void put_u(uint32_t v) {
  char b[12];
  int i = 11;
  b[i] = 0;
  do {
    b[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put(b + i);
}

void Reset_Handler(void) {
  uint32_t *s = &__data_load__, *d = &__data_start__;
  REG(0xE000ED88) |= (0xFu << 20); /* FPU on */
  while (d < &__data_end__) *d++ = *s++;
  for (d = &__bss_start__; d < &__bss_end__;) *d++ = 0;
  {
    uint32_t blk[2];
    blk[0] = 0x20026u;
    blk[1] = (uint32_t)main();
    semihost(0x20, blk);
  }
  for (;;) {
  }
}

static uint64_t now(void) {
  uint32_t w, c;
  do {
    w = wraps;
    c = REG(0xE000E018);
  } while (w != wraps);
  return (uint64_t)w * 0x1000000u + (0xFFFFFFu - c);
}

int main(void) {
  int r, i;
  REG(0xE000E010) = 0;
  REG(0xE000E014) = 0xFFFFFF;
  REG(0xE000E018) = 0;
  REG(0xE000E010) = 7;
  for (i = 0; i < 1000 && REG(0xE000E018) == 0; i++) {
  }
  {
    uint32_t n = 200000;
    uint64_t c0 = now(), c1;
    __asm volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+l"(n) : : "cc");
    c1 = now();
    put("calibration 400000 ");
    put_u((uint32_t)(c1 - c0));
    put("\n");
  }
  M(_init)();
  for (r = 0; r < 3; r++) {
    uint64_t t0, t1;
    memset(M(_input)(0), 0, M(_inputs)[0].bytes);
    t0 = now();
    M(_invoke)();
    t1 = now();
    put("inference ");
    put_u((uint32_t)(t1 - t0));
    put("\n");
  }
  return 0;
}
