/*
 * la_forward.cu — token-sequential CUDA implementation of abi/MATH.md for one layer over a batch.
 *
 * Two launches per forward, both with grids that depend only on num_seqs and the layer's shape, both reading the
 * batch metadata from device memory (so a decode step can be captured in a CUDA graph and replayed):
 *
 * 1. recurrent_kernel — one CTA per (sequence, v-head, 32-column tile of dv). The CTA holds its dk×32 tile of the
 *    state in registers over all of the sequence's tokens, so a decode step reads and writes each state byte once.
 *    Per token it recomputes the conv + SiLU of every channel it needs (the dk q and dk k channels of its q/k head,
 *    its own 32 v channels): a few hundred FMAs next to 16 KiB of state, and no CTA waits for another. It writes
 *    the outputs, the final recurrent state and the recurrent state of each checkpoint. With thread (r, c) holding
 *    rows i = r + 16m and columns j = 4c .. 4c+3 of the tile, a token costs one reduction over i for both
 *        pk_j = Σ_i S_ij k_i   and   pq_j = Σ_i S_ij q_i   (old state)
 *    after which  u_j = β (v_j − e^g pk_j)  (GLA: u_j = v_j),  o_j = e^g pq_j + (q·k) u_j  (= Σ_i S'_ij q_i),
 *    and  S'_ij = e^g S_ij + k_i u_j.
 *
 * 2. conv_state_kernel — one thread per (sequence, channel) writes the conv windows: each checkpoint's and the
 *    final one. It runs after (1) on the same stream because (1) reads the initial window, which for a continued
 *    sequence lives in the very slot (2) overwrites; q/k channels are read by several CTAs of (1), so no CTA of (1)
 *    could overwrite them without a grid-wide barrier.
 *
 * Like the CPU reference, the working state stays float32 for the whole step; bf16 state is rounded only when
 * stored.
 */
#include "la_cuda.h"

#include <climits>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTileCols = 32;
constexpr int kColsPerThread = 4;
constexpr int kColGroups = kTileCols / kColsPerThread; /* 8: threads sharing a row of the tile */
constexpr int kRowGroups = kThreads / kColGroups;      /* 16: row stride between a thread's rows */
constexpr int kMaxHeadDim = 256;
/* Resident CTAs per SM asked of the register allocator for dk <= 128: decode is bound by how many state loads
 * are in flight, so occupancy beats the few registers the compiler would otherwise use for scheduling slack. */
#ifndef LA_DECODE_BLOCKS_PER_SM
#define LA_DECODE_BLOCKS_PER_SM 5
#endif
constexpr int kDecodeBlocksPerSm = LA_DECODE_BLOCKS_PER_SM;
constexpr int kMaxWidth = 8;
constexpr int kConvThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

struct ForwardParams {
    la_layer layer;
    int32_t channels;
    const la_seq *seqs;
    const la_checkpoint *checkpoints;
    la_io io;
    la_state_view state;
};

__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) { return __uint_as_float((uint32_t)bits << 16); }

__device__ __forceinline__ uint16_t float_to_bf16_bits(float value)
{
    return __bfloat16_as_ushort(__float2bfloat16_rn(value));
}

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* ---- state tile: 4 columns of kRows rows per thread, in registers ----------------------------------------- */

