/*
 * test_kernel_chunk_prefill.c — the chunked CUDA prefill (kernels/cuda/chunk_prefill.cu) against the CPU reference
 * (kernels/reference) on random batches, with a fresh seed per test (logged; LINATTN_TEST_SEED=<seed> replays it).
 *
 * Every case runs twice on the device, with and without thread-block clusters, from the same initial pool, and
 * checks by relative error ‖gpu − ref‖ / ‖ref‖: the outputs, the final and the checkpointed recurrent states. The
 * output buffer is poisoned and must stay so outside the rows of real sequences and outside the row width; slots
 * nobody writes must stay bitwise as they were, and so must every conv window (this kernel writes none).
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
#include "kernels/cuda/chunk_prefill.h"
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

/* ---- random numbers (splitmix64) --------------------------------------------------------------------------- */

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

/* ---- a case on the host ---------------------------------------------------------------------------------- */

typedef enum { SEQ_ZERO, SEQ_CONTINUE, SEQ_FROM_SLOT, SEQ_PADDING } seq_init;

typedef struct seq_spec {
    int32_t num_tokens;
    seq_init init;
    int64_t start_position;   /* ignored for SEQ_ZERO (0) */
    int32_t checkpoint_every; /* > 0: a checkpoint at every multiple of it (a multiple of 64) inside the step */
    int checkpoint_at_end;
} seq_spec;

typedef struct layer_spec {
    la_kind kind;
    int32_t hk, hv, dv, conv_width, qk_l2norm;
    la_state_dtype state_dtype;
    int constant_decay; /* simple GLA with a = NULL */
} layer_spec;

typedef enum { STRIDES_ALIGNED, STRIDES_ODD } stride_kind;

enum { ROLE_UNTOUCHED, ROLE_FINAL, ROLE_CHECKPOINT };

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
    uint64_t recurrent_per_slot, conv_per_slot;
    void *recurrent; /* initial pool */
    uint16_t *conv;
    uint8_t *slot_role;
    uint8_t *row_owned;
} test_case;

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
    L->hk = ls->hk, L->hv = ls->hv, L->dk = 128, L->dv = ls->dv;
    L->conv_width = ls->conv_width;
    L->qk_l2norm = ls->qk_l2norm;
    L->state_dtype = ls->state_dtype;
    L->scale = 1.0f / sqrtf(128.0f);
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

static int64_t spec_start(const seq_spec *s) { return s->init == SEQ_ZERO ? 0 : s->start_position; }

static int wants_checkpoint(const seq_spec *s, int64_t position)
{
    int64_t end = spec_start(s) + s->num_tokens;
    return (s->checkpoint_every > 0 && position % s->checkpoint_every == 0) ||
           (s->checkpoint_at_end && position == end);
}

static int32_t count_checkpoints(const seq_spec *s)
{
    if (s->init == SEQ_PADDING) return 0;
    int32_t n = 0;
    for (int64_t p = spec_start(s) + 1; p <= spec_start(s) + s->num_tokens; p++) n += wants_checkpoint(s, p);
    return n;
}

/* Slots in a random order (plus two bystanders nobody touches), rows with random gaps between sequences. */
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
        q->start_position = spec_start(s);
        q->checkpoint_begin = cp;
        row += s->num_tokens + (int64_t)(rng_next(r) % 3);
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

