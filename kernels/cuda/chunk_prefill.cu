/*
 * chunk_prefill.cu — chunked prefill of Gated DeltaNet / simple GLA on tensor cores (abi/MATH.md §1–3). A sequence
 * is cut into chunks of C = 64 tokens whose boundaries sit at multiples of 64 in the ABSOLUTE position (a step
 * starting at position 100 begins with a chunk of 28 tokens), so every checkpoint lands on a chunk end. Per chunk,
 * with G the cumulative log decay inside it, D_ij = e^{G_i − G_j}, q = n_q q̂ and k = n_k k̂ (unit vectors and their
 * lengths), A = strict_tril(diag(β)(K Kᵀ ⊙ D)), P = tril(Q Kᵀ ⊙ D) (diagonal included) and T = I + A:
 *
 *     GDN:  U = U₀ − W S  with  U₀ = T⁻¹ diag(β) V,  W = T⁻¹ diag(β e^G) K        GLA:  U = V
 *           O = diag(e^G) Q S + P U,      S ← e^{G_C} S + Kᵀ diag(e^{G_C − G}) U
 *
 * U₀, W and P do not depend on the state, so only the products with S are sequential. Four launches:
 *
 *   1. chunk_map_kernel (one CTA) lists every chunk of the long sequences as a work item (sequence, first token).
 *   2. conv_kernel, one CTA per (chunk, q, k or v head): causal conv + SiLU (reading the initial conv window where
 *      the chunk starts the step); q̂, k̂ and their lengths, v scaled per row.
 *   3. prepare_kernel, one CTA per (chunk, v-head), all chunks at once: the gates, P and A on tensor cores, T⁻¹ by
 *      blocks and the triangular solve for [W | U₀] in one pass over dk + dv right-hand columns.
 *   4. chain_kernel, one CTA per (sequence, v-head, one or two 32-column tiles of dv), marches over the chunks.
 *      Each 16 columns of the state are carried by a pair of warps: the state warp keeps them, all dk rows, float32
 *      in registers as the A operand of its mma (X = W S, U = U₀ − X, the new S) and hands S and U to the output
 *      warp through shared memory (Y = Q̂ S and O), so no warp waits for another pair and the chain's critical path
 *      holds 128 of a chunk's 212 mma. The chunk's tiles arrive by bulk copies (cp.async.bulk, one mbarrier per
 *      stage), two or three chunks ahead. It writes the outputs, the checkpoints at their chunk ends and the final
 *      state.
 * Passes 2–4 meet in a workspace (la_batch.workspace; the Workspace struct below) indexed by the token's row in
 * the batch.
 *
 * Where the time goes (Qwen3-Next shape, one 8192-token sequence, ncu at its locked clocks, commit cb56e5b): on an
 * H100 conv 135 µs, prepare 241, chain 242 (the prefill takes 532 µs at run clocks); on an H200, a step earlier
 * (handoffs double-buffered, same speed), 136, 241 and 257. All are bound by instruction issue and latency, not by memory (DRAM 17–38% of peak) nor tensor cores. The
 * chain runs 128 CTAs of 4 warps, one warp per scheduler: a state warp issues ~740 instructions a chunk (128 mma),
 * an output warp ~620 (84 mma), at ~3.7 cycles an instruction (dependent ALU chains, then shared-memory loads), so
 * ~2.7k cycles a chunk. Measured against the version before it (same run on an H200, run clocks, T = 8192): the
 * warp pairs in place of a 16-warp CTA that shared S through shared memory behind two barriers a chunk (~4k cycles
 * a chunk) took the prefill from 580 to 555 µs, one scale per column for S and Ũ (no rescaling after the update,
 * no packing multiply, no maximum a chunk) to 502, and two tiles a CTA for batches with more chains than SMs took
 * 4×8192 from 1917 to 1730 µs and 64×1024 from 4104 to 3577. What did not pay: one warp doing all of a column
 * group's products (742 µs at T = 8192, ~1.9k instructions a chunk on one scheduler), named barriers between the
 * warps of a pair (racecheck reports the handoff, which it does not with per-lane mbarrier arrivals; same speed);
 * earlier, a single fused kernel that also carried the conv and the solve on the chain's path took ~25k cycles a
 * chunk. The conv was issue-bound at ~3.5k SASS instructions a warp (299 µs by ncu); with fewer of them (the
 * sigmoid on ex2/rcp.approx, √ as reduce·rsqrt, template instances for v and q/k, one vector load per row) it takes
 * 135 µs.
 *
 * DRAM traffic per token, Qwen3-Next's layer (fp16 workspace): the conv reads 16 KB of qkv and writes 16.3 KB, the
 * solve reads 16.9 KB and writes 21 KB (W, U₀, P, factors), the chain reads 28.5 KB and writes 8 KB of outputs:
 * ~108 KB, so ~300 µs at T = 8192 on an H100 at its copy bandwidth, ~1.8× under what the passes take now. Fusing
 * conv into the solve would save the 33 KB that the conv writes and the solve reads back.
 *
 * Operands are fp16 (10-bit mantissa; bf16 operands land near 4e-3 relative error against the float64 reference,
 * fp16 near 1e-3), accumulation fp32, each fp16 copy scaled by a power of two that keeps it in range whatever the
 * magnitude of the inputs: S and the update's Ũ by one per state column, from a bound on |S|; v per row; W and U₀ by
 * their right-hand sides' maxima (per chunk and head, with room for growth through the solve); U in the outputs by
 * its column's maximum.
 *
 * Conv windows are not written here (see chunk_prefill.h).
 */
#include "chunk_prefill.h"
#include "sm_count.h"

#include <climits>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace {

constexpr int kChunk = 64;
constexpr int kBlocks = kChunk / 16; /* 16-token blocks of a chunk */
constexpr int kDk = 128;
constexpr int kMaxDv = 128;
constexpr int kTileCols = 32; /* dv columns of a workspace tile of U */
constexpr int kWarps = 8; /* of a prepare CTA */
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxWidth = 8;
constexpr int kSolverWarp0 = kWarps - 2; /* the two warps that invert the diagonal blocks of T */
constexpr int kGateWarp = kWarps - 1;
constexpr int kStateTarget = 14;           /* scaled |S| and |Ũ| < 2^14 in fp16, from a bound on |S| */
constexpr int kSolveTarget = 8;            /* scaled right-hand sides < 2^8: room for growth through the solve */
constexpr int kUpdateTarget = 14;          /* scaled |U| < 2^14 per row of a chunk's Uᵀ */
constexpr int kMapThreads = 1024;
constexpr unsigned kFullMask = 0xffffffffu;

/* The chunk-parallel results, carved from the caller's workspace. Rows are the batch's token rows and every array
 * is head-major, so one chunk of one head is a contiguous block that the chain kernel fetches with a few bulk
 * copies. The 16-byte units of the rows of q̂, k̂, W and P are stored swizzled (unit c of the chunk's row r at
 * c ^ (r & 7)), so that copied as they are into unpadded shared tiles their ldmatrix reads are free of bank
 * conflicts; keyed by the row's place in its chunk, every tile has the same layout, so the kernels' shared-memory
 * addresses do not change from chunk to chunk. */
struct Workspace {
    __half *q, *k;   /* [hk][rows][dk]: q̂, k̂ (swizzled) */
    float *nq, *nk;  /* [hk][rows]: the lengths of q (times the scale) and k */
    __half *w;       /* [hv][rows][dk]: W · 2^w (swizzled) */
    __half *u;       /* [hv][dv / 32][rows][32] by 32-column tile: v · 2^(its row's), then U₀ · 2^u (GLA: V · 2^u) */
    float *v_inv;    /* [hv][rows]: 2^−(v's row scale) */
    __half *p;       /* [hv][rows][C]: row i of the chunk's P, columns by position in the chunk (swizzled) */
    float4 *factors; /* [hv][rows]: e^{G_i} n_q,i, e^{G_C − G_i} n_k,i (16 bytes a row: bulk-copy units) */
    float4 *chunk;   /* [hv][rows], at a chunk's first row: e^{G_C}, 2^−w, 2^−u */
    int64_t rows;
    int2 *items;     /* [max_items]: (sequence, first token of the chunk in the step) */
    int32_t *item_count;
    int32_t max_items;
};

/* Where the 16-byte unit holding column col (a multiple of 8) of a chunk's row r sits in its swizzled row, in
 * halves. */
__device__ __forceinline__ int swizzled_col(int r, int col) { return ((col >> 3) ^ (r & 7)) << 3; }

struct Params {
    la_layer layer;
    int32_t channels;
    const la_seq *seqs;
    int32_t num_seqs;
    const la_checkpoint *checkpoints;
    la_io io;
    la_state_view state;
    Workspace ws;
    int32_t tiles;       /* 32-column workspace tiles of U per v-head */
    int32_t chain_tiles; /* of them per chain CTA */
    int32_t vector_loads; /* qkv and conv windows allow 16-byte copies */
    int32_t out_pairs;    /* out allows 4-byte stores of two outputs */
    int32_t min_tokens;   /* sequences with fewer tokens are left to the token-sequential kernel */
};

/* Per-token gate quantities of a chunk; padding tokens have g = 0, β = 0. */
struct Gates {
    float big_g[kChunk]; /* G: cumulative log decay inside the chunk */
    float beta[kChunk];
    float exp_g[kChunk];          /* e^{G_i} */
    float gamma[kChunk];          /* e^{G_C − G_i} */
    float row_f[kChunk];          /* e^{G_i − G_{16·(i/16)}} */
    float col_f[kBlocks][kChunk]; /* e^{G_{16b} − G_j} for j < 16b */
};

/* ---- small helpers ------------------------------------------------------------------------------------------ */

__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) { return __uint_as_float((uint32_t)bits << 16); }
__device__ __forceinline__ uint16_t float_to_bf16_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
/* Fast-math gates: relative errors near 1e-6, far below what bf16 inputs carry. 2^x and 1/x go to the MUFU unit
 * with subnormals flushed: without the flush each takes a range test and two fix-ups around it, which cost the
 * issue-bound conv pass ~5 of its ~33 instructions an output. */
