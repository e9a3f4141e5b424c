/*
 * kernel_case.h — shared scaffolding of the CUDA kernel tests (tests/test_kernel_*.c; header-only, so every test
 * stays one translation unit): random batches on the host, their copy in device memory, the CPU reference's results
 * for them, and the comparison of a kernel's results with the reference's.
 *
 * A fresh seed per case is logged; LINATTN_TEST_SEED=<seed> replays it. The comparison checks, by relative error
 * ‖gpu − ref‖ / ‖ref‖, the outputs, the final and the checkpointed recurrent states; the output buffer is poisoned
 * and must stay so outside the rows of real sequences and outside the row width; slots nobody writes must keep their
 * recurrent state bitwise; conv windows must match exactly what the kernel is expected to leave (conv_windows).
 *
 * Uses clock_gettime and getpid: the including file defines _POSIX_C_SOURCE before any header.
 */
#ifndef LINATTN_TESTS_KERNEL_CASE_H
#define LINATTN_TESTS_KERNEL_CASE_H

#include "splitmix.h"
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/bf16.h"
#include "kernels/cuda/chunk_prefill.h"
#include "kernels/reference/la_reference.h"

#define TOLERANCE 5e-3
#define POISON 0xFFFFu
#define MAX_ALLOCS 16
#define COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

#define CUDA_OK(call)                                                                                                  \
    do {                                                                                                               \
        cudaError_t err_ = (call);                                                                                     \
        cr_assert_eq(err_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(err_));                                    \
    } while (0)

static inline void require_device(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) cr_skip_test("no CUDA device");
}

/* ---- random numbers (splitmix64) --------------------------------------------------------------------------- */

typedef test_rng rng;

static inline float rng_uniform(rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rng_next(r) >> 11) * 0x1p-53);
}

static inline rng fresh_rng(void)
{
    const char *fixed = getenv("LINATTN_TEST_SEED");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rng r = {(uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ ((uint64_t)getpid() << 48)};
    uint64_t seed = fixed ? strtoull(fixed, NULL, 0) : rng_next(&r);
    cr_log_info("seed %llu (replay with LINATTN_TEST_SEED=%llu)", (unsigned long long)seed,
                (unsigned long long)seed);
    r.state = seed;
    return r;
}

/* ---- case description ------------------------------------------------------------------------------------ */

typedef enum { SEQ_ZERO, SEQ_CONTINUE, SEQ_FROM_SLOT, SEQ_PADDING } seq_init;

typedef struct seq_spec {
    int32_t num_tokens;
    seq_init init;
    int64_t start_position;   /* ignored for SEQ_ZERO (0) */
    int32_t checkpoint_every; /* > 0: a checkpoint at every multiple of it inside the step */
    int checkpoint_at_end;    /* also one after the last token */
} seq_spec;

typedef struct layer_spec {
    la_kind kind;
    int32_t hk, hv, dk, dv, conv_width, qk_l2norm;
    la_state_dtype state_dtype;
    int constant_decay; /* simple GLA with a = NULL */
} layer_spec;

/* How a batch's rows lie in memory: the elements after each row of every input and output (strides wider than
 * the rows), and up to how many unused rows lie between sequences. */
typedef struct row_layout {
    int32_t qkv_pad, a_pad, b_pad, out_pad;
    int32_t max_gap_rows;
} row_layout;

enum { ROLE_UNTOUCHED, ROLE_FINAL, ROLE_CHECKPOINT };

/* One batch on the host: weights, inputs, the initial pool, and what each slot and row is expected to receive. */
typedef struct test_case {
    la_layer layer;
    int32_t channels;
    la_batch batch;
    la_seq *seqs;
    la_checkpoint *checkpoints;
    la_io io;
    int64_t rows;
    int32_t capacity;
    size_t state_elem_bytes;
    uint64_t recurrent_per_slot, conv_per_slot; /* elements */
    void *recurrent;                            /* initial pool [capacity][hv][dk][dv] */
    uint16_t *conv;                             /* [capacity][W-1][C] or NULL */
    uint8_t *slot_role;
    uint8_t *row_owned; /* rows whose outputs the kernel must write */
} test_case;

static inline void *checked_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    cr_assert_not_null(p, "out of host memory (%zu bytes)", bytes);
    return p;
}