/* Aligned strides take the kernel's 16-byte copy path, odd ones its element-wise path. */
static void build_io_and_pool(const layer_spec *ls, stride_kind strides, rng *r, test_case *tc)
{
    la_io *io = &tc->io;
    size_t rows = (size_t)(tc->rows ? tc->rows : 1);
    int odd = strides == STRIDES_ODD;
    io->qkv_stride = tc->channels + (odd ? 3 : 8);
    io->a_stride = ls->hv + 1;
    io->b_stride = ls->hv + 2;
    io->out_stride = (int64_t)ls->hv * ls->dv + (odd ? 5 : 8);
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

static size_t out_bytes(const test_case *tc) { return (size_t)(tc->rows ? tc->rows : 1) * tc->io.out_stride * 2; }
static size_t recurrent_bytes(const test_case *tc)
{
    return tc->recurrent_per_slot * (size_t)tc->capacity * tc->state_elem_bytes;
}
static size_t conv_bytes(const test_case *tc) { return tc->conv_per_slot * (size_t)tc->capacity * sizeof(uint16_t); }

/* ---- the device copy -------------------------------------------------------------------------------------- */

typedef struct device_case {
    la_layer layer;
    la_batch batch;
    la_io io;
    la_state_view state;
    void *allocs[MAX_ALLOCS];
    int num_allocs;
} device_case;

typedef struct results {
    uint16_t *out;
    void *recurrent;
    uint16_t *conv;
} results;

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
    d->batch.seqs = upload(d, tc->seqs, (size_t)tc->batch.num_seqs * sizeof(la_seq));
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

/* Back to the case's initial pool and poisoned outputs, for another run. */
static void reset_device(const test_case *tc, device_case *d)
{
    CUDA_OK(cudaMemcpy(d->io.out, tc->io.out, out_bytes(tc), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d->state.recurrent, tc->recurrent, recurrent_bytes(tc), cudaMemcpyHostToDevice));
    if (tc->conv) CUDA_OK(cudaMemcpy(d->state.conv, tc->conv, conv_bytes(tc), cudaMemcpyHostToDevice));
}

static void free_device(device_case *d)
{
    for (int i = 0; i < d->num_allocs; i++) cudaFree(d->allocs[i]);
    d->num_allocs = 0;
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

/* ---- comparison -------------------------------------------------------------------------------------------- */

typedef struct rel_error {
    double diff2, ref2;
} rel_error;

static void rel_add(rel_error *e, double got, double want)
{
    double d = got - want; /* NaN in got makes the error NaN, which fails every bound */
    e->diff2 += d * d;
    e->ref2 += want * want;
}

static double rel_value(const rel_error *e) { return e->ref2 > 0.0 ? sqrt(e->diff2 / e->ref2) : sqrt(e->diff2); }

static double state_at(const test_case *tc, const void *pool, size_t i)
{
    return tc->state_elem_bytes == sizeof(float) ? ((const float *)pool)[i] : bf16_to_float(((const uint16_t *)pool)[i]);
}

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

    size_t untouched_changed = 0;
    size_t rec_bytes = tc->recurrent_per_slot * tc->state_elem_bytes;
    for (int32_t slot = 0; slot < tc->capacity; slot++) {
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
    int conv_changed = tc->conv && memcmp(got->conv, tc->conv, conv_bytes(tc)) != 0;

    cr_log_info("%s: rel err out %.3g, final state %.3g, checkpoint state %.3g; %zu poisoned outputs overwritten; "
                "%zu untouched slots changed; conv windows %s",
                name, rel_value(&out), rel_value(&final_state), rel_value(&checkpoint_state), poison_broken,
                untouched_changed, conv_changed ? "CHANGED" : "untouched");
    cr_expect(rel_value(&out) <= TOLERANCE, "%s: outputs rel err %g", name, rel_value(&out));
    cr_expect(rel_value(&final_state) <= TOLERANCE, "%s: final state rel err %g", name, rel_value(&final_state));
    cr_expect(rel_value(&checkpoint_state) <= TOLERANCE, "%s: checkpoint state rel err %g", name,
              rel_value(&checkpoint_state));
    cr_expect_eq(poison_broken, 0, "%s: %zu outputs written where nothing belongs", name, poison_broken);
    cr_expect_eq(untouched_changed, 0, "%s: %zu untouched slots changed", name, untouched_changed);
    cr_expect(!conv_changed, "%s: conv windows were written", name);
}

/* ---- cases --------------------------------------------------------------------------------------------------- */

static void run_chunked(device_case *d, int allow_clusters, cudaStream_t stream)
{
    int rc = la_cuda_chunk_prefill_clusters(&d->layer, &d->batch, &d->io, &d->state, stream, allow_clusters);
    cr_assert_eq(rc, cudaSuccess, "la_cuda_chunk_prefill: %s", cudaGetErrorString((cudaError_t)rc));
}

static void check_with_strides(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                               stride_kind strides)
{
    require_device();
    rng r = fresh_rng();
    test_case tc;
    memset(&tc, 0, sizeof tc);
    build_layer(ls, &r, &tc);
    build_batch(specs, num_seqs, &r, &tc);
    build_io_and_pool(ls, strides, &r, &tc);
    results ref;
    run_reference(&tc, &ref);

    device_case d;
    upload_case(&tc, &d);
    for (int clusters = 1; clusters >= 0; clusters--) {
        reset_device(&tc, &d);
        run_chunked(&d, clusters, 0);
        results got;
        download_results(&tc, &d, &got);
        char label[160];
        snprintf(label, sizeof label, "%s (%s)", name, clusters ? "clusters" : "no clusters");
        compare(label, &tc, &got, &ref);
        free_results(&got);
    }
    free_results(&ref);
    free_device(&d);
    free_case(&tc);
}

static void check_case(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs)
{
    check_with_strides(name, ls, specs, num_seqs, STRIDES_ALIGNED);
}

#define COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static const layer_spec gdn = {LA_KIND_GATED_DELTANET, 2, 4, 128, 4, 1, LA_STATE_F32, 0};

Test(kernel_chunk_prefill, gdn_lengths_from_zero_state)
{
    const seq_spec seqs[] = {
        {1, SEQ_ZERO, 0, 64, 1},   {63, SEQ_ZERO, 0, 64, 1},   {2, SEQ_PADDING, 0, 0, 0},
        {64, SEQ_ZERO, 0, 64, 0},  {65, SEQ_ZERO, 0, 64, 1},   {127, SEQ_ZERO, 0, 64, 0},
        {1000, SEQ_ZERO, 0, 64, 1}, {5, SEQ_PADDING, 0, 0, 0},
    };
    check_case("gdn 1..1000 from zero, hv/hk 2", &gdn, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gdn_4097_tokens_from_a_restored_state_at_position_100)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 1, 2, 128, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {{4097, SEQ_FROM_SLOT, 100, 1024, 1}, {130, SEQ_CONTINUE, 4033, 64, 1}};
    check_case("gdn 4097 at position 100", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gdn_continued_steps_bf16_state_ratio_1)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 4, 4, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec seqs[] = {
        {65, SEQ_CONTINUE, 200, 64, 0}, {127, SEQ_FROM_SLOT, 128, 64, 1}, {63, SEQ_ZERO, 0, 64, 1},
        {1, SEQ_CONTINUE, 77, 0, 0},    {1, SEQ_FROM_SLOT, 64, 0, 1},     {2, SEQ_PADDING, 0, 0, 0},
        {300, SEQ_CONTINUE, 63, 64, 1},
    };
    check_case("gdn continued, bf16 state, hv/hk 1", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gdn_conv_widths_0_1_2_8_and_dv_64_256)
{
    const seq_spec seqs[] = {{70, SEQ_CONTINUE, 5, 64, 1}, {3, SEQ_ZERO, 0, 0, 1}, {200, SEQ_FROM_SLOT, 1, 64, 0}};
    const layer_spec no_conv = {LA_KIND_GATED_DELTANET, 2, 4, 128, 0, 1, LA_STATE_F32, 0};
    const layer_spec one_tap = {LA_KIND_GATED_DELTANET, 2, 2, 64, 1, 1, LA_STATE_F32, 0};
    const layer_spec narrow = {LA_KIND_GATED_DELTANET, 1, 3, 256, 2, 1, LA_STATE_BF16, 0};
    const layer_spec wide = {LA_KIND_GATED_DELTANET, 2, 4, 96, 8, 1, LA_STATE_F32, 0};
    check_case("gdn conv width 0", &no_conv, seqs, COUNT(seqs));
    check_case("gdn conv width 1, dv 64", &one_tap, seqs, COUNT(seqs));
    check_case("gdn conv width 2, dv 256, bf16 state", &narrow, seqs, COUNT(seqs));
    check_case("gdn conv width 8, dv 96", &wide, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, odd_strides_take_the_elementwise_path)
{
    const seq_spec seqs[] = {{130, SEQ_FROM_SLOT, 30, 64, 1}, {1, SEQ_PADDING, 0, 0, 0}, {64, SEQ_ZERO, 0, 64, 0}};
    check_with_strides("gdn odd strides", &gdn, seqs, COUNT(seqs), STRIDES_ODD);
}

Test(kernel_chunk_prefill, zero_token_sequences_move_their_initial_state)
{
    const seq_spec seqs[] = {
        {0, SEQ_ZERO, 0, 0, 0}, {0, SEQ_FROM_SLOT, 64, 0, 0}, {0, SEQ_CONTINUE, 64, 0, 0},
        {0, SEQ_PADDING, 0, 0, 0}, {5, SEQ_FROM_SLOT, 128, 0, 1},
    };
    check_case("zero-token sequences", &gdn, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gla_constant_decay_no_conv_no_l2norm)
{
    const layer_spec layer = {LA_KIND_SIMPLE_GLA, 2, 4, 128, 0, 0, LA_STATE_F32, 1};
    const seq_spec seqs[] = {
        {1, SEQ_ZERO, 0, 64, 1}, {200, SEQ_FROM_SLOT, 64, 64, 1}, {64, SEQ_CONTINUE, 64, 64, 0},
        {1, SEQ_PADDING, 0, 0, 0}, {1000, SEQ_ZERO, 0, 128, 1},
    };
    check_case("simple GLA a=NULL, no conv, no l2norm", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gla_gated_with_conv_bf16_state)
{
    const layer_spec layer = {LA_KIND_SIMPLE_GLA, 2, 4, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec seqs[] = {{130, SEQ_ZERO, 0, 64, 1}, {1, SEQ_CONTINUE, 300, 0, 0}, {70, SEQ_FROM_SLOT, 60, 64, 1}};
    check_case("simple GLA gated, conv width 4, bf16 state", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, unsupported_shapes_launch_nothing)
{
    la_layer layer;
    memset(&layer, 0, sizeof layer);
    layer.kind = LA_KIND_GATED_DELTANET;
    layer.hk = 1, layer.hv = 2, layer.dk = 64, layer.dv = 128, layer.conv_width = 4;
    layer.state_dtype = LA_STATE_F32;
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "dk 64 is not handled");
    la_batch batch = {1, 0, 1, NULL, NULL, 1, 0};
    la_io io;
    memset(&io, 0, sizeof io);
    la_state_view state = {NULL, NULL, 0};
    cr_expect_eq(la_cuda_chunk_prefill(&layer, &batch, &io, &state, NULL), cudaErrorInvalidValue);
    layer.dk = 128, layer.dv = 48;
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "dv 48 is not a multiple of 32");
    layer.dv = 128, layer.conv_width = 9;
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "conv width 9 is too wide");
    layer.conv_width = 4;
    cr_expect(la_cuda_chunk_prefill_supported(&layer), "the Qwen3-Next shape is handled");
}

/* Captured once in a graph and replayed: the launch reads the batch from device memory and does nothing on the host
 * that a capture would skip. */
Test(kernel_chunk_prefill, graph_replay_matches_the_reference)
{
    require_device();
    rng r = fresh_rng();
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 4, 8, 128, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {{300, SEQ_FROM_SLOT, 36, 64, 1}, {64, SEQ_ZERO, 0, 64, 0}};
    test_case tc;
    memset(&tc, 0, sizeof tc);
    build_layer(&layer, &r, &tc);
    build_batch(seqs, COUNT(seqs), &r, &tc);
    build_io_and_pool(&layer, STRIDES_ALIGNED, &r, &tc);
    results ref;
    run_reference(&tc, &ref);
    device_case d;
    upload_case(&tc, &d);

    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    run_chunked(&d, 1, stream);
    CUDA_OK(cudaStreamEndCapture(stream, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));

    results got;
    download_results(&tc, &d, &got);
    compare("graph replay", &tc, &got, &ref);

    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaStreamDestroy(stream));
    free_results(&got);
    free_results(&ref);
    free_device(&d);
    free_case(&tc);
}
