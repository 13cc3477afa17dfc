/*
 * tflm_main.cc -- the TFLM benchmark firmware (EDP fw_kind 0).
 *
 * The model, its op resolver and the arena size come from the emit stage (model/, bound in
 * include/model_binding.h). The firmware allocates the tensors once at boot, then serves EDP
 * requests: the host uploads inputs, RUNs N inferences after W warm-ups (ticks around each
 * Invoke(); per-op ticks from a MicroProfiler when asked), and reads the outputs back.
 * The main stack is painted at boot, as in compiled_main.c; HELLO's text carries its
 * high-water mark (stack_peak_bytes), measured when HELLO is asked, so a HELLO after a RUN
 * reports the deepest the stack went since boot (AllocateTensors and the inferences).
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "board.h"
#include "edp_device.h"
#include "fw_common.h"
#include "fw_ticks.h"
#include "model_binding.h"
#include "target_config.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

/* TFLM's DebugLog for cortex_m_generic forwards to a callback registered here (weak: a
 * library built for another TFLM target may not have it). */
extern "C" void RegisterDebugLogCallback(void (*cb)(const char *s)) __attribute__((weak));
/* Start of the heap (linker.ld): HELLO reports how much of it malloc took (newlib's stdio,
 * reachable from TFLM's logging, links malloc in), so that RAM = data + bss + stack peak +
 * heap used is complete. */
extern "C" uint8_t __heap_start__;
extern "C" void *_sbrk(ptrdiff_t incr); /* syscalls.c */

namespace {

constexpr size_t kArenaBytes = EDGEDEPLOY_ARENA_BYTES;
alignas(16) uint8_t g_arena[kArenaBytes];

/* The last TFLM log line (an error, usually), for the text of an INVOKE_FAILED reply. */
char g_last_log[160];

void capture_log(const char *s)
{
    size_t n = strlen(s);
    if (n >= sizeof g_last_log)
        n = sizeof g_last_log - 1;
    memcpy(g_last_log, s, n);
    g_last_log[n] = 0;
}

/* Per-operator ticks: TFLM calls BeginEvent/EndEvent around every operator's Invoke, in
 * execution order, with the operator's name as the tag. Events beyond the main subgraph's
 * operator count (control-flow subgraphs) are not recorded. */
class TickProfiler : public tflite::MicroProfilerInterface {
   public:
    static constexpr uint16_t kMaxOps = EDGEDEPLOY_N_OPS;

    void Start(bool reset)
    {
        if (reset) {
            memset(ticks_, 0, sizeof ticks_);
            memset(names_, 0, sizeof names_);
        }
        next_ = 0;
        enabled_ = true;
    }
    void Stop() { enabled_ = false; }

    uint32_t BeginEvent(const char *tag) override
    {
        if (!enabled_)
            return UINT32_MAX;
        uint32_t handle = next_++;
        if (handle < kMaxOps) {
            names_[handle] = tag;
            start_[handle] = fw_ticks_now();
        }
        return handle;
    }

    void EndEvent(uint32_t handle) override
    {
        if (handle < kMaxOps)
            ticks_[handle] += fw_ticks_now() - start_[handle];
    }

    int Get(uint16_t i, const char **name, uint64_t *ticks) const
    {
        if (i >= kMaxOps)
            return 1;
        *name = names_[i] ? names_[i] : "?";
        *ticks = ticks_[i];
        return 0;
    }

