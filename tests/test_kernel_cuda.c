/*
 * test_kernel_cuda.c — the CUDA forward (kernels/cuda) against the CPU reference (kernels/reference) on random
 * batches with a fresh seed per test (logged, so a failure can be replayed).
 *
 * Every case checks, by relative error ‖gpu − ref‖ / ‖ref‖: the outputs, the final recurrent states and the
 * checkpointed recurrent states; conv windows (copies of inputs) must match exactly. The output buffer is poisoned
 * before the run and must stay poisoned in padding rows, in rows between sequences and in the row-stride gaps;
 * slots nobody writes (sources of restores, bystanders) must stay bitwise as they were. Rows are either padded
 * (strides wider than the rows and unaligned: the kernels' scalar paths) or tight as a serving engine lays them out
 * (the decode cases: the vector paths).
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/bf16.h"
#include "kernels/cuda/la_cuda.h"
#include "kernels/reference/la_reference.h"

#define TOLERANCE 5e-3
#define POISON 0xFFFFu
#define MAX_ALLOCS 16

#define CUDA_OK(call)                                                                                                  \
    do {                                                                                                               \
        cudaError_t err_ = (call);                                                                                     \
        cr_assert_eq(err_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(err_));                                    \
    } while (0)

static void require_device(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) cr_skip_test("no CUDA device");
}

/* ---- random numbers ---------------------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t state;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_uniform(rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rng_next(r) >> 11) * 0x1p-53);
}

static rng fresh_rng(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rng r = {(uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ ((uint64_t)getpid() << 48)};
    uint64_t seed = rng_next(&r);
    cr_log_info("seed %llu", (unsigned long long)seed);
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

typedef enum { ROWS_PADDED, ROWS_TIGHT } row_layout;

typedef struct layer_spec {
    la_kind kind;
    int32_t hk, hv, dk, dv, conv_width, qk_l2norm;
    la_state_dtype state_dtype;
    int constant_decay; /* simple GLA with a = NULL */
} layer_spec;

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
    uint8_t *row_owned; /* rows whose outputs the forward must write */
} test_case;

typedef struct device_case {
    la_layer layer;
    la_batch batch;
    la_io io;
    la_state_view state;
    la_seq *seqs;
    void *allocs[MAX_ALLOCS];
    int num_allocs;
} device_case;

typedef struct results {
    uint16_t *out;
    void *recurrent;
    uint16_t *conv;
} results;

static void *checked_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    cr_assert_not_null(p, "out of host memory (%zu bytes)", bytes);
    return p;
}

static uint16_t *random_bf16(rng *r, size_t n, float lo, float hi)
{
    uint16_t *p = checked_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = float_to_bf16(rng_uniform(r, lo, hi));
    return p;
}

static float *random_f32(rng *r, size_t n, float lo, float hi)
{
    float *p = checked_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = rng_uniform(r, lo, hi);
    return p;
}

static void build_layer(const layer_spec *ls, rng *r, test_case *tc)
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
    /* decays e^g between ~0.1 and ~0.99 */
    L->A_log = ls->constant_decay ? random_f32(r, (size_t)ls->hv, -5.0f, -1.0f)
                                  : random_f32(r, (size_t)ls->hv, -2.0f, 0.5f);
    L->dt_bias = rng_next(r) % 2 ? random_f32(r, (size_t)ls->hv, -1.0f, 1.0f) : NULL;
    tc->state_elem_bytes = ls->state_dtype == LA_STATE_F32 ? sizeof(float) : sizeof(uint16_t);
    tc->recurrent_per_slot = la_recurrent_elems(L);
    tc->conv_per_slot = la_conv_elems(L);
}

static int32_t count_checkpoints(const seq_spec *s)
{
    if (s->init == SEQ_PADDING || s->num_tokens == 0) return 0;
    int64_t start = s->init == SEQ_ZERO ? 0 : s->start_position, end = start + s->num_tokens;
    int32_t n = 0;
    if (s->checkpoint_every > 0) n += (int32_t)(end / s->checkpoint_every - start / s->checkpoint_every);
    if (s->checkpoint_at_end && (s->checkpoint_every <= 0 || end % s->checkpoint_every != 0)) n++;
    return n;
}