__device__ __forceinline__ void load4(const float *src, int valid, bool vector, float out[4])
{
    if (vector) {
        float4 v = *reinterpret_cast<const float4 *>(src);
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
        *reinterpret_cast<float4 *>(dst) = make_float4(in[0], in[1], in[2], in[3]);
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

/* Where this thread's part of a head's state lives: rows row0 + kRowGroups·m, columns col .. col + valid - 1. */
struct TileCoords {
    int dk, dv;
    int row0, col;
    int valid;   /* columns of the 4 inside dv */
    bool vector; /* 4 columns, aligned: one vector access per row */
};

template <typename State> __device__ __forceinline__ State *head_state(const ForwardParams &p, int slot, int head)
{
    const la_layer &L = p.layer;
    return static_cast<State *>(p.state.recurrent) + ((size_t)slot * L.hv + head) * (size_t)L.dk * L.dv;
}

template <int kRows, typename State>
__device__ __forceinline__ void load_tile(const State *head, const TileCoords &t, float s[kRows][4])
{
#pragma unroll
    for (int m = 0; m < kRows; ++m) {
        const int i = t.row0 + kRowGroups * m;
        if (i < t.dk && t.valid > 0) {
            load4(head + (size_t)i * t.dv + t.col, t.valid, t.vector, s[m]);
        } else {
#pragma unroll
            for (int c = 0; c < 4; ++c) s[m][c] = 0.0f;
        }
    }
}

template <int kRows, typename State>
__device__ __forceinline__ void store_tile(State *head, const TileCoords &t, const float s[kRows][4])
{
#pragma unroll
    for (int m = 0; m < kRows; ++m) {
        const int i = t.row0 + kRowGroups * m;
        if (i < t.dk && t.valid > 0) store4(head + (size_t)i * t.dv + t.col, t.valid, t.vector, s[m]);
    }
}

/* ---- short conv of one channel ------------------------------------------------------------------------------ */

/* Where a sequence's conv inputs before the current token live: earlier rows of qkv, or, for the first W-1 tokens,
 * the initial window. They are re-read at every token instead of being kept in registers: in a prefill they are
 * L1 hits, and at decode registers are what limits how many CTAs, so how many state loads, an SM keeps in flight. */
struct ConvInputs {
    const uint16_t *rows;        /* qkv row of the sequence's first token of this step */
    const uint16_t *init_window; /* [W-1][C], or nullptr for zeros */
};

__device__ __forceinline__ float silu(float z) { return z * sigmoid(z); }

/* SiLU(bias + Σ_w weight[w]·x_{t-(W-1)+w}) of channel c at token t, x_t given; x_t itself without conv. */
__device__ __forceinline__ float conv_output(const ForwardParams &p, const ConvInputs &in, int c, int t, uint16_t x)
{
    const int width = p.layer.conv_width;
    if (width == 0) return bf16_bits_to_float(x);
    const float *taps = p.layer.conv_weight + (size_t)c * width;
    float acc = fmaf(taps[width - 1], bf16_bits_to_float(x), p.layer.conv_bias ? p.layer.conv_bias[c] : 0.0f);
    for (int w = 0; w < width - 1; ++w) {
        const int tau = t - (width - 1) + w; /* token index within the step; < 0: from the initial window */
        uint16_t bits = 0;
        if (tau >= 0)
            bits = in.rows[(int64_t)tau * p.io.qkv_stride + c];
        else if (in.init_window)
            bits = in.init_window[(size_t)(tau + width - 1) * p.channels + c];
        acc = fmaf(taps[w], bf16_bits_to_float(bits), acc);
    }
    return silu(acc);
}

/* ---- per-token inputs of one CTA, loaded a token ahead ------------------------------------------------------ */

template <int kQkPerThread> struct TokenInputs {
    uint16_t q[kQkPerThread], k[kQkPerThread], v, a, b;
};

template <int kQkPerThread> struct ChannelMap {
    int q[kQkPerThread], k[kQkPerThread], v; /* channel index, or -1 when this thread has none */
};

template <int kQkPerThread>
__device__ __forceinline__ TokenInputs<kQkPerThread> load_inputs(const ForwardParams &p,
                                                                 const ChannelMap<kQkPerThread> &map, int64_t row,
                                                                 int head)
{
    TokenInputs<kQkPerThread> in;
    const uint16_t *x = p.io.qkv + row * p.io.qkv_stride;
#pragma unroll
    for (int r = 0; r < kQkPerThread; ++r) {
        in.q[r] = map.q[r] >= 0 ? x[map.q[r]] : 0;
        in.k[r] = map.k[r] >= 0 ? x[map.k[r]] : 0;
    }
    in.v = map.v >= 0 ? x[map.v] : 0;
    in.a = p.io.a ? p.io.a[row * p.io.a_stride + head] : 0;
    in.b = p.layer.kind == LA_KIND_GATED_DELTANET ? p.io.b[row * p.io.b_stride + head] : 0;
    return in;
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
    return x;
}

/* Sum over the 4 row groups of a warp (lanes 8 apart hold the same columns). */
__device__ __forceinline__ float row_groups_sum(float x)
{
    x += __shfl_xor_sync(kFullMask, x, 8);
    x += __shfl_xor_sync(kFullMask, x, 16);
    return x;
}

/* kRows = rows of the tile per thread (dk ≤ 16·kRows); State = float or uint16_t (bf16 bits). */
template <int kRows, typename State>
__global__ void __launch_bounds__(kThreads, kRows <= 8 ? kDecodeBlocksPerSm : 3) recurrent_kernel(const __grid_constant__ ForwardParams p)
{
    constexpr int kQkPerThread = (kRows * kRowGroups + kThreads - 1) / kThreads;
    static_assert(kRows * kRowGroups <= kMaxHeadDim, "tile rows exceed the largest head");

    __shared__ float q_raw[kMaxHeadDim], k_raw[kMaxHeadDim]; /* post-conv, before normalisation */
    __shared__ float v_tile[kTileCols];
    __shared__ float norm_part[kWarps][3];                   /* Σq², Σk², Σqk per warp */
    __shared__ float4 state_part[kWarps][kColGroups][2];     /* Σ S k, Σ S q per warp and column group */

    const la_layer &L = p.layer;
    const int tiles = ceil_div(L.dv, kTileCols);
    const int tile = blockIdx.x % tiles;
    const int head = (blockIdx.x / tiles) % L.hv;
    const la_seq seq = p.seqs[blockIdx.x / tiles / L.hv];
    if (seq.state_slot < 0) return;

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    TileCoords tc;
    tc.dk = L.dk;
    tc.dv = L.dv;
    tc.row0 = tid / kColGroups;
    tc.col = tile * kTileCols + (tid % kColGroups) * kColsPerThread;
    tc.valid = min(kColsPerThread, max(0, L.dv - tc.col));
    tc.vector = L.dv % kColsPerThread == 0 && tc.valid == kColsPerThread;

    /* The state loads go first: they are the long pole, and nothing below depends on them until the first token. */
    float s[kRows][4];
    if (seq.init_slot >= 0) {
        load_tile<kRows>(head_state<State>(p, seq.init_slot, head), tc, s);
    } else {
#pragma unroll
        for (int m = 0; m < kRows; ++m)
#pragma unroll
            for (int c = 0; c < 4; ++c) s[m][c] = 0.0f;
    }

    const int qk_head = head / (L.hv / L.hk);
    ChannelMap<kQkPerThread> map;
#pragma unroll
    for (int r = 0; r < kQkPerThread; ++r) {
        const int i = tid + kThreads * r;
        map.q[r] = i < L.dk ? qk_head * L.dk + i : -1;
        map.k[r] = i < L.dk ? (L.hk + qk_head) * L.dk + i : -1;
    }
    const int v_col = tile * kTileCols + tid;
    map.v = tid < kTileCols && v_col < L.dv ? 2 * L.hk * L.dk + head * L.dv + v_col : -1;

    ConvInputs conv_in;
    conv_in.rows = p.io.qkv + seq.token_offset * p.io.qkv_stride;
    conv_in.init_window = L.conv_width > 1 && seq.init_slot >= 0
                              ? p.state.conv + (size_t)seq.init_slot * (L.conv_width - 1) * p.channels
                              : nullptr;

    /* Rows and columns past dk/dv read as zero, so they add nothing to the sums and their state stays zero. */
    for (int i = L.dk + tid; i < kRows * kRowGroups; i += kThreads) q_raw[i] = k_raw[i] = 0.0f;
    if (tid < kTileCols && map.v < 0) v_tile[tid] = 0.0f;

    const float decay_rate = expf(L.A_log[head]);
    const float dt_bias = L.dt_bias ? L.dt_bias[head] : 0.0f;
    const bool delta_rule = L.kind == LA_KIND_GATED_DELTANET;

    int next_checkpoint = seq.checkpoint_begin;
    const int checkpoints_end = seq.checkpoint_begin + seq.checkpoint_count;
    int64_t checkpoint_position = next_checkpoint < checkpoints_end ? p.checkpoints[next_checkpoint].position : -1;

    TokenInputs<kQkPerThread> next_in;
    if (seq.num_tokens > 0) next_in = load_inputs<kQkPerThread>(p, map, seq.token_offset, head);

    for (int t = 0; t < seq.num_tokens; ++t) {
        const int64_t row = seq.token_offset + t;
        const TokenInputs<kQkPerThread> in = next_in;
        if (t + 1 < seq.num_tokens) next_in = load_inputs<kQkPerThread>(p, map, row + 1, head);

        /* conv + SiLU of this token's channels; partial sums for the q/k norms */
        float sq = 0.0f, sk = 0.0f, sqk = 0.0f;
#pragma unroll
        for (int r = 0; r < kQkPerThread; ++r) {
            if (map.q[r] >= 0) {
                const float q = conv_output(p, conv_in, map.q[r], t, in.q[r]);
                const float k = conv_output(p, conv_in, map.k[r], t, in.k[r]);
                q_raw[tid + kThreads * r] = q;
                k_raw[tid + kThreads * r] = k;
                sq = fmaf(q, q, sq);
                sk = fmaf(k, k, sk);
                sqk = fmaf(q, k, sqk);
            }
        }
        if (map.v >= 0) v_tile[tid] = conv_output(p, conv_in, map.v, t, in.v);
        sq = warp_sum(sq);
        sk = warp_sum(sk);
        sqk = warp_sum(sqk);
        if (tid % 32 == 0) {
            norm_part[warp][0] = sq;
            norm_part[warp][1] = sk;
            norm_part[warp][2] = sqk;
        }
        __syncthreads();

        sq = sk = sqk = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
            sq += norm_part[w][0];
            sk += norm_part[w][1];
            sqk += norm_part[w][2];
        }
        float q_factor = L.scale, k_factor = 1.0f;
        if (L.qk_l2norm) {
            q_factor *= rsqrtf(sq + 1e-6f);
            k_factor = rsqrtf(sk + 1e-6f);
        }
        const float qk = sqk * q_factor * k_factor;

        /* Everything a thread needs from shared memory after the next barrier is copied to registers before it:
         * the next token's conv overwrites q_raw, k_raw and v_tile as soon as a thread passes that barrier. */
        float k_row[kRows], v[4], pk[4] = {0.0f, 0.0f, 0.0f, 0.0f}, pq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int m = 0; m < kRows; ++m) {
            const int i = tc.row0 + kRowGroups * m;
            const float k = k_raw[i], q = q_raw[i];
            k_row[m] = k * k_factor;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                pk[c] = fmaf(s[m][c], k, pk[c]);
                pq[c] = fmaf(s[m][c], q, pq[c]);
            }
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            v[c] = v_tile[(tid % kColGroups) * kColsPerThread + c];
            pk[c] = row_groups_sum(pk[c]);
            pq[c] = row_groups_sum(pq[c]);
        }
        if (tid % 32 < kColGroups) {
            state_part[warp][tid % kColGroups][0] = make_float4(pk[0], pk[1], pk[2], pk[3]);
            state_part[warp][tid % kColGroups][1] = make_float4(pq[0], pq[1], pq[2], pq[3]);
        }
        __syncthreads();

        float sum_k[4] = {0.0f, 0.0f, 0.0f, 0.0f}, sum_q[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
            const float4 a = state_part[w][tid % kColGroups][0], b = state_part[w][tid % kColGroups][1];
            sum_k[0] += a.x, sum_k[1] += a.y, sum_k[2] += a.z, sum_k[3] += a.w;
            sum_q[0] += b.x, sum_q[1] += b.y, sum_q[2] += b.z, sum_q[3] += b.w;
        }

        const float g = p.io.a ? -decay_rate * softplus(bf16_bits_to_float(in.a) + dt_bias) : -decay_rate;
        const float decay = expf(g);
        const float beta = delta_rule ? sigmoid(bf16_bits_to_float(in.b)) : 0.0f;
        float o[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const float u = delta_rule ? beta * (v[c] - decay * sum_k[c] * k_factor) : v[c];
            o[c] = fmaf(qk, u, decay * sum_q[c] * q_factor);
#pragma unroll
            for (int m = 0; m < kRows; ++m) s[m][c] = fmaf(k_row[m], u, decay * s[m][c]);
        }
        if (tc.row0 == 0) {
            uint16_t *out = p.io.out + row * p.io.out_stride + (size_t)head * L.dv + tc.col;
#pragma unroll
            for (int c = 0; c < 4; ++c)
                if (c < tc.valid) out[c] = float_to_bf16_bits(o[c]);
        }

        const int64_t tokens_done = seq.start_position + t + 1;
        while (checkpoint_position == tokens_done) {
            store_tile<kRows>(head_state<State>(p, p.checkpoints[next_checkpoint].slot, head), tc, s);
            ++next_checkpoint;
            checkpoint_position = next_checkpoint < checkpoints_end ? p.checkpoints[next_checkpoint].position : -1;
        }
    }
    store_tile<kRows>(head_state<State>(p, seq.state_slot, head), tc, s);
}