__device__ __forceinline__ float exp2_ftz(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float rcp_ftz(float x)
{
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float sigmoid(float z) { return rcp_ftz(1.0f + exp2_ftz(-1.4426950408889634f * z)); }
__device__ __forceinline__ float softplus(float z) { return z > 20.0f ? z : __logf(1.0f + __expf(z)); }

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* The warp's largest x ≥ 0: non-negative floats order like their bits, so one integer reduction does it. */
__device__ __forceinline__ float warp_max(float x)
{
    return __uint_as_float(__reduce_max_sync(kFullMask, __float_as_uint(x)));
}

/* 2^k with bound · 2^k < 2^target (k within ±100); 1 for a zero, subnormal or non-finite bound. */
__device__ __forceinline__ float pow2_scale(float bound, int target)
{
    const int biased = (int)((__float_as_uint(bound) >> 23) & 0xffu); /* bound in [2^(biased−127), 2^(biased−126)) */
    if (!(bound > 0.0f) || biased == 0 || biased == 0xff) return 1.0f;
    const int k = min(max(target - (biased - 126), -100), 100);
    return __uint_as_float((uint32_t)(k + 127) << 23);
}

/* ---- tensor-core fragments (mma.m16n8k16, fp16 in, fp32 accumulate) ----------------------------------------- */

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* B operands of two n-tiles (k0..k0+15 × n0..n0+15) of a matrix stored [n][k]: r0,r1 for n0.., r2,r3 for n0+8.. */
template <int kLd> __device__ __forceinline__ void load_b_nk(const __half (*m)[kLd], int n0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31;
    ldsm_x4(smem_addr(&m[n0 + (l & 7) + (l >> 4) * 8][k0 + ((l >> 3) & 1) * 8]), r);
}

/* The same from a matrix stored [k][n]. */
template <int kLd> __device__ __forceinline__ void load_b_kn(const __half (*m)[kLd], int k0, int n0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31;
    ldsm_x4_trans(smem_addr(&m[k0 + (l & 7) + ((l >> 3) & 1) * 8][n0 + (l >> 4) * 8]), r);
}

/* An accumulator pair (16×16, two n-tiles) as the A operand of the next product. */
__device__ __forceinline__ void accumulators_to_a(const float (&c)[2][4], uint32_t (&a)[4])
{
    a[0] = pack_half2(c[0][0], c[0][1]);
    a[1] = pack_half2(c[0][2], c[0][3]);
    a[2] = pack_half2(c[1][0], c[1][1]);
    a[3] = pack_half2(c[1][2], c[1][3]);
}
/* ---- workspace ------------------------------------------------------------------------------------------------ */

constexpr size_t kWorkspaceAlign = 256;

/* Lays the workspace out from base (nullptr: only measures); returns its size in bytes. */
uint64_t carve_workspace(const la_layer &L, int64_t rows, int32_t seqs, unsigned char *base, Workspace *ws)
{
    /* a sequence of n tokens has at most n/C + 2 chunks (a partial one at each end) */
    const int64_t max_items = rows / kChunk + 2 * (int64_t)seqs + 1;
    uint64_t offset = 0;
    auto take = [&](uint64_t bytes) {
        void *at = base ? base + offset : nullptr;
        offset += (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
        return at;
    };
    Workspace w;
    w.q = static_cast<__half *>(take((uint64_t)rows * L.hk * kDk * sizeof(__half)));
    w.k = static_cast<__half *>(take((uint64_t)rows * L.hk * kDk * sizeof(__half)));
    w.nq = static_cast<float *>(take((uint64_t)rows * L.hk * sizeof(float)));
    w.nk = static_cast<float *>(take((uint64_t)rows * L.hk * sizeof(float)));
    w.v_inv = static_cast<float *>(take((uint64_t)rows * L.hv * sizeof(float)));
    w.w = static_cast<__half *>(take((uint64_t)rows * L.hv * kDk * sizeof(__half)));
    w.u = static_cast<__half *>(take((uint64_t)rows * L.hv * L.dv * sizeof(__half)));
    w.p = static_cast<__half *>(take((uint64_t)rows * L.hv * kChunk * sizeof(__half)));
    w.factors = static_cast<float4 *>(take((uint64_t)rows * L.hv * sizeof(float4)));
    w.chunk = static_cast<float4 *>(take((uint64_t)rows * L.hv * sizeof(float4)));
    w.rows = rows;
    w.items = static_cast<int2 *>(take((uint64_t)max_items * sizeof(int2)));
    w.item_count = static_cast<int32_t *>(take(sizeof(int32_t)));
    w.max_items = max_items > INT_MAX ? INT_MAX : (int32_t)max_items;
    if (ws) *ws = w;
    return offset;
}

/* ---- chunks ----------------------------------------------------------------------------------------------------- */

__device__ __forceinline__ int chunk_length(const la_seq &seq, int c0)
{
    const int room = c0 == 0 ? kChunk - (int)(seq.start_position % kChunk) : kChunk;
    return min(seq.num_tokens - c0, room);
}

__device__ __forceinline__ bool runs_chunked(const la_seq &seq, int min_tokens)
{
    return seq.state_slot >= 0 && seq.num_tokens >= min_tokens;
}

__device__ __forceinline__ int chunk_count(const la_seq &seq)
{
    if (seq.num_tokens <= 0) return 0;
    const int first = chunk_length(seq, 0);
    return 1 + (seq.num_tokens - first + kChunk - 1) / kChunk;
}

/* One CTA: the work items of every chunked sequence, in order, by a block-wide scan over the sequences. */
__global__ void __launch_bounds__(kMapThreads) chunk_map_kernel(const __grid_constant__ Params p)
{
    constexpr int kMapWarps = kMapThreads / 32;
    __shared__ int warp_offsets[kMapWarps];
    __shared__ int tile_base;
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    if (threadIdx.x == 0) tile_base = 0;
    __syncthreads();
    for (int first = 0; first < p.num_seqs; first += kMapThreads) {
        const int s = first + (int)threadIdx.x;
        la_seq seq = {};
        int count = 0;
        if (s < p.num_seqs) {
            seq = p.seqs[s];
            count = runs_chunked(seq, p.min_tokens) ? chunk_count(seq) : 0;
        }
        int inclusive = count;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int x = __shfl_up_sync(kFullMask, inclusive, o);
            if (lane >= o) inclusive += x;
        }
        if (lane == 31) warp_offsets[warp] = inclusive;
        __syncthreads();
        if (warp == 0) {
            const int total = lane < kMapWarps ? warp_offsets[lane] : 0;
            int before = total;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int x = __shfl_up_sync(kFullMask, before, o);
                if (lane >= o) before += x;
            }
            if (lane < kMapWarps) warp_offsets[lane] = before - total;
        }
        __syncthreads();
        const int offset = tile_base + warp_offsets[warp] + inclusive - count;
        for (int c = 0, c0 = 0; c < count; ++c) {
            p.ws.items[offset + c] = make_int2(s, c0);
            c0 += chunk_length(seq, c0);
        }
        __syncthreads();
        if (threadIdx.x == kMapThreads - 1) tile_base = offset + count;
        __syncthreads();
    }
    if (threadIdx.x == 0) *p.ws.item_count = tile_base;
}


/* ---- swizzled shared tiles (the workspace's row layout, rows keyed by their index in the chunk) ----------------- */

/* ldmatrix of the A operand (16×16 at row m0, col k0) of a row-major tile, of the A operand of a tile stored
 * transposed ([k][m]), and of the B operands of two n-tiles of a tile stored [n][k]. */
template <int kCols>
__device__ __forceinline__ void load_a_swizzled(const __half (*m)[kCols], int m0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31, row = m0 + (l & 15), col = k0 + (l >> 4) * 8;
    ldsm_x4(smem_addr(&m[row][swizzled_col(row, col)]), r);
}

template <int kCols>
__device__ __forceinline__ void load_a_transposed_swizzled(const __half (*m)[kCols], int m0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31, row = k0 + (l & 7) + (l >> 4) * 8, col = m0 + ((l >> 3) & 1) * 8;
    ldsm_x4_trans(smem_addr(&m[row][swizzled_col(row, col)]), r);
}

template <int kCols>
__device__ __forceinline__ void load_b_nk_swizzled(const __half (*m)[kCols], int n0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31, row = n0 + (l & 7) + (l >> 4) * 8, col = k0 + ((l >> 3) & 1) * 8;
    ldsm_x4(smem_addr(&m[row][swizzled_col(row, col)]), r);
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}

__device__ __forceinline__ void wait_async_copies() { asm volatile("cp.async.wait_all;" ::: "memory"); }

/* One chunk of one sequence, as the chunk-parallel kernels see it. */
struct Item {
    la_seq seq;
    int c0, len;
    int64_t row0; /* the batch row of the chunk's first token */
};

/* The work item of blockIdx.x; false past the last one. */
__device__ __forceinline__ bool item_of_block(const Params &p, Item &it)
{
    if ((int)blockIdx.x >= *p.ws.item_count) return false;
    const int2 item = p.ws.items[blockIdx.x];
    it.seq = p.seqs[item.x];
    it.c0 = item.y;
    it.len = chunk_length(it.seq, it.c0);
    it.row0 = it.seq.token_offset + it.c0;
    return true;
}

/* ---- pass 2: the causal conv + SiLU, q/k norms ------------------------------------------------------------------ */

constexpr int kConvWarps = 4;
constexpr int kConvThreads = 32 * kConvWarps;
constexpr int kConvTokens = kChunk / kConvWarps; /* consecutive tokens per warp */
constexpr int kConvBatch = 4;                    /* tokens a warp finishes at once: their reductions overlap */

/* The pre-conv input of step token tau (negative: from the initial conv window, halo = width − 1) on channel ch, or
 * nullptr for zero. */
__device__ __forceinline__ const uint16_t *raw_source(const Params &p, const la_seq &seq, int halo, int tau, int ch)
{
    if (tau >= 0) return p.io.qkv + (seq.token_offset + tau) * p.io.qkv_stride + ch;
    if (seq.init_slot < 0 || halo == 0) return nullptr;
    return p.state.conv + ((size_t)seq.init_slot * halo + (halo + tau)) * p.channels + ch;
}

/* Four consecutive bf16 inputs, packed as they are in memory (zeros for nullptr). */
__device__ __forceinline__ uint2 load4_inputs(const Params &p, const uint16_t *src)
{
    if (!src) return make_uint2(0, 0);
    if (p.vector_loads) return *reinterpret_cast<const uint2 *>(src);
    return make_uint2((uint32_t)src[0] | ((uint32_t)src[1] << 16), (uint32_t)src[2] | ((uint32_t)src[3] << 16));
}

__device__ __forceinline__ float unpack_bf16(const uint2 &x, int c)
{
    const uint32_t word = c < 2 ? x.x : x.y;
    return __uint_as_float((c & 1) ? word & 0xffff0000u : word << 16);
}

/* Where a conv CTA works: a 128-channel group (a q head, a k head or a v head) of one chunk. */
struct ConvGroup {
    int head, ch0, width; /* the group's first channel and its channels (dk or dv) */
    bool q;
};

/* Where a lane's 4 channels of the group's rows go: rows `stride` halves apart from `first` (the warp's first row). */
struct ConvOut {
    __half *first;
    int stride;
    float *lengths; /* q/k: n of each row; v: 2^−(row scale) */
};

template <bool kV> __device__ __forceinline__ ConvOut conv_out(const Params &p, const ConvGroup &grp, int64_t row0)
{
    const int col = 4 * (threadIdx.x & 31);
    ConvOut out;
    if (kV) {
        out.first = p.ws.u + ((int64_t)(grp.head * p.tiles + col / kTileCols) * p.ws.rows + row0) * kTileCols +
                    col % kTileCols;
        out.stride = kTileCols;
        out.lengths = p.ws.v_inv + grp.head * p.ws.rows + row0;
    } else {
        out.first = (grp.q ? p.ws.q : p.ws.k) + (grp.head * p.ws.rows + row0) * kDk + (col & 7);
        out.stride = kDk;
        out.lengths = (grp.q ? p.ws.nq : p.ws.nk) + grp.head * p.ws.rows + row0;
    }
    return out;
}

/* 1/x of a normal power of two x, exactly: the exponent mirrored about the bias. */
__device__ __forceinline__ float pow2_inverse(float x) { return __uint_as_float((254u << 23) - __float_as_uint(x)); }

/* Stores row r (from the warp's first row row0) of the lane's 4 channels: q̂/k̂ as fp16 unit vectors in swizzled
 * rows with the length apart, v as fp16 scaled by the power of two of its row. `reduce` is Σ y² of the row (q/k) or
 * max |y| (v). */
template <bool kV>
__device__ __forceinline__ void store_conv_row(const Params &p, const ConvGroup &grp, const ConvOut &out,
                                               int t0, int r, const float (&y)[4], float reduce)
{
    const int lane = threadIdx.x & 31, col = 4 * lane;
    float f, length;
    __half *dst = out.first + r * out.stride;
    if (kV) {
        f = pow2_scale(reduce, 15);
        length = pow2_inverse(f);
    } else {
        f = reduce > 0.0f ? rsqrtf(reduce) : 0.0f;
        const float norm = reduce * f; /* √reduce */
        length = p.layer.qk_l2norm ? norm * rsqrtf(reduce + 1e-6f) : norm;
        if (grp.q) length *= p.layer.scale;
        dst += swizzled_col(t0 + r, col & ~7);
    }
    if (lane == 0) out.lengths[r] = length;
    if (col < grp.width)
        *reinterpret_cast<uint2 *>(dst) = make_uint2(pack_half2(y[0] * f, y[1] * f), pack_half2(y[2] * f, y[3] * f));
}

/* A warp's kRows inputs of its lane's 4 channels, raw[m] for chunk token t0 − halo + m: one vector load per row
 * when every row lies inside the step and the chunk (all chunks but a step's first and last), else row by row
 * from the rows, the initial window or zeros. */
template <int kRows, int kHalo>
__device__ __forceinline__ void load_conv_inputs(const Params &p, const Item &it, const ConvGroup &grp, int t0,
                                                 bool lane_real, uint2 (&raw)[kRows])
{
    const int col = 4 * (threadIdx.x & 31);
    const int tau0 = it.c0 + t0 - kHalo;
    const uint16_t *rows = p.io.qkv + (it.seq.token_offset + tau0) * p.io.qkv_stride + grp.ch0 + col;
    if (p.vector_loads && lane_real && tau0 >= 0 && t0 - kHalo + kRows <= it.len) {
#pragma unroll
        for (int m = 0; m < kRows; ++m) raw[m] = *reinterpret_cast<const uint2 *>(rows + (int64_t)m * p.io.qkv_stride);
        return;
    }
#pragma unroll
    for (int m = 0; m < kRows; ++m) {
        const int tau = tau0 + m;
        const bool needed = lane_real && t0 - kHalo + m < it.len;
        const uint16_t *src = nullptr;
        if (needed)
            src = tau >= 0 ? rows + (int64_t)m * p.io.qkv_stride : raw_source(p, it.seq, kHalo, tau, grp.ch0 + col);
        raw[m] = load4_inputs(p, src);
    }
}

/* A warp's 16 tokens of the group: lane l convolves channels 4l .. 4l + 3, its taps in registers and all its inputs
 * loaded up front (the loads are the long pole). kW: conv width (0: no conv, no SiLU); kV: a v group. */
template <int kW, bool kV>
__device__ __forceinline__ void conv_tokens(const Params &p, const Item &it, const ConvGroup &grp)
{
    constexpr int kTaps = kW > 0 ? kW : 1, kHalo = kTaps - 1, kRows = kHalo + kConvTokens;
    const la_layer &L = p.layer;
    const int lane = threadIdx.x & 31, col = 4 * lane, t0 = (threadIdx.x / 32) * kConvTokens;
    const bool lane_real = col < grp.width;

    uint2 raw[kRows];
    load_conv_inputs<kRows, kHalo>(p, it, grp, t0, lane_real, raw);
    float w[kTaps][4] = {}, bias[4] = {0.0f, 0.0f, 0.0f, 0.0f}; /* zeros past the group's width: outputs 0 */
    if (kW > 0 && lane_real) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int ch = grp.ch0 + col + c;
#pragma unroll
            for (int j = 0; j < kTaps; ++j) w[j][c] = L.conv_weight[(size_t)ch * kW + j];
            bias[c] = L.conv_bias ? L.conv_bias[ch] : 0.0f;
        }
    }
    const int64_t row0 = it.row0 + t0;
    const ConvOut out = conv_out<kV>(p, grp, row0);
    float x[kHalo + kConvBatch][4]; /* the unpacked window of the current batch */
