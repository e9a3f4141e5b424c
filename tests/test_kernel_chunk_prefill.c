/*
 * test_kernel_chunk_prefill.c — the chunked CUDA prefill (kernels/cuda/chunk_prefill.cu) against the CPU reference
 * (kernels/reference) on random batches, with a fresh seed per test (logged; LINATTN_TEST_SEED=<seed> replays it).
 *
 * Every case runs twice on the device from the same initial pool (the second run over the first one's workspace)
 * and checks by relative error ‖gpu − ref‖ / ‖ref‖: the outputs, the final and the checkpointed recurrent states. The
 * output buffer is poisoned and must stay so outside the rows of real sequences and outside the row width; slots
 * nobody writes must stay bitwise as they were, and so must every conv window (this kernel writes none).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>

#include "kernels/cuda/chunk_prefill.h"
#include "support/kernel_case.h"

/* Aligned strides take the kernel's 16-byte copy path, odd ones its element-wise path; up to two unused rows
 * between sequences. */
static const row_layout strides_aligned = {8, 1, 2, 8, 2};
static const row_layout strides_odd = {3, 1, 2, 5, 2};

/* Back to the case's initial pool and poisoned outputs, for another run. */
static void reset_device(const test_case *tc, device_case *d)
{
    CUDA_OK(cudaMemcpy(d->io.out, tc->io.out, out_bytes(tc), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d->state.recurrent, tc->recurrent, recurrent_bytes(tc), cudaMemcpyHostToDevice));
    if (tc->conv) CUDA_OK(cudaMemcpy(d->state.conv, tc->conv, conv_bytes(tc), cudaMemcpyHostToDevice));
}

static void run_chunked(device_case *d, cudaStream_t stream)
{
    int rc = la_cuda_chunk_prefill(&d->layer, &d->batch, &d->io, &d->state, stream);
    cr_assert_eq(rc, cudaSuccess, "la_cuda_chunk_prefill: %s", cudaGetErrorString((cudaError_t)rc));
}

static void check_with_strides(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs,
                               const row_layout *strides)
{
    require_device();
    prepared_case c;
    prepare_case(ls, specs, num_seqs, strides, &c);
    /* twice from the same initial pool: the second run finds the first one's leftovers in the workspace */
    for (int run = 0; run < 2; run++) {
        reset_device(&c.host, &c.device);
        run_chunked(&c.device, 0);
        char label[160];
        snprintf(label, sizeof label, "%s (run %d)", name, run + 1);
        expect_matches_reference(label, &c, CONV_WINDOWS_UNTOUCHED);
    }
    release_case(&c);
}

static void check_case(const char *name, const layer_spec *ls, const seq_spec *specs, int32_t num_seqs)
{
    check_with_strides(name, ls, specs, num_seqs, &strides_aligned);
}

