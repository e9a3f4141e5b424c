/*
 * chunk_prefill_timing.c — times the chunked CUDA prefill (kernels/cuda/chunk_prefill.cu) on Qwen3-Next's GDN shape
 * (16 q/k heads, 32 v heads, d = 128, conv width 4, float32 state): one sequence of 8192 tokens, 4 × 8192 and
 * 64 × 1024, and simple GLA. Each configuration is captured once in a CUDA
 * graph and replayed; CUDA events around every replay give the median (and min/max) over the timed replays.
 *
 * Inputs are random (never zeros); every sequence starts from a random state in another slot, so replays are
 * identical. As a full-size check it also runs the token-sequential kernel (la_cuda_forward, float32 throughout)
 * on the 8192-token case and prints the relative difference of outputs and final states.
 *
 * Usage: chunk_prefill_timing [timed replays, default 20]
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/cuda/chunk_prefill.h"
#include "kernels/cuda/la_cuda.h"

#define CHECK(call)                                                                                                    \
    do {                                                                                                               \
        cudaError_t err_ = (cudaError_t)(call);                                                                        \
        if (err_ != cudaSuccess) {                                                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_));                   \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

enum { HK = 16, HV = 32, D = 128, WIDTH = 4, MAX_TOKENS = 64 * 1024, MAX_SEQS = 64, WARMUP = 3 };
#define CHANNELS (2 * HK * D + HV * D)

static uint64_t rng_state = 0x1234abcdULL;
static float uniform(float lo, float hi)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 11) * 0x1p-53);
}

static void *device_random_bf16(size_t n, float lo, float hi)
{
    uint16_t *host = malloc(n * sizeof *host);
    if (!host) exit(1);
    for (size_t i = 0; i < n; i++) host[i] = float_to_bf16(uniform(lo, hi));
    void *dev;
    CHECK(cudaMalloc(&dev, n * sizeof *host));
    CHECK(cudaMemcpy(dev, host, n * sizeof *host, cudaMemcpyHostToDevice));
    free(host);
    return dev;
}

static void *device_random_f32(size_t n, float lo, float hi)
{
    float *host = malloc(n * sizeof *host);
    if (!host) exit(1);
    for (size_t i = 0; i < n; i++) host[i] = uniform(lo, hi);
    void *dev;
    CHECK(cudaMalloc(&dev, n * sizeof *host));
    CHECK(cudaMemcpy(dev, host, n * sizeof *host, cudaMemcpyHostToDevice));
    free(host);
    return dev;
}

/* Device buffers shared by every configuration (sized for the largest). */
typedef struct buffers {
    la_layer gdn, gla;
    la_io io;
    la_state_view state; /* slots [0, MAX_SEQS): final states; [MAX_SEQS, 2·MAX_SEQS): initial states */
    la_seq *seqs;
    void *workspace; /* for MAX_TOKENS rows and MAX_SEQS sequences, as a plan of those capacities holds */
    uint64_t workspace_bytes;
} buffers;

static void make_buffers(buffers *b)
{
    la_layer *L = &b->gdn;
    memset(L, 0, sizeof *L);
    L->kind = LA_KIND_GATED_DELTANET;
    L->hk = HK, L->hv = HV, L->dk = D, L->dv = D, L->conv_width = WIDTH, L->qk_l2norm = 1;
    L->state_dtype = LA_STATE_F32;
    L->scale = 1.0f / sqrtf((float)D);
    L->conv_weight = device_random_f32((size_t)CHANNELS * WIDTH, -0.5f, 0.5f);
    L->conv_bias = device_random_f32(CHANNELS, -0.2f, 0.2f);
    L->A_log = device_random_f32(HV, -2.0f, 0.5f);
    L->dt_bias = device_random_f32(HV, -1.0f, 1.0f);
    b->gla = *L;
    b->gla.kind = LA_KIND_SIMPLE_GLA;

    la_io *io = &b->io;
    io->qkv_stride = CHANNELS, io->a_stride = HV, io->b_stride = HV, io->out_stride = HV * D;
    io->qkv = device_random_bf16((size_t)MAX_TOKENS * CHANNELS, -1.0f, 1.0f);
    io->a = device_random_bf16((size_t)MAX_TOKENS * HV, -3.0f, 1.0f);
    io->b = device_random_bf16((size_t)MAX_TOKENS * HV, -3.0f, 3.0f);
    CHECK(cudaMalloc((void **)&io->out, (size_t)MAX_TOKENS * HV * D * sizeof(uint16_t)));

    b->state.capacity = 2 * MAX_SEQS;
    b->state.recurrent = device_random_f32((size_t)2 * MAX_SEQS * HV * D * D, -0.5f, 0.5f);
    b->state.conv = device_random_bf16((size_t)2 * MAX_SEQS * (WIDTH - 1) * CHANNELS, -1.0f, 1.0f);
    CHECK(cudaMalloc((void **)&b->seqs, MAX_SEQS * sizeof(la_seq)));
    b->workspace_bytes = la_cuda_chunk_prefill_workspace_bytes(L, MAX_TOKENS, MAX_SEQS);
    CHECK(cudaMalloc(&b->workspace, b->workspace_bytes));
}

