/*
 * linattn_demo — the smallest complete host of liblinattn: load the plugin by path, negotiate the ABI, register one
 * Qwen3-Next Gated DeltaNet layer, prefill a few sequences in one batch, decode a few steps, print what happened.
 *
 *   linattn_demo [path-to-liblinattn.so]     (default: liblinattn.so next to this program)
 *
 * The backend is the library's choice (CUDA when a device exists; LINATTN_BACKEND=cpu forces the CPU). Inputs are
 * random: a real engine would pass its in-projection outputs and feed `out` to the gated RMSNorm.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, readlink */
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "abi/linattn.h"
#include "integration/common/devmem.h"
#include "integration/common/host_bf16.h"

/* Qwen3-Next-80B-A3B's linear-attention layer. */
enum { QK_HEADS = 16, V_HEADS = 32, HEAD_DIM = 128, CONV_WIDTH = 4 };
enum { CHANNELS = 2 * QK_HEADS * HEAD_DIM + V_HEADS * HEAD_DIM, OUT_WIDTH = V_HEADS * HEAD_DIM };
enum { NUM_SEQS = 3, DECODE_STEPS = 4 };
static const int32_t prefill_lengths[NUM_SEQS] = {17, 100, 250};

typedef struct demo {
    const linattn_api *api;
    linattn_context *context;
    linattn_layer *layer;
    linattn_pool *pool;
    linattn_plan *plan;
    int32_t slots[NUM_SEQS];
    float *weights;
} demo;

static int failed(const demo *d, linattn_status status, const char *what)
{
    if (status == LINATTN_OK) return 0;
    fprintf(stderr, "%s failed: status %d: %s\n", what, (int)status, d->api->last_error_message());
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static unsigned long long random_state = 0x2545F4914F6CDD1Dull;
static float random_uniform(float lo, float hi)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return lo + (hi - lo) * (float)(random_state >> 40) / (float)(1ull << 24);
}

/* The plugin next to this executable, as an engine would ship it. */
static void default_library_path(char *path, size_t size)
{
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    if (length <= 0) {
        snprintf(path, size, "./liblinattn.so");
        return;
    }
    self[length] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(path, size, "%s/liblinattn.so", self);
}

static const linattn_api *load(const char *path)
{
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return NULL;
    }
    void *symbol = dlsym(library, "linattn_get_api");
    linattn_get_api_fn get_api;
    if (!symbol) {
        fprintf(stderr, "%s does not export linattn_get_api\n", path);
        return NULL;
    }
    memcpy(&get_api, &symbol, sizeof get_api);
    const linattn_api *api = NULL;
    linattn_status status = get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &api);
    if (status != LINATTN_OK) {
        fprintf(stderr, "the library refused ABI %d.%d (status %d)\n", LINATTN_ABI_VERSION_MAJOR,
                LINATTN_ABI_VERSION_MINOR, (int)status);
        return NULL;
    }
    printf("loaded   %s: %s, ABI %u.%u (host built for %d.%d)\n", path, api->version_string(), api->abi_major,
           api->abi_minor, LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR);
    return api;
}

static int open_context(demo *d)
{
    linattn_context_desc desc = {sizeof desc, LINATTN_BACKEND_AUTO, 0};
    if (failed(d, d->api->context_create(&desc, &d->context), "context_create")) return 0;
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    if (failed(d, d->api->query_capabilities(d->context, &caps), "query_capabilities")) return 0;
    printf("device   %s backend on \"%s\": layers%s%s, state%s%s, checkpoints every %d tokens\n",
           caps.backend == LINATTN_BACKEND_CUDA ? "cuda" : "cpu", caps.device_name,
           caps.layer_kinds & (1u << LINATTN_LAYER_GATED_DELTANET) ? " GatedDeltaNet" : "",
           caps.layer_kinds & (1u << LINATTN_LAYER_SIMPLE_GLA) ? " SimpleGLA" : "",
           caps.state_dtypes & (1u << LINATTN_DTYPE_F32) ? " f32" : "",
           caps.state_dtypes & (1u << LINATTN_DTYPE_BF16) ? " bf16" : "", caps.checkpoint_alignment);
    char why[256];
    if (devmem_setup(caps.backend, why, sizeof why) != 0) {
        fprintf(stderr, "%s\n", why);
        return 0;
    }
    return 1;
}