/* Slots are handed out in a random order (plus two bystanders nobody touches), rows with random gaps. */
static void build_batch(const seq_spec *specs, int32_t num_seqs, rng *r, test_case *tc)
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
        q->start_position = s->init == SEQ_ZERO ? 0 : s->start_position;
        q->checkpoint_begin = cp;
        row += s->num_tokens + (int64_t)(rng_next(r) % 2);
        if (s->init == SEQ_PADDING) {
            q->state_slot = -1;
            q->init_slot = -1;
            continue;
        }
        q->state_slot = order[next_slot++];
        tc->slot_role[q->state_slot] = ROLE_FINAL;
        q->init_slot = s->init == SEQ_ZERO ? -1 : s->init == SEQ_CONTINUE ? q->state_slot : order[next_slot++];
        int64_t end = q->start_position + s->num_tokens;
        for (int64_t p = q->start_position + 1; s->num_tokens > 0 && p <= end; p++) {
            int at_multiple = s->checkpoint_every > 0 && p % s->checkpoint_every == 0;
            if (!at_multiple && !(s->checkpoint_at_end && p == end)) continue;
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
static void build_io_and_pool(const layer_spec *ls, row_layout layout, rng *r, test_case *tc)
{
    la_io *io = &tc->io;
    size_t rows = (size_t)(tc->rows ? tc->rows : 1);
    const int padded = layout == ROWS_PADDED;
    io->qkv_stride = tc->channels + 3 * padded;
    io->a_stride = ls->hv + padded;
    io->b_stride = ls->hv + 2 * padded;
    io->out_stride = (int64_t)ls->hv * ls->dv + 5 * padded;
    io->qkv = random_bf16(r, rows * (size_t)io->qkv_stride, -1.0f, 1.0f);
    io->a = ls->constant_decay ? NULL : random_bf16(r, rows * (size_t)io->a_stride, -3.0f, 1.0f);
    io->b = ls->kind == LA_KIND_GATED_DELTANET ? random_bf16(r, rows * (size_t)io->b_stride, -3.0f, 3.0f) : NULL;
    uint16_t *out = checked_malloc(rows * (size_t)io->out_stride * sizeof *out);
    memset(out, 0xff, rows * (size_t)io->out_stride * sizeof *out);
    io->out = out;

    size_t rec_elems = tc->recurrent_per_slot * (size_t)tc->capacity;
    if (ls->state_dtype == LA_STATE_F32) {
        tc->recurrent = random_f32(r, rec_elems, -0.5f, 0.5f);
    } else {
        tc->recurrent = random_bf16(r, rec_elems, -0.5f, 0.5f);
    }
    tc->conv = tc->conv_per_slot ? random_bf16(r, tc->conv_per_slot * (size_t)tc->capacity, -1.0f, 1.0f) : NULL;
}

static void build_case(const layer_spec *ls, const seq_spec *specs, int32_t num_seqs, row_layout layout, rng *r,
                       test_case *tc)
{
    memset(tc, 0, sizeof *tc);
    build_layer(ls, r, tc);
    build_batch(specs, num_seqs, r, tc);
    build_io_and_pool(ls, layout, r, tc);
}

static void free_case(test_case *tc)
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

/* ---- device side ------------------------------------------------------------------------------------------- */

static void *upload(device_case *d, const void *src, size_t bytes)
{
    if (!src || bytes == 0) return NULL;
    cr_assert_lt(d->num_allocs, MAX_ALLOCS);
    void *p = NULL;
    CUDA_OK(cudaMalloc(&p, bytes));
    CUDA_OK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    d->allocs[d->num_allocs++] = p;
    return p;
}

static size_t out_bytes(const test_case *tc) { return (size_t)(tc->rows ? tc->rows : 1) * tc->io.out_stride * 2; }
static size_t recurrent_bytes(const test_case *tc)
{
    return tc->recurrent_per_slot * (size_t)tc->capacity * tc->state_elem_bytes;
}
static size_t conv_bytes(const test_case *tc) { return tc->conv_per_slot * (size_t)tc->capacity * sizeof(uint16_t); }

static void upload_case(const test_case *tc, device_case *d)
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
}