#pragma unroll
    for (int m = 0; m < kHalo; ++m)
#pragma unroll
        for (int c = 0; c < 4; ++c) x[m][c] = unpack_bf16(raw[m], c);
#pragma unroll
    for (int base = 0; base < kConvTokens; base += kConvBatch) {
        float y[kConvBatch][4], reduce[kConvBatch];
#pragma unroll
        for (int b = 0; b < kConvBatch; ++b) {
#pragma unroll
            for (int c = 0; c < 4; ++c) x[kHalo + b][c] = unpack_bf16(raw[kHalo + base + b], c);
            reduce[b] = 0.0f;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                float acc = x[kHalo + b][c];
                if (kW > 0) {
                    acc = bias[c];
#pragma unroll
                    for (int j = 0; j < kTaps; ++j) acc = fmaf(w[j][c], x[b + j][c], acc);
                    acc *= sigmoid(acc); /* SiLU */
                }
                y[b][c] = acc;
                reduce[b] = kV ? fmaxf(reduce[b], fabsf(acc)) : fmaf(acc, acc, reduce[b]);
            }
        }
        if (kV) {
#pragma unroll
            for (int b = 0; b < kConvBatch; ++b) reduce[b] = warp_max(reduce[b]);
        } else {
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                for (int b = 0; b < kConvBatch; ++b) reduce[b] += __shfl_xor_sync(kFullMask, reduce[b], o);
        }
#pragma unroll
        for (int b = 0; b < kConvBatch; ++b)
            if (t0 + base + b < it.len) store_conv_row<kV>(p, grp, out, t0, base + b, y[b], reduce[b]);
#pragma unroll
        for (int m = 0; m < kHalo; ++m)
#pragma unroll
            for (int c = 0; c < 4; ++c) x[m][c] = x[m + kConvBatch][c];
    }
}

template <int kW>
__device__ __forceinline__ void conv_group(const Params &p, const Item &it, const ConvGroup &grp, bool v)
{
    if (v)
        conv_tokens<kW, true>(p, it, grp);
    else
        conv_tokens<kW, false>(p, it, grp);
}

/*
 * One CTA per (chunk, 128-channel group: a q head, a k head or a v head); warp w takes 16 consecutive tokens. q and
 * k are stored as unit vectors (fp16, swizzled rows) with their lengths apart (n_q times the scale), which folds the
 * l2norm into scalars and keeps fp16 in range; v as fp16 scaled per row by a power of two, into the 32-column tiles
 * that the prepare kernel overwrites with U₀.
 */
/* Resident conv CTAs per SM asked of the register allocator. One kernel per width: as one kernel switching on the
 * width it took the widest instance's 128 registers (4 CTAs an SM, DRAM 33% busy on an H200 by ncu); width 4 alone
 * fits 96 with no spill, so 5 CTAs keep more rows in flight. */
constexpr int conv_blocks_per_sm(int width) { return width <= 4 ? 5 : 4; }

template <int kW>
__global__ void __launch_bounds__(kConvThreads, conv_blocks_per_sm(kW)) conv_kernel(const __grid_constant__ Params p)
{
    const la_layer &L = p.layer;
    Item it;
    if (!item_of_block(p, it)) return;
    const int group = blockIdx.y;
    const bool v = group >= 2 * L.hk;
    ConvGroup grp;
    grp.q = group < L.hk;
    grp.head = v ? group - 2 * L.hk : grp.q ? group : group - L.hk;
    grp.width = v ? L.dv : kDk;
    grp.ch0 = v ? 2 * L.hk * kDk + grp.head * L.dv : group * kDk;
    conv_group<kW>(p, it, grp, v);
}

/* ---- pass 3: the chunk-parallel part of the solve ------------------------------------------------------------ */

struct alignas(16) PrepSmem {
    __half q[kChunk][kDk];                      /* q̂ (swizzled); P's left operand */
    __half k[kChunk][kDk];                      /* k̂ (swizzled); W · 2^w after the solve */
    __half v[kMaxDv / kTileCols][kChunk][kTileCols]; /* v · 2^(row's), by tile; U₀ · 2^u after the solve */
    __half a_neg[kChunk][kChunk + 8];           /* −A, off-diagonal 16×16 blocks */
    float a_diag[kBlocks][16][17];              /* A, diagonal blocks, fp32 */
    __half tinv[kBlocks][16][24];               /* (I + A_bb)^{-1} */
    float nq[kChunk], nk[kChunk], v_inv[kChunk];
    Gates gates;
};

/* The chunk's q̂, k̂ (swizzled rows) and v tiles by 16-byte asynchronous copies, zeros past its tokens; the
 * lengths and v's row scales by plain loads. */
__device__ __forceinline__ void load_prepare_inputs(const Params &p, const Item &it, int head, int qk_head,
                                                    PrepSmem &sm)
{
    const Workspace &ws = p.ws;
    const __half *q = ws.q + (qk_head * ws.rows + it.row0) * kDk, *k = ws.k + (qk_head * ws.rows + it.row0) * kDk;
    for (int idx = threadIdx.x; idx < kChunk * kDk / 8; idx += kThreads) {
        const int r = idx / (kDk / 8), c = 8 * (idx % (kDk / 8));
        if (r < it.len) {
            cp_async16(&sm.q[r][c], q + r * kDk + c);
            cp_async16(&sm.k[r][c], k + r * kDk + c);
        } else {
            *reinterpret_cast<uint4 *>(&sm.q[r][c]) = make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4 *>(&sm.k[r][c]) = make_uint4(0, 0, 0, 0);
        }
    }
    for (int idx = threadIdx.x; idx < p.tiles * kChunk * (kTileCols / 8); idx += kThreads) {
        const int tile = idx / (kChunk * kTileCols / 8), r = (idx / (kTileCols / 8)) % kChunk;
        const int c = 8 * (idx % (kTileCols / 8));
        const int64_t row = (int64_t)(head * p.tiles + tile) * ws.rows + it.row0 + r;
        if (r < it.len)
            cp_async16(&sm.v[tile][r][c], ws.u + row * kTileCols + c);
        else
            *reinterpret_cast<uint4 *>(&sm.v[tile][r][c]) = make_uint4(0, 0, 0, 0);
    }
    const int r = threadIdx.x % kChunk, which = threadIdx.x / kChunk;
    const bool real = r < it.len;
    if (which == 0) sm.nq[r] = real ? ws.nq[qk_head * ws.rows + it.row0 + r] : 0.0f;
    if (which == 1) sm.nk[r] = real ? ws.nk[qk_head * ws.rows + it.row0 + r] : 0.0f;
    if (which == 2) sm.v_inv[r] = real ? ws.v_inv[head * ws.rows + it.row0 + r] : 0.0f;
}

