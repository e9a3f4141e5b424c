/*
 * la_forward.cu — token-sequential CUDA implementation of abi/MATH.md for one layer over a batch.
 *
 * Two launches per forward, both with grids that depend only on num_seqs, the layer's shape and the device's SM
 * count, both reading the batch metadata from device memory (so a decode step can be captured in a CUDA graph and
 * replayed):
 *
 * 1. column_kernel (dk = dv = 128, Qwen3-Next's heads) — one CTA of 128 threads per (sequence, v-head); thread j
 *    keeps column j of the state, all 128 rows, in registers, so both sums over rows are FMA chains inside a thread and
 *    each state row is one coalesced access per warp. On an H200 (graph replays) it ran decode B=8/64/256 in
 *    16.3/103/405 µs where recurrent_kernel took 23.3/123/486 (B=1: 12.0 against 10.5, 32 CTAs on 132 SMs).
 *    split_column_kernel — the same for small batches (fewer (sequence, v-head) pairs than SMs): 4 CTAs per
 *    (sequence, v-head), each owning 32 columns, a warp 32 rows of them, so 4× the CTAs each wait on a quarter of the
 *    state loads.
 *    recurrent_kernel — every other shape: one CTA of kWarps warps per (sequence, v-head, 64 columns of dv); each
 *    warp owns 8 columns and holds its dk×8 slice of the state in registers over all of the sequence's tokens, so a
 *    decode step reads and writes each state byte once. Lane l = 2r + h holds rows kRows·r .. kRows·r + kRows-1 and
 *    columns 4h .. 4h+3 of the slice (a lane pair reads whole 32-byte rows). Per token the CTA's threads convolve,
 *    once, the channels the CTA needs (the dk q and dk k channels of its q/k head, its 64 v columns) into shared
 *    memory, double-buffered by token parity, behind the only barrier of the token; every warp then works alone: the
 *    q/k norms and
 *        pk_j = Σ_i S_ij k_i   and   pq_j = Σ_i S_ij q_i   (old state; sums over the 16 lane pairs by shuffles)
 *    give  u_j = β (v_j − e^g pk_j)  (GLA: u_j = v_j),  o_j = e^g pq_j + (q·k) u_j  (= Σ_i S'_ij q_i),
 *    and  S'_ij = e^g S_ij + k_i u_j.  It writes the outputs, the final recurrent state and the recurrent state of
 *    each checkpoint. (Warps that each convolved all their own channels, with no barrier at all, ran 50% slower at
 *    decode on an H200: the 8× repeated conv loads, not DRAM, bounded them.)
 *
 * 2. conv_state_kernel — one thread per (sequence, 8 channels, slice of its checkpoints) writes the conv windows:
 *    each checkpoint's and the final one. It is a programmatic dependent launch: it starts while (1) runs and does
 *    its loads, then waits for (1) to end before writing, because (1) reads the initial window, which for a
 *    continued sequence lives in the very slot (2) overwrites; q/k channels are read by several CTAs of (1), so no
 *    CTA of (1) could overwrite them without a grid-wide barrier.
 *
 * Sequences of kChunkedMinTokens tokens or more skip (1) and run in the chunked tensor-core kernel of
 * chunk_prefill.cu instead, when the layer's shape allows it and the batch has such a sequence (la_batch's host-side
 * max_seq_tokens); (2) writes their conv windows too.
 *
 * Like the CPU reference, the working state stays float32 for the whole step; bf16 state is rounded only when
 * stored.
 */
#include "la_cuda.h"
#include "chunk_prefill.h"
#include "sm_count.h"

#include <climits>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace {

constexpr int kLaneCols = 4;                 /* columns of dv per lane */
constexpr int kWarpCols = 2 * kLaneCols;     /* columns of dv per warp: the two lanes of a pair */
constexpr int kRowGroups = 16;               /* lane pairs of a warp, each holding kRows consecutive rows */
constexpr int kWarps = 8;                    /* warps per CTA */
constexpr int kBlockCols = kWarps * kWarpCols;
/* Resident CTAs per SM asked of the register allocator for dk <= 128 (80 registers, a few bytes spilled): measured
 * on an H200, 2 (117 registers, no spill) ran decode 20-30% slower, since decode needs state loads in flight. */
constexpr int kDecodeBlocksPerSm = 3;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxWidth = 8;
constexpr int kConvThreads = 256;
constexpr int kConvVec = 8; /* channels per thread of conv_state_kernel: one 16-byte access */
constexpr unsigned kFullMask = 0xffffffffu;

struct ForwardParams {
    la_layer layer;
    int32_t channels;
    const la_seq *seqs;
    const la_checkpoint *checkpoints;
    la_io io;
    la_state_view state;
    int32_t long_tokens; /* sequences with at least this many tokens belong to the chunked kernel */
};

__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) { return __uint_as_float((uint32_t)bits << 16); }

__device__ __forceinline__ uint16_t float_to_bf16_bits(float value)
{
    return __bfloat16_as_ushort(__float2bfloat16_rn(value));
}

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }
__device__ __forceinline__ float silu(float z) { return z * sigmoid(z); }

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

__device__ __forceinline__ bool aligned(const void *ptr, unsigned bytes) { return (uintptr_t)ptr % bytes == 0; }

/* ---- 4 consecutive elements of a row: one vector access when whole and aligned ----------------------------- */

/* f32 state moves with streaming hints (__ldcs/__stcs): each byte is read and written once per step, and keeping it
 * out of the way of the conv inputs, which every CTA of a q/k head re-reads, measured 7-14% faster at decode. */

__device__ __forceinline__ void load4(const float *src, int valid, bool vector, float out[4])
{
    if (vector) {
        float4 v = __ldcs(reinterpret_cast<const float4 *>(src));
        out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
        return;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) out[c] = c < valid ? src[c] : 0.0f;
}

__device__ __forceinline__ void load4(const uint16_t *src, int valid, bool vector, float out[4])
{
    if (vector) {
        uint2 v = *reinterpret_cast<const uint2 *>(src);
        out[0] = bf16_bits_to_float(v.x & 0xffffu), out[1] = bf16_bits_to_float(v.x >> 16);
        out[2] = bf16_bits_to_float(v.y & 0xffffu), out[3] = bf16_bits_to_float(v.y >> 16);
        return;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) out[c] = c < valid ? bf16_bits_to_float(src[c]) : 0.0f;
}