/* ---- conv windows ------------------------------------------------------------------------------------------- */

/* window[idx] for a run-time idx without putting the array in local memory. */
__device__ __forceinline__ uint16_t pick(const uint16_t (&window)[kMaxWidth - 1], int idx)
{
    uint16_t value = 0;
#pragma unroll
    for (int m = 0; m < kMaxWidth - 1; ++m)
        if (m == idx) value = window[m];
    return value;
}

/* Writes into `slot` the last W-1 conv inputs of channel c after `done` tokens of this step. */
__device__ __forceinline__ void write_window(const ForwardParams &p, const la_seq &seq, int c,
                                             const uint16_t (&init)[kMaxWidth - 1], int slot, int64_t done)
{
    const int keep = p.layer.conv_width - 1;
    uint16_t *dst = p.state.conv + (size_t)slot * keep * p.channels + c;
#pragma unroll
    for (int m = 0; m < kMaxWidth - 1; ++m) {
        if (m >= keep) break;
        const int64_t tau = done - keep + m; /* token index within the step; < 0: from the initial window */
        dst[(size_t)m * p.channels] =
            tau >= 0 ? p.io.qkv[(seq.token_offset + tau) * p.io.qkv_stride + c] : pick(init, (int)(tau + keep));
    }
}

__global__ void __launch_bounds__(kConvThreads) conv_state_kernel(const __grid_constant__ ForwardParams p, int blocks_per_seq)
{
    const la_seq seq = p.seqs[blockIdx.x / blocks_per_seq];
    const int c = (blockIdx.x % blocks_per_seq) * kConvThreads + threadIdx.x;
    if (seq.state_slot < 0 || c >= p.channels) return;

    /* The whole initial window goes to registers first: for a continued sequence the final window below
     * overwrites it in place. */
    const int keep = p.layer.conv_width - 1;
    uint16_t init[kMaxWidth - 1];
#pragma unroll
    for (int m = 0; m < kMaxWidth - 1; ++m)
        init[m] = m < keep && seq.init_slot >= 0
                      ? p.state.conv[((size_t)seq.init_slot * keep + m) * p.channels + c]
                      : 0;

    for (int i = 0; i < seq.checkpoint_count; ++i) {
        const la_checkpoint cp = p.checkpoints[seq.checkpoint_begin + i];
        write_window(p, seq, c, init, cp.slot, cp.position - seq.start_position);
    }
    write_window(p, seq, c, init, seq.state_slot, seq.num_tokens);
}