/* The gate warp: g and β of tokens 2·lane, 2·lane+1, the cumulative G and the decay factors built from it. Padding
 * tokens get g = 0, β = 0 (so G stays flat after the last token and they drop out of every product). */
__device__ __forceinline__ void chunk_gates(const Params &p, const Item &it, int head, Gates &gt)
{
    const la_layer &L = p.layer;
    const int lane = threadIdx.x & 31;
    const float rate = expf(L.A_log[head]);
    const float dt_bias = L.dt_bias ? L.dt_bias[head] : 0.0f;
    float g[2], beta[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int i = 2 * lane + e;
        const bool real = i < it.len;
        const int64_t row = it.row0 + i;
        g[e] = !real ? 0.0f
               : p.io.a ? -rate * softplus(bf16_bits_to_float(p.io.a[row * p.io.a_stride + head]) + dt_bias)
                        : -rate;
        beta[e] = real && L.kind == LA_KIND_GATED_DELTANET
                      ? sigmoid(bf16_bits_to_float(p.io.b[row * p.io.b_stride + head]))
                      : 0.0f;
    }
    float incl = g[0] + g[1];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const float x = __shfl_up_sync(kFullMask, incl, o);
        if (lane >= o) incl += x;
    }
    const float big_g[2] = {incl - g[1], incl};
    const float g_last = __shfl_sync(kFullMask, incl, 31);
    const float g_block_start = __shfl_sync(kFullMask, big_g[0], (lane / 8) * 8);
    float g_starts[kBlocks];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) g_starts[b] = __shfl_sync(kFullMask, big_g[0], 8 * b);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int i = 2 * lane + e;
        gt.big_g[i] = big_g[e];
        gt.beta[i] = beta[e];
        gt.exp_g[i] = __expf(big_g[e]);
        gt.gamma[i] = __expf(g_last - big_g[e]);
        gt.row_f[i] = __expf(big_g[e] - g_block_start);
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) gt.col_f[b][i] = i < 16 * b ? __expf(g_starts[b] - big_g[e]) : 0.0f;
    }
}

static_assert(kBlocks == 4, "the block orders below assume 4 blocks of 16 tokens");

/* Lower 16×16 blocks (bi >= bj) of a 4×4 block matrix, in a fixed order (10 of them). */
__device__ __forceinline__ void lower_block(int index, int &bi, int &bj)
{
    bi = index >= 6 ? 3 : index >= 3 ? 2 : index >= 1 ? 1 : 0;
    bj = index - bi * (bi + 1) / 2;
}

/* Strictly lower blocks (bi > bj), 6 of them. */
__device__ __forceinline__ void strictly_lower_block(int index, int &bi, int &bj)
{
    bi = index >= 3 ? 3 : index >= 1 ? 2 : 1;
    bj = index - (bi - 1) * bi / 2;
}

/* A 16×16 block of P (which = 0: n_q n_k (q̂·k̂) D, diagonal included) or A (which = 1: β n_k n_k (k̂·k̂) D, strictly
 * lower; diagonal blocks kept in fp32, the others negated in fp16). */
struct Block {
    int which, bi, bj;
};

/* This warp's blocks: GDN solver warps take the diagonal blocks of A (2 each), the other warps share the 10 lower
 * blocks of P and (GDN) the 6 off-diagonal blocks of A round-robin. Returns how many (1 to 3). */
__device__ __forceinline__ int warp_blocks(bool delta, int warp, Block (&blk)[3])
{
    if (delta && warp >= kSolverWarp0) {
        const int b = 2 * (warp - kSolverWarp0);
        blk[0] = {1, b, b};
        blk[1] = {1, b + 1, b + 1};
        return 2;
    }
    const int workers = delta ? kSolverWarp0 : kWarps, items = delta ? 16 : 10;
    int count = 0;
#pragma unroll
    for (int m = 0; m < 3; ++m) {
        const int item = warp + workers * m;
        if (item >= items) break;
        blk[m].which = item < 10 ? 0 : 1;
        if (item < 10)
            lower_block(item, blk[m].bi, blk[m].bj);
        else
            strictly_lower_block(item - 10, blk[m].bi, blk[m].bj);
        count = m + 1;
    }
    return count;
}

/* The blocks' Gram products over dk, loads one k-step ahead of the mma. */
template <int N>
__device__ __forceinline__ void block_products(const PrepSmem &sm, const Block (&blk)[3],
                                               float (&acc)[3][2][4])
{
    uint32_t a[2][N][4], b[2][N][4];
    auto load = [&](int kk, int buf) {
#pragma unroll
        for (int n = 0; n < N; ++n) {
            load_a_swizzled(blk[n].which == 0 ? sm.q : sm.k, 16 * blk[n].bi, 16 * kk, a[buf][n]);
            load_b_nk_swizzled(sm.k, 16 * blk[n].bj, 16 * kk, b[buf][n]);
        }
    };
    load(0, 0);
#pragma unroll
    for (int kk = 0; kk < kDk / 16; ++kk) {
        const int cur = kk & 1;
        if (kk + 1 < kDk / 16) load(kk + 1, cur ^ 1);
#pragma unroll
        for (int n = 0; n < N; ++n) {
            mma(acc[n][0], a[cur][n], b[cur][n][0], b[cur][n][1]);
            mma(acc[n][1], a[cur][n], b[cur][n][2], b[cur][n][3]);
        }
    }
}

/* Scales and masks one block: P into the workspace (rows of real tokens), A into shared memory. */
__device__ __forceinline__ void block_epilogue(const Params &p, const Item &it, int head, PrepSmem &sm,
                                               const Block &blk, const float (&acc)[2][4])
{
    const Gates &gt = sm.gates;
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int bi = blk.bi, bj = blk.bj;
    float col[2][2]; /* n_k (times e^{G_{16bi} − G_j} off the diagonal) of this thread's columns */
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int j = 16 * bj + 8 * nt + 2 * t + e;
            col[nt][e] = bi != bj ? sm.nk[j] * gt.col_f[bi][j] : sm.nk[j];
        }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int i = 16 * bi + g + 8 * half;
        float row = blk.which == 0 ? sm.nq[i] : gt.beta[i] * sm.nk[i];
        if (bi != bj) row *= gt.row_f[i];
        const int64_t batch_row = it.row0 + i;
        __half *p_row = p.ws.p + (head * p.ws.rows + batch_row) * kChunk;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            float val[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = 16 * bj + 8 * nt + 2 * t + e;
                float decay = 1.0f;
                if (bi == bj) {
                    const bool inside = blk.which == 0 ? i >= j : i > j;
                    decay = inside ? __expf(gt.big_g[i] - gt.big_g[j]) : 0.0f;
                }
                val[e] = acc[nt][2 * half + e] * row * col[nt][e] * decay;
            }
            const int j0 = 16 * bj + 8 * nt + 2 * t;
            if (blk.which == 0) {
                if (i < it.len)
                    *reinterpret_cast<uint32_t *>(p_row + swizzled_col(i, j0) + (j0 & 7)) =
                        pack_half2(val[0], val[1]);
            } else if (bi != bj) {
                *reinterpret_cast<uint32_t *>(&sm.a_neg[i][j0]) = pack_half2(-val[0], -val[1]);
            } else {
                sm.a_diag[bi][i - 16 * bi][j0 - 16 * bj] = val[0];
                sm.a_diag[bi][i - 16 * bi][j0 + 1 - 16 * bj] = val[1];
            }
        }
    }
}

template <int N>
__device__ __forceinline__ void warp_blocks_run(const Params &p, const Item &it, int head, PrepSmem &sm,
                                                const Block (&blk)[3])
{
    float acc[3][2][4] = {};
    block_products<N>(sm, blk, acc);
#pragma unroll
    for (int n = 0; n < N; ++n) block_epilogue(p, it, head, sm, blk[n], acc[n]);
}

/* Column c of (I + A_bb)^{-1} by forward substitution, written as fp16. */
__device__ __forceinline__ void invert_diagonal_column(PrepSmem &sm, int b, int c)
{
    float t[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
        float acc = i == c ? 1.0f : 0.0f;
#pragma unroll
        for (int m = 0; m < i; ++m) acc = fmaf(-sm.a_diag[b][i][m], t[m], acc);
        t[i] = acc;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) sm.tinv[b][i][c] = __float2half_rn(t[i]);
}

constexpr int kWSlabs = kDk / 16; /* 16-column slabs of W's right-hand side; U₀'s follow */

/* Solves T X = R for the 16 columns col0.. of R = [diag(β e^G n_k) K̂ · 2^w | diag(β) V · 2^u] on Xᵀ, block by
 * block: Xᵀ_b = (Rᵀ_b − Σ_{c<b} Xᵀ_c A_bcᵀ) T_bbᵀ, in place: W's columns (kW) in the swizzled k̂ tile, U₀'s in the
 * v tiles. Each element is read as the right-hand side and overwritten with the solution by the same thread. */
template <bool kW> __device__ __forceinline__ void solve_slab(PrepSmem &sm, int col0, float scale)
{
    const Gates &gt = sm.gates;
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    /* the element of row i in column col0 + g + 8h */
    auto element = [&](int i, int h) -> __half * {
        if (kW) return &sm.k[i][swizzled_col(i, col0 + 8 * h) + g];
        return &sm.v[col0 / kTileCols][i][col0 % kTileCols + g + 8 * h];
    };
    uint32_t x_frag[kBlocks][4];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
        uint32_t a_frag[kBlocks - 1][4], tb[4];
#pragma unroll
        for (int c = 0; c < b; ++c) load_b_nk(sm.a_neg, 16 * b, 16 * c, a_frag[c]);
        load_b_nk(sm.tinv[b], 0, 0, tb);
        float acc[2][4];
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int i = 16 * b + 8 * nt + 2 * t + r;
                const float f = kW ? gt.beta[i] * gt.exp_g[i] * sm.nk[i] * scale : gt.beta[i] * sm.v_inv[i] * scale;
                acc[nt][r] = __half2float(*element(i, 0)) * f;
                acc[nt][2 + r] = __half2float(*element(i, 1)) * f;
            }