static const layer_spec gdn = {LA_KIND_GATED_DELTANET, 2, 4, 128, 128, 4, 1, LA_STATE_F32, 0};

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
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 1, 2, 128, 128, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {{4097, SEQ_FROM_SLOT, 100, 1024, 1}, {130, SEQ_CONTINUE, 4033, 64, 1}};
    check_case("gdn 4097 at position 100", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gdn_continued_steps_bf16_state_ratio_1)
{
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 4, 4, 128, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec seqs[] = {
        {65, SEQ_CONTINUE, 200, 64, 0}, {127, SEQ_FROM_SLOT, 128, 64, 1}, {63, SEQ_ZERO, 0, 64, 1},
        {1, SEQ_CONTINUE, 77, 0, 0},    {1, SEQ_FROM_SLOT, 64, 0, 1},     {2, SEQ_PADDING, 0, 0, 0},
        {300, SEQ_CONTINUE, 63, 64, 1},
    };
    check_case("gdn continued, bf16 state, hv/hk 1", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gdn_conv_widths_0_1_2_8_and_dv_32_64_96)
{
    const seq_spec seqs[] = {{70, SEQ_CONTINUE, 5, 64, 1}, {3, SEQ_ZERO, 0, 0, 1}, {200, SEQ_FROM_SLOT, 1, 64, 0}};
    const layer_spec no_conv = {LA_KIND_GATED_DELTANET, 2, 4, 128, 128, 0, 1, LA_STATE_F32, 0};
    const layer_spec one_tap = {LA_KIND_GATED_DELTANET, 2, 2, 128, 64, 1, 1, LA_STATE_F32, 0};
    const layer_spec narrow = {LA_KIND_GATED_DELTANET, 1, 3, 128, 32, 2, 1, LA_STATE_BF16, 0};
    const layer_spec wide = {LA_KIND_GATED_DELTANET, 2, 4, 128, 96, 8, 1, LA_STATE_F32, 0};
    check_case("gdn conv width 0", &no_conv, seqs, COUNT(seqs));
    check_case("gdn conv width 1, dv 64", &one_tap, seqs, COUNT(seqs));
    check_case("gdn conv width 2, dv 32, bf16 state", &narrow, seqs, COUNT(seqs));
    check_case("gdn conv width 8, dv 96", &wide, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, odd_strides_take_the_elementwise_path)
{
    const seq_spec seqs[] = {{130, SEQ_FROM_SLOT, 30, 64, 1}, {1, SEQ_PADDING, 0, 0, 0}, {64, SEQ_ZERO, 0, 64, 0}};
    check_with_strides("gdn odd strides", &gdn, seqs, COUNT(seqs), &strides_odd);
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
    const layer_spec layer = {LA_KIND_SIMPLE_GLA, 2, 4, 128, 128, 0, 0, LA_STATE_F32, 1};
    const seq_spec seqs[] = {
        {1, SEQ_ZERO, 0, 64, 1}, {200, SEQ_FROM_SLOT, 64, 64, 1}, {64, SEQ_CONTINUE, 64, 64, 0},
        {1, SEQ_PADDING, 0, 0, 0}, {1000, SEQ_ZERO, 0, 128, 1},
    };
    check_case("simple GLA a=NULL, no conv, no l2norm", &layer, seqs, COUNT(seqs));
}

Test(kernel_chunk_prefill, gla_gated_with_conv_bf16_state)
{
    const layer_spec layer = {LA_KIND_SIMPLE_GLA, 2, 4, 128, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec seqs[] = {{130, SEQ_ZERO, 0, 64, 1}, {1, SEQ_CONTINUE, 300, 0, 0}, {70, SEQ_FROM_SLOT, 60, 64, 1}};
    check_case("simple GLA gated, conv width 4, bf16 state", &layer, seqs, COUNT(seqs));
}

/* More (sequence, v-head, 32-column tile) chains than the device has SMs: the chain kernel's CTAs then take two
 * tiles each (chunk_prefill.cu), which the smaller batches above never reach. The batch is sized from the SM count. */
Test(kernel_chunk_prefill, more_chains_than_sms_take_two_tiles_a_cta)
{
    require_device();
    int device = 0, sms = 0;
    CUDA_OK(cudaGetDevice(&device));
    CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    const layer_spec gdn_wide = {LA_KIND_GATED_DELTANET, 4, 16, 128, 128, 4, 1, LA_STATE_F32, 0};
    const layer_spec gla_wide = {LA_KIND_SIMPLE_GLA, 8, 16, 128, 128, 4, 1, LA_STATE_BF16, 0};
    const seq_spec pattern[] = {
        {130, SEQ_FROM_SLOT, 60, 64, 1}, {1, SEQ_PADDING, 0, 0, 0}, {64, SEQ_ZERO, 0, 64, 0},
        {200, SEQ_CONTINUE, 5, 64, 1},
    };
    const int32_t chains_per_seq = 16 * 128 / 32, num_seqs = sms / chains_per_seq + 2;
    seq_spec *seqs = malloc(sizeof(seq_spec) * (size_t)num_seqs);
    cr_assert_not_null(seqs);
    for (int32_t i = 0; i < num_seqs; i++) seqs[i] = pattern[i % COUNT(pattern)];
    cr_log_info("%d SMs: %d sequences, %d chains", sms, num_seqs, num_seqs * chains_per_seq);
    check_case("gdn, more chains than SMs", &gdn_wide, seqs, num_seqs);
    check_case("simple GLA gated, bf16 state, more chains than SMs", &gla_wide, seqs, num_seqs);
    free(seqs);
}

/* Captured once in a graph and replayed: the launch reads the batch from device memory and does nothing on the host
 * that a capture would skip. */
Test(kernel_chunk_prefill, graph_replay_matches_the_reference)
{
    require_device();
    const layer_spec layer = {LA_KIND_GATED_DELTANET, 4, 8, 128, 128, 4, 1, LA_STATE_F32, 0};
    const seq_spec seqs[] = {{300, SEQ_FROM_SLOT, 36, 64, 1}, {64, SEQ_ZERO, 0, 64, 0}};
    prepared_case c;
    prepare_case(&layer, seqs, COUNT(seqs), &strides_aligned, &c);

    captured_graph g;
    run_chunked(&c.device, begin_capture(&g));
    end_capture(&g);
    CUDA_OK(cudaGraphLaunch(g.exec, g.stream));
    CUDA_OK(cudaStreamSynchronize(g.stream));
    expect_matches_reference("graph replay", &c, CONV_WINDOWS_UNTOUCHED);

    destroy_capture(&g);
    release_case(&c);
}
