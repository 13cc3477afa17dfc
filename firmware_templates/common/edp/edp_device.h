/*
 * edp_device.h -- the device side of EDP v1: a request dispatcher over a firmware backend.
 *
 * The firmware fills an edp_backend (UART write, tick counter, tensors, invoke, profiler,
 * HELLO fields), calls edp_device_init once, edp_device_boot after reset, and
 * edp_device_feed for every received byte. Replies are written from inside edp_device_feed,
 * streamed to backend.write in pieces (header, payload parts, CRC): there is no TX frame
 * buffer. No allocation; all buffers live in the edp_device (declare it static).
 *
 * Inputs: a backend whose input tensors survive invoke (inputs_persist = 1: the compiled
 * model's planner keeps them intact) gets SET_INPUT written straight into its tensors and
 * nothing copied; otherwise (TFLM reuses input buffers for intermediates) the device keeps a
 * shadow copy of every input and copies it into the tensor before each invoke.
 *
 * Compile-time sizes (override with -D):
 *   EDP_MAX_PAYLOAD      largest frame payload (edp.h; default 1024): the RX buffer
 *   EDP_MAX_INPUTS       input tensors (default 4)
 *   EDP_MAX_INPUT_BYTES  total bytes of all input shadow copies (default 16384; set it to the
 *                        sum of the model's input sizes, or to 0 with a persisting backend)
 *   EDP_MAX_RUNS         per-inference tick records of one RUN (default 256, 8 B each)
 */
#ifndef EDP_DEVICE_H
#define EDP_DEVICE_H

#include "edp.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EDP_MAX_INPUTS
#define EDP_MAX_INPUTS 4u
#endif
#ifndef EDP_MAX_INPUT_BYTES
#define EDP_MAX_INPUT_BYTES 16384u
#endif
#ifndef EDP_MAX_RUNS
#define EDP_MAX_RUNS 256u
#endif
#define EDP_MAX_DIMS 6

#if EDP_MAX_INPUTS < 1 || EDP_MAX_INPUTS > 255
#error "EDP_MAX_INPUTS must be in 1..255"
#endif
#if EDP_MAX_RUNS < 1 || EDP_MAX_RUNS > 65535
#error "EDP_MAX_RUNS must be in 1..65535"
#endif

/* Tensor element types: TFLite's TensorType numbering. */
enum {
    EDP_DTYPE_FLOAT32 = 0,
    EDP_DTYPE_INT32 = 2,
    EDP_DTYPE_UINT8 = 3,
    EDP_DTYPE_INT16 = 7,
    EDP_DTYPE_INT8 = 9
};

/* HELLO fw_kind */
enum { EDP_FW_TFLM = 0, EDP_FW_SELFTEST = 1, EDP_FW_HOST_TFLM = 2, EDP_FW_COMPILED = 3 };

/* HELLO tick_unit */
enum {
    EDP_TICK_CYCLES = 0,       /* DWT CYCCNT */
    EDP_TICK_INSTRUCTIONS = 1, /* SysTick under QEMU -icount shift=0 */
    EDP_TICK_US = 2,
    EDP_TICK_NS = 3,
    EDP_TICK_SYSTICK = 4 /* SysTick counts at clock_hz on real hardware */
};

/* Flags passed to edp_backend.invoke(ctx, profile). */
#define EDP_PROFILE_ON 1    /* profile this inference (accumulate per-op ticks) */
#define EDP_PROFILE_RESET 2 /* first profiled inference of a RUN: clear the sums first */

typedef struct edp_tensor {
    uint8_t dtype; /* EDP_DTYPE_* */
    uint8_t ndim;  /* <= EDP_MAX_DIMS */
    int32_t dims[EDP_MAX_DIMS];
    float scale;
    int32_t zero_point;
    uint8_t *data;
    uint32_t bytes;
} edp_tensor;

/* The fixed HELLO fields (docs/protocol.md "HELLO reply"). */
typedef struct edp_hello {
    uint8_t fw_kind;               /* EDP_FW_* */
    uint32_t clock_hz;             /* 0 = unknown */
    uint8_t tick_unit;             /* EDP_TICK_* */
    uint32_t ticks_per_tick_count; /* tick_unit units per counter step (usually 1) */
    uint8_t model_sha256[32];      /* zeros: no model */
    uint32_t arena_bytes;
    uint32_t arena_used_bytes;
    uint8_t n_inputs;
    uint8_t n_outputs;
    uint16_t n_ops;
    const char *text; /* "key=value\n" lines; NULL = none. Cut at a line end to fit. */
} edp_hello;