static int register_layer(demo *d)
{
    size_t count = (size_t)CHANNELS * CONV_WIDTH + CHANNELS + 2 * V_HEADS;
    d->weights = malloc(count * sizeof(float));
    if (!d->weights) return 0;
    for (size_t i = 0; i < count; ++i) d->weights[i] = random_uniform(-0.5f, 0.5f);
    float *A_log = d->weights + (size_t)CHANNELS * (CONV_WIDTH + 1);
    for (int h = 0; h < V_HEADS; ++h) A_log[h] = logf(random_uniform(0.01f, 0.5f));
    linattn_layer_desc desc = {
        .struct_size = sizeof desc,
        .kind = LINATTN_LAYER_GATED_DELTANET,
        .num_qk_heads = QK_HEADS,
        .num_v_heads = V_HEADS,
        .head_dim_qk = HEAD_DIM,
        .head_dim_v = HEAD_DIM,
        .conv_width = CONV_WIDTH,
        .qk_l2norm = 1,
        .state_dtype = LINATTN_DTYPE_F32,
        .scale = 0.0f,
        .conv_weight = d->weights,
        .conv_bias = d->weights + (size_t)CHANNELS * CONV_WIDTH,
        .A_log = A_log,
        .dt_bias = A_log + V_HEADS,
    };
    linattn_layer_info info = {sizeof info, 0, 0, 0};
    if (failed(d, d->api->layer_create(d->context, &desc, &d->layer, &info), "layer_create")) return 0;
    printf("layer    Gated DeltaNet %d q/k heads, %d v heads, d %d, conv %d: %.2f MiB state per sequence "
           "(%.2f MiB recurrent + %.1f KiB conv)\n",
           QK_HEADS, V_HEADS, HEAD_DIM, CONV_WIDTH, (double)info.state_bytes / (1 << 20),
           (double)info.recurrent_bytes / (1 << 20), (double)info.conv_bytes / 1024);
    linattn_pool_desc pool = {sizeof pool, 1, &d->layer, NUM_SEQS + 1, 0};
    linattn_plan_desc plan = {sizeof plan, NUM_SEQS, 0, 512};
    if (failed(d, d->api->pool_create(d->context, &pool, &d->pool), "pool_create") ||
        failed(d, d->api->plan_create(d->pool, &plan, &d->plan), "plan_create"))
        return 0;
    for (int s = 0; s < NUM_SEQS; ++s)
        if (failed(d, d->api->slot_alloc(d->pool, &d->slots[s]), "slot_alloc")) return 0;
    return 1;
}