static void free_device(device_case *d)
{
    for (int i = 0; i < d->num_allocs; i++) cudaFree(d->allocs[i]);
    d->num_allocs = 0;
}

static void run_forward(device_case *d, cudaStream_t stream)
{
    int rc = la_cuda_forward(&d->layer, &d->batch, &d->io, &d->state, stream);
    cr_assert_eq(rc, cudaSuccess, "la_cuda_forward: %s", cudaGetErrorString((cudaError_t)rc));
}

static void download_results(const test_case *tc, const device_case *d, results *res)
{
    CUDA_OK(cudaDeviceSynchronize());
    res->out = checked_malloc(out_bytes(tc));
    res->recurrent = checked_malloc(recurrent_bytes(tc));
    res->conv = tc->conv ? checked_malloc(conv_bytes(tc)) : NULL;
    CUDA_OK(cudaMemcpy(res->out, d->io.out, out_bytes(tc), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(res->recurrent, d->state.recurrent, recurrent_bytes(tc), cudaMemcpyDeviceToHost));
    if (res->conv) CUDA_OK(cudaMemcpy(res->conv, d->state.conv, conv_bytes(tc), cudaMemcpyDeviceToHost));
}

static void free_results(results *res)
{
    free(res->out);
    free(res->recurrent);
    free(res->conv);
}

static void run_reference(const test_case *tc, results *ref)
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

/* ---- comparison ---------------------------------------------------------------------------------------------- */

typedef struct rel_error {
    double diff2, ref2;
} rel_error;

static void rel_add(rel_error *e, double got, double want)
{
    double d = got - want; /* a NaN in got makes the error NaN, which fails every bound */
    e->diff2 += d * d;
    e->ref2 += want * want;
}

static double rel_value(const rel_error *e) { return e->ref2 > 0.0 ? sqrt(e->diff2 / e->ref2) : sqrt(e->diff2); }

static double state_at(const test_case *tc, const void *pool, size_t i)
{
    return tc->state_elem_bytes == sizeof(float) ? ((const float *)pool)[i] : bf16_to_float(((const uint16_t *)pool)[i]);
}

/* The forward's results against the reference's: relative errors by kind, exact conv windows, untouched memory. */
static void compare(const char *name, const test_case *tc, const results *got, const results *ref)
{
    rel_error out = {0, 0}, final_state = {0, 0}, checkpoint_state = {0, 0};
    size_t out_width = (size_t)tc->layer.hv * tc->layer.dv, stride = (size_t)tc->io.out_stride;
    size_t poison_broken = 0;
    for (int64_t row = 0; row < tc->rows; row++) {
        for (size_t j = 0; j < stride; j++) {
            size_t at = (size_t)row * stride + j;
            if (tc->row_owned[row] && j < out_width)
                rel_add(&out, bf16_to_float(got->out[at]), bf16_to_float(ref->out[at]));
            else
                poison_broken += got->out[at] != POISON;
        }
    }

    size_t untouched_changed = 0, conv_mismatch = 0, conv_compared = 0;
    for (int32_t slot = 0; slot < tc->capacity; slot++) {
        size_t rec0 = (size_t)slot * tc->recurrent_per_slot, conv0 = (size_t)slot * tc->conv_per_slot;
        const char *rec_got = (const char *)got->recurrent + rec0 * tc->state_elem_bytes;
        const char *rec_init = (const char *)tc->recurrent + rec0 * tc->state_elem_bytes;
        size_t rec_bytes = tc->recurrent_per_slot * tc->state_elem_bytes, cbytes = tc->conv_per_slot * 2;
        if (tc->slot_role[slot] == ROLE_UNTOUCHED) {
            untouched_changed += memcmp(rec_got, rec_init, rec_bytes) != 0;
            if (tc->conv) untouched_changed += memcmp(got->conv + conv0, tc->conv + conv0, cbytes) != 0;
            continue;
        }
        rel_error *e = tc->slot_role[slot] == ROLE_FINAL ? &final_state : &checkpoint_state;
        for (size_t i = rec0; i < rec0 + tc->recurrent_per_slot; i++)
            rel_add(e, state_at(tc, got->recurrent, i), state_at(tc, ref->recurrent, i));
        if (tc->conv) {
            for (size_t i = conv0; i < conv0 + tc->conv_per_slot; i++) conv_mismatch += got->conv[i] != ref->conv[i];
            conv_compared += tc->conv_per_slot;
        }
    }

    cr_log_info("%s: rel err out %.3g, final state %.3g, checkpoint state %.3g; conv windows %zu/%zu differ; "
                "%zu poisoned outputs overwritten; %zu untouched slot arrays changed",
                name, rel_value(&out), rel_value(&final_state), rel_value(&checkpoint_state), conv_mismatch,
                conv_compared, poison_broken, untouched_changed);
    cr_expect(rel_value(&out) <= TOLERANCE, "%s: outputs rel err %g", name, rel_value(&out));
    cr_expect(rel_value(&final_state) <= TOLERANCE, "%s: final state rel err %g", name, rel_value(&final_state));
    cr_expect(rel_value(&checkpoint_state) <= TOLERANCE, "%s: checkpoint state rel err %g", name,
              rel_value(&checkpoint_state));
    cr_expect_eq(conv_mismatch, 0, "%s: %zu conv window elements differ", name, conv_mismatch);
    cr_expect_eq(poison_broken, 0, "%s: %zu outputs written where nothing belongs", name, poison_broken);
    cr_expect_eq(untouched_changed, 0, "%s: %zu arrays of untouched slots changed", name, untouched_changed);
}

static void check_case_in(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                          row_layout layout)
{
    require_device();
    rng r = fresh_rng();
    test_case tc;
    build_case(ls, specs, num_seqs, layout, &r, &tc);
    device_case d;
    upload_case(&tc, &d);
    run_forward(&d, 0);
    results got, ref;
    download_results(&tc, &d, &got);
    run_reference(&tc, &ref);
    compare(name, &tc, &got, &ref);
    free_results(&got);
    free_results(&ref);
    free_device(&d);
    free_case(&tc);
}

static void check_case(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs)
{
    check_case_in(name, ls, specs, num_seqs, ROWS_PADDED);
}

#define COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static const layer_spec gdn_small = {LA_KIND_GATED_DELTANET, 2, 4, 128, 128, 4, 1, LA_STATE_F32, 0};

/* ---- prefill ------------------------------------------------------------------------------------------------- */

Test(kernel_cuda, gdn_prefill_lengths_with_checkpoints)
{
    const seq_spec seqs[] = {
        {1, SEQ_ZERO, 0, 64, 1},    {2, SEQ_ZERO, 0, 64, 0},    {63, SEQ_ZERO, 0, 64, 1},
        {1, SEQ_PADDING, 0, 0, 0},  {64, SEQ_ZERO, 0, 64, 0},   {65, SEQ_ZERO, 0, 64, 1},
        {127, SEQ_ZERO, 0, 64, 0},  {1000, SEQ_ZERO, 0, 64, 1}, {3, SEQ_PADDING, 0, 0, 0},
    };
    check_case("gdn prefill 1..1000, hv/hk 2", &gdn_small, seqs, COUNT(seqs));
}

Test(kernel_cuda, gdn_prefill_4097_tokens)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 1, 2, 128, 128, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {{4097, SEQ_ZERO, 0, 1024, 1}, {130, SEQ_CONTINUE, 4033, 64, 1}};
    check_case("gdn prefill 4097", &layer, seqs, COUNT(seqs));
}