typedef struct edp_backend {
    void *ctx;
    /* Blocking write of all n bytes to the link. Required. */
    void (*write)(void *ctx, const uint8_t *p, size_t n);
    /* Monotonic tick counter in hello.tick_unit * hello.ticks_per_tick_count. Required. */
    uint64_t (*now)(void *ctx);
    /* Describe tensor `index` (input or output); 0 ok. `data` must stay valid. NULL = no
     * model (TENSOR_INFO etc. answer NO_MODEL). */
    int (*tensor)(void *ctx, int is_output, int index, edp_tensor *out);
    /* One inference; `profile` is a set of EDP_PROFILE_* flags. 0 ok. NULL = no model. */
    int (*invoke)(void *ctx, int profile);
    /* Per-op profile of the last profiled RUN, entry i < hello.n_ops: op index in the
     * subgraph, its name (NUL-terminated, static), and the tick sum over the profiled
     * inferences. 0 ok, nonzero: no such entry. NULL = unsupported. */
    int (*op_profile)(void *ctx, uint16_t i, uint16_t *op_index, const char **name,
                      uint64_t *ticks);
    /* Text for an INVOKE_FAILED reply; may be NULL. */
    const char *(*last_error)(void *ctx);
    /* Called before every HELLO reply is built: the firmware may update `hello` (which it
     * owns), e.g. a stack high-water mark in the text. May be NULL. */
    void (*refresh_hello)(void *ctx);
    edp_hello hello;
    /* 1: the input tensors' bytes (tensor().data) survive invoke, so SET_INPUT writes into
     * them and RUN refills nothing (no shadow copy). 0: keep a shadow (EDP_MAX_INPUT_BYTES). */
    uint8_t inputs_persist;
} edp_backend;

typedef struct edp_device {
    const edp_backend *b;
    edp_parser parser;
    uint8_t rx[EDP_FRAME_CAP(EDP_MAX_PAYLOAD)];
#if EDP_MAX_INPUT_BYTES > 0
    uint8_t shadow[EDP_MAX_INPUT_BYTES];
#endif
    uint8_t *in_data[EDP_MAX_INPUTS];  /* where input i is stored: its shadow or its tensor */
    uint32_t in_bytes[EDP_MAX_INPUTS]; /* its size; 0 with in_err set: no room */
    uint32_t in_valid[EDP_MAX_INPUTS]; /* bytes received contiguously from offset 0 */
    uint32_t in_crc[EDP_MAX_INPUTS];   /* CRC-32 of in_data[0 .. in_valid) */
    uint32_t in_room;                  /* HELLO's edp.max_input_bytes */
    uint32_t tx_crc;                   /* CRC-32 of the reply being streamed */
    uint8_t in_err[EDP_MAX_INPUTS];    /* 1: tensor() failed, 2: does not fit the shadow */
    uint8_t n_inputs;                  /* min(hello.n_inputs, EDP_MAX_INPUTS) */
    uint64_t times[EDP_MAX_RUNS];
    uint16_t n_times;
    uint8_t have_times;
    uint8_t have_outputs;
    uint8_t have_profile;
    uint32_t requests; /* frames dispatched (diagnostics) */
} edp_device;

/* Bind the backend and lay out the inputs (calls b->tensor for each input).
 * `b` must outlive `d`. */
void edp_device_init(edp_device *d, const edp_backend *b);

/* Send the unsolicited BOOT frame (call once after reset, after edp_device_init). */
void edp_device_boot(edp_device *d);

/* Feed one received byte; complete requests are dispatched and answered synchronously. */
void edp_device_feed(edp_device *d, uint8_t byte);

/* Dispatch one already-parsed frame (edp_device_feed does this; exposed for tests). Types
 * 0x40..0xFF (replies, BOOT) are ignored, so two peers never answer each other's replies. */
void edp_device_dispatch(edp_device *d, const edp_frame *f);

#ifdef __cplusplus
}
#endif

#endif /* EDP_DEVICE_H */