#pragma unroll
        for (int c = 0; c < b; ++c) {
            mma(acc[0], x_frag[c], a_frag[c][0], a_frag[c][1]);
            mma(acc[1], x_frag[c], a_frag[c][2], a_frag[c][3]);
        }
        uint32_t rhs[4];
        accumulators_to_a(acc, rhs);
        float x[2][4] = {};
        mma(x[0], rhs, tb[0], tb[1]);
        mma(x[1], rhs, tb[2], tb[3]);
        accumulators_to_a(x, x_frag[b]);
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int i = 16 * b + 8 * nt + 2 * t + r;
                *element(i, 0) = __float2half_rn(x[nt][r]);
                *element(i, 1) = __float2half_rn(x[nt][2 + r]);
            }
    }
}

/* Rows [0, len) of the shared v tiles (now U₀ · 2^u, or V · 2^u) back to the head's tiles in the workspace. */
__device__ __forceinline__ void store_u(const Params &p, const Item &it, int head, const PrepSmem &sm)
{
    for (int idx = threadIdx.x; idx < p.tiles * it.len * (kTileCols / 8); idx += kThreads) {
        const int tile = idx / (it.len * kTileCols / 8), r = (idx / (kTileCols / 8)) % it.len;
        const int c = 8 * (idx % (kTileCols / 8));
        __half *dst = p.ws.u + ((int64_t)(head * p.tiles + tile) * p.ws.rows + it.row0 + r) * kTileCols + c;
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(&sm.v[tile][r][c]);
    }
}

/* One CTA per (chunk, v-head): P, and (GDN) T's blocks, their inverse by blocks and the solve for W and U₀ over
 * 128 + dv right-hand columns; everything into the workspace, with the per-token factors of the chain. */
template <bool kDelta> __global__ void __launch_bounds__(kThreads, 3) prepare_kernel(const __grid_constant__ Params p)
{
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    PrepSmem &sm = *reinterpret_cast<PrepSmem *>(smem_bytes);
    const la_layer &L = p.layer;
    Item it;
    if (!item_of_block(p, it)) return;
    const int head = blockIdx.y, qk_head = head / (L.hv / L.hk);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31;

    load_prepare_inputs(p, it, head, qk_head, sm);
    if (warp == kGateWarp) chunk_gates(p, it, head, sm.gates);
    wait_async_copies();
    __syncthreads();

    const Gates &gt = sm.gates;
    if (tid < it.len) {
        p.ws.factors[head * p.ws.rows + it.row0 + tid] =
            make_float4(gt.exp_g[tid] * sm.nq[tid], gt.gamma[tid] * sm.nk[tid], 0.0f, 0.0f);
    }
    /* bounds of the right-hand sides: β e^G n_k for W (k̂ is a unit vector); 2^15 / (v's row scale) for U₀ */
    float w_bound = 0.0f, u_bound = 0.0f;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int i = 2 * lane + e;
        w_bound = fmaxf(w_bound, gt.beta[i] * gt.exp_g[i] * sm.nk[i]);
        u_bound = fmaxf(u_bound, sm.v_inv[i] * 32768.0f);
    }
    const float w_scale = kDelta ? pow2_scale(warp_max(w_bound), kSolveTarget) : 1.0f;
    const float u_scale = pow2_scale(warp_max(u_bound), kSolveTarget);
    if (tid == 0)
        p.ws.chunk[head * p.ws.rows + it.row0] =
            make_float4(gt.exp_g[kChunk - 1], kDelta ? 1.0f / w_scale : 0.0f, 1.0f / u_scale, 0.0f);

    Block blk[3];
    const int blocks = warp_blocks(kDelta, warp, blk);
    if (blocks == 3)
        warp_blocks_run<3>(p, it, head, sm, blk);
    else if (blocks == 2)
        warp_blocks_run<2>(p, it, head, sm, blk);
    else
        warp_blocks_run<1>(p, it, head, sm, blk);

    if (!kDelta) { /* U = V, in the chunk's own scale */
        for (int idx = tid; idx < p.tiles * kChunk * kTileCols; idx += kThreads) {
            const int tile = idx / (kChunk * kTileCols), r = (idx / kTileCols) % kChunk, c = idx % kTileCols;
            sm.v[tile][r][c] = __float2half_rn(__half2float(sm.v[tile][r][c]) * sm.v_inv[r] * u_scale);
        }
        __syncthreads();
        store_u(p, it, head, sm);
        return;
    }

    if (warp >= kSolverWarp0) {
        __syncwarp();
        invert_diagonal_column(sm, 2 * (warp - kSolverWarp0) + (lane >> 4), lane & 15);
    }
    __syncthreads();
    for (int slab = warp; slab < kWSlabs + L.dv / 16; slab += kWarps) {
        if (slab < kWSlabs)
            solve_slab<true>(sm, 16 * slab, w_scale);
        else
            solve_slab<false>(sm, 16 * (slab - kWSlabs), u_scale);
    }
    __syncthreads();
    /* W: the k̂ tile's rows are already swizzled like the workspace's */
    __half *w_rows = p.ws.w + (head * p.ws.rows + it.row0) * kDk;
    for (int idx = tid; idx < it.len * kDk / 8; idx += kThreads)
        reinterpret_cast<uint4 *>(w_rows)[idx] = reinterpret_cast<const uint4 *>(&sm.k[0][0])[idx];
    store_u(p, it, head, sm);
}

/* ---- pass 4: the state chain ---------------------------------------------------------------------------------- */

/* Each column group of 16 columns of a v-head's state, all dk rows of them, is carried by a pair of warps. The state
 * warp holds the block transposed, Sᵀ (16 × dk), in mma accumulator layout: entry e of n-tile nt of lane (g, t) is
 * S[8nt + 2t + (e & 1)][c0 + g + 8(e >> 1)]. An accumulator pair is an A operand as it stands (block_operands), so
 * every product with S or U is an mma whose A operand is in registers and whose B operand is a stage tile:
 *
 *     state warp:   Xᵀ = S'ᵀ Wᵀ,   Uᵀ = U₀ᵀ − Xᵀ,   Sᵀ ← e^{G_C} Sᵀ + (Uᵀ diag(e^{G_C − G} n_k)) K̂
 *     output warp:  Yᵀ = S'ᵀ Q̂ᵀ,   Oᵀ = Yᵀ diag(e^G n_q) + Uᵀ Pᵀ
 *
 * The state warp hands S' (the fp16 operand of the chunk's products) and U to its output warp through shared memory
 * (Handoff), behind mbarriers of the pair; no warp waits for any other pair, and the state warps, on the
 * chain's critical path, carry 128 of the chunk's 212 mma. A CTA carries one or two 32-column workspace tiles
 * (kTiles): one when the batch has no more (sequence, v-head, tile) chains than SMs, so that every SM takes a chain;
 * two otherwise, so that each scheduler interleaves two warps.
 *
 * fp16 copies are scaled by a power of two per row of Sᵀ or Uᵀ (four lanes hold a row: two shuffles). The state and
 * Ũ share one, F, from a bound on |S| (StateRegs), so the state warp packs its registers as they stand; U in the
 * outputs takes its own, ρ, from its row's maximum. */
constexpr int kWarpCols = 16;                     /* state columns of a warp pair */
constexpr int kPairsPerTile = kTileCols / kWarpCols;
constexpr int kMaxChainTiles = 2;                 /* workspace tiles of a chain CTA */
/* Stages of bulk copies a chain CTA with kTiles tiles: as many as fit, the pairs' handoffs beside them. */
constexpr int chain_stages(int tiles) { return tiles == 1 ? 3 : 2; }
constexpr int kReanchorChunks = 8; /* how often the bound on |S| is replaced by the exact maximum */
constexpr int kTokenTiles = kChunk / 8; /* n-tiles of a chunk's tokens */
constexpr int kDkTiles = kDk / 8;       /* n-tiles of dk */
constexpr int kDkSteps = kDk / 16;      /* k-steps over dk */

/* One chunk's workspace tiles for a chain CTA, as bulk copies leave them: w, q, k and p swizzled like the workspace
 * rows. Rows past the chunk's tokens keep an earlier chunk's (finite) values: U is zeroed there in registers. */
struct alignas(16) ChainStage {
    __half w[kChunk][kDk];
    __half q[kChunk][kDk];
    __half k[kChunk][kDk];
    __half p[kChunk][kChunk];
    __half u[kMaxChainTiles][kChunk][kTileCols];
    float4 factors[kChunk];
    float4 chunk;
};

/* From a state warp to its output warp, one chunk's: S' as A operands (lane-major: lane l's four registers of k-step
 * kk at s[kk][l]), its 1/F by row, and Uᵀ in accumulator layout; with the mbarriers of the exchange, each completed
 * once a chunk by the 32 lanes of one warp. */
struct alignas(16) Handoff {
    uint4 s[kDkSteps][32];
    float4 u[kTokenTiles][32];
    float2 s_inv[32];
    uint64_t state_ready; /* S' is in (state warp) */
    uint64_t u_ready;     /* U is in (state warp) */
    uint64_t taken;       /* both are in the output warp's registers (output warp) */
};

template <int kTiles> struct alignas(16) ChainSmem {
    static constexpr int kPairs = kPairsPerTile * kTiles, kThreads = 2 * 32 * kPairs, kStages = chain_stages(kTiles);
    ChainStage stage[kStages]; /* chunk c in stage c % kStages */
    Handoff handoff[kPairs];
    uint64_t arrived[kStages]; /* mbarriers: the stage's bulk copies have landed */
};

/* One chain CTA's view: its sequence, v-head, first workspace tile and how many, q/k head. */
struct ChainCta {
    la_seq seq;
    int head, tile0, tiles, qk_head;
};

/* A chain warp: its pair (pair / kPairsPerTile: which tile of the CTA; the rest: which 16 columns of it) and role. */
struct ChainWarp {
    int pair;
    bool state;
};

/* The output warps meet at a named barrier before a stage is refilled. */
constexpr int kOutputTeamBarrier = 1;
__device__ __forceinline__ void named_sync(int id, int threads)
{
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

/* ---- mbarriers: the stages' bulk copies and the pairs' handoffs ---------------------------------------------------- */

__device__ __forceinline__ void barrier_init(uint64_t *bar, unsigned arrivals = 1)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}

/* The one arrival of the phase, announcing `bytes` bytes of copies that complete it. */
__device__ __forceinline__ void barrier_expect(uint64_t *bar, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}

__device__ __forceinline__ void barrier_wait(uint64_t *bar, unsigned phase)
{
    asm volatile("{\n\t.reg .pred done;\n"
                 "WAIT_%=:\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n\t"
                 "@!done bra WAIT_%=;\n}" ::"r"(smem_addr(bar)),
                 "r"(phase)
                 : "memory");
}

