/*
 * test_kernel_launch_checks.c — what the chunked CUDA prefill's launcher (kernels/cuda/chunk_prefill.cu) refuses
 * before it launches anything: shapes it does not handle and a missing or too small workspace. No device is needed:
 * these run, and must pass, on machines without a GPU.
 */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <string.h>

#include "kernels/cuda/chunk_prefill.h"

/* A GDN layer of one q/k head and two v heads, no weights: for the checks made before any launch. */
static la_layer bare_layer(int32_t dk)
{
    la_layer layer;
    memset(&layer, 0, sizeof layer);
    layer.kind = LA_KIND_GATED_DELTANET;
    layer.hk = 1, layer.hv = 2, layer.dk = dk, layer.dv = 128, layer.conv_width = 4;
    layer.state_dtype = LA_STATE_F32;
    return layer;
}

Test(kernel_launch_checks, unsupported_shapes_launch_nothing)
{
    la_layer layer = bare_layer(64);
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "dk 64 is not handled");
    la_batch batch = {1, 0, 1, NULL, NULL, 1, 0, NULL, 0};
    la_io io;
    memset(&io, 0, sizeof io);
    la_state_view state = {NULL, NULL, 0};
    cr_expect_eq(la_cuda_chunk_prefill(&layer, &batch, &io, &state, NULL), cudaErrorInvalidValue);
    layer.dk = 128, layer.dv = 48;
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "dv 48 is not a multiple of 32");
    layer.dv = 256;
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "dv 256 is wider than one prepare tile");
    layer.dv = 128, layer.conv_width = 9;
    cr_expect(!la_cuda_chunk_prefill_supported(&layer), "conv width 9 is too wide");
    layer.conv_width = 4;
    cr_expect(la_cuda_chunk_prefill_supported(&layer), "the Qwen3-Next shape is handled");
    cr_expect_eq(la_cuda_chunk_prefill_workspace_bytes(&layer, 0, 1), 0u, "no rows, no workspace");
    cr_expect_gt(la_cuda_chunk_prefill_workspace_bytes(&layer, 64, 1), 0u);
}

/* A supported shape with no (or too small a) workspace is refused before anything is launched. */
Test(kernel_launch_checks, a_missing_or_small_workspace_launches_nothing)
{
    la_layer layer = bare_layer(128);
    la_batch batch = {1, 0, 64, NULL, NULL, 64, 0, NULL, 0};
    la_io io;
    memset(&io, 0, sizeof io);
    la_state_view state = {NULL, NULL, 0};
    cr_expect_eq(la_cuda_chunk_prefill(&layer, &batch, &io, &state, NULL), cudaErrorInvalidValue, "no workspace");
    static unsigned char too_small[64];
    batch.workspace = too_small;
    batch.workspace_bytes = sizeof too_small;
    cr_expect_eq(la_cuda_chunk_prefill(&layer, &batch, &io, &state, NULL), cudaErrorInvalidValue, "64 bytes");
}
