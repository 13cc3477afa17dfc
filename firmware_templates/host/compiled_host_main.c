/*
 * compiled_host_main.c -- the compiled model on this machine (EDP fw_kind 3, board "host"):
 * the same C the Cortex-M firmware links (the model from `edgedeploy compile`, the device
 * protocol in edp/), built with the host's gcc, serving EDP on a pseudo terminal like the
 * host-TFLM device. toolchain/devices/host_compiled.py builds and starts it.
 *
 * Prints "EDP_PTY /dev/pts/N" on stdout once the pty is ready. Ticks: nanoseconds of
 * CLOCK_MONOTONIC (host timings, not a microcontroller's). SIGUSR1 resets the device (state
 * dropped, BOOT sent), SIGTERM/SIGINT stop it.
 *
 * The model binding (include/compiled_binding.h) is rendered by host_compiled.py from the
 * same template as the Cortex-M firmware's; the model's side of the EDP backend is the same
 * file, firmware_templates/common/compiled/edc_backend.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "compiled_binding.h"
#include "edc_backend.h"
#include "edp_device.h"

static int s_master = -1;
static volatile sig_atomic_t s_reset, s_stop;

/* The tick counter of the per-op profile (edc_backend.h) and of EDP: nanoseconds. */
uint64_t fw_ticks_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- the EDP backend: the model's part is compiled/edc_backend.c ------------------------- */

static void be_write(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    while (n) {
        ssize_t k = write(s_master, p, n);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return; /* the host went away: nothing to tell */
        }
        p += k;
        n -= (size_t)k;
    }
}

static uint64_t be_now(void *ctx)
{
    (void)ctx;
    return fw_ticks_now();
}

static edp_backend s_backend;
static edp_device s_dev;
static char s_text[512];

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        s_reset = 1;
    else
        s_stop = 1;
}

int main(void)
{
    if (EDC_MODEL_INIT() != 0) {
        fprintf(stderr, "the compiled model's init failed\n");
        return 1;
    }
    s_master = posix_openpt(O_RDWR | O_NOCTTY);
    if (s_master < 0 || grantpt(s_master) != 0 || unlockpt(s_master) != 0) {
        perror("posix_openpt");
        return 1;
    }
    const char *path = ptsname(s_master);
    /* keep the slave open (raw, no line discipline) so reads see no hang-up between hosts */
    int slave = path ? open(path, O_RDWR | O_NOCTTY) : -1;
    struct termios tio;
    if (slave < 0 || tcgetattr(slave, &tio) != 0) {
        perror("pty slave");
        return 1;
    }
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, 0);
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGINT, &sa, 0);

    snprintf(s_text, sizeof s_text,
             "firmware=edgedeploy compiled model (host build)\nboard=host\ntarget=host-compiled\n"
             "compiler=gcc %s\nmodel=%s\nruntime=%s\nops=%s\n"
             "timing=host wall clock: CLOCK_MONOTONIC around invoke\n",
             __VERSION__, EDGEDEPLOY_MODEL_NAME, EDGEDEPLOY_COMPILED_DESC, EDGEDEPLOY_OPS_TEXT);
    edc_backend_init(&s_backend);
    edp_hello *h = &s_backend.hello;
    h->clock_hz = 0;
    h->tick_unit = EDP_TICK_NS;
    h->ticks_per_tick_count = 1;
    h->text = s_text;
    s_backend.write = be_write;
    s_backend.now = be_now;

    edp_device_init(&s_dev, &s_backend);
    edp_device_boot(&s_dev);
    printf("EDP_PTY %s\n", path);
    fflush(stdout);
    uint8_t buf[4096];
    while (!s_stop) {
        if (s_reset) {
            s_reset = 0;
            edp_device_init(&s_dev, &s_backend);
            edp_device_boot(&s_dev);
        }
        struct pollfd pfd = {s_master, POLLIN, 0};
        int r = poll(&pfd, 1, 100);
        if (r <= 0)
            continue;
        ssize_t n = read(s_master, buf, sizeof buf);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            edp_device_feed(&s_dev, buf[i]);
    }
    close(slave);
    close(s_master);
    return 0;
}