/* An arrival of every lane of a warp on a barrier that expects 32: each lane releases its own accesses. */
__device__ __forceinline__ void warp_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}

__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
}

/* One thread: the bulk copies of the chunk of `len` tokens at step token c0 into `st`, completing `bar`'s phase. */
template <bool kDelta>
__device__ __forceinline__ void fetch_stage(const Params &p, const ChainCta &cta, ChainStage &st, uint64_t *bar,
                                            int c0, int len)
{
    const Workspace &ws = p.ws;
    const int64_t row0 = cta.seq.token_offset + c0;
    const unsigned row_bytes = kDk * sizeof(__half);
    const unsigned u_bytes = len * kTileCols * (unsigned)sizeof(__half);
    const unsigned bytes = (kDelta ? 3 : 2) * len * row_bytes + len * kChunk * (unsigned)sizeof(__half) +
                           cta.tiles * u_bytes + (len + 1) * (unsigned)sizeof(float4);
    barrier_expect(bar, bytes);
    if (kDelta) bulk_copy(st.w, ws.w + (cta.head * ws.rows + row0) * kDk, len * row_bytes, bar);
    bulk_copy(st.q, ws.q + (cta.qk_head * ws.rows + row0) * kDk, len * row_bytes, bar);
    bulk_copy(st.k, ws.k + (cta.qk_head * ws.rows + row0) * kDk, len * row_bytes, bar);
    bulk_copy(st.p, ws.p + (cta.head * ws.rows + row0) * kChunk, len * kChunk * (unsigned)sizeof(__half), bar);
    for (int t = 0; t < cta.tiles; ++t) {
        const int64_t tile = (int64_t)cta.head * p.tiles + cta.tile0 + t;
        bulk_copy(st.u[t], ws.u + (tile * ws.rows + row0) * kTileCols, u_bytes, bar);
    }
    bulk_copy(st.factors, ws.factors + cta.head * ws.rows + row0, len * (unsigned)sizeof(float4), bar);
    bulk_copy(&st.chunk, ws.chunk + cta.head * ws.rows + row0, sizeof(float4), bar);
}

/* The first token in the step of the sequence's chunk `index`. */
__device__ __forceinline__ int chunk_start(const la_seq &seq, int index)
{
    return index == 0 ? 0 : chunk_length(seq, 0) + (index - 1) * kChunk;
}

/* Chunk `index` into its stage, if the sequence has it. */
template <bool kDelta, int kTiles>
__device__ __forceinline__ void fetch_chunk(const Params &p, const ChainCta &cta, ChainSmem<kTiles> &sm, int index)
{
    if (index >= chunk_count(cta.seq)) return;
    const int c0 = chunk_start(cta.seq, index), stage = index % ChainSmem<kTiles>::kStages;
    fetch_stage<kDelta>(p, cta, sm.stage[stage], &sm.arrived[stage], c0, chunk_length(cta.seq, c0));
}

/* ---- fragments of the warp-owned products ------------------------------------------------------------------------ */

/* B operands of two n-tiles (k0..k0+15 × n0..n0+15) of a swizzled tile stored [k][n]: r0,r1 for n0.., r2,r3 for
 * n0+8.. */
template <int kCols>
__device__ __forceinline__ void load_b_kn_swizzled(const __half (*m)[kCols], int k0, int n0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31, row = k0 + (l & 7) + ((l >> 3) & 1) * 8, col = n0 + (l >> 4) * 8;
    ldsm_x4_trans(smem_addr(&m[row][swizzled_col(row, col)]), r);
}

/* The A operand (m0..m0+15 × k0..k0+15) of a matrix stored [k][m]. */
template <int kCols>
__device__ __forceinline__ void load_a_km(const __half (*m)[kCols], int m0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31, row = k0 + (l & 7) + (l >> 4) * 8, col = m0 + ((l >> 3) & 1) * 8;
    ldsm_x4_trans(smem_addr(&m[row][col]), r);
}

/* Moves an 8×8 matrix of 16-bit pairs from rows (lane/4) to columns: the accumulator layout's transpose. */
__device__ __forceinline__ uint32_t transpose_8x8(uint32_t x)
{
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(y) : "r"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* The largest x over the four lanes that hold a row of an accumulator. */
__device__ __forceinline__ float row_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(kFullMask, x, 1));
    return fmaxf(x, __shfl_xor_sync(kFullMask, x, 2));
}

/* A 16-row block in accumulator layout (n-tiles of 8 columns) as fp16 A operands over its columns. */
template <int kTiles>
__device__ __forceinline__ void block_operands(const float (&c)[kTiles][4], uint32_t (&a)[kTiles / 2][4])
{
#pragma unroll
    for (int kk = 0; kk < kTiles / 2; ++kk)
        accumulators_to_a(*reinterpret_cast<const float(*)[2][4]>(&c[2 * kk]), a[kk]);
}

/* Rows g and g+8 of a 16-row accumulator block times scale[0] and scale[1]. */
template <int kTiles> __device__ __forceinline__ void scale_rows(float (&c)[kTiles][4], const float (&scale)[2])
{
#pragma unroll
    for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[nt][e] *= scale[e >> 1];
}

/* The largest |x| of rows g and g+8 of a 16-row accumulator block. */
template <int kTiles> __device__ __forceinline__ void row_abs_max(const float (&c)[kTiles][4], float (&m)[2])
{
    m[0] = m[1] = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) m[e >> 1] = fmaxf(m[e >> 1], fabsf(c[nt][e]));
    m[0] = row_max(m[0]);
    m[1] = row_max(m[1]);
}

/* Powers of two for rows g and g+8 of a 16-row accumulator block from their largest |x| (target as in pow2_scale),
 * and their inverses. */
template <int kTiles>
__device__ __forceinline__ void row_scales(const float (&c)[kTiles][4], int target, float (&scale)[2],
                                           float (&inverse)[2])
{
    float m[2];
    row_abs_max(c, m);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        scale[h] = pow2_scale(m[h], target);
        inverse[h] = pow2_inverse(scale[h]);
    }
}

/* ---- the state in registers ----------------------------------------------------------------------------------- */

/* The warp pair's first column of the head's state in `slot`. */
template <typename State>
__device__ __forceinline__ State *state_columns(const Params &p, const ChainCta &cta, const ChainWarp &cw, int slot)
{
    const la_layer &L = p.layer;
    return static_cast<State *>(p.state.recurrent) + ((size_t)slot * L.hv + cta.head) * (size_t)kDk * L.dv +
           (cta.tile0 * kPairsPerTile + cw.pair) * kWarpCols;
}

__device__ __forceinline__ float load1(const float *src) { return *src; }
__device__ __forceinline__ float load1(const uint16_t *src) { return bf16_bits_to_float(*src); }
__device__ __forceinline__ void store1(float *dst, float x) { *dst = x; }
__device__ __forceinline__ void store1(uint16_t *dst, float x) { *dst = float_to_bf16_bits(x); }

/* The element of the state behind accumulator entry e of n-tile nt, from the pair's first column. */
__device__ __forceinline__ size_t state_offset(int dv, int nt, int e)
{
    const int lane = threadIdx.x & 31;
    return (size_t)(8 * nt + 2 * (lane & 3) + (e & 1)) * dv + (lane >> 2) + 8 * (e >> 1);
}

/* What a state warp carries from chunk to chunk: Sᵀ times a power of two F per row (rows g and g + 8), F, and a
 * bound on |S| per row. One F serves both fp16 operands of the state's products, S·F itself and Ũ·F of its update,
 * so the registers are packed as they stand and the update accumulates into them with no rescaling after it. */
struct StateRegs {
    float s[kDkTiles][4];
    float f[2], bound[2];
};

/* F from the bound: |S·F| < 2^kStateTarget, and |Ũ·F| too, since Σ|Ũ| is part of the bound. */
__device__ __forceinline__ float state_scale(float bound) { return pow2_scale(bound, kStateTarget); }

/* The exact maximum for the bound, which otherwise only grows (k̂ is a unit vector, so each chunk adds at most
 * Σ_tokens |Ũ| to a row): re-anchored now and then, it stays within a small factor of |S|. */
__device__ __forceinline__ void anchor_bound(StateRegs &r)
{
    float m[2];
    row_abs_max(r.s, m);
    r.bound[0] = m[0] * pow2_inverse(r.f[0]);
    r.bound[1] = m[1] * pow2_inverse(r.f[1]);
}

template <typename State>
__device__ __forceinline__ void load_state(const State *cols, int dv, StateRegs &r)
{
#pragma unroll
    for (int nt = 0; nt < kDkTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) r.s[nt][e] = load1(cols + state_offset(dv, nt, e));
    float m[2];
    row_abs_max(r.s, m);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        r.bound[h] = m[h];
        r.f[h] = state_scale(m[h]);
    }
    scale_rows(r.s, r.f);
}

template <typename State>
__device__ __forceinline__ void store_state(State *cols, int dv, const StateRegs &r)
{
    const float inverse[2] = {pow2_inverse(r.f[0]), pow2_inverse(r.f[1])};
#pragma unroll
    for (int nt = 0; nt < kDkTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) store1(cols + state_offset(dv, nt, e), r.s[nt][e] * inverse[e >> 1]);
}

/* ---- one chunk's products ---------------------------------------------------------------------------------------- */

/* Xᵀ = S'ᵀ Wᵀ or Yᵀ = S'ᵀ Q̂ᵀ for the pair's columns and the chunk's tokens, over dk. */
__device__ __forceinline__ void state_product(const uint32_t (&a)[kDkSteps][4], const __half (*rhs)[kDk],
                                              float (&acc)[kTokenTiles][4])
{
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kDkSteps; ++kk) {
        uint32_t b[kTokenTiles / 2][4];
#pragma unroll
        for (int nb = 0; nb < kTokenTiles / 2; ++nb) load_b_nk_swizzled(rhs, 16 * nb, 16 * kk, b[nb]);
#pragma unroll
        for (int nb = 0; nb < kTokenTiles / 2; ++nb) {
            mma(acc[2 * nb], a[kk], b[nb][0], b[nb][1]);
            mma(acc[2 * nb + 1], a[kk], b[nb][2], b[nb][3]);
        }
    }
}

/* Uᵀ · 2^u = U₀ᵀ 2^u − Xᵀ 2^(u−w) / F (GLA: Vᵀ 2^u) for the pair's columns, the stage's 2^−u left to its users;
 * zero for tokens past the chunk's len, where the stage holds an earlier chunk's rows. */