/* One model step: the batch's tokens packed one sequence after another, random inputs, one forward. */
static int run_step(demo *d, const int32_t *counts, const int64_t *starts, linattn_init init, double *norm)
{
    linattn_seq_desc seqs[NUM_SEQS];
    int64_t tokens = 0;
    for (int s = 0; s < NUM_SEQS; ++s) {
        seqs[s] = (linattn_seq_desc){tokens, starts[s], counts[s], d->slots[s], init, 0};
        tokens += counts[s];
    }
    size_t qkv_count = (size_t)tokens * CHANNELS, gate_count = (size_t)tokens * V_HEADS;
    size_t out_count = (size_t)tokens * OUT_WIDTH;
    uint16_t *host = malloc((qkv_count + 2 * gate_count + out_count) * sizeof(uint16_t));
    void *qkv = devmem_alloc(qkv_count * 2), *a = devmem_alloc(gate_count * 2), *b = devmem_alloc(gate_count * 2);
    void *out = devmem_alloc(out_count * 2);
    int ok = host && qkv && a && b && out;
    for (size_t i = 0; ok && i < qkv_count + 2 * gate_count; ++i)
        host[i] = host_float_to_bf16(random_uniform(-1.0f, 1.0f));
    ok = ok && devmem_upload(qkv, host, qkv_count * 2, NULL) == 0 &&
         devmem_upload(a, host + qkv_count, gate_count * 2, NULL) == 0 &&
         devmem_upload(b, host + qkv_count + gate_count, gate_count * 2, NULL) == 0;
    linattn_batch_desc batch = {sizeof batch, sizeof(linattn_seq_desc), sizeof(linattn_checkpoint_desc),
                                NUM_SEQS, seqs, tokens, 0, NULL};
    linattn_forward_args args = {sizeof args, LINATTN_DTYPE_BF16, qkv, a, b, out, 0, 0, 0, 0};
    ok = ok && !failed(d, d->api->plan_set_batch(d->plan, &batch, NULL), "plan_set_batch") &&
         !failed(d, d->api->forward(d->layer, d->plan, &args, NULL), "forward");
    uint16_t *result = host ? host + qkv_count + 2 * gate_count : NULL;
    ok = ok && devmem_download(result, out, out_count * 2, NULL) == 0;
    double sum = 0.0;
    for (size_t i = 0; ok && i < out_count; ++i) {
        double value = host_bf16_to_float(result[i]);
        sum += value * value;
    }
    *norm = sqrt(sum);
    devmem_free(qkv);
    devmem_free(a);
    devmem_free(b);
    devmem_free(out);
    free(host);
    return ok;
}

static int prefill_and_decode(demo *d)
{
    int64_t starts[NUM_SEQS] = {0, 0, 0}, total = 0;
    int32_t ones[NUM_SEQS];
    for (int s = 0; s < NUM_SEQS; ++s) {
        total += prefill_lengths[s];
        ones[s] = 1;
    }
    double norm = 0.0, start = now();
    if (!run_step(d, prefill_lengths, starts, LINATTN_INIT_ZERO, &norm)) return 0;
    double seconds = now() - start;
    printf("prefill  %d sequences of %d, %d, %d tokens in one batch: %lld tokens in %.3f s (%.0f tokens/s), "
           "output norm %.3f\n",
           NUM_SEQS, prefill_lengths[0], prefill_lengths[1], prefill_lengths[2], (long long)total, seconds,
           (double)total / seconds, norm);
    start = now();
    for (int step = 0; step < DECODE_STEPS; ++step) {
        for (int s = 0; s < NUM_SEQS; ++s) starts[s] = prefill_lengths[s] + step;
        if (!run_step(d, ones, starts, LINATTN_INIT_CONTINUE, &norm)) return 0;
    }
    seconds = now() - start;
    printf("decode   %d steps of %d sequences x 1 token: %.2f ms per step, last output norm %.3f\n", DECODE_STEPS,
           NUM_SEQS, 1e3 * seconds / DECODE_STEPS, norm);
    return 1;
}

static void print_stats(demo *d)
{
    linattn_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    linattn_pool_info pool = {sizeof pool, 0, 0, 0};
    if (failed(d, d->api->get_stats(d->context, &stats), "get_stats") ||
        failed(d, d->api->pool_info(d->pool, &pool), "pool_info"))
        return;
    printf("stats    %llu forward calls, %llu tokens; pool %d of %d slots in use, state %.1f of %.1f MiB in use\n",
           (unsigned long long)stats.forward_calls, (unsigned long long)stats.tokens_processed, pool.slots_in_use,
           pool.capacity, (double)stats.state_bytes_in_use / (1 << 20),
           (double)stats.state_bytes_reserved / (1 << 20));
}

int main(int argc, char **argv)
{
    char path[PATH_MAX + 32];
    if (argc > 1)
        snprintf(path, sizeof path, "%s", argv[1]);
    else
        default_library_path(path, sizeof path);
    demo d;
    memset(&d, 0, sizeof d);
    if (!(d.api = load(path))) return 1;
    int ok = open_context(&d) && register_layer(&d) && prefill_and_decode(&d);
    if (ok) print_stats(&d);
    if (d.context) d.api->context_destroy(d.context); /* releases the layer, pool and plan too */
    free(d.weights);
    return ok ? 0 : 1;
}