Test(kernel_cuda, gdn_continue_and_restore_bf16_state_ratio_1)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 4, 4, 128, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec seqs[] = {
        {65, SEQ_CONTINUE, 200, 64, 0},  {127, SEQ_FROM_SLOT, 128, 64, 1}, {63, SEQ_ZERO, 0, 64, 1},
        {1, SEQ_CONTINUE, 77, 0, 0},     {1, SEQ_FROM_SLOT, 64, 0, 1},     {2, SEQ_PADDING, 0, 0, 0},
        {64, SEQ_CONTINUE, 64, 64, 0},
    };
    check_case("gdn continue/restore bf16 state, hv/hk 1", &layer, seqs, COUNT(seqs));
}

Test(kernel_cuda, gdn_continue_and_restore_f32_state_no_conv)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 2, 4, 128, 128, 0, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {
        {65, SEQ_CONTINUE, 640, 64, 1}, {1, SEQ_PADDING, 0, 0, 0}, {127, SEQ_FROM_SLOT, 1, 64, 0},
        {2, SEQ_ZERO, 0, 0, 1},         {1, SEQ_CONTINUE, 9, 0, 0},
    };
    check_case("gdn continue/restore f32 state, conv width 0", &layer, seqs, COUNT(seqs));
}

Test(kernel_cuda, zero_token_sequences_move_their_initial_state)
{
    const seq_spec seqs[] = {
        {0, SEQ_ZERO, 0, 0, 0}, {0, SEQ_FROM_SLOT, 64, 0, 0}, {0, SEQ_CONTINUE, 64, 0, 0},
        {0, SEQ_PADDING, 0, 0, 0}, {5, SEQ_FROM_SLOT, 128, 0, 1},
    };
    check_case("zero-token sequences", &gdn_small, seqs, COUNT(seqs));
}