template <bool kDelta>
__device__ __forceinline__ void form_u(const ChainStage &st, const ChainWarp &cw, int len,
                                       const float (&x)[kTokenTiles][4], const float (&f)[2],
                                       float (&u)[kTokenTiles][4])
{
#pragma unroll
    for (int kb = 0; kb < kBlocks; ++kb) {
        uint32_t r[4];
        load_a_km(st.u[cw.pair / kPairsPerTile], (cw.pair % kPairsPerTile) * kWarpCols, 16 * kb, r);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const float2 u0 = __half22float2(*reinterpret_cast<const __half2 *>(&r[q]));
            const int nt = 2 * kb + (q >> 1), e = 2 * (q & 1);
            u[nt][e] = u0.x;
            u[nt][e + 1] = u0.y;
        }
    }
    if (kDelta) {
        const float4 chunk = st.chunk; /* 2^−w / 2^−u: exact, powers of two */
        const float x_factor[2] = {chunk.y * pow2_inverse(chunk.z) * pow2_inverse(f[0]),
                                   chunk.y * pow2_inverse(chunk.z) * pow2_inverse(f[1])};
#pragma unroll
        for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) u[nt][e] = fmaf(-x[nt][e], x_factor[e >> 1], u[nt][e]);
    }
    if (len < kChunk) {
        const int t = threadIdx.x & 3;
#pragma unroll
        for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (8 * nt + 2 * t + (e & 1) >= len) u[nt][e] = 0.0f;
    }
}

/* Sᵀ ← e^{G_C} Sᵀ + Ũᵀ K̂ with Ũ = diag(e^{G_C − G} n_k) U, over the chunk's four 16-token k-steps. The chunk's
 * Σ|Ũ| per row extends the bound on |S| first; the new F from it rescales the registers together with the decay. */
__device__ __forceinline__ void update_state(const ChainStage &st, const float (&u)[kTokenTiles][4], StateRegs &r)
{
    const int t = threadIdx.x & 3;
    const float4 chunk = st.chunk;
    float ut[kTokenTiles][4], sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
        for (int e2 = 0; e2 < 2; ++e2) {
            const float gamma = st.factors[8 * nt + 2 * t + e2].y * chunk.z; /* with the 2^−u that u carries */
            ut[nt][e2] = u[nt][e2] * gamma;
            ut[nt][e2 + 2] = u[nt][e2 + 2] * gamma;
            sum[0] += fabsf(ut[nt][e2]);
            sum[1] += fabsf(ut[nt][e2 + 2]);
        }
    float rescale[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        sum[h] += __shfl_xor_sync(kFullMask, sum[h], 1);
        sum[h] += __shfl_xor_sync(kFullMask, sum[h], 2);
        r.bound[h] = fmaf(chunk.x, r.bound[h], sum[h]);
        const float f = state_scale(r.bound[h]);
        rescale[h] = chunk.x * f * pow2_inverse(r.f[h]);
        r.f[h] = f;
    }
    uint32_t a[kBlocks][4];
    scale_rows(ut, r.f);
    block_operands(ut, a);
    scale_rows(r.s, rescale);
#pragma unroll
    for (int kb = 0; kb < kBlocks; ++kb)
#pragma unroll
        for (int np = 0; np < kDkTiles / 2; ++np) {
            uint32_t b[4];
            load_b_kn_swizzled(st.k, 16 * kb, 16 * np, b);
            mma(r.s[2 * np], a[kb], b[0], b[1]);
            mma(r.s[2 * np + 1], a[kb], b[2], b[3]);
        }
}

/* The 16 columns' outputs of one chunk, transposed 8×8 block by 8×8 block in registers (lane (g, t) then holds token
 * 8nt + g, columns 8h + 2t and 8h + 2t + 1) and stored as bf16 pairs. kWhole: all 64 tokens, and pairs may be
 * stored as one word. */
template <bool kWhole>
__device__ __forceinline__ void store_outputs(const Params &p, uint16_t *first, int len,
                                              const float (&o)[kTokenTiles][4], const float (&factor)[2])
{
    const int g = (threadIdx.x & 31) >> 2;
    const int64_t stride = p.io.out_stride;
    uint16_t *row = first + g * stride;
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt, row += 8 * stride)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const uint32_t pair =
                transpose_8x8(pack_bf16x2(o[nt][2 * h] * factor[h], o[nt][2 * h + 1] * factor[h]));
            if (kWhole) {
                *reinterpret_cast<uint32_t *>(row + 8 * h) = pair;
            } else if (8 * nt + g < len) {
                row[8 * h] = (uint16_t)(pair & 0xffffu);
                row[8 * h + 1] = (uint16_t)(pair >> 16);
            }
        }
}

/* Oᵀ = Yᵀ diag(e^G n_q) / F + Uᵀ Pᵀ for the pair's columns, written as bf16. P's blocks above the diagonal are
 * skipped (the solve never writes them); U (carrying the stage's 2^u) enters with its own power of two ρ per row. */
__device__ __forceinline__ void outputs(const Params &p, const ChainCta &cta, const ChainWarp &cw,
                                        const ChainStage &st, int c0, int len, const float (&s_inv)[2],
                                        float (&u)[kTokenTiles][4], float (&o)[kTokenTiles][4])
{
    const int t = threadIdx.x & 3;
    float rho[2], rho_inv[2];
    row_scales(u, kUpdateTarget, rho, rho_inv);
    uint32_t a[kBlocks][4];
    scale_rows(u, rho);
    block_operands(u, a);
    const float z = st.chunk.z, z_inv = pow2_inverse(z);
    const float y_factor[2] = {s_inv[0] * rho[0] * z_inv, s_inv[1] * rho[1] * z_inv};
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[nt][e] *= st.factors[8 * nt + 2 * t + (e & 1)].x * y_factor[e >> 1];
#pragma unroll
    for (int nb = 0; nb < kBlocks; ++nb)
#pragma unroll
        for (int kb = 0; kb <= nb; ++kb) {
            uint32_t b[4];
            load_b_nk_swizzled(st.p, 16 * nb, 16 * kb, b);
            mma(o[2 * nb], a[kb], b[0], b[1]);
            mma(o[2 * nb + 1], a[kb], b[2], b[3]);
        }

    const float factor[2] = {z * rho_inv[0], z * rho_inv[1]};
    uint16_t *first = p.io.out + (cta.seq.token_offset + c0) * p.io.out_stride + cta.head * p.layer.dv +
                      (cta.tile0 * kPairsPerTile + cw.pair) * kWarpCols + 2 * t;
    if (len == kChunk && p.out_pairs)
        store_outputs<true>(p, first, len, o, factor);
    else
        store_outputs<false>(p, first, len, o, factor);
}

/* Checkpoint `index` of the batch, or one that is never reached when the sequence has no more. */
__device__ __forceinline__ la_checkpoint next_checkpoint(const Params &p, int index, int end)
{
    if (index < end) return p.checkpoints[index];
    la_checkpoint none;
    none.position = INT64_MAX;
    none.slot = -1;
    none.seq = -1;
    return none;
}

/* S' = S·F as the fp16 A operands of the products, and 1/F, into a handoff. */
__device__ __forceinline__ void hand_over_state(const StateRegs &r, Handoff &h)
{
    const int lane = threadIdx.x & 31;
    uint32_t a[kDkSteps][4];
    block_operands(r.s, a);
#pragma unroll
    for (int kk = 0; kk < kDkSteps; ++kk) h.s[kk][lane] = make_uint4(a[kk][0], a[kk][1], a[kk][2], a[kk][3]);
    h.s_inv[lane] = make_float2(pow2_inverse(r.f[0]), pow2_inverse(r.f[1]));
}

__device__ __forceinline__ void take_state(const Handoff &h, uint32_t (&a)[kDkSteps][4], float (&s_inv)[2])
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int kk = 0; kk < kDkSteps; ++kk) {
        const uint4 v = h.s[kk][lane];
        a[kk][0] = v.x, a[kk][1] = v.y, a[kk][2] = v.z, a[kk][3] = v.w;
    }
    const float2 inv = h.s_inv[lane];
    s_inv[0] = inv.x, s_inv[1] = inv.y;
}

/* Where a warp's walk over the stages stands: the stage of the current chunk and the phase to wait for on it. */
template <int kTiles> struct StageCursor {
    int stage;
    unsigned phases; /* bit b: the phase of arrived[b] to wait for next */

    __device__ __forceinline__ void wait(ChainSmem<kTiles> &sm)
    {
        barrier_wait(&sm.arrived[stage], (phases >> stage) & 1u);
        phases ^= 1u << stage;
    }
    __device__ __forceinline__ void advance() { stage = stage + 1 == ChainSmem<kTiles>::kStages ? 0 : stage + 1; }
};

/* The state warp of a pair: for each chunk, X and U (handed over), the state update, the checkpoints, and S' of the
 * next chunk (handed over once the output warp has taken this chunk's). It writes the final state. */
template <bool kDelta, typename State, int kTiles>
__device__ __forceinline__ void state_warp(const Params &p, const ChainCta &cta, const ChainWarp &cw,
                                           ChainSmem<kTiles> &sm)
{
    const la_layer &L = p.layer;
    StateRegs r;
#pragma unroll
    for (int nt = 0; nt < kDkTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) r.s[nt][e] = 0.0f;
    r.f[0] = r.f[1] = 1.0f;
    r.bound[0] = r.bound[1] = 0.0f;
    if (cta.seq.init_slot >= 0) load_state(state_columns<State>(p, cta, cw, cta.seq.init_slot), L.dv, r);
    Handoff &handoff = sm.handoff[cw.pair];
    const int chunks = chunk_count(cta.seq);
    if (chunks > 0) {
        hand_over_state(r, handoff);
        warp_arrive(&handoff.state_ready);
    }

    /* The next two checkpoints are held in registers: when one is written, the one after it is already there to
     * compare with, and the load that replaces it has chunks to land (a load used at once stalled the chain ~2 µs
     * per checkpoint). */
    int next_cp = cta.seq.checkpoint_begin;
    const int cp_end = cta.seq.checkpoint_begin + cta.seq.checkpoint_count;
    la_checkpoint next = next_checkpoint(p, next_cp, cp_end), after = next_checkpoint(p, next_cp + 1, cp_end);

    StageCursor<kTiles> cursor = {0, 0u};
    for (int c = 0, c0 = 0; c < chunks; ++c) {
        const int len = chunk_length(cta.seq, c0);
        const unsigned phase = c & 1;
        const ChainStage &st = sm.stage[cursor.stage];
        float x[kTokenTiles][4], u[kTokenTiles][4];
        if (kDelta) {
            uint32_t a[kDkSteps][4];
            float s_inv[2];
            take_state(handoff, a, s_inv); /* its own copy: registers do not hold two across the update */
            cursor.wait(sm);
            state_product(a, st.w, x);
        } else {
            cursor.wait(sm);
        }
        form_u<kDelta>(st, cw, len, x, r.f, u);
#pragma unroll
        for (int nt = 0; nt < kTokenTiles; ++nt)
            handoff.u[nt][threadIdx.x & 31] = make_float4(u[nt][0], u[nt][1], u[nt][2], u[nt][3]);
        warp_arrive(&handoff.u_ready);
        update_state(st, u, r);
        if (c % kReanchorChunks == kReanchorChunks - 1) anchor_bound(r);

        const int64_t done = cta.seq.start_position + c0 + len;
        while (next.position <= done) {
            if (next.position == done) store_state(state_columns<State>(p, cta, cw, next.slot), L.dv, r);
            next = after;
            after = next_checkpoint(p, ++next_cp + 1, cp_end);
        }
        barrier_wait(&handoff.taken, phase); /* the output warp has this chunk's S' and U */
        if (c + 1 < chunks) {
            hand_over_state(r, handoff);
            warp_arrive(&handoff.state_ready);
        }
        cursor.advance();
        c0 += len;
    }
    store_state(state_columns<State>(p, cta, cw, cta.seq.state_slot), L.dv, r);
}