template <typename State>
cudaError_t launch_recurrent(const ForwardParams &p, unsigned blocks, cudaStream_t stream)
{
    if (p.layer.dk <= 4 * kRowGroups)
        recurrent_kernel<4, State><<<blocks, kThreads, 0, stream>>>(p);
    else if (p.layer.dk <= 8 * kRowGroups)
        recurrent_kernel<8, State><<<blocks, kThreads, 0, stream>>>(p);
    else
        recurrent_kernel<16, State><<<blocks, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

bool supported_shape(const la_layer &L)
{
    return L.hk > 0 && L.hv > 0 && L.hv % L.hk == 0 && L.dk >= 1 && L.dk <= kMaxHeadDim && L.dv >= 1 &&
           L.dv <= kMaxHeadDim && L.conv_width >= 0 && L.conv_width <= kMaxWidth &&
           (L.state_dtype == LA_STATE_F32 || L.state_dtype == LA_STATE_BF16) &&
           (L.kind == LA_KIND_GATED_DELTANET || L.kind == LA_KIND_SIMPLE_GLA);
}

} // namespace

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

    const long long blocks = (long long)batch->num_seqs * layer->hv * ((layer->dv + kTileCols - 1) / kTileCols);
    if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    cudaError_t err = layer->state_dtype == LA_STATE_F32 ? launch_recurrent<float>(p, (unsigned)blocks, stream)
                                                         : launch_recurrent<uint16_t>(p, (unsigned)blocks, stream);
    if (err != cudaSuccess || layer->conv_width < 2) return err;

    const int blocks_per_seq = (p.channels + kConvThreads - 1) / kConvThreads;
    const long long conv_blocks = (long long)batch->num_seqs * blocks_per_seq;
    if (conv_blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    conv_state_kernel<<<(unsigned)conv_blocks, kConvThreads, 0, stream>>>(p, blocks_per_seq);
    return cudaGetLastError();
}