/* num_seqs sequences of `tokens` each, back to back, each from the random state of slot MAX_SEQS + i. */
static la_batch make_batch(const buffers *b, int32_t num_seqs, int32_t tokens)
{
    la_seq host[MAX_SEQS];
    memset(host, 0, sizeof host);
    for (int32_t i = 0; i < num_seqs; i++) {
        host[i].token_offset = (int64_t)i * tokens;
        host[i].start_position = 0;
        host[i].num_tokens = tokens;
        host[i].state_slot = i;
        host[i].init_slot = MAX_SEQS + i;
    }
    CHECK(cudaMemcpy(b->seqs, host, sizeof host, cudaMemcpyHostToDevice));
    la_batch batch = {num_seqs, 0, (int64_t)num_seqs * tokens, b->seqs, NULL, tokens, 0, b->workspace,
                      b->workspace_bytes};
    return batch;
}

static int compare_floats(const void *x, const void *y)
{
    float a = *(const float *)x, c = *(const float *)y;
    return (a > c) - (a < c);
}

/* Median over `runs` graph replays of one chunked launch, in microseconds. */
static double time_chunked(const buffers *b, const la_layer *layer, int32_t num_seqs, int32_t tokens, int runs)
{
    la_batch batch = make_batch(b, num_seqs, tokens);
    cudaStream_t stream;
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    CHECK(la_cuda_chunk_prefill(layer, &batch, &b->io, &b->state, stream));
    CHECK(cudaStreamEndCapture(stream, &graph));
    CHECK(cudaGraphInstantiate(&exec, graph, 0));

    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < WARMUP; i++) CHECK(cudaGraphLaunch(exec, stream));
    float *ms = malloc((size_t)runs * sizeof *ms);
    for (int i = 0; i < runs; i++) {
        CHECK(cudaEventRecord(start, stream));
        CHECK(cudaGraphLaunch(exec, stream));
        CHECK(cudaEventRecord(stop, stream));
        CHECK(cudaEventSynchronize(stop));
        CHECK(cudaEventElapsedTime(&ms[i], start, stop));
    }
    qsort(ms, (size_t)runs, sizeof *ms, compare_floats);
    double median_us = ms[runs / 2] * 1e3;
    printf("%-5s %3d x %5d  median %9.1f us  (min %9.1f, max %9.1f)  %6.2f M tok/s\n",
           layer->kind == LA_KIND_GATED_DELTANET ? "GDN" : "GLA", num_seqs, tokens, median_us, ms[0] * 1e3,
           ms[runs - 1] * 1e3, (double)num_seqs * tokens / median_us);
    fflush(stdout);
    free(ms);
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    CHECK(cudaGraphExecDestroy(exec));
    CHECK(cudaGraphDestroy(graph));
    CHECK(cudaStreamDestroy(stream));
    return median_us;
}

static double rel_diff_bf16(const uint16_t *got, const uint16_t *want, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double g = bf16_to_float(got[i]), w = bf16_to_float(want[i]);
        d2 += (g - w) * (g - w), r2 += w * w;
    }
    return sqrt(d2 / r2);
}

static double rel_diff_f32(const float *got, const float *want, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) d2 += ((double)got[i] - want[i]) * ((double)got[i] - want[i]), r2 += (double)want[i] * want[i];
    return sqrt(d2 / r2);
}

/* One 8192-token sequence through both kernels from the same state: outputs and final states side by side. */
static void check_against_sequential(const buffers *b, const la_layer *layer)
{
    const int32_t tokens = 8192;
    la_batch batch = make_batch(b, 1, tokens);
    size_t out_n = (size_t)tokens * HV * D, state_n = (size_t)HV * D * D;
    uint16_t *out_chunked = malloc(out_n * 2), *out_seq = malloc(out_n * 2);
    float *state_chunked = malloc(state_n * 4), *state_seq = malloc(state_n * 4);

    CHECK(la_cuda_chunk_prefill(layer, &batch, &b->io, &b->state, 0));
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(out_chunked, b->io.out, out_n * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(state_chunked, b->state.recurrent, state_n * 4, cudaMemcpyDeviceToHost));

    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    CHECK(cudaEventRecord(start, 0));
    batch.max_seq_tokens = 1; /* the hint that keeps every sequence on the token-sequential kernel */
    CHECK(la_cuda_forward(layer, &batch, &b->io, &b->state, 0));
    CHECK(cudaEventRecord(stop, 0));
    CHECK(cudaEventSynchronize(stop));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    CHECK(cudaMemcpy(out_seq, b->io.out, out_n * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(state_seq, b->state.recurrent, state_n * 4, cudaMemcpyDeviceToHost));
    printf("%-5s 1 x 8192 vs token-sequential la_cuda_forward (%.1f us, one run): rel diff out %.3g, state %.3g\n",
           layer->kind == LA_KIND_GATED_DELTANET ? "GDN" : "GLA", ms * 1e3, rel_diff_bf16(out_chunked, out_seq, out_n),
           rel_diff_f32(state_chunked, state_seq, state_n));
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    free(out_chunked), free(out_seq), free(state_chunked), free(state_seq);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    if (runs < 1) runs = 1;
    struct cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs; hk %d hv %d d %d conv %d, f32 state; %d timed graph replays each\n", prop.name,
           prop.multiProcessorCount, HK, HV, D, WIDTH, runs);
    buffers b;
    make_buffers(&b);

    check_against_sequential(&b, &b.gdn);
    check_against_sequential(&b, &b.gla);
    const struct {
        int32_t seqs, tokens;
    } shapes[] = {{1, 8192}, {4, 8192}, {64, 1024}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        time_chunked(&b, &b.gdn, shapes[s].seqs, shapes[s].tokens, runs);
    time_chunked(&b, &b.gla, 1, 8192, runs);
    time_chunked(&b, &b.gdn, 1, 8192, runs); /* the first configuration again: run-to-run spread */
    return 0;
}