/* The output warp of a pair: for each chunk, Y from the handed-over S', then O once U is handed over. The output
 * warps also refill the stages: once every warp is done with chunk c − 1, chunk c − 1 + kStages goes into its
 * stage. */
template <bool kDelta, int kTiles>
__device__ __forceinline__ void output_warp(const Params &p, const ChainCta &cta, const ChainWarp &cw,
                                            ChainSmem<kTiles> &sm)
{
    constexpr int kPairs = ChainSmem<kTiles>::kPairs, kStages = ChainSmem<kTiles>::kStages;
    Handoff &handoff = sm.handoff[cw.pair];
    const int chunks = chunk_count(cta.seq);
    StageCursor<kTiles> cursor = {0, 0u};
    for (int c = 0, c0 = 0; c < chunks; ++c) {
        const int len = chunk_length(cta.seq, c0);
        const unsigned phase = c & 1;
        const ChainStage &st = sm.stage[cursor.stage];
        barrier_wait(&handoff.state_ready, phase); /* S' of chunk c: the state warp is past c − 1 */
        if (c >= 1) {
            named_sync(kOutputTeamBarrier, 32 * kPairs); /* and so are the other output warps */
            if (cw.pair == 0 && (threadIdx.x & 31) == 0) fetch_chunk<kDelta>(p, cta, sm, c - 1 + kStages);
        }
        uint32_t a[kDkSteps][4];
        float s_inv[2];
        take_state(handoff, a, s_inv);
        cursor.wait(sm);
        float y[kTokenTiles][4], u[kTokenTiles][4]; /* u carries the stage's 2^u */
        state_product(a, st.q, y);
        barrier_wait(&handoff.u_ready, phase);
#pragma unroll
        for (int nt = 0; nt < kTokenTiles; ++nt) {
            const float4 v = handoff.u[nt][threadIdx.x & 31];
            u[nt][0] = v.x, u[nt][1] = v.y, u[nt][2] = v.z, u[nt][3] = v.w;
        }
        warp_arrive(&handoff.taken);
        outputs(p, cta, cw, st, c0, len, s_inv, u, y);
        cursor.advance();
        c0 += len;
    }
}

/* One CTA per (sequence, v-head, kTiles 32-column workspace tiles): a state warp and an output warp per 16
 * columns. */
template <bool kDelta, typename State, int kTiles>
__global__ void __launch_bounds__(ChainSmem<kTiles>::kThreads, 1) chain_kernel(const __grid_constant__ Params p)
{
    using Smem = ChainSmem<kTiles>;
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    Smem &sm = *reinterpret_cast<Smem *>(smem_bytes);
    const la_layer &L = p.layer;

    const int ctas_per_head = p.tiles / kTiles;
    ChainCta cta;
    cta.tiles = kTiles;
    cta.tile0 = (blockIdx.x % ctas_per_head) * kTiles;
    cta.head = (blockIdx.x / ctas_per_head) % L.hv;
    cta.seq = p.seqs[blockIdx.x / ctas_per_head / L.hv];
    if (!runs_chunked(cta.seq, p.min_tokens)) return;
    cta.qk_head = cta.head / (L.hv / L.hk);
    const int warp = threadIdx.x / 32;
    const ChainWarp cw = {warp % Smem::kPairs, warp < Smem::kPairs};

    /* Stage rows past a chunk's tokens are never written by its copies; zeroed once, they only ever hold finite
     * values of earlier chunks, which the products then multiply by zeros. */
    const uint4 zero = make_uint4(0, 0, 0, 0);
    for (int i = threadIdx.x; i < (int)(sizeof(sm.stage) / sizeof(uint4)); i += Smem::kThreads)
        reinterpret_cast<uint4 *>(sm.stage)[i] = zero;
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* before the bulk copies write over them */
    if (threadIdx.x == 0) {
        for (int b = 0; b < Smem::kStages; ++b) barrier_init(&sm.arrived[b]);
        for (Handoff &h : sm.handoff) {
            barrier_init(&h.state_ready, 32);
            barrier_init(&h.u_ready, 32);
            barrier_init(&h.taken, 32);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int c = 0; c < Smem::kStages; ++c) fetch_chunk<kDelta>(p, cta, sm, c);

    if (cw.state)
        state_warp<kDelta, State>(p, cta, cw, sm);
    else
        output_warp<kDelta>(p, cta, cw, sm);
}

/* ---- launch ---------------------------------------------------------------------------------------------------- */

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

template <typename Kernel>
cudaError_t launch(Kernel kernel, dim3 grid, int threads, size_t smem, const Params &p, cudaStream_t stream)
{
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err != cudaSuccess) return err;
    kernel<<<grid, threads, smem, stream>>>(p);
    return cudaGetLastError();
}

cudaError_t launch_conv(const Params &p, cudaStream_t stream)
{
    const dim3 grid((unsigned)p.ws.max_items, (unsigned)(2 * p.layer.hk + p.layer.hv));
    switch (p.layer.conv_width) {
    case 0: conv_kernel<0><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 1: conv_kernel<1><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 2: conv_kernel<2><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 3: conv_kernel<3><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 4: conv_kernel<4><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 5: conv_kernel<5><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 6: conv_kernel<6><<<grid, kConvThreads, 0, stream>>>(p); break;
    case 7: conv_kernel<7><<<grid, kConvThreads, 0, stream>>>(p); break;
    default: conv_kernel<8><<<grid, kConvThreads, 0, stream>>>(p); break;
    }
    return cudaGetLastError();
}

/* chains: one per (sequence, v-head, tile); a CTA takes kTiles of them. */
template <bool kDelta, typename State, int kTiles>
cudaError_t launch_chain(const Params &p, unsigned chains, cudaStream_t stream)
{
    using Smem = ChainSmem<kTiles>;
    return launch(chain_kernel<kDelta, State, kTiles>, dim3(chains / kTiles), Smem::kThreads, sizeof(Smem), p, stream);
}

template <bool kDelta, typename State> cudaError_t launch_passes(const Params &p, unsigned chains, cudaStream_t stream)
{
    chunk_map_kernel<<<1, kMapThreads, 0, stream>>>(p);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) {
        err = launch_conv(p, stream);
    }
    if (err == cudaSuccess)
        err = launch(prepare_kernel<kDelta>, dim3((unsigned)p.ws.max_items, (unsigned)p.layer.hv), kThreads,
                     sizeof(PrepSmem), p, stream);
    if (err == cudaSuccess)
        err = p.chain_tiles == 1 ? launch_chain<kDelta, State, 1>(p, chains, stream)
                                 : launch_chain<kDelta, State, 2>(p, chains, stream);
    return err;
}

bool supported(const la_layer &L)
{
    return (L.kind == LA_KIND_GATED_DELTANET || L.kind == LA_KIND_SIMPLE_GLA) && L.hk > 0 && L.hv > 0 &&
           L.hv % L.hk == 0 && L.dk == kDk && L.dv >= kTileCols && L.dv <= kMaxDv && L.dv % kTileCols == 0 &&
           L.conv_width >= 0 && L.conv_width <= kMaxWidth &&
           (L.state_dtype == LA_STATE_F32 || L.state_dtype == LA_STATE_BF16);
}

} // namespace

extern "C" int la_cuda_chunk_prefill_supported(const la_layer *layer) { return supported(*layer); }

extern "C" uint64_t la_cuda_chunk_prefill_workspace_bytes(const la_layer *layer, int64_t max_tokens, int32_t max_seqs)
{
    if (!supported(*layer) || max_tokens <= 0 || max_seqs <= 0) return 0;
    return carve_workspace(*layer, max_tokens, max_seqs, nullptr, nullptr);
}

extern "C" int la_cuda_chunk_prefill_long(const la_layer *layer, const la_batch *batch, const la_io *io,
                                          const la_state_view *state, struct CUstream_st *stream, int32_t min_tokens)
{
    if (!supported(*layer)) return cudaErrorInvalidValue;
    if (batch->num_seqs <= 0) return cudaSuccess;
    Params p;
    unsigned char *base = static_cast<unsigned char *>(batch->workspace);
    const uint64_t need = carve_workspace(*layer, batch->num_tokens, batch->num_seqs, base, &p.ws);
    if (!base || batch->workspace_bytes < need || !aligned16(base)) return cudaErrorInvalidValue;

    p.layer = *layer;
    p.channels = la_channels(layer);
    p.seqs = batch->seqs;
    p.num_seqs = batch->num_seqs;
    p.checkpoints = batch->checkpoints;
    p.io = *io;
    p.state = *state;
    p.tiles = layer->dv / kTileCols;
    const bool conv_aligned = layer->conv_width < 2 || (aligned16(state->conv) && p.channels % 8 == 0);
    p.vector_loads = aligned16(io->qkv) && io->qkv_stride % 8 == 0 && conv_aligned;
    p.out_pairs = ((uintptr_t)io->out & 3u) == 0 && io->out_stride % 2 == 0;
    p.min_tokens = min_tokens;

    const long long chains = (long long)batch->num_seqs * layer->hv * p.tiles;
    if (chains > INT_MAX) return cudaErrorInvalidConfiguration;
    int sms = 0;
    const cudaError_t err = la_cuda_sm_count(&sms);
    if (err != cudaSuccess) return err;
    p.chain_tiles = p.tiles % kMaxChainTiles == 0 && chains > sms ? kMaxChainTiles : 1;
    const bool delta = layer->kind == LA_KIND_GATED_DELTANET, f32 = layer->state_dtype == LA_STATE_F32;
    cudaStream_t s = stream;
    if (delta) return f32 ? launch_passes<true, float>(p, (unsigned)chains, s)
                          : launch_passes<true, uint16_t>(p, (unsigned)chains, s);
    return f32 ? launch_passes<false, float>(p, (unsigned)chains, s)
               : launch_passes<false, uint16_t>(p, (unsigned)chains, s);
}

extern "C" int la_cuda_chunk_prefill(const la_layer *layer, const la_batch *batch, const la_io *io,
                                     const la_state_view *state, struct CUstream_st *stream)
{
    return la_cuda_chunk_prefill_long(layer, batch, io, state, stream, 0);
}