__device__ __forceinline__ void store4(float *dst, int valid, bool vector, const float in[4])
{
    if (vector) {
        __stcs(reinterpret_cast<float4 *>(dst), make_float4(in[0], in[1], in[2], in[3]));
        return;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c)
        if (c < valid) dst[c] = in[c];
}

__device__ __forceinline__ void store4(uint16_t *dst, int valid, bool vector, const float in[4])
{
    if (vector) {
        uint2 v;
        v.x = float_to_bf16_bits(in[0]) | ((uint32_t)float_to_bf16_bits(in[1]) << 16);
        v.y = float_to_bf16_bits(in[2]) | ((uint32_t)float_to_bf16_bits(in[3]) << 16);
        *reinterpret_cast<uint2 *>(dst) = v;
        return;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c)
        if (c < valid) dst[c] = float_to_bf16_bits(in[c]);
}

/* ---- a lane's slice of the state, in registers ------------------------------------------------------------- */

/* Where a lane's part of a head's state lives: rows row0 .. row0 + kRows - 1, columns col .. col + valid - 1. */
struct LaneCoords {
    int dk, dv;
    int row0, col;
    int valid;   /* columns of the 4 inside dv */
    bool vector; /* all 4 inside dv, rows 16-byte aligned: one vector access per row */
};

template <typename State> __device__ __forceinline__ State *head_state(const ForwardParams &p, int slot, int head)
{
    const la_layer &L = p.layer;
    return static_cast<State *>(p.state.recurrent) + ((size_t)slot * L.hv + head) * (size_t)L.dk * L.dv;
}

/* All loads are issued before any is used: they are the long pole of a decode step. */
template <int kRows, typename State>
__device__ __forceinline__ void load_slice(const State *head, const LaneCoords &t, float s[kRows][kLaneCols])
{
#pragma unroll
    for (int m = 0; m < kRows; ++m) {
        const int i = t.row0 + m;
        if (i < t.dk && t.valid > 0) {
            load4(head + (size_t)i * t.dv + t.col, t.valid, t.vector, s[m]);
        } else {
#pragma unroll
            for (int c = 0; c < kLaneCols; ++c) s[m][c] = 0.0f;
        }
    }
}

template <int kRows, typename State>
__device__ __forceinline__ void store_slice(State *head, const LaneCoords &t, const float s[kRows][kLaneCols])
{
#pragma unroll
    for (int m = 0; m < kRows; ++m) {
        const int i = t.row0 + m;
        if (i < t.dk && t.valid > 0) store4(head + (size_t)i * t.dv + t.col, t.valid, t.vector, s[m]);
    }
}

/* ---- short conv of one channel ------------------------------------------------------------------------------ */

/* Where a sequence's conv inputs before the current token live: earlier rows of qkv, or, for the first W-1 tokens,
 * the initial window. They are re-read at every token instead of being kept in registers: in a prefill they are
 * L1 hits, and at decode registers are what limits how many warps, so how many state loads, an SM keeps in flight. */
struct ConvInputs {
    const uint16_t *rows;        /* qkv row of the sequence's first token of this step */
    const uint16_t *init_window; /* [W-1][C], or nullptr for zeros */
};

__device__ __forceinline__ ConvInputs conv_inputs(const ForwardParams &p, const la_seq &seq)
{
    const la_layer &L = p.layer;
    ConvInputs in;
    in.rows = p.io.qkv + seq.token_offset * p.io.qkv_stride;
    in.init_window = L.conv_width > 1 && seq.init_slot >= 0
                         ? p.state.conv + (size_t)seq.init_slot * (L.conv_width - 1) * p.channels
                         : nullptr;
    return in;
}

/* The sequence's next checkpoint to write: index `next` of the batch's list, at `position` (−1 past the last). */
struct CheckpointCursor {
    int next, end;
    int64_t position;
};

__device__ __forceinline__ CheckpointCursor first_checkpoint(const ForwardParams &p, const la_seq &seq)
{
    const int end = seq.checkpoint_begin + seq.checkpoint_count;
    return {seq.checkpoint_begin, end, seq.checkpoint_begin < end ? p.checkpoints[seq.checkpoint_begin].position : -1};
}

__device__ __forceinline__ void advance(const ForwardParams &p, CheckpointCursor &c)
{
    ++c.next;
    c.position = c.next < c.end ? p.checkpoints[c.next].position : -1;
}

/* SiLU(bias + Σ_w weight[w]·x_{t-(W-1)+w}) of channel c at token t; x_t itself without conv.
 *
 * The taps are unrolled to kMaxWidth and predicated on the run-time width, so every load of the channel is issued
 * before the first is used. As a loop over the run-time width each window load waited for the one before: ncu had
 * those waits as most of the difference between GDN decode and the same kernel without a conv, and unrolling took
 * column_kernel's decode B=256 from 409 to 368 µs on an H200 (B=64: 106 to 99). */
__device__ __forceinline__ float conv_output(const ForwardParams &p, const ConvInputs &in, int c, int t)
{
    const int width = p.layer.conv_width;
    const uint16_t x = in.rows[(int64_t)t * p.io.qkv_stride + c];
    if (width == 0) return bf16_bits_to_float(x);
    const float *taps = p.layer.conv_weight + (size_t)c * width;
    float tap[kMaxWidth - 1];
    uint16_t earlier[kMaxWidth - 1]; /* x_{t-(W-1)+w}: a row of this step, or the initial window, or zero */
#pragma unroll
    for (int w = 0; w < kMaxWidth - 1; ++w) {
        tap[w] = 0.0f;
        earlier[w] = 0;
        if (w < width - 1) {
            const int tau = t - (width - 1) + w; /* token index within the step; < 0: from the initial window */
            tap[w] = taps[w];
            if (tau >= 0)
                earlier[w] = in.rows[(int64_t)tau * p.io.qkv_stride + c];
            else if (in.init_window)
                earlier[w] = in.init_window[(size_t)(tau + width - 1) * p.channels + c];
        }
    }
    float acc = fmaf(taps[width - 1], bf16_bits_to_float(x), p.layer.conv_bias ? p.layer.conv_bias[c] : 0.0f);
#pragma unroll
    for (int w = 0; w < kMaxWidth - 1; ++w)
        if (w < width - 1) acc = fmaf(tap[w], bf16_bits_to_float(earlier[w]), acc);
    return silu(acc);
}

/* ---- programmatic dependent launch ---------------------------------------------------------------------------- */

