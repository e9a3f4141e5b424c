/*
 * test_kernel_cuda.c — the CUDA forward (kernels/cuda) against the CPU reference (kernels/reference) on random
 * batches with a fresh seed per test (logged; LINATTN_TEST_SEED=<seed> replays it).
 *
 * Every case checks, by relative error ‖gpu − ref‖ / ‖ref‖: the outputs, the final recurrent states and the
 * checkpointed recurrent states; conv windows (copies of inputs) must match exactly. The output buffer is poisoned
 * before the run and must stay poisoned in padding rows, in rows between sequences and in the row-stride gaps;
 * slots nobody writes (sources of restores, bystanders) must stay bitwise as they were. Rows are either padded
 * (strides wider than the rows and unaligned: the kernels' scalar paths) or tight as a serving engine lays them out
 * (the decode cases: the vector paths).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>

#include "kernels/cuda/la_cuda.h"
#include "support/kernel_case.h"

/* Padded rows take the kernels' scalar paths, tight rows their vector paths; up to one unused row between sequences. */
static const row_layout rows_padded = {3, 1, 2, 5, 1};
static const row_layout rows_tight = {0, 0, 0, 0, 1};

static void run_forward(device_case *d, cudaStream_t stream)
{
    int rc = la_cuda_forward(&d->layer, &d->batch, &d->io, &d->state, stream);
    cr_assert_eq(rc, cudaSuccess, "la_cuda_forward: %s", cudaGetErrorString((cudaError_t)rc));
}

/* max_seq_tokens > 0 replaces the batch's own hint, as a graph captured with another batch carries it. */
static void check_case_hinted(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                              const row_layout *layout, int32_t max_seq_tokens)
{
    require_device();
    prepared_case c;
    prepare_case(ls, specs, num_seqs, layout, &c);
    if (max_seq_tokens > 0) c.device.batch.max_seq_tokens = max_seq_tokens;
    run_forward(&c.device, 0);
    expect_matches_reference(name, &c, CONV_WINDOWS_AS_REFERENCE);
    release_case(&c);
}

static void check_case_in(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                          const row_layout *layout)
{
    check_case_hinted(name, ls, specs, num_seqs, layout, 0);
}

static void check_case(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs)
{
    check_case_in(name, ls, specs, num_seqs, &rows_padded);
}

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

/* More checkpoints in one sequence than conv_state_kernel has slices, and one window that reaches back into the
 * initial window of a continued sequence (position 64 is 2 tokens into a step starting at 62). */
Test(kernel_cuda, gdn_many_checkpoints_in_one_sequence)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 1, 2, 128, 128, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {{1000, SEQ_CONTINUE, 3, 64, 1}, {700, SEQ_CONTINUE, 62, 64, 1}};
    check_case("gdn 16 and 12 checkpoints", &layer, seqs, COUNT(seqs));
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
    check_case_in("dk 256, dv 256, f32 state, tight rows", &layer, seqs, COUNT(seqs), &rows_tight);
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

static void check_decode(const char *name, const layer_spec *ls, int32_t n, const row_layout *layout)
{
    seq_spec *specs = decode_specs(n);
    check_case_in(name, ls, specs, n, layout);
    free(specs);
}

/* Batches with at least one (sequence, v-head) pair per SM (B >= 5 on an H100) run one CTA per pair. */
Test(kernel_cuda, decode_batches_f32_state)
{
    check_decode("decode B=1", &qwen3_next, 1, &rows_tight);
    check_decode("decode B=37", &qwen3_next, 37, &rows_tight);
    check_decode("decode B=37, padded rows", &qwen3_next, 37, &rows_padded);
    check_decode("decode B=256", &qwen3_next, 256, &rows_tight);
}

/* A large batch with what a serving step mixes in: draft steps of up to 15 tokens with a checkpoint after every token,
 * restores, fresh starts, padding, and long prefills that the chunked kernel takes and the token kernel skips. */
Test(kernel_cuda, decode_batch_mixed_steps)
{
    enum { N = 48 };
    seq_spec seqs[N];
    for (int32_t i = 0; i < N; i++) {
        const seq_init init = i % 9 == 4   ? SEQ_PADDING
                              : i % 5 == 1 ? SEQ_FROM_SLOT
                              : i % 7 == 2 ? SEQ_ZERO
                                           : SEQ_CONTINUE;
        seqs[i] = (seq_spec){1 + (i * 5) % 15, init, 30 + 3 * i, i % 3 == 0, 0};
    }
    seqs[10] = (seq_spec){200, SEQ_CONTINUE, 100, 64, 1};
    seqs[31] = (seq_spec){70, SEQ_ZERO, 0, 64, 0};
    check_case("draft steps with long prefills, f32", &qwen3_next, seqs, N);
    layer_spec bf16_layer = qwen3_next;
    bf16_layer.state_dtype = LA_STATE_BF16;
    check_case("draft steps with long prefills, bf16", &bf16_layer, seqs, N);
    const layer_spec gla = {LA_KIND_SIMPLE_GLA, 32, 32, 128, 128, 0, 1, LA_STATE_F32, 1};
    check_case("draft steps with long prefills, simple GLA", &gla, seqs, N);
}