Test(kernel_cuda, gla_constant_decay_without_conv)
{
    const layer_spec layer = {LA_KIND_SIMPLE_GLA, 2, 4, 64, 64, 0, 0, LA_STATE_F32, 1};
    const seq_spec seqs[] = {
        {1, SEQ_ZERO, 0, 64, 1}, {200, SEQ_FROM_SLOT, 64, 64, 1}, {64, SEQ_CONTINUE, 64, 64, 0},
        {1, SEQ_PADDING, 0, 0, 0},
    };
    check_case("simple GLA a=NULL, conv width 0", &layer, seqs, COUNT(seqs));
}

Test(kernel_cuda, gla_gated_with_conv_bf16_state)
{
    const layer_spec layer = {LA_KIND_SIMPLE_GLA, 2, 4, 128, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec seqs[] = {
        {130, SEQ_ZERO, 0, 64, 1}, {1, SEQ_CONTINUE, 300, 0, 0}, {70, SEQ_FROM_SLOT, 60, 64, 1},
    };
    check_case("simple GLA gated, conv width 4, bf16 state", &layer, seqs, COUNT(seqs));
}

Test(kernel_cuda, odd_head_dims_wide_conv)
{
    const layer_spec wide_k = {LA_KIND_GATED_DELTANET, 1, 3, 200, 50, 2, 1, LA_STATE_BF16, 0};
    const layer_spec odd = {LA_KIND_SIMPLE_GLA, 2, 2, 33, 130, 8, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {
        {3, SEQ_ZERO, 0, 0, 1}, {70, SEQ_CONTINUE, 5, 64, 1}, {1, SEQ_FROM_SLOT, 2, 0, 0},
        {1, SEQ_PADDING, 0, 0, 0},
    };
    check_case("dk 200, dv 50, conv width 2, bf16 state", &wide_k, seqs, COUNT(seqs));
    check_case("dk 33, dv 130, conv width 8, GLA", &odd, seqs, COUNT(seqs));
}

Test(kernel_cuda, largest_heads_f32_state_tight_rows)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 1, 2, 256, 256, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {
        {1, SEQ_CONTINUE, 9, 0, 0}, {100, SEQ_ZERO, 0, 64, 1}, {2, SEQ_PADDING, 0, 0, 0}, {3, SEQ_FROM_SLOT, 62, 64, 1},
    };
    check_case_in("dk 256, dv 256, f32 state, tight rows", &layer, seqs, COUNT(seqs), ROWS_TIGHT);
}

/* ---- decode -------------------------------------------------------------------------------------------------- */

static const layer_spec qwen3_next = {LA_KIND_GATED_DELTANET, 16, 32, 128, 128, 4, 1, LA_STATE_F32, 0};

/* n one-token steps: mostly continued, some restored, some started, every 7th a padding slot. */
static seq_spec *decode_specs(int32_t n)
{
    seq_spec *s = checked_malloc((size_t)n * sizeof *s);
    for (int32_t i = 0; i < n; i++) {
        seq_init init = i % 7 == 3 ? SEQ_PADDING : i % 5 == 1 ? SEQ_FROM_SLOT : i % 11 == 2 ? SEQ_ZERO : SEQ_CONTINUE;
        s[i] = (seq_spec){1, init, 100 + i, 0, 0};
    }
    return s;
}

static void check_decode(const char *name, const layer_spec *ls, int32_t n, row_layout layout)
{
    seq_spec *specs = decode_specs(n);
    check_case_in(name, ls, specs, n, layout);
    free(specs);
}

Test(kernel_cuda, decode_batches_f32_state)
{
    check_decode("decode B=1", &qwen3_next, 1, ROWS_TIGHT);
    check_decode("decode B=37", &qwen3_next, 37, ROWS_TIGHT);
    check_decode("decode B=37, padded rows", &qwen3_next, 37, ROWS_PADDED);
}

Test(kernel_cuda, decode_batches_bf16_state)
{
    layer_spec layer = qwen3_next;
    layer.state_dtype = LA_STATE_BF16;
    check_decode("decode B=2 bf16", &layer, 2, ROWS_TIGHT);
    check_decode("decode B=256 bf16", &layer, 256, ROWS_TIGHT);
}

/* The forward captured in a graph while the device batch says "all padding", replayed after the batch in the same
 * device memory was replaced: the replay must follow the new batch. */
Test(kernel_cuda, graph_replay_reads_batch_from_device)
{
    require_device();
    rng r = fresh_rng();
    seq_spec *specs = decode_specs(64);
    test_case tc;
    build_case(&qwen3_next, specs, 64, ROWS_TIGHT, &r, &tc);
    free(specs);
    device_case d;
    upload_case(&tc, &d);

    la_seq *padding = checked_malloc((size_t)tc.batch.num_seqs * sizeof *padding);
    for (int32_t i = 0; i < tc.batch.num_seqs; i++) {
        padding[i] = tc.seqs[i];
        padding[i].state_slot = -1;
    }
    CUDA_OK(cudaMemcpy(d.seqs, padding, (size_t)tc.batch.num_seqs * sizeof *padding, cudaMemcpyHostToDevice));
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    run_forward(&d, stream);
    CUDA_OK(cudaStreamEndCapture(stream, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));

    CUDA_OK(cudaMemcpy(d.seqs, tc.seqs, (size_t)tc.batch.num_seqs * sizeof *tc.seqs, cudaMemcpyHostToDevice));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));

    results got, ref;
    download_results(&tc, &d, &got);
    run_reference(&tc, &ref);
    compare("graph replay, batch replaced after capture", &tc, &got, &ref);

    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaStreamDestroy(stream));
    free(padding);
    free_results(&got);
    free_results(&ref);
    free_device(&d);
    free_case(&tc);
}