/* conv_state_kernel is launched as a programmatic dependent of the token kernel before it: it may start once every
 * CTA of that kernel has begun (allow_dependents), loads what it needs meanwhile, and waits for the kernel's end
 * (wait_for_primary) before its first write, since it overwrites the initial windows the token kernel reads. */
__device__ __forceinline__ void allow_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void wait_for_primary() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

/* ---- the recurrence ----------------------------------------------------------------------------------------- */

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
    return x;
}

/* Sum over the 16 lane pairs (lanes of equal parity hold the same columns). */
__device__ __forceinline__ float row_groups_sum(float x)
{
#pragma unroll
    for (int offset = 2; offset < 32; offset <<= 1) x += __shfl_xor_sync(kFullMask, x, offset);
    return x;
}

/* e^g and β of v-head `head` at qkv row `row` (β unused without the delta rule). */
struct Gate {
    float decay, beta;
};

/* A head's decay parameters: e^{A_log} and dt_bias. */
struct HeadGates {
    float decay_rate, dt_bias;
};

__device__ __forceinline__ HeadGates head_gates(const la_layer &L, int head)
{
    return {expf(L.A_log[head]), L.dt_bias ? L.dt_bias[head] : 0.0f};
}

/* A token's a and b of the head, as bf16 bits. Loaded with the token's conv inputs, before its barrier: loaded where
 * the gate is used, after it, their round trip sat on a decode step's critical path. */
struct GateInputs {
    uint16_t a, b;
};

__device__ __forceinline__ GateInputs gate_inputs(const ForwardParams &p, int64_t row, int head, bool delta_rule)
{
    return {p.io.a ? p.io.a[row * p.io.a_stride + head] : (uint16_t)0,
            delta_rule ? p.io.b[row * p.io.b_stride + head] : (uint16_t)0};
}

__device__ __forceinline__ Gate token_gate(const ForwardParams &p, const GateInputs &in, const HeadGates &hg,
                                           bool delta_rule)
{
    const float g = p.io.a ? -hg.decay_rate * softplus(bf16_bits_to_float(in.a) + hg.dt_bias) : -hg.decay_rate;
    Gate gate;
    gate.decay = expf(g);
    gate.beta = delta_rule ? sigmoid(bf16_bits_to_float(in.b)) : 0.0f;
    return gate;
}

/* What a token kernel's CTA derives from its sequence and v-head before the token loop. */
struct HeadSetup {
    int qk_head;
    ConvInputs conv_in;
    HeadGates gates;
    bool delta_rule;
};

__device__ __forceinline__ HeadSetup head_setup(const ForwardParams &p, const la_seq &seq, int head)
{
    const la_layer &L = p.layer;
    return {head / (L.hv / L.hk), conv_inputs(p, seq), head_gates(L, head), L.kind == LA_KIND_GATED_DELTANET};
}

/* One token's post-conv q, k (rows past dk stay zero) and the CTA's v columns, double-buffered by token parity:
 * with one barrier per token, a warp may write token t+1's while a slower one still reads token t's. */
template <int kTileRows> struct TokenTile {
    float q[2][kTileRows], k[2][kTileRows];
    float v[2][kBlockCols];
};

/* The conv + SiLU of the CTA's channels at token t, spread over all its threads: the dk q and dk k channels of its
 * q/k head, then its kBlockCols v columns. */
template <int kTileRows>
__device__ __forceinline__ void conv_token(const ForwardParams &p, const ConvInputs &in, int t, int qk_head, int head,
                                           int col0, TokenTile<kTileRows> &tile, int buf)
{
    const la_layer &L = p.layer;
    const int jobs = 2 * L.dk + kBlockCols;
    for (int j = threadIdx.x; j < jobs; j += kWarps * 32) {
        if (j < L.dk) {
            tile.q[buf][j] = conv_output(p, in, qk_head * L.dk + j, t);
        } else if (j < 2 * L.dk) {
            tile.k[buf][j - L.dk] = conv_output(p, in, (L.hk + qk_head) * L.dk + j - L.dk, t);
        } else {
            const int col = col0 + j - 2 * L.dk;
            tile.v[buf][j - 2 * L.dk] = col < L.dv ? conv_output(p, in, 2 * L.hk * L.dk + head * L.dv + col, t) : 0.0f;
        }
    }
}

/*
 * kRows = rows per lane pair (dk ≤ 16·kRows); State = float or uint16_t (bf16 bits). Grid: one CTA per
 * (sequence, v-head, kBlockCols columns of dv); warp w of it owns columns kWarpCols·w .. kWarpCols·w + 7 of those.
 * The CTA convolves each token's channels once, together (one barrier per token); everything else a warp does
 * alone: its state loads, the sums over its rows by shuffles, its outputs and its stores.
 */