static inline uint16_t *random_bf16(rng *r, size_t n, float lo, float hi)
{
    uint16_t *p = checked_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = float_to_bf16(rng_uniform(r, lo, hi));
    return p;
}

static inline float *random_f32(rng *r, size_t n, float lo, float hi)
{
    float *p = checked_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = rng_uniform(r, lo, hi);
    return p;
}

static inline void build_layer(const layer_spec *ls, rng *r, test_case *tc)
{
    la_layer *L = &tc->layer;
    memset(L, 0, sizeof *L);
    L->kind = ls->kind;
    L->hk = ls->hk, L->hv = ls->hv, L->dk = ls->dk, L->dv = ls->dv;
    L->conv_width = ls->conv_width;
    L->qk_l2norm = ls->qk_l2norm;
    L->state_dtype = ls->state_dtype;
    L->scale = 1.0f / sqrtf((float)ls->dk);
    tc->channels = la_channels(L);
    if (ls->conv_width > 0) {
        L->conv_weight = random_f32(r, (size_t)tc->channels * ls->conv_width, -0.5f, 0.5f);
        L->conv_bias = rng_next(r) % 2 ? random_f32(r, (size_t)tc->channels, -0.2f, 0.2f) : NULL;
    }
    /* per-token decays e^g between ~0.03 and ~0.998: long and short memories */
    L->A_log = ls->constant_decay ? random_f32(r, (size_t)ls->hv, -5.0f, -1.0f)
                                  : random_f32(r, (size_t)ls->hv, -2.0f, 0.5f);
    L->dt_bias = rng_next(r) % 2 ? random_f32(r, (size_t)ls->hv, -1.0f, 1.0f) : NULL;
    tc->state_elem_bytes = ls->state_dtype == LA_STATE_F32 ? sizeof(float) : sizeof(uint16_t);
    tc->recurrent_per_slot = la_recurrent_elems(L);
    tc->conv_per_slot = la_conv_elems(L);
}

static inline int64_t spec_start(const seq_spec *s) { return s->init == SEQ_ZERO ? 0 : s->start_position; }

static inline int wants_checkpoint(const seq_spec *s, int64_t position)
{
    int64_t end = spec_start(s) + s->num_tokens;
    return (s->checkpoint_every > 0 && position % s->checkpoint_every == 0) ||
           (s->checkpoint_at_end && position == end);
}

static inline int32_t count_checkpoints(const seq_spec *s)
{
    if (s->init == SEQ_PADDING) return 0;
    int32_t n = 0;
    for (int64_t p = spec_start(s) + 1; p <= spec_start(s) + s->num_tokens; p++) n += wants_checkpoint(s, p);
    return n;
}