/* ---- decode timing (logged; the first run is checked against the reference) ------------------------------ */

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void time_decode(int32_t batch_size)
{
    require_device();
    rng r = fresh_rng();
    seq_spec *specs = checked_malloc((size_t)batch_size * sizeof *specs);
    for (int32_t i = 0; i < batch_size; i++) specs[i] = (seq_spec){1, SEQ_CONTINUE, 1000 + i, 0, 0};
    test_case tc;
    build_case(&qwen3_next, specs, batch_size, ROWS_TIGHT, &r, &tc);
    free(specs);
    device_case d;
    upload_case(&tc, &d);

    run_forward(&d, 0);
    results got, ref;
    download_results(&tc, &d, &got);
    run_reference(&tc, &ref);
    char name[64];
    snprintf(name, sizeof name, "decode B=%d (timed)", batch_size);
    compare(name, &tc, &got, &ref);

    enum { WARMUP = 5, RUNS = 50 };
    float ms[RUNS];
    cudaEvent_t start, stop;
    CUDA_OK(cudaEventCreate(&start));
    CUDA_OK(cudaEventCreate(&stop));
    for (int i = 0; i < WARMUP; i++) run_forward(&d, 0);
    for (int i = 0; i < RUNS; i++) {
        CUDA_OK(cudaEventRecord(start, 0));
        run_forward(&d, 0);
        CUDA_OK(cudaEventRecord(stop, 0));
        CUDA_OK(cudaEventSynchronize(stop));
        CUDA_OK(cudaEventElapsedTime(&ms[i], start, stop));
    }
    qsort(ms, RUNS, sizeof ms[0], compare_floats);
    double median_us = ms[RUNS / 2] * 1e3;
    double state_bytes = 2.0 * (double)batch_size * (double)tc.recurrent_per_slot * (double)tc.state_elem_bytes;
    cr_log_info("decode B=%d hv=32 d=128 f32 state: median %.1f us (min %.1f, max %.1f), recurrent state "
                "read+write %.1f MB -> %.0f GB/s",
                batch_size, median_us, ms[0] * 1e3, ms[RUNS - 1] * 1e3, state_bytes / 1e6,
                state_bytes / (median_us * 1e-6) / 1e9);

    /* The same forward as a serving engine replays it: a captured graph, replays back to back, so launch gaps shrink
     * to what a graph of many layers would show. */
    enum { REPLAYS = 20 };
    cudaStream_t stream;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    run_forward(&d, stream);
    CUDA_OK(cudaStreamEndCapture(stream, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < WARMUP; i++) CUDA_OK(cudaGraphLaunch(exec, stream));
    for (int i = 0; i < RUNS; i++) {
        CUDA_OK(cudaEventRecord(start, stream));
        for (int k = 0; k < REPLAYS; k++) CUDA_OK(cudaGraphLaunch(exec, stream));
        CUDA_OK(cudaEventRecord(stop, stream));
        CUDA_OK(cudaEventSynchronize(stop));
        CUDA_OK(cudaEventElapsedTime(&ms[i], start, stop));
        ms[i] /= REPLAYS;
    }
    qsort(ms, RUNS, sizeof ms[0], compare_floats);
    median_us = ms[RUNS / 2] * 1e3;
    cr_log_info("decode B=%d hv=32 d=128 f32 state, graph replays: median %.1f us (min %.1f, max %.1f) -> %.0f GB/s",
                batch_size, median_us, ms[0] * 1e3, ms[RUNS - 1] * 1e3, state_bytes / (median_us * 1e-6) / 1e9);

    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaStreamDestroy(stream));
    CUDA_OK(cudaEventDestroy(start));
    CUDA_OK(cudaEventDestroy(stop));
    free_results(&got);
    free_results(&ref);
    free_device(&d);
    free_case(&tc);
}

Test(kernel_cuda, decode_timing_b1) { time_decode(1); }
Test(kernel_cuda, decode_timing_b8) { time_decode(8); }
Test(kernel_cuda, decode_timing_b64) { time_decode(64); }
Test(kernel_cuda, decode_timing_b256) { time_decode(256); }