template <int kRows, typename State>
__global__ void __launch_bounds__(kWarps * 32, kRows <= 8 ? kDecodeBlocksPerSm : 2)
    recurrent_kernel(const __grid_constant__ ForwardParams p)
{
    allow_dependents();
    constexpr int kTileRows = kRows * kRowGroups;
    static_assert(kTileRows <= kMaxHeadDim, "rows exceed the largest head");
    __shared__ __align__(16) TokenTile<kTileRows> tile;

    const la_layer &L = p.layer;
    const int tiles = ceil_div(L.dv, kBlockCols);
    const int col0 = (blockIdx.x % tiles) * kBlockCols;
    const int head = (blockIdx.x / tiles) % L.hv;
    const la_seq seq = p.seqs[blockIdx.x / tiles / L.hv];
    if (seq.state_slot < 0 || seq.num_tokens >= p.long_tokens) return;

    const int lane = threadIdx.x % 32;
    const int warp_col = col0 + (threadIdx.x / 32) * kWarpCols;
    const bool has_columns = warp_col < L.dv; /* a warp without any still convolves and meets the barriers */
    const int half = lane % 2;                /* which 4 columns of the warp's 8 */
    LaneCoords tc;
    tc.dk = L.dk;
    tc.dv = L.dv;
    tc.row0 = kRows * (lane / 2);
    tc.col = warp_col + kLaneCols * half;
    tc.valid = min(kLaneCols, max(0, L.dv - tc.col));
    tc.vector = L.dv % kLaneCols == 0 && tc.valid == kLaneCols;

    /* The state loads go first: they are the long pole, and nothing depends on them until the conv is done. */
    float s[kRows][kLaneCols];
    if (seq.init_slot >= 0 && has_columns) {
        load_slice<kRows>(head_state<State>(p, seq.init_slot, head), tc, s);
    } else {
#pragma unroll
        for (int m = 0; m < kRows; ++m)
#pragma unroll
            for (int c = 0; c < kLaneCols; ++c) s[m][c] = 0.0f;
    }

    for (int i = L.dk + threadIdx.x; i < kTileRows; i += kWarps * 32)
        tile.q[0][i] = tile.q[1][i] = tile.k[0][i] = tile.k[1][i] = 0.0f;

    const auto [qk_head, conv_in, gates, delta_rule] = head_setup(p, seq, head);
    uint16_t *const out_head = p.io.out + (size_t)head * L.dv + tc.col;
    const bool out_vector = tc.valid == kLaneCols && p.io.out_stride % kLaneCols == 0 && aligned(out_head, 8);

    CheckpointCursor checkpoint = first_checkpoint(p, seq);

    for (int t = 0; t < seq.num_tokens; ++t) {
        const int64_t row = seq.token_offset + t;
        const int buf = t % 2;
        const GateInputs gate_in = gate_inputs(p, row, head, delta_rule);
        conv_token<kTileRows>(p, conv_in, t, qk_head, head, col0, tile, buf);
        __syncthreads();
        if (!has_columns) continue;

        /* the pair's rows; norms from lanes of even parity only (each row once) */
        float q_row[kRows], k_row[kRows], sq = 0.0f, sk = 0.0f, sqk = 0.0f;
#pragma unroll
        for (int m = 0; m < kRows; m += 4) {
            const float4 q4 = *reinterpret_cast<const float4 *>(&tile.q[buf][tc.row0 + m]);
            const float4 k4 = *reinterpret_cast<const float4 *>(&tile.k[buf][tc.row0 + m]);
            q_row[m] = q4.x, q_row[m + 1] = q4.y, q_row[m + 2] = q4.z, q_row[m + 3] = q4.w;
            k_row[m] = k4.x, k_row[m + 1] = k4.y, k_row[m + 2] = k4.z, k_row[m + 3] = k4.w;
        }
        if (!half) {
#pragma unroll
            for (int m = 0; m < kRows; ++m) {
                sq = fmaf(q_row[m], q_row[m], sq);
                sk = fmaf(k_row[m], k_row[m], sk);
                sqk = fmaf(q_row[m], k_row[m], sqk);
            }
        }
        const float4 v4 = *reinterpret_cast<const float4 *>(&tile.v[buf][tc.col - col0]);
        const float v[kLaneCols] = {v4.x, v4.y, v4.z, v4.w};
        sq = warp_sum(sq);
        sk = warp_sum(sk);
        sqk = warp_sum(sqk);
        float q_factor = L.scale, k_factor = 1.0f;
        if (L.qk_l2norm) {
            q_factor *= rsqrtf(sq + 1e-6f);
            k_factor = rsqrtf(sk + 1e-6f);
        }
        const float qk = sqk * q_factor * k_factor;

        /* pk = Σ_i S_ij k_i and pq = Σ_i S_ij q_i (normalised) over the lane's rows, then over the 16 pairs */
        float pk[kLaneCols] = {}, pq[kLaneCols] = {};
#pragma unroll
        for (int m = 0; m < kRows; ++m) {
            k_row[m] *= k_factor;
            const float q = q_row[m] * q_factor;
#pragma unroll
            for (int j = 0; j < kLaneCols; ++j) {
                pk[j] = fmaf(s[m][j], k_row[m], pk[j]);
                pq[j] = fmaf(s[m][j], q, pq[j]);
            }
        }
#pragma unroll
        for (int j = 0; j < kLaneCols; ++j) {
            pk[j] = row_groups_sum(pk[j]);
            pq[j] = row_groups_sum(pq[j]);
        }

        const Gate gate = token_gate(p, gate_in, gates, delta_rule);
        const float decay = gate.decay;
        float o[kLaneCols];
#pragma unroll
        for (int c = 0; c < kLaneCols; ++c) {
            const float u = delta_rule ? gate.beta * (v[c] - decay * pk[c]) : v[c];
            o[c] = fmaf(qk, u, decay * pq[c]);
#pragma unroll
            for (int m = 0; m < kRows; ++m) s[m][c] = fmaf(k_row[m], u, decay * s[m][c]);
        }
        if (lane < 2) {
            uint16_t *out = out_head + row * p.io.out_stride;
            if (out_vector) {
                uint2 bits;
                bits.x = float_to_bf16_bits(o[0]) | ((uint32_t)float_to_bf16_bits(o[1]) << 16);
                bits.y = float_to_bf16_bits(o[2]) | ((uint32_t)float_to_bf16_bits(o[3]) << 16);
                *reinterpret_cast<uint2 *>(out) = bits;
            } else {
#pragma unroll
                for (int c = 0; c < kLaneCols; ++c)
                    if (c < tc.valid) out[c] = float_to_bf16_bits(o[c]);
            }
        }

        const int64_t tokens_done = seq.start_position + t + 1;
        for (; checkpoint.position == tokens_done; advance(p, checkpoint))
            store_slice<kRows>(head_state<State>(p, p.checkpoints[checkpoint.next].slot, head), tc, s);
    }
    if (has_columns) store_slice<kRows>(head_state<State>(p, seq.state_slot, head), tc, s);
}

/* ---- column-owned kernel (dk = dv = kColumnDim) --------------------------------------------------------------- */

/* Both head dims and the threads of a CTA. Compile-time, so that each state row is an immediate offset from one
 * address: with run-time strides the compiler kept an address per row and spilled. */
constexpr int kColumnDim = 128;
constexpr int kColumnWarps = kColumnDim / 32;
/* Resident CTAs per SM asked of the register allocator. f32: 3 CTAs of 4 warps leave 168 registers a thread, enough
 * for the 128 state rows (one word spilled around the barrier), and an SM keeps 192 KB of state loads in flight.
 * bf16 state spills at 168; 2 CTAs (203 registers) keep 64 KB in flight. */
template <typename State> constexpr int column_blocks_per_sm() { return sizeof(State) == sizeof(float) ? 3 : 2; }

__device__ __forceinline__ float load_state(const float *src) { return __ldcs(src); }
__device__ __forceinline__ float load_state(const uint16_t *src)
{
    return bf16_bits_to_float(__ldcs(reinterpret_cast<const unsigned short *>(src)));
}
__device__ __forceinline__ void store_state(float *dst, float value) { __stcs(dst, value); }
__device__ __forceinline__ void store_state(uint16_t *dst, float value)
{
    __stcs(reinterpret_cast<unsigned short *>(dst), float_to_bf16_bits(value));
}