/* Slots in a random order (plus two bystanders nobody touches), rows with random gaps between sequences. */
static inline void build_batch(const seq_spec *specs, int32_t num_seqs, int32_t max_gap_rows, rng *r, test_case *tc)
{
    int32_t num_checkpoints = 0, slots_needed = 2;
    for (int32_t i = 0; i < num_seqs; i++) {
        num_checkpoints += count_checkpoints(&specs[i]);
        slots_needed += (specs[i].init != SEQ_PADDING) + (specs[i].init == SEQ_FROM_SLOT);
    }
    slots_needed += num_checkpoints;
    tc->capacity = slots_needed;
    int32_t *order = checked_malloc((size_t)slots_needed * sizeof *order);
    for (int32_t i = 0; i < slots_needed; i++) order[i] = i;
    for (int32_t i = slots_needed - 1; i > 0; i--) {
        int32_t j = (int32_t)(rng_next(r) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    tc->slot_role = checked_malloc((size_t)slots_needed);
    memset(tc->slot_role, ROLE_UNTOUCHED, (size_t)slots_needed);
    tc->seqs = checked_malloc((size_t)num_seqs * sizeof *tc->seqs);
    tc->checkpoints = checked_malloc((size_t)(num_checkpoints ? num_checkpoints : 1) * sizeof *tc->checkpoints);

    int32_t next_slot = 0, cp = 0;
    int64_t row = (int64_t)(rng_next(r) % 2);
    for (int32_t i = 0; i < num_seqs; i++) {
        const seq_spec *s = &specs[i];
        la_seq *q = &tc->seqs[i];
        memset(q, 0, sizeof *q);
        q->token_offset = row;
        q->num_tokens = s->num_tokens;
        q->start_position = spec_start(s);
        q->checkpoint_begin = cp;
        row += s->num_tokens + (int64_t)(rng_next(r) % (uint64_t)(max_gap_rows + 1));
        if (s->init == SEQ_PADDING) {
            q->state_slot = -1;
            q->init_slot = -1;
            continue;
        }
        q->state_slot = order[next_slot++];
        tc->slot_role[q->state_slot] = ROLE_FINAL;
        q->init_slot = s->init == SEQ_ZERO ? -1 : s->init == SEQ_CONTINUE ? q->state_slot : order[next_slot++];
        for (int64_t p = q->start_position + 1; p <= q->start_position + s->num_tokens; p++) {
            if (!wants_checkpoint(s, p)) continue;
            la_checkpoint *c = &tc->checkpoints[cp++];
            c->position = p;
            c->seq = i;
            c->slot = order[next_slot++];
            tc->slot_role[c->slot] = ROLE_CHECKPOINT;
        }
        q->checkpoint_count = cp - q->checkpoint_begin;
    }
    cr_assert_eq(cp, num_checkpoints);
    free(order);
    tc->rows = row;
    tc->batch.num_seqs = num_seqs;
    tc->batch.num_checkpoints = num_checkpoints;
    tc->batch.num_tokens = row;
    tc->batch.seqs = tc->seqs;
    tc->batch.max_seq_tokens = 0;
    for (int32_t i = 0; i < num_seqs; i++)
        if (tc->seqs[i].state_slot >= 0 && tc->seqs[i].num_tokens > tc->batch.max_seq_tokens)
            tc->batch.max_seq_tokens = tc->seqs[i].num_tokens;
    tc->batch.checkpoints = tc->checkpoints;

    tc->row_owned = checked_malloc((size_t)(row ? row : 1));
    memset(tc->row_owned, 0, (size_t)(row ? row : 1));
    for (int32_t i = 0; i < num_seqs; i++)
        if (tc->seqs[i].state_slot >= 0)
            memset(tc->row_owned + tc->seqs[i].token_offset, 1, (size_t)tc->seqs[i].num_tokens);
}

/* Inputs in the given row layout, a poisoned output, and a pool full of random state. */
static inline void build_io_and_pool(const layer_spec *ls, const row_layout *layout, rng *r, test_case *tc)
{
    la_io *io = &tc->io;
    size_t rows = (size_t)(tc->rows ? tc->rows : 1);
    io->qkv_stride = tc->channels + layout->qkv_pad;
    io->a_stride = ls->hv + layout->a_pad;
    io->b_stride = ls->hv + layout->b_pad;
    io->out_stride = (int64_t)ls->hv * ls->dv + layout->out_pad;
    io->qkv = random_bf16(r, rows * (size_t)io->qkv_stride, -1.0f, 1.0f);
    io->a = ls->constant_decay ? NULL : random_bf16(r, rows * (size_t)io->a_stride, -3.0f, 1.0f);
    io->b = ls->kind == LA_KIND_GATED_DELTANET ? random_bf16(r, rows * (size_t)io->b_stride, -3.0f, 3.0f) : NULL;
    uint16_t *out = checked_malloc(rows * (size_t)io->out_stride * sizeof *out);
    memset(out, 0xff, rows * (size_t)io->out_stride * sizeof *out);
    io->out = out;

    size_t rec_elems = tc->recurrent_per_slot * (size_t)tc->capacity;
    tc->recurrent = ls->state_dtype == LA_STATE_F32 ? (void *)random_f32(r, rec_elems, -0.5f, 0.5f)
                                                    : (void *)random_bf16(r, rec_elems, -0.5f, 0.5f);
    tc->conv = tc->conv_per_slot ? random_bf16(r, tc->conv_per_slot * (size_t)tc->capacity, -1.0f, 1.0f) : NULL;
}

static inline void build_case(const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                              const row_layout *layout, rng *r, test_case *tc)
{
    memset(tc, 0, sizeof *tc);
    build_layer(ls, r, tc);
    build_batch(specs, num_seqs, layout->max_gap_rows, r, tc);
    build_io_and_pool(ls, layout, r, tc);
}

static inline void free_case(test_case *tc)
{
    free((void *)tc->layer.conv_weight);
    free((void *)tc->layer.conv_bias);
    free((void *)tc->layer.A_log);
    free((void *)tc->layer.dt_bias);
    free(tc->seqs);
    free(tc->checkpoints);
    free((void *)tc->io.qkv);
    free((void *)tc->io.a);
    free((void *)tc->io.b);
    free(tc->io.out);
    free(tc->recurrent);
    free(tc->conv);
    free(tc->slot_role);
    free(tc->row_owned);
}

static inline size_t out_bytes(const test_case *tc)
{
    return (size_t)(tc->rows ? tc->rows : 1) * tc->io.out_stride * 2;
}
static inline size_t recurrent_bytes(const test_case *tc)
{
    return tc->recurrent_per_slot * (size_t)tc->capacity * tc->state_elem_bytes;
}
static inline size_t conv_bytes(const test_case *tc)
{
    return tc->conv_per_slot * (size_t)tc->capacity * sizeof(uint16_t);
}

/* ---- the device copy -------------------------------------------------------------------------------------- */

typedef struct device_case {
    la_layer layer;
    la_batch batch;
    la_io io;
    la_state_view state;
    la_seq *seqs; /* batch.seqs, writable: a test may replace the batch under a captured graph */
    void *allocs[MAX_ALLOCS];
    int num_allocs;
} device_case;

typedef struct results {
    uint16_t *out;
    void *recurrent;
    uint16_t *conv;
} results;

/* Device memory freed with the case. */
static inline void *device_alloc(device_case *d, size_t bytes)
{
    cr_assert_lt(d->num_allocs, MAX_ALLOCS);
    void *p = NULL;
    CUDA_OK(cudaMalloc(&p, bytes));
    d->allocs[d->num_allocs++] = p;
    return p;
}

static inline void *upload(device_case *d, const void *src, size_t bytes)
{
    if (!src || bytes == 0) return NULL;
    void *p = device_alloc(d, bytes);
    CUDA_OK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    return p;
}

static inline void upload_case(const test_case *tc, device_case *d)
{
    memset(d, 0, sizeof *d);
    const la_layer *L = &tc->layer;
    size_t C = (size_t)tc->channels, rows = (size_t)(tc->rows ? tc->rows : 1);
    d->layer = *L;
    d->layer.conv_weight = upload(d, L->conv_weight, C * (size_t)L->conv_width * sizeof(float));
    d->layer.conv_bias = upload(d, L->conv_bias, C * sizeof(float));
    d->layer.A_log = upload(d, L->A_log, (size_t)L->hv * sizeof(float));
    d->layer.dt_bias = upload(d, L->dt_bias, (size_t)L->hv * sizeof(float));

    d->batch = tc->batch;
    d->seqs = upload(d, tc->seqs, (size_t)tc->batch.num_seqs * sizeof(la_seq));
    d->batch.seqs = d->seqs;
    d->batch.checkpoints = upload(d, tc->checkpoints, (size_t)tc->batch.num_checkpoints * sizeof(la_checkpoint));

    d->io = tc->io;
    d->io.qkv = upload(d, tc->io.qkv, rows * (size_t)tc->io.qkv_stride * 2);
    d->io.a = upload(d, tc->io.a, rows * (size_t)tc->io.a_stride * 2);
    d->io.b = upload(d, tc->io.b, rows * (size_t)tc->io.b_stride * 2);
    d->io.out = upload(d, tc->io.out, out_bytes(tc));

    d->state.recurrent = upload(d, tc->recurrent, recurrent_bytes(tc));
    d->state.conv = upload(d, tc->conv, conv_bytes(tc));
    d->state.capacity = tc->capacity;

    /* as a plan does: room for the chunked prefill at the batch's capacities (poisoned, since nothing may rely on
     * what a previous batch left there) */
    d->batch.workspace_bytes = la_cuda_chunk_prefill_workspace_bytes(L, tc->batch.num_tokens, tc->batch.num_seqs);
    if (d->batch.workspace_bytes) {
        d->batch.workspace = device_alloc(d, d->batch.workspace_bytes);
        CUDA_OK(cudaMemset(d->batch.workspace, 0xff, d->batch.workspace_bytes));
    }
}

static inline void free_device(device_case *d)
{
    for (int i = 0; i < d->num_allocs; i++) cudaFree(d->allocs[i]);
    d->num_allocs = 0;
}

static inline void download_results(const test_case *tc, const device_case *d, results *res)
{
    CUDA_OK(cudaDeviceSynchronize());
    res->out = checked_malloc(out_bytes(tc));
    res->recurrent = checked_malloc(recurrent_bytes(tc));
    res->conv = tc->conv ? checked_malloc(conv_bytes(tc)) : NULL;
    CUDA_OK(cudaMemcpy(res->out, d->io.out, out_bytes(tc), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(res->recurrent, d->state.recurrent, recurrent_bytes(tc), cudaMemcpyDeviceToHost));
    if (res->conv) CUDA_OK(cudaMemcpy(res->conv, d->state.conv, conv_bytes(tc), cudaMemcpyDeviceToHost));
}

static inline void free_results(results *res)
{
    free(res->out);
    free(res->recurrent);
    free(res->conv);
}

static inline void run_reference(const test_case *tc, results *ref)
{
    ref->out = checked_malloc(out_bytes(tc));
    ref->recurrent = checked_malloc(recurrent_bytes(tc));
    ref->conv = tc->conv ? checked_malloc(conv_bytes(tc)) : NULL;
    memcpy(ref->out, tc->io.out, out_bytes(tc));
    memcpy(ref->recurrent, tc->recurrent, recurrent_bytes(tc));
    if (ref->conv) memcpy(ref->conv, tc->conv, conv_bytes(tc));
    la_io io = tc->io;
    io.out = ref->out;
    la_state_view view = {ref->recurrent, ref->conv, tc->capacity};
    cr_assert_eq(la_reference_forward(&tc->layer, &tc->batch, &io, &view), 0);
}

/* A case built on the host, uploaded, and run through the CPU reference: what every device check starts from. */
typedef struct prepared_case {
    test_case host;
    device_case device;
    results reference;
} prepared_case;

static inline void prepare_case(const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                                const row_layout *layout, prepared_case *c)
{
    rng r = fresh_rng();
    build_case(ls, specs, num_seqs, layout, &r, &c->host);
    upload_case(&c->host, &c->device);
    run_reference(&c->host, &c->reference);
}

static inline void release_case(prepared_case *c)
{
    free_results(&c->reference);
    free_device(&c->device);
    free_case(&c->host);
}

/* A launch captured in a graph on a stream of its own: begin_capture gives the stream to launch on. */
typedef struct captured_graph {
    cudaStream_t stream;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
} captured_graph;

static inline cudaStream_t begin_capture(captured_graph *g)
{
    CUDA_OK(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
    CUDA_OK(cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeGlobal));
    return g->stream;
}

static inline void end_capture(captured_graph *g)
{
    CUDA_OK(cudaStreamEndCapture(g->stream, &g->graph));
    CUDA_OK(cudaGraphInstantiate(&g->exec, g->graph, 0));
}

static inline void destroy_capture(captured_graph *g)
{
    CUDA_OK(cudaGraphExecDestroy(g->exec));
    CUDA_OK(cudaGraphDestroy(g->graph));
    CUDA_OK(cudaStreamDestroy(g->stream));
}

/* ---- comparison with the reference -------------------------------------------------------------------------- */

/* What a kernel must leave in the conv windows. */
typedef enum {
    CONV_WINDOWS_AS_REFERENCE, /* the reference's windows in the slots it writes, the initial ones elsewhere */
    CONV_WINDOWS_UNTOUCHED,    /* the initial windows everywhere: the kernel writes none */
} conv_windows;

typedef struct rel_error {
    double diff2, ref2;
} rel_error;

static inline void rel_add(rel_error *e, double got, double want)
{
    double d = got - want; /* a NaN in got makes the error NaN, which fails every bound */
    e->diff2 += d * d;
    e->ref2 += want * want;
}

static inline double rel_value(const rel_error *e)
{
    return e->ref2 > 0.0 ? sqrt(e->diff2 / e->ref2) : sqrt(e->diff2);
}

static inline double state_at(const test_case *tc, const void *pool, size_t i)
{
    return tc->state_elem_bytes == sizeof(float) ? ((const float *)pool)[i] : bf16_to_float(((const uint16_t *)pool)[i]);
}

/* Adds the outputs of the sequences' rows to *err; returns how many poisoned elements elsewhere were overwritten. */
static inline size_t compare_outputs(const test_case *tc, const results *got, const results *ref, rel_error *err)
{
    size_t out_width = (size_t)tc->layer.hv * tc->layer.dv, stride = (size_t)tc->io.out_stride;
    size_t poison_broken = 0;
    for (int64_t row = 0; row < tc->rows; row++) {
        for (size_t j = 0; j < stride; j++) {
            size_t at = (size_t)row * stride + j;
            if (tc->row_owned[row] && j < out_width)
                rel_add(err, bf16_to_float(got->out[at]), bf16_to_float(ref->out[at]));
            else
                poison_broken += got->out[at] != POISON;
        }
    }
    return poison_broken;
}

static inline const uint16_t *expected_conv(const test_case *tc, const results *ref, conv_windows conv, int32_t slot)
{
    return conv == CONV_WINDOWS_AS_REFERENCE && tc->slot_role[slot] != ROLE_UNTOUCHED ? ref->conv : tc->conv;
}

/* A kernel's results against the reference's: relative errors by kind, exact conv windows, untouched memory. */
static inline void compare(const char *name, const test_case *tc, const results *got, const results *ref,
                           conv_windows conv)
{
    rel_error out = {0, 0}, final_state = {0, 0}, checkpoint_state = {0, 0};
    size_t poison_broken = compare_outputs(tc, got, ref, &out);

    size_t untouched_changed = 0, conv_mismatch = 0;
    size_t rec_bytes = tc->recurrent_per_slot * tc->state_elem_bytes;
    for (int32_t slot = 0; slot < tc->capacity; slot++) {
        if (tc->conv) {
            const uint16_t *want = expected_conv(tc, ref, conv, slot);
            for (size_t i = (size_t)slot * tc->conv_per_slot; i < (size_t)(slot + 1) * tc->conv_per_slot; i++)
                conv_mismatch += got->conv[i] != want[i];
        }
        size_t rec0 = (size_t)slot * tc->recurrent_per_slot;
        if (tc->slot_role[slot] == ROLE_UNTOUCHED) {
            untouched_changed += memcmp((const char *)got->recurrent + rec0 * tc->state_elem_bytes,
                                        (const char *)tc->recurrent + rec0 * tc->state_elem_bytes, rec_bytes) != 0;
            continue;
        }
        rel_error *e = tc->slot_role[slot] == ROLE_FINAL ? &final_state : &checkpoint_state;
        for (size_t i = rec0; i < rec0 + tc->recurrent_per_slot; i++)
            rel_add(e, state_at(tc, got->recurrent, i), state_at(tc, ref->recurrent, i));
    }

    const char *conv_want = conv == CONV_WINDOWS_AS_REFERENCE ? "as the reference left them" : "untouched";
    cr_log_info("%s: rel err out %.3g, final state %.3g, checkpoint state %.3g; %zu/%zu conv window elements not %s; "
                "%zu poisoned outputs overwritten; %zu untouched slots changed",
                name, rel_value(&out), rel_value(&final_state), rel_value(&checkpoint_state), conv_mismatch,
                conv_bytes(tc) / sizeof(uint16_t), conv_want, poison_broken, untouched_changed);
    cr_expect(rel_value(&out) <= TOLERANCE, "%s: outputs rel err %g", name, rel_value(&out));
    cr_expect(rel_value(&final_state) <= TOLERANCE, "%s: final state rel err %g", name, rel_value(&final_state));
    cr_expect(rel_value(&checkpoint_state) <= TOLERANCE, "%s: checkpoint state rel err %g", name,
              rel_value(&checkpoint_state));
    cr_expect_eq(conv_mismatch, 0, "%s: %zu conv window elements not %s", name, conv_mismatch, conv_want);
    cr_expect_eq(poison_broken, 0, "%s: %zu outputs written where nothing belongs", name, poison_broken);
    cr_expect_eq(untouched_changed, 0, "%s: %zu untouched slots changed", name, untouched_changed);
}

/* The device copy's results (after the kernel ran on it) against the reference's. */
static inline void expect_matches_reference(const char *name, const prepared_case *c, conv_windows conv)
{
    results got;
    download_results(&c->host, &c->device, &got);
    compare(name, &c->host, &got, &c->reference, conv);
    free_results(&got);
}

#endif