/* The hint of a graph captured for decode steps (one token a sequence) on a batch of prefills: the token kernels
 * take every sequence, long ones with their checkpoints included, and sequences without tokens. */
Test(kernel_cuda, decode_hint_on_a_batch_of_prefills)
{
    const seq_spec seqs[] = {
        {300, SEQ_CONTINUE, 60, 64, 1}, {1, SEQ_CONTINUE, 127, 64, 1}, {2, SEQ_FROM_SLOT, 5, 0, 1},
        {0, SEQ_FROM_SLOT, 64, 0, 0},   {0, SEQ_CONTINUE, 9, 0, 0},    {70, SEQ_ZERO, 0, 64, 0},
        {1, SEQ_PADDING, 0, 0, 0},
    };
    check_case_hinted("one CTA per head: prefills, restores, empty steps", &qwen3_next, seqs, COUNT(seqs), &rows_tight,
                      1);
    check_case_hinted("heads split over CTAs: a prefill and a restore", &qwen3_next, seqs, 3, &rows_tight, 1);
}

/* Batches with fewer (sequence, v-head) pairs than SMs (any GPU of 97 SMs or more for these) split each head over
 * several CTAs; multi-token steps with a checkpoint after every token, as speculative decoding writes them, check
 * that the CTAs of a head stay in step over tokens. */
Test(kernel_cuda, decode_small_batches_split_heads)
{
    check_decode("decode B=3", &qwen3_next, 3, &rows_tight);
    check_decode("decode B=3, padded rows", &qwen3_next, 3, &rows_padded);
    layer_spec bf16_layer = qwen3_next;
    bf16_layer.state_dtype = LA_STATE_BF16;
    check_decode("decode B=1 bf16", &bf16_layer, 1, &rows_tight);

    const seq_spec drafts[] = {{4, SEQ_CONTINUE, 40, 1, 0}, {15, SEQ_FROM_SLOT, 7, 1, 0}, {1, SEQ_PADDING, 0, 0, 0}};
    check_case("draft steps of 4 and 15 tokens, checkpoint per token", &qwen3_next, drafts, COUNT(drafts));
    check_case("draft steps, bf16 state", &bf16_layer, drafts, COUNT(drafts));
}

Test(kernel_cuda, decode_batches_bf16_state)
{
    layer_spec layer = qwen3_next;
    layer.state_dtype = LA_STATE_BF16;
    check_decode("decode B=2 bf16", &layer, 2, &rows_tight);
    check_decode("decode B=256 bf16", &layer, 256, &rows_tight);
}

/* The forward captured in a graph while the device batch says "all padding", replayed after the batch in the same
 * device memory was replaced: the replay must follow the new batch. */
Test(kernel_cuda, graph_replay_reads_batch_from_device)
{
    require_device();
    seq_spec *specs = decode_specs(64);
    prepared_case c;
    prepare_case(&qwen3_next, specs, 64, &rows_tight, &c);
    free(specs);
    const test_case *tc = &c.host;

    la_seq *padding = checked_malloc((size_t)tc->batch.num_seqs * sizeof *padding);
    for (int32_t i = 0; i < tc->batch.num_seqs; i++) {
        padding[i] = tc->seqs[i];
        padding[i].state_slot = -1;
    }
    CUDA_OK(cudaMemcpy(c.device.seqs, padding, (size_t)tc->batch.num_seqs * sizeof *padding, cudaMemcpyHostToDevice));
    captured_graph g;
    run_forward(&c.device, begin_capture(&g));
    end_capture(&g);

    CUDA_OK(cudaMemcpy(c.device.seqs, tc->seqs, (size_t)tc->batch.num_seqs * sizeof *tc->seqs, cudaMemcpyHostToDevice));
    CUDA_OK(cudaGraphLaunch(g.exec, g.stream));
    CUDA_OK(cudaStreamSynchronize(g.stream));
    expect_matches_reference("graph replay, batch replaced after capture", &c, CONV_WINDOWS_AS_REFERENCE);

    destroy_capture(&g);
    free(padding);
    release_case(&c);
}