/* kRows consecutive rows of one column of a head's state. Row i of a warp's 32 columns is one coalesced access, and
 * all rows are issued before any is used. */
template <typename State, int kRows>
__device__ __forceinline__ void load_column(const State *column, float (&s)[kRows])
{
#pragma unroll
    for (int i = 0; i < kRows; ++i) s[i] = load_state(column + i * kColumnDim);
}

template <typename State, int kRows>
__device__ __forceinline__ void store_column(State *column, const float (&s)[kRows])
{
#pragma unroll
    for (int i = 0; i < kRows; ++i) store_state(column + i * kColumnDim, s[i]);
}

/* The sequence's initial state in kRows rows of one column (`offset`: its first element within a head), or zeros. */
template <typename State, int kRows>
__device__ __forceinline__ void load_initial_column(const ForwardParams &p, const la_seq &seq, int head, size_t offset,
                                                    float (&s)[kRows])
{
    if (seq.init_slot >= 0) {
        load_column(head_state<State>(p, seq.init_slot, head) + offset, s);
        return;
    }
#pragma unroll
    for (int i = 0; i < kRows; ++i) s[i] = 0.0f;
}

/* Called after the shared-memory reads of rows i .. i+3: every kFenceRows rows, keeps the compiler from hoisting
 * all of the token's q/k reads ahead of their use, which would need hundreds of registers beside the state's. */
constexpr int kFenceRows = 16;
__device__ __forceinline__ void fence_shared_reads(int i)
{
    if (i % kFenceRows == kFenceRows - 4) asm volatile("" ::: "memory");
}

/* One token's post-conv q and k and the warps' partial sums of q·q, k·k and q·k, double-buffered by token parity like
 * TokenTile. */
struct ColumnTile {
    float q[2][kColumnDim], k[2][kColumnDim];
    float partial[2][kColumnWarps][3];
};

/* Thread j's q and k channel j of the token into the tile, and its warp's share of q·q, k·k and q·k. */
__device__ __forceinline__ void put_qk(ColumnTile &tile, int buf, float q_own, float k_own)
{
    const int j = threadIdx.x, lane = j % 32, warp = j / 32;
    tile.q[buf][j] = q_own;
    tile.k[buf][j] = k_own;
    const float sq_part = warp_sum(q_own * q_own), sk_part = warp_sum(k_own * k_own);
    const float sqk_part = warp_sum(q_own * k_own);
    if (lane == 0) {
        tile.partial[buf][warp][0] = sq_part;
        tile.partial[buf][warp][1] = sk_part;
        tile.partial[buf][warp][2] = sqk_part;
    }
}

/* What multiplies q and k (scale and the l2 norms), and q·k with both applied: from the tile, after the barrier. */
struct QkFactors {
    float q, k, qk;
};

__device__ __forceinline__ QkFactors qk_factors(const la_layer &L, const ColumnTile &tile, int buf)
{
    float sq = 0.0f, sk = 0.0f, sqk = 0.0f;
#pragma unroll
    for (int w = 0; w < kColumnWarps; ++w) {
        sq += tile.partial[buf][w][0];
        sk += tile.partial[buf][w][1];
        sqk += tile.partial[buf][w][2];
    }
    QkFactors f;
    f.q = L.scale;
    f.k = 1.0f;
    if (L.qk_l2norm) {
        f.q *= rsqrtf(sq + 1e-6f);
        f.k = rsqrtf(sk + 1e-6f);
    }
    f.qk = sqk * f.q * f.k;
    return f;
}


/*
 * Grid: one CTA of kColumnDim threads per (sequence, v-head). Thread j owns column j of the head's state, all dk
 * rows of it in registers over all of the sequence's tokens, so
 *     pk = Σ_i S_ij k_i   and   pq = Σ_i S_ij q_i
 * are chains of FMAs inside the thread. Per token thread j convolves q and k channel j of the CTA's q/k head into
 * shared memory and v channel j into a register; the q/k norms and q·k come from one block reduction behind the
 * token's only barrier. The update is the one of recurrent_kernel.
 */
template <typename State>
__global__ void __launch_bounds__(kColumnDim, column_blocks_per_sm<State>())
    column_kernel(const __grid_constant__ ForwardParams p)
{
    allow_dependents();
    __shared__ __align__(16) ColumnTile tile;

    const la_layer &L = p.layer;
    const int col = threadIdx.x;
    const int head = blockIdx.x % L.hv;
    const la_seq seq = p.seqs[blockIdx.x / L.hv];
    if (seq.state_slot < 0 || seq.num_tokens >= p.long_tokens) return;

    /* The state loads go first: they are the long pole, and nothing depends on them until the conv is done. */
    float s[kColumnDim];
    load_initial_column<State>(p, seq, head, col, s);

    const auto [qk_head, conv_in, gates, delta_rule] = head_setup(p, seq, head);

    CheckpointCursor checkpoint = first_checkpoint(p, seq);

    for (int t = 0; t < seq.num_tokens; ++t) {
        const int64_t row = seq.token_offset + t;
        const int buf = t % 2;
        const float q_own = conv_output(p, conv_in, qk_head * kColumnDim + col, t);
        const float k_own = conv_output(p, conv_in, (L.hk + qk_head) * kColumnDim + col, t);
        const float v = conv_output(p, conv_in, (2 * L.hk + head) * kColumnDim + col, t);
        put_qk(tile, buf, q_own, k_own);
        __syncthreads();
        const QkFactors f = qk_factors(L, tile, buf);

        /* four partial sums each, to shorten the dependent FMA chains */
        float pk[4] = {}, pq[4] = {};
#pragma unroll
        for (int i = 0; i < kColumnDim; i += 4) {
            const float4 k4 = *reinterpret_cast<const float4 *>(&tile.k[buf][i]);
            const float4 q4 = *reinterpret_cast<const float4 *>(&tile.q[buf][i]);
            pk[0] = fmaf(s[i], k4.x, pk[0]), pq[0] = fmaf(s[i], q4.x, pq[0]);
            pk[1] = fmaf(s[i + 1], k4.y, pk[1]), pq[1] = fmaf(s[i + 1], q4.y, pq[1]);
            pk[2] = fmaf(s[i + 2], k4.z, pk[2]), pq[2] = fmaf(s[i + 2], q4.z, pq[2]);
            pk[3] = fmaf(s[i + 3], k4.w, pk[3]), pq[3] = fmaf(s[i + 3], q4.w, pq[3]);
            fence_shared_reads(i);
        }
        const float pk_sum = ((pk[0] + pk[1]) + (pk[2] + pk[3])) * f.k;
        const float pq_sum = ((pq[0] + pq[1]) + (pq[2] + pq[3])) * f.q;

        /* a and b loaded here, not with the conv inputs as the other kernels do: with 3 CTAs an SM the registers they
         * would hold across the barrier cost decode B=64 / 256 2% on an H100 */
        const Gate gate = token_gate(p, gate_inputs(p, row, head, delta_rule), gates, delta_rule);
        const float decay = gate.decay;
        const float u = delta_rule ? gate.beta * (v - decay * pk_sum) : v;
        p.io.out[row * p.io.out_stride + head * kColumnDim + col] = float_to_bf16_bits(fmaf(f.qk, u, decay * pq_sum));

        const float ku = f.k * u; /* S'_ij = e^g S_ij + (f.k k_i) u_j */
#pragma unroll
        for (int i = 0; i < kColumnDim; i += 4) {
            const float4 k4 = *reinterpret_cast<const float4 *>(&tile.k[buf][i]);
            s[i] = fmaf(k4.x, ku, decay * s[i]);
            s[i + 1] = fmaf(k4.y, ku, decay * s[i + 1]);
            s[i + 2] = fmaf(k4.z, ku, decay * s[i + 2]);
            s[i + 3] = fmaf(k4.w, ku, decay * s[i + 3]);
            fence_shared_reads(i);
        }

        const int64_t tokens_done = seq.start_position + t + 1;
        for (; checkpoint.position == tokens_done; advance(p, checkpoint))
            store_column(head_state<State>(p, p.checkpoints[checkpoint.next].slot, head) + col, s);
    }
    store_column(head_state<State>(p, seq.state_slot, head) + col, s);
}

