/*
 * edp_fake.h -- a fake EDP backend for host tests and fuzzing (no model): one uint8 input
 * and one int8 output whose sizes are set at init, a deterministic tick counter, an op
 * profiler with three ops. Its behaviour is mirrored by tests/support/edp_fake.py
 * (FakeBackend), so the C and Python dispatchers can be compared byte for byte.
 *
 *   output[i] = (int8)(input[i % in_bytes] * 3 + 1 + invocations)   (invocations before it)
 *   After each invoke the input tensor is overwritten with 0xEE, as TFLM reuses the input
 *   buffer for intermediates: a dispatcher that does not refill inputs gives wrong outputs.
 *   With `persist` (edp_fake_persist) the input is left intact instead and the backend says
 *   inputs_persist = 1, as the compiled model's: the dispatcher then keeps no shadow.
 *   now() returns 1000 * (number of calls so far).
 *   invoke fails (returns 1, last_error "fake failure") when input[0] == 0xFF.
 */
#ifndef EDP_FAKE_H
#define EDP_FAKE_H

#include "edp_device.h"

#define EDP_FAKE_MAX_BYTES 8192u

typedef struct edp_fake {
    uint8_t in[EDP_FAKE_MAX_BYTES];
    uint8_t out[EDP_FAKE_MAX_BYTES];
    uint32_t in_bytes, out_bytes;
    uint64_t clock;
    uint32_t invocations;
    int persist;
    uint64_t op_ticks[3];
    /* where replies go */
    uint8_t *tx;
    size_t tx_cap, tx_len;
} edp_fake;

/* Fill `b` for the fake `f`. with_profiler 0: op_profile is NULL. */
void edp_fake_init(edp_fake *f, edp_backend *b, uint32_t in_bytes, uint32_t out_bytes,
                   int with_profiler);

/* Make `f` keep its input intact across invoke and say so (b->inputs_persist = 1). Call
 * after edp_fake_init, before edp_device_init. */
void edp_fake_persist(edp_fake *f, edp_backend *b);

#endif