   private:
    bool enabled_ = false;
    uint32_t next_ = 0;
    uint64_t start_[kMaxOps] = {};
    uint64_t ticks_[kMaxOps] = {};
    const char *names_[kMaxOps] = {};
};

TickProfiler g_profiler;
tflite::MicroInterpreter *g_interpreter;
char g_text[640];
size_t g_text_fixed; /* length of the text before the stack lines */
edp_backend g_backend;
edp_device g_dev;

uint8_t edp_dtype(TfLiteType t)
{
    switch (t) {
    case kTfLiteFloat32:
        return EDP_DTYPE_FLOAT32;
    case kTfLiteInt32:
        return EDP_DTYPE_INT32;
    case kTfLiteUInt8:
        return EDP_DTYPE_UINT8;
    case kTfLiteInt16:
        return EDP_DTYPE_INT16;
    case kTfLiteInt8:
        return EDP_DTYPE_INT8;
    default:
        return 0xFF; /* not an EDP type: the host reports it */
    }
}

int be_tensor(void *ctx, int is_output, int index, edp_tensor *out)
{
    (void)ctx;
    tflite::MicroInterpreter *in = g_interpreter;
    size_t count = is_output ? in->outputs_size() : in->inputs_size();
    if (index < 0 || (size_t)index >= count)
        return 1;
    TfLiteTensor *t = is_output ? in->output((size_t)index) : in->input((size_t)index);
    if (t == nullptr)
        return 1;
    memset(out, 0, sizeof *out);
    out->dtype = edp_dtype(t->type);
    int nd = t->dims ? t->dims->size : 0;
    if (nd > EDP_MAX_DIMS)
        return 1;
    out->ndim = (uint8_t)nd;
    for (int i = 0; i < nd; i++)
        out->dims[i] = t->dims->data[i];
    out->scale = t->params.scale;
    out->zero_point = t->params.zero_point;
    out->data = t->data.uint8;
    out->bytes = (uint32_t)t->bytes;
    return 0;
}

int be_invoke(void *ctx, int flags)
{
    (void)ctx;
    if (flags & EDP_PROFILE_ON)
        g_profiler.Start((flags & EDP_PROFILE_RESET) != 0);
    g_last_log[0] = 0;
    TfLiteStatus status = g_interpreter->Invoke();
    g_profiler.Stop();
    return status == kTfLiteOk ? 0 : 1;
}

int be_op_profile(void *ctx, uint16_t i, uint16_t *op_index, const char **name, uint64_t *ticks)
{
    (void)ctx;
    *op_index = i;
    return g_profiler.Get(i, name, ticks);
}

const char *be_last_error(void *ctx)
{
    (void)ctx;
    return g_last_log[0] ? g_last_log : "Invoke() returned an error";
}

/* HELLO: rewrite the stack lines with the high-water mark as of now. */
void be_refresh_hello(void *ctx)
{
    (void)ctx;
    fw_text t = fw_text_stack_lines(g_text, sizeof g_text, g_text_fixed);
    fw_text_add(&t, "heap_used_bytes=");
    fw_text_add_u32(&t, (uint32_t)((uint8_t *)_sbrk(0) - &__heap_start__));
    fw_text_add(&t, "\n");
}

/* Boot failed before the protocol could start: report as text (and to the emulator) and stop.
 * The host sees no BOOT/HELLO, and the text says why. */
[[noreturn]] void boot_failure(const char *what)
{
    static char text[256];
    fw_text t;
    fw_text_init(&t, text, sizeof text);
    fw_text_add(&t, "\r\n!!! EDGEDEPLOY BOOT FAILED: ");
    fw_text_add(&t, what);
    if (g_last_log[0]) {
        fw_text_add(&t, ": ");
        fw_text_add(&t, g_last_log);
    }
    fw_text_add(&t, "\r\n");
    board_report(text);
    board_exit(EDGEDEPLOY_EXIT_BOOT_FAILED);
}

}  // namespace

/* Everything TFLM objects reference from the C++ runtime, without pulling in libstdc++'s
 * exception and demangling machinery (the firmware never deletes or throws). */
extern "C" void __cxa_pure_virtual()
{
    boot_failure("pure virtual call");
}
void operator delete(void *) noexcept {}
void operator delete(void *, size_t) noexcept {}

int main()
{
    fw_stack_paint();
    fw_start();
    if (RegisterDebugLogCallback)
        RegisterDebugLogCallback(capture_log);

    const tflite::Model *model = tflite::GetModel(EDGEDEPLOY_MODEL_DATA);
    if (model->version() != TFLITE_SCHEMA_VERSION)
        boot_failure("model schema version differs from the TFLM library's");
    static EDGEDEPLOY_RESOLVER_TYPE resolver;
    if (EDGEDEPLOY_REGISTER_OPS(resolver) != kTfLiteOk)
        boot_failure("op registration failed");
    static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaBytes, nullptr,
                                                &g_profiler);
    g_interpreter = &interpreter;
    if (interpreter.AllocateTensors() != kTfLiteOk)
        boot_failure("AllocateTensors failed (arena too small?)");

    static const uint8_t sha[32] = {EDGEDEPLOY_MODEL_SHA256};
    edp_hello &h = g_backend.hello;
    h.fw_kind = EDP_FW_TFLM;
    fw_hello_timing(&h);
    memcpy(h.model_sha256, sha, sizeof sha);
    h.arena_bytes = (uint32_t)kArenaBytes;
    h.arena_used_bytes = (uint32_t)interpreter.arena_used_bytes();
    h.n_inputs = (uint8_t)interpreter.inputs_size();
    h.n_outputs = (uint8_t)interpreter.outputs_size();
    h.n_ops = EDGEDEPLOY_N_OPS;

    fw_text t;
    fw_text_init(&t, g_text, sizeof g_text);
    fw_text_kv(&t, "firmware", "edgedeploy TFLM benchmark");
    fw_text_add_common(&t);
    fw_text_kv(&t, "model", EDGEDEPLOY_MODEL_NAME);
    fw_text_kv(&t, "tflm", EDGEDEPLOY_TFLM_DESC);
    fw_text_kv(&t, "ops", EDGEDEPLOY_OPS_TEXT);
    g_text_fixed = t.len;
    h.text = g_text;
    be_refresh_hello(nullptr);

    g_backend.write = fw_link_write;
    g_backend.now = fw_link_now;
    g_backend.tensor = be_tensor;
    g_backend.invoke = be_invoke;
    g_backend.op_profile = be_op_profile;
    g_backend.last_error = be_last_error;
    g_backend.refresh_hello = be_refresh_hello;
    edp_device_init(&g_dev, &g_backend);
    fw_serve(&g_dev);
}