/* ---- column-owned kernel split over dv (small batches) ----------------------------------------------------- */

/* CTAs per (sequence, v-head) when the batch is small: each owns kSplitCols columns, one per lane, and warp w of it
 * rows kSplitRows·w .. kSplitRows·w + kSplitRows - 1 of them. */
constexpr int kSplitParts = 4;
constexpr int kSplitCols = kColumnDim / kSplitParts;
constexpr int kSplitRows = kColumnDim / kColumnWarps;
static_assert(kSplitCols == 32, "the lanes of a warp own the CTA's columns");
/* Resident CTAs per SM asked of the register allocator: 5 leave 96 registers a thread, none spilled; 6 (80) and
 * 8 (64) spilled, the state loads and the three convolutions being in flight together. */
constexpr int kSplitBlocksPerSm = 5;

/* ColumnTile, plus each warp's pk and pq over its rows for each of the CTA's columns. */
struct SplitTile {
    ColumnTile qk;
    float sums[2][2][kColumnWarps][kSplitCols];
};

/*
 * column_kernel for small batches, whose one CTA per (sequence, v-head) would leave most SMs idle: here kSplitParts
 * CTAs share a head, each with kSplitCols columns, and a thread keeps kSplitRows rows of its column, so 4× the CTAs
 * each wait on a quarter of the loads. Every CTA convolves all dk q and k channels of its q/k head (one each per
 * thread, as column_kernel does); the four warps of a column add their partial pk and pq behind a second barrier.
 */
template <typename State>
__global__ void __launch_bounds__(kColumnDim, kSplitBlocksPerSm)
    split_column_kernel(const __grid_constant__ ForwardParams p)
{
    allow_dependents();
    __shared__ __align__(16) SplitTile tile;

    const la_layer &L = p.layer;
    const int head = (blockIdx.x / kSplitParts) % L.hv;
    const la_seq seq = p.seqs[blockIdx.x / kSplitParts / L.hv];
    if (seq.state_slot < 0 || seq.num_tokens >= p.long_tokens) return;

    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int col = (blockIdx.x % kSplitParts) * kSplitCols + lane;
    const int row0 = warp * kSplitRows;
    const size_t own = (size_t)row0 * kColumnDim + col; /* first element of the thread's rows within a head */

    float s[kSplitRows];
    load_initial_column<State>(p, seq, head, own, s);

    const auto [qk_head, conv_in, gates, delta_rule] = head_setup(p, seq, head);

    CheckpointCursor checkpoint = first_checkpoint(p, seq);

    for (int t = 0; t < seq.num_tokens; ++t) {
        const int64_t row = seq.token_offset + t;
        const int buf = t % 2;
        const GateInputs gate_in = gate_inputs(p, row, head, delta_rule);
        const float q_own = conv_output(p, conv_in, qk_head * kColumnDim + threadIdx.x, t);
        const float k_own = conv_output(p, conv_in, (L.hk + qk_head) * kColumnDim + threadIdx.x, t);
        /* every warp convolves its column's v: the same addresses, so cache hits, and no third barrier */
        const float v = conv_output(p, conv_in, (2 * L.hk + head) * kColumnDim + col, t);
        put_qk(tile.qk, buf, q_own, k_own);
        __syncthreads();
        const QkFactors f = qk_factors(L, tile.qk, buf);

        float pk[4] = {}, pq[4] = {};
#pragma unroll
        for (int i = 0; i < kSplitRows; i += 4) {
            const float4 k4 = *reinterpret_cast<const float4 *>(&tile.qk.k[buf][row0 + i]);
            const float4 q4 = *reinterpret_cast<const float4 *>(&tile.qk.q[buf][row0 + i]);
            pk[0] = fmaf(s[i], k4.x, pk[0]), pq[0] = fmaf(s[i], q4.x, pq[0]);
            pk[1] = fmaf(s[i + 1], k4.y, pk[1]), pq[1] = fmaf(s[i + 1], q4.y, pq[1]);
            pk[2] = fmaf(s[i + 2], k4.z, pk[2]), pq[2] = fmaf(s[i + 2], q4.z, pq[2]);
            pk[3] = fmaf(s[i + 3], k4.w, pk[3]), pq[3] = fmaf(s[i + 3], q4.w, pq[3]);
            fence_shared_reads(i);
        }
        tile.sums[buf][0][warp][lane] = (pk[0] + pk[1]) + (pk[2] + pk[3]);
        tile.sums[buf][1][warp][lane] = (pq[0] + pq[1]) + (pq[2] + pq[3]);
        __syncthreads();

        /* the same order in every warp, so all four hold the same u */
        float pk_sum = 0.0f, pq_sum = 0.0f;
#pragma unroll
        for (int w = 0; w < kColumnWarps; ++w) {
            pk_sum += tile.sums[buf][0][w][lane];
            pq_sum += tile.sums[buf][1][w][lane];
        }
        pk_sum *= f.k;
        pq_sum *= f.q;

        const Gate gate = token_gate(p, gate_in, gates, delta_rule);
        const float decay = gate.decay;
        const float u = delta_rule ? gate.beta * (v - decay * pk_sum) : v;
        if (warp == 0)
            p.io.out[row * p.io.out_stride + head * kColumnDim + col] =
                float_to_bf16_bits(fmaf(f.qk, u, decay * pq_sum));

        const float ku = f.k * u;
#pragma unroll
        for (int i = 0; i < kSplitRows; i += 4) {
            const float4 k4 = *reinterpret_cast<const float4 *>(&tile.qk.k[buf][row0 + i]);
            s[i] = fmaf(k4.x, ku, decay * s[i]);
            s[i + 1] = fmaf(k4.y, ku, decay * s[i + 1]);
            s[i + 2] = fmaf(k4.z, ku, decay * s[i + 2]);
            s[i + 3] = fmaf(k4.w, ku, decay * s[i + 3]);
            fence_shared_reads(i);
        }

        const int64_t tokens_done = seq.start_position + t + 1;
        for (; checkpoint.position == tokens_done; advance(p, checkpoint))
            store_column(head_state<State>(p, p.checkpoints[checkpoint.next].slot, head) + own, s);
    }
    store_column(head_state<State>(p, seq.state_slot, head) + own, s);
}

/* ---- conv windows ------------------------------------------------------------------------------------------- */

/* kConvVec bf16 of consecutive channels; one 16-byte access when all are inside the row and aligned. */
__device__ __forceinline__ uint4 load8(const uint16_t *src, int valid, bool vector)
{
    if (vector) return *reinterpret_cast<const uint4 *>(src);
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const uint32_t lo = 2 * e < valid ? src[2 * e] : 0, hi = 2 * e + 1 < valid ? src[2 * e + 1] : 0;
        w[e] = lo | (hi << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void store8(uint16_t *dst, int valid, bool vector, uint4 bits)
{
    if (vector) {
        *reinterpret_cast<uint4 *>(dst) = bits;
        return;
    }
    const uint32_t w[4] = {bits.x, bits.y, bits.z, bits.w};
#pragma unroll
    for (int e = 0; e < 2 * 4; ++e)
        if (e < valid) dst[e] = (uint16_t)(w[e / 2] >> (16 * (e % 2)));
}

/* window[idx] for a run-time idx without putting the array in local memory. */
__device__ __forceinline__ uint4 pick(const uint4 (&window)[kMaxWidth - 1], int idx)
{
    uint4 value = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int m = 0; m < kMaxWidth - 1; ++m)
        if (m == idx) value = window[m];
    return value;
}

/* Channels c0 .. c0 + valid - 1 of one sequence, and whether the conv pool and the qkv rows allow vector access. */
struct ConvChunk {
    int c0, valid;
    bool pool_vector, rows_vector;
};

/* Writes into `slot` the last W-1 conv inputs of the chunk's channels after `done` tokens of this step. */
__device__ __forceinline__ void write_window(const ForwardParams &p, const la_seq &seq, const ConvChunk &ch,
                                             const uint4 (&init)[kMaxWidth - 1], int slot, int64_t done)
{
    const int keep = p.layer.conv_width - 1;
    uint16_t *dst = p.state.conv + (size_t)slot * keep * p.channels + ch.c0;
#pragma unroll
    for (int m = 0; m < kMaxWidth - 1; ++m) {
        if (m >= keep) break;
        const int64_t tau = done - keep + m; /* token index within the step; < 0: from the initial window */
        const uint4 bits = tau >= 0 ? load8(p.io.qkv + (seq.token_offset + tau) * p.io.qkv_stride + ch.c0, ch.valid,
                                            ch.rows_vector)
                                    : pick(init, (int)(tau + keep));
        store8(dst + (size_t)m * p.channels, ch.valid, ch.pool_vector, bits);
    }
}

/* Slices of a sequence's checkpoints (gridDim.y): each window costs two dependent memory round trips, so 16
 * checkpoints in one thread took ~35 µs. Slice 0 writes the final window and the checkpoints that reach into the
 * initial one (within the first W − 1 tokens of the step, so at most the first two: positions are sorted and such a
 * checkpoint sits at a multiple of 64 or at the step's end); slice s > 0 the others with index i ≡ s − 1 (mod
 * kConvSlices − 1). Only slice 0 reads the initial window, which its final window may overwrite (CONTINUE). */
constexpr int kConvSlices = 8;

__global__ void __launch_bounds__(kConvThreads)
    conv_state_kernel(const __grid_constant__ ForwardParams p, int blocks_per_seq)
{
    const la_seq seq = p.seqs[blockIdx.x / blocks_per_seq];
    const int slice = blockIdx.y;
    ConvChunk ch;
    ch.c0 = ((blockIdx.x % blocks_per_seq) * kConvThreads + threadIdx.x) * kConvVec;
    if (seq.state_slot < 0 || ch.c0 >= p.channels) return;
    ch.valid = min(kConvVec, p.channels - ch.c0);
    ch.pool_vector = ch.valid == kConvVec && p.channels % kConvVec == 0 && aligned(p.state.conv, 16);
    ch.rows_vector = ch.valid == kConvVec && p.io.qkv_stride % kConvVec == 0 && aligned(p.io.qkv, 16);

    const int keep = p.layer.conv_width - 1;
    const auto reaches_back = [&](const la_checkpoint &cp) { return cp.position - seq.start_position < keep; };
    uint4 init[kMaxWidth - 1];
    if (slice > 0) {
        for (int m = 0; m < kMaxWidth - 1; ++m) init[m] = make_uint4(0, 0, 0, 0); /* never read */
        wait_for_primary();
        for (int i = slice - 1; i < seq.checkpoint_count; i += kConvSlices - 1) {
            const la_checkpoint cp = p.checkpoints[seq.checkpoint_begin + i];
            if (!reaches_back(cp)) write_window(p, seq, ch, init, cp.slot, cp.position - seq.start_position);
        }
        return;
    }
    /* The whole initial window goes to registers first: for a continued sequence the final window below
     * overwrites it in place. */
#pragma unroll
    for (int m = 0; m < kMaxWidth - 1; ++m)
        init[m] = m < keep && seq.init_slot >= 0
                      ? load8(p.state.conv + ((size_t)seq.init_slot * keep + m) * p.channels + ch.c0, ch.valid,
                              ch.pool_vector)
                      : make_uint4(0, 0, 0, 0);
    wait_for_primary();
    for (int i = 0; i < seq.checkpoint_count; ++i) {
        const la_checkpoint cp = p.checkpoints[seq.checkpoint_begin + i];
        if (!reaches_back(cp)) break;
        write_window(p, seq, ch, init, cp.slot, cp.position - seq.start_position);
    }
    write_window(p, seq, ch, init, seq.state_slot, seq.num_tokens);
}

/* ---- launch ----------------------------------------------------------------------------------------------------- */

/* kRows rows per lane pair: 4 up to dk = 64, 8 up to dk = 128, 16 up to dk = 256. */
template <typename State> cudaError_t launch_recurrent(const ForwardParams &p, unsigned blocks, cudaStream_t stream)
{
    if (p.layer.dk <= 4 * kRowGroups)
        recurrent_kernel<4, State><<<blocks, kWarps * 32, 0, stream>>>(p);
    else if (p.layer.dk <= 8 * kRowGroups)
        recurrent_kernel<8, State><<<blocks, kWarps * 32, 0, stream>>>(p);
    else
        recurrent_kernel<16, State><<<blocks, kWarps * 32, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename State>
cudaError_t launch_columns(const ForwardParams &p, unsigned blocks, bool split, cudaStream_t stream)
{
    if (split)
        split_column_kernel<State><<<blocks, kColumnDim, 0, stream>>>(p);
    else
        column_kernel<State><<<blocks, kColumnDim, 0, stream>>>(p);
    return cudaGetLastError();
}

/* Whether a column-owned forward splits each head over kSplitParts CTAs: when one CTA per (sequence, v-head) would
 * leave SMs idle (fewer CTAs than SMs). Measured on an H200 (hv = 32): the split takes B=1 from 11.7 to 9.5 µs and
 * B=3 from 12.8 to 11.0 µs, but B=8 from 16.1 to 18.3 µs, so it stops below one CTA per SM. num_seqs is the plan's
 * capacity, fixed for a captured graph, so the choice is too. */
constexpr int kSplitBelowPerSm = 1;
cudaError_t split_columns(int32_t num_seqs, int32_t hv, bool *split)
{
    int sms = 0;
    const cudaError_t err = la_cuda_sm_count(&sms);
    *split = err == cudaSuccess && (long long)num_seqs * hv < (long long)kSplitBelowPerSm * sms;
    return err;
}

bool supported_shape(const la_layer &L)
{
    return L.hk > 0 && L.hv > 0 && L.hv % L.hk == 0 && L.dk >= 1 && L.dk <= kMaxHeadDim && L.dv >= 1 &&
           L.dv <= kMaxHeadDim && L.conv_width >= 0 && L.conv_width <= kMaxWidth &&
           (L.state_dtype == LA_STATE_F32 || L.state_dtype == LA_STATE_BF16) &&
           (L.kind == LA_KIND_GATED_DELTANET || L.kind == LA_KIND_SIMPLE_GLA);
}

/* From this many tokens on, a sequence's recurrence runs in the chunked tensor-core kernels (chunk_prefill.cu):
 * token by token costs ~2.6 µs a token per CTA, the chunked passes a few µs a 64-token chunk, so the two meet below
 * 5 tokens; 16 keeps decode and short speculative chunks on the kernel built for them. */
constexpr int32_t kChunkedMinTokens = 16;

} // namespace

extern "C" uint64_t la_cuda_forward_workspace_bytes(const la_layer *layer, int64_t max_tokens, int32_t max_seqs)
{
    if (max_tokens < kChunkedMinTokens) return 0;
    return la_cuda_chunk_prefill_workspace_bytes(layer, max_tokens, max_seqs);
}

extern "C" int la_cuda_forward(const la_layer *layer, const la_batch *batch, const la_io *io,
                               const la_state_view *state, struct CUstream_st *stream)
{
    if (!supported_shape(*layer)) return cudaErrorInvalidValue;
    if (batch->num_seqs <= 0) return cudaSuccess;

    ForwardParams p;
    p.layer = *layer;
    p.channels = la_channels(layer);
    p.seqs = batch->seqs;
    p.checkpoints = batch->checkpoints;
    p.io = *io;
    p.state = *state;
    const bool chunked = batch->max_seq_tokens >= kChunkedMinTokens && la_cuda_chunk_prefill_supported(layer);
    p.long_tokens = chunked ? kChunkedMinTokens : INT_MAX;

    const bool columns = layer->dk == kColumnDim && layer->dv == kColumnDim;
    bool split = false;
    if (columns) {
        const cudaError_t err = split_columns(batch->num_seqs, layer->hv, &split);
        if (err != cudaSuccess) return err;
    }
    const int cols_per_block = !columns ? kBlockCols : split ? kSplitCols : kColumnDim;
    const long long blocks =
        (long long)batch->num_seqs * layer->hv * ((layer->dv + cols_per_block - 1) / cols_per_block);
    if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    const bool f32 = layer->state_dtype == LA_STATE_F32;
    cudaError_t err = columns ? (f32 ? launch_columns<float>(p, (unsigned)blocks, split, stream)
                                     : launch_columns<uint16_t>(p, (unsigned)blocks, split, stream))
                              : (f32 ? launch_recurrent<float>(p, (unsigned)blocks, stream)
                                     : launch_recurrent<uint16_t>(p, (unsigned)blocks, stream));
    if (err == cudaSuccess && chunked)
        err = (cudaError_t)la_cuda_chunk_prefill_long(layer, batch, io, state, stream, kChunkedMinTokens);
    if (err != cudaSuccess || layer->conv_width < 2) return err;

    const int chunks = (p.channels + kConvVec - 1) / kConvVec;
    const int blocks_per_seq = (chunks + kConvThreads - 1) / kConvThreads;
    const long long conv_blocks = (long long)batch->num_seqs * blocks_per_seq;
    if (conv_blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    cudaLaunchAttribute early_start;
    early_start.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    early_start.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)conv_blocks, kConvSlices);
    config.blockDim = dim3(kConvThreads);
    config.stream = stream;
    config.attrs = &early_start;
    config.numAttrs = 1;
    return cudaLaunchKernelEx(&config, conv_state_kernel, p, blocks_per_seq);
}
