/*
 * chunk_prefill.cu — chunked prefill of Gated DeltaNet / simple GLA on tensor cores (abi/MATH.md §1–3).
 *
 * One CTA per (sequence, v-head, 32-column tile of dv) marches over the sequence in chunks of C = 64 tokens whose
 * boundaries sit at multiples of 64 in the ABSOLUTE position (a step starting at position 100 begins with a chunk of
 * 28 tokens), so every checkpoint lands on a chunk end. Its dk×32 tile of the state stays float32 in registers (mma
 * accumulator layout) for the whole sequence. Per chunk, with G the cumulative log decay inside the chunk,
 * D_ij = e^{G_i − G_j}, A = strict_tril(diag(β)(K Kᵀ ⊙ D)) and P = tril(Q Kᵀ ⊙ D) (diagonal included):
 *
 *     GDN:  (I + A) U = diag(β)(V − diag(e^G) K S)        GLA:  U = V
 *           O = diag(e^G) Q S + P U,      S ← e^{G_C} S + Kᵀ diag(e^{G_C − G}) U
 *
 * Stages of a chunk (8 warps; barriers between stages):
 *   1. conv + SiLU of the chunk's q/k/v channels from a raw tile loaded by cp.async during the previous chunk (taps
 *      and a sliding window of inputs in registers); q and k are stored as UNIT vectors (fp16) with their lengths
 *      kept apart (n_q, n_k per token; n_k = 1 up to the 1e-6 of the l2norm, n_q = scale·...), which folds the
 *      l2norm into scalars and keeps fp16 in range. With thread-block clusters (dv tiles of one head), each CTA
 *      convolves 64/cluster tokens of q/k and stores them into every CTA of the cluster (DSMEM).
 *   2. mma: the lower blocks of P and A, X = K S and Y = Q S (S as fp16 in shared memory) in one k-loop per warp,
 *      R = β(V − e^G X). The two solver warps take the diagonal blocks of A and invert them (fp32, one column per
 *      lane) while the others finish their products.
 *   3. the solver warps solve for U block by block on Uᵀ, kept in registers (the mma accumulator of one block is
 *      the operand of the next).
 *   4. O = e^G Y + P U, written as bf16; S ← e^{G_C} S + Kᵀ diag(e^{G_C − G}) U; checkpoints. The gate warp also
 *      computes the next chunk's gates (g, β, G and the decay factors; double-buffered).
 *
 * Operands are fp16 (10-bit mantissa; bf16 operands land near 4e-3 relative error against the float64 reference,
 * fp16 near 1e-3), accumulation fp32. S and U are scaled by powers of two per chunk so that their fp16 copies stay in
 * range whatever the magnitude of the inputs: S by its running maximum, U by the maximum of R (GDN) or V (GLA).
 * Conv windows are not written here (see chunk_prefill.h).
 *
 * Where the time goes (H200, ncu): a chunk is a chain of dependent short steps run by only 2 warps per scheduler,
 * so stalls on fixed-latency and shared-memory dependencies dominate, not tensor-core throughput; stage 1 (conv)
 * is the longest, which is why clusters share it.
 */
#include "chunk_prefill.h"

#include <climits>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace {

constexpr int kChunk = 64;
constexpr int kBlocks = kChunk / 16; /* 16-token blocks of a chunk */
constexpr int kTileCols = 32;        /* dv columns per CTA */
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kDk = 128;
constexpr int kMaxWidth = 8;
constexpr int kMaxHalo = kMaxWidth - 1;
constexpr int kMaxCluster = 8;
constexpr int kSolverWarps = kTileCols / 16; /* warps that solve for U, 16 columns each */
constexpr int kSolverWarp0 = kWarps - kSolverWarps;
constexpr int kGateWarp = kWarps - 1;
constexpr int kRawCols = 2 * kDk + kTileCols; /* q | k | this tile's v channels */
constexpr int kStateTarget = 12;              /* scaled |S| < 2^12 in fp16 */
constexpr int kUTarget = 8;                   /* scaled |R| < 2^8: room for growth through the solve */
constexpr unsigned kFullMask = 0xffffffffu;

/* Per-token gate quantities of a chunk; padding tokens have g = 0, β = 0. */
struct Gates {
    float big_g[kChunk];       /* G: cumulative log decay inside the chunk */
    float beta[kChunk];
    float exp_g[kChunk];       /* e^{G_i} */
    float gamma[kChunk];       /* e^{G_C − G_i} */
    float row_f[kChunk];       /* e^{G_i − G_{16·(i/16)}} */
    float col_f[kBlocks][kChunk]; /* e^{G_{16b} − G_j} for j < 16b */
};

struct alignas(16) Smem {
    uint16_t raw[kChunk + kMaxHalo][kRawCols]; /* pre-conv inputs, row r = token c0 − halo + r */
    __half q[kChunk][kDk + 8];                 /* unit q rows (padded rows: conflict-free ldmatrix) */
    __half k[kChunk][kDk + 8];
    float v[kChunk][kTileCols + 8];
    __half s[kDk][kTileCols + 8];              /* state tile · 2^s */
    __half a_neg[kChunk][kChunk + 8];          /* −A, off-diagonal 16×16 blocks */
    __half p[kChunk][kChunk + 8];              /* P, lower blocks */
    float r[kChunk][kTileCols + 8];            /* R = β(V − e^G K S) */
    __half u[kChunk][kTileCols + 8];           /* U · 2^e */
    __half ut[kChunk][kTileCols + 8];          /* e^{G_C − G} n_k U · 2^e */
    __half tinv[kBlocks][16][24];              /* (I + A_bb)^{-1} */
    float a_diag[kBlocks][16][17];             /* A, diagonal blocks, fp32 */
    float conv_w[kMaxWidth][kRawCols];
    float conv_b[kRawCols];
    float nq[kChunk], nk[kChunk]; /* lengths of q (times scale) and k */
    Gates gates[2];               /* by chunk parity: the next chunk's are made during this one */
    unsigned s_max[2], v_max[2], r_max[2]; /* float bits of maxima, by chunk parity */
};

struct Params {
    la_layer layer;
    int32_t channels;
    const la_seq *seqs;
    const la_checkpoint *checkpoints;
    la_io io;
    la_state_view state;
    int32_t tiles;
    int32_t vector_loads; /* qkv and conv windows allow 16-byte copies */
    int32_t out_pairs;    /* out allows 4-byte stores of two outputs */
    int32_t min_tokens;   /* sequences with fewer tokens are left to the token-sequential kernel */
};

/* ---- small helpers ------------------------------------------------------------------------------------------ */

__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) { return __uint_as_float((uint32_t)bits << 16); }
__device__ __forceinline__ uint16_t float_to_bf16_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
/* Fast-math gates: relative errors near 1e-6, far below what bf16 inputs carry. */
__device__ __forceinline__ float sigmoid(float z) { return __fdividef(1.0f, 1.0f + __expf(-z)); }
__device__ __forceinline__ float softplus(float z) { return z > 20.0f ? z : __logf(1.0f + __expf(z)); }
__device__ __forceinline__ float silu_fast(float z) { return __fdividef(z, 1.0f + __expf(-z)); }

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
    return x;
}

/* 2^k with bound · 2^k < 2^target; 1 for a zero or non-finite bound. */
__device__ __forceinline__ float pow2_scale(float bound, int target)
{
    if (!(bound > 0.0f) || !isfinite(bound)) return 1.0f;
    int e;
    frexpf(bound, &e);
    return ldexpf(1.0f, min(max(target - e, -100), 100));
}

/* Largest |x| of the CTA into *slot (non-negative floats order like their bits). */
__device__ __forceinline__ void block_max_into(unsigned *slot, float local)
{
    local = warp_max(local);
    if ((threadIdx.x & 31) == 0) atomicMax(slot, __float_as_uint(local));
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

/* A operand (16×16 at row m0, col k0) of a row-major matrix [m][k]. */
template <int kLd> __device__ __forceinline__ void load_a(const __half (*m)[kLd], int m0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31;
    ldsm_x4(smem_addr(&m[m0 + (l & 15)][k0 + (l >> 4) * 8]), r);
}

/* A operand (16×16: rows m0.., cols k0..) of a matrix stored transposed, [k][m]. */
template <int kLd>
__device__ __forceinline__ void load_a_transposed(const __half (*m)[kLd], int m0, int k0, uint32_t (&r)[4])
{
    const int l = threadIdx.x & 31;
    ldsm_x4_trans(smem_addr(&m[k0 + (l & 7) + (l >> 4) * 8][m0 + ((l >> 3) & 1) * 8]), r);
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

/* ---- clusters ------------------------------------------------------------------------------------------------ */

__device__ __forceinline__ unsigned cluster_rank()
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

__device__ __forceinline__ unsigned cluster_size()
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
    return r;
}

/* Barrier of every thread of the cluster; orders shared-memory writes (remote ones too) before later reads. */
__device__ __forceinline__ void cluster_barrier(unsigned size)
{
    if (size == 1) {
        __syncthreads();
        return;
    }
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

/* Stores 8 bytes at the same shared-memory offset in every CTA of the cluster. */
__device__ __forceinline__ void store_all_ranks(void *local, uint32_t lo, uint32_t hi, unsigned size)
{
    if (size == 1) {
        *reinterpret_cast<uint2 *>(local) = make_uint2(lo, hi);
        return;
    }
    const uint32_t addr = smem_addr(local);
    for (unsigned rank = 0; rank < size; ++rank) {
        uint32_t remote;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
        asm volatile("st.shared::cluster.v2.u32 [%0], {%1, %2};" ::"r"(remote), "r"(lo), "r"(hi) : "memory");
    }
}

__device__ __forceinline__ void store_all_ranks(float *local, float value, unsigned size)
{
    if (size == 1) {
        *local = value;
        return;
    }
    const uint32_t addr = smem_addr(local);
    for (unsigned rank = 0; rank < size; ++rank) {
        uint32_t remote;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
        asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(remote), "f"(value) : "memory");
    }
}

/* ---- where things are ------------------------------------------------------------------------------------------ */

/* One CTA's view: its sequence, v-head, tile and q/k head. */
struct Cta {
    la_seq seq;
    int head, tile, qk_head;
    int halo;        /* conv inputs before a token: W − 1 (0 without conv) */
    unsigned rank;   /* in the cluster */
    unsigned csize;  /* CTAs in the cluster */
    int qk_tokens;   /* tokens per rank whose q/k this CTA convolves */
};

/* Input channel of raw column c. */
__device__ __forceinline__ int raw_channel(const Params &p, const Cta &cta, int c)
{
    const la_layer &L = p.layer;
    if (c < kDk) return cta.qk_head * kDk + c;
    if (c < 2 * kDk) return (L.hk + cta.qk_head) * kDk + (c - kDk);
    return 2 * L.hk * kDk + cta.head * L.dv + cta.tile * kTileCols + (c - 2 * kDk);
}

/* The pre-conv input of token tau (step-local; negative: from the initial conv window) on channel ch, or nullptr
 * for zero. */
__device__ __forceinline__ const uint16_t *raw_source(const Params &p, const Cta &cta, int tau, int ch)
{
    if (tau >= 0) return p.io.qkv + (cta.seq.token_offset + tau) * p.io.qkv_stride + ch;
    if (cta.seq.init_slot < 0 || cta.halo == 0) return nullptr;
    return p.state.conv + ((size_t)cta.seq.init_slot * cta.halo + (cta.halo + tau)) * p.channels + ch;
}

/* Copies raw rows [r_begin, r_end) of columns [c_begin, c_end) of the chunk starting at step token c0. */
__device__ __forceinline__ void load_raw_rows(const Params &p, const Cta &cta, Smem &sm, int c0, int r_begin,
                                              int r_end, int c_begin, int c_end)
{
    const int width = c_end - c_begin;
    if (p.vector_loads) {
        const int units = width / 8;
        for (int idx = threadIdx.x; idx < (r_end - r_begin) * units; idx += kThreads) {
            const int r = r_begin + idx / units, c = c_begin + (idx % units) * 8;
            const uint16_t *src = raw_source(p, cta, c0 - cta.halo + r, raw_channel(p, cta, c));
            if (src) {
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(&sm.raw[r][c])), "l"(src)
                             : "memory");
            } else {
                *reinterpret_cast<uint4 *>(&sm.raw[r][c]) = make_uint4(0, 0, 0, 0);
            }
        }
        return;
    }
    for (int idx = threadIdx.x; idx < (r_end - r_begin) * width; idx += kThreads) {
        const int r = r_begin + idx / width, c = c_begin + idx % width;
        const uint16_t *src = raw_source(p, cta, c0 - cta.halo + r, raw_channel(p, cta, c));
        sm.raw[r][c] = src ? *src : 0;
    }
}

/* Everything stage 1 of a chunk reads from global memory: the raw tile (asynchronously where aligned) and, for the
 * gate warp, a and b of its two tokens. */
struct GateInputs {
    uint16_t a[2], b[2];
};

__device__ __forceinline__ void load_chunk(const Params &p, const Cta &cta, Smem &sm, int c0, int len,
                                           GateInputs &gates)
{
    const int qk_begin = (int)cta.rank * cta.qk_tokens;
    const int qk_end = min(qk_begin + cta.qk_tokens, len);
    if (qk_end > qk_begin) load_raw_rows(p, cta, sm, c0, qk_begin, qk_end + cta.halo, 0, 2 * kDk);
    load_raw_rows(p, cta, sm, c0, 0, len + cta.halo, 2 * kDk, kRawCols);
    if (threadIdx.x / 32 == kGateWarp) {
        const la_layer &L = p.layer;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int i = 2 * (threadIdx.x & 31) + e;
            const int64_t row = cta.seq.token_offset + c0 + i;
            gates.a[e] = i < len && p.io.a ? p.io.a[row * p.io.a_stride + cta.head] : 0;
            gates.b[e] = i < len && L.kind == LA_KIND_GATED_DELTANET ? p.io.b[row * p.io.b_stride + cta.head] : 0;
        }
    }
}

__device__ __forceinline__ void wait_chunk_loads() { asm volatile("cp.async.wait_all;" ::: "memory"); }

/* ---- stage 1: conv, norms ------------------------------------------------------------------------------------ */

__device__ __forceinline__ void unpack4(uint2 x, float (&f)[4])
{
    f[0] = __uint_as_float(x.x << 16), f[1] = __uint_as_float(x.x & 0xffff0000u);
    f[2] = __uint_as_float(x.y << 16), f[3] = __uint_as_float(x.y & 0xffff0000u);
}

constexpr int kQkBatch = 4; /* q/k tokens a warp convolves at once: their reductions overlap */

/* q (even warps) or k (odd warps) of this warp's consecutive tokens of the rank's share: conv + SiLU of the lane's
 * 4 channels with the taps and a window of inputs in registers, stored as unit vectors in every CTA of the cluster,
 * their lengths in nq/nk. kW: conv width (0: no conv, no SiLU). */
template <int kW> __device__ __forceinline__ void conv_qk(const Params &p, const Cta &cta, Smem &sm, int len)
{
    constexpr int kTaps = kW > 0 ? kW : 1;
    constexpr int kHalo = kTaps - 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int part = warp & 1;
    const int per_warp = cta.qk_tokens / (kWarps / 2);
    const int t0 = (int)cta.rank * cta.qk_tokens + (warp >> 1) * per_warp;
    const int col = part * kDk + 4 * lane;
    __half(*dst)[kDk + 8] = part == 0 ? sm.q : sm.k;
    float *length = part == 0 ? sm.nq : sm.nk;

    float w[kTaps][4], bias[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (kW > 0) {
#pragma unroll
        for (int j = 0; j < kTaps; ++j) {
            const float4 v = *reinterpret_cast<const float4 *>(&sm.conv_w[j][col]);
            w[j][0] = v.x, w[j][1] = v.y, w[j][2] = v.z, w[j][3] = v.w;
        }
        const float4 b = *reinterpret_cast<const float4 *>(&sm.conv_b[col]);
        bias[0] = b.x, bias[1] = b.y, bias[2] = b.z, bias[3] = b.w;
    }
    float x[kHalo + kQkBatch][4]; /* x[m] = raw row t0 + base + m: inputs of tokens base .. base + kQkBatch − 1 */
#pragma unroll
    for (int m = 0; m < kHalo; ++m) unpack4(*reinterpret_cast<const uint2 *>(&sm.raw[t0 + m][col]), x[m]);

    for (int base = 0; base < per_warp; base += kQkBatch) {
        float y[kQkBatch][4], ss[kQkBatch];
#pragma unroll
        for (int b = 0; b < kQkBatch; ++b) {
            if (base + b < per_warp)
                unpack4(*reinterpret_cast<const uint2 *>(&sm.raw[t0 + base + kHalo + b][col]), x[kHalo + b]);
            const bool real = base + b < per_warp && t0 + base + b < len;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                float acc = bias[c];
                if (kW > 0) {
#pragma unroll
                    for (int j = 0; j < kTaps; ++j) acc = fmaf(w[j][c], x[b + j][c], acc);
                    acc = silu_fast(acc);
                } else {
                    acc = x[b][c];
                }
                y[b][c] = real ? acc : 0.0f;
            }
            ss[b] = y[b][0] * y[b][0] + y[b][1] * y[b][1] + y[b][2] * y[b][2] + y[b][3] * y[b][3];
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int b = 0; b < kQkBatch; ++b) ss[b] += __shfl_xor_sync(kFullMask, ss[b], o);
#pragma unroll
        for (int b = 0; b < kQkBatch; ++b) {
            if (base + b >= per_warp) break;
            const int i = t0 + base + b;
            const float inv = ss[b] > 0.0f ? rsqrtf(ss[b]) : 0.0f;
            store_all_ranks(&dst[i][4 * lane], pack_half2(y[b][0] * inv, y[b][1] * inv),
                            pack_half2(y[b][2] * inv, y[b][3] * inv), cta.csize);
            if (lane == 0) {
                const float norm = sqrtf(ss[b]);
                float n = p.layer.qk_l2norm ? norm * rsqrtf(ss[b] + 1e-6f) : norm;
                if (part == 0) n *= p.layer.scale;
                store_all_ranks(&length[i], n, cta.csize);
            }
        }
#pragma unroll
        for (int m = 0; m < kHalo; ++m)
#pragma unroll
            for (int c = 0; c < 4; ++c) x[m][c] = x[m + kQkBatch][c];
    }
}

constexpr int kVTokens = kChunk / kWarps; /* consecutive tokens of v per warp */

/* v of this warp's tokens on the lane's column, into sm.v; returns the largest |v|. */
template <int kW> __device__ __forceinline__ float conv_v(Smem &sm, int len)
{
    constexpr int kTaps = kW > 0 ? kW : 1;
    constexpr int kHalo = kTaps - 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int col = 2 * kDk + lane, t0 = kVTokens * warp;
    float w[kTaps], bias = 0.0f;
    if (kW > 0) {
#pragma unroll
        for (int j = 0; j < kTaps; ++j) w[j] = sm.conv_w[j][col];
        bias = sm.conv_b[col];
    }
    float x[kHalo + kVTokens];
#pragma unroll
    for (int m = 0; m < kHalo + kVTokens; ++m) x[m] = bf16_bits_to_float(sm.raw[t0 + m][col]);
    float largest = 0.0f;
#pragma unroll
    for (int b = 0; b < kVTokens; ++b) {
        float y;
        if (kW > 0) {
            y = bias;
#pragma unroll
            for (int j = 0; j < kTaps; ++j) y = fmaf(w[j], x[b + j], y);
            y = silu_fast(y);
        } else {
            y = x[b];
        }
        y = t0 + b < len ? y : 0.0f;
        sm.v[t0 + b][lane] = y;
        largest = fmaxf(largest, fabsf(y));
    }
    return largest;
}

template <int kW> __device__ __forceinline__ float conv_chunk_width(const Params &p, const Cta &cta, Smem &sm, int len)
{
    conv_qk<kW>(p, cta, sm, len);
    return conv_v<kW>(sm, len);
}

/* Stage 1 for the layer's conv width; returns this thread's largest |v|. */
__device__ __forceinline__ float conv_chunk(const Params &p, const Cta &cta, Smem &sm, int len)
{
    switch (p.layer.conv_width) {
    case 0: return conv_chunk_width<0>(p, cta, sm, len);
    case 1: return conv_chunk_width<1>(p, cta, sm, len);
    case 2: return conv_chunk_width<2>(p, cta, sm, len);
    case 3: return conv_chunk_width<3>(p, cta, sm, len);
    case 4: return conv_chunk_width<4>(p, cta, sm, len);
    case 5: return conv_chunk_width<5>(p, cta, sm, len);
    case 6: return conv_chunk_width<6>(p, cta, sm, len);
    case 7: return conv_chunk_width<7>(p, cta, sm, len);
    default: return conv_chunk_width<8>(p, cta, sm, len);
    }
}

/* The gate warp: g and β of tokens 2·lane, 2·lane+1, the cumulative G and the decay factors built from it. Padding
 * tokens get g = 0, β = 0 (so G stays flat after the last token and they drop out of every product). */
__device__ __forceinline__ void chunk_gates(const Params &p, const Cta &cta, Gates &gt, const GateInputs &in, int len)
{
    const la_layer &L = p.layer;
    const int lane = threadIdx.x & 31;
    const float rate = expf(L.A_log[cta.head]);
    const float dt_bias = L.dt_bias ? L.dt_bias[cta.head] : 0.0f;
    float g[2], beta[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const bool real = 2 * lane + e < len;
        g[e] = !real ? 0.0f : p.io.a ? -rate * softplus(bf16_bits_to_float(in.a[e]) + dt_bias) : -rate;
        beta[e] = real && L.kind == LA_KIND_GATED_DELTANET ? sigmoid(bf16_bits_to_float(in.b[e])) : 0.0f;
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

/* ---- stage 2: the products -------------------------------------------------------------------------------- */

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

/* A 16×16 block of stage 2: which = 0: P (n_q n_k (q̂·k̂) D, diagonal included); 1: A (β n_k n_k (k̂·k̂) D, strictly
 * lower; diagonal blocks kept in fp32, the others negated in fp16). */
struct Block {
    int which, bi, bj;
};

/* This warp's blocks in stage 2: GDN solver warps take the diagonal blocks of A (2 each), the other warps share
 * the 10 lower blocks of P and (GDN) the 6 off-diagonal blocks of A round-robin. Returns how many (1 to 3). */
__device__ __forceinline__ int stage2_blocks(bool delta, int warp, Block (&blk)[3])
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

__device__ __forceinline__ const __half (*block_lhs(Smem &sm, const Block &b))[kDk + 8]
{
    return b.which == 0 ? sm.q : sm.k;
}

/* Fragments of one k-step (16 of dk) of stage 2: for each block, for Y = Q̂ S' and (GDN) X = K̂ S'. */
template <int N> struct Stage2Fragments {
    uint32_t a[N][4], b[N][4], s[4], q[4], k[4];
};

template <int N, bool kDelta>
__device__ __forceinline__ void load_stage2(Smem &sm, const Block (&blk)[3], int mt, int nh, int kk,
                                            Stage2Fragments<N> &f)
{
#pragma unroll
    for (int n = 0; n < N; ++n) {
        load_a(block_lhs(sm, blk[n]), 16 * blk[n].bi, 16 * kk, f.a[n]);
        load_b_nk(sm.k, 16 * blk[n].bj, 16 * kk, f.b[n]);
    }
    load_b_kn(sm.s, 16 * kk, 16 * nh, f.s);
    load_a(sm.q, 16 * mt, 16 * kk, f.q);
    if (kDelta) load_a(sm.k, 16 * mt, 16 * kk, f.k);
}

/* All products of a warp in stage 2 in one k-loop over dk: N blocks and, for its 16 tokens (m-tile mt) and 16
 * columns (nh), Y = Q̂ S' and (GDN) X = K̂ S' (S' = S · 2^s). Loads run one k-step ahead of the mma. */
template <int N, bool kDelta>
__device__ __forceinline__ void stage2_products(Smem &sm, const Block (&blk)[3], int mt, int nh,
                                                float (&acc)[3][2][4], float (&y)[2][4], float (&x)[2][4])
{
    Stage2Fragments<N> f[2];
    load_stage2<N, kDelta>(sm, blk, mt, nh, 0, f[0]);
#pragma unroll
    for (int kk = 0; kk < kDk / 16; ++kk) {
        const int cur = kk & 1;
        if (kk + 1 < kDk / 16) load_stage2<N, kDelta>(sm, blk, mt, nh, kk + 1, f[cur ^ 1]);
#pragma unroll
        for (int n = 0; n < N; ++n) {
            mma(acc[n][0], f[cur].a[n], f[cur].b[n][0], f[cur].b[n][1]);
            mma(acc[n][1], f[cur].a[n], f[cur].b[n][2], f[cur].b[n][3]);
        }
        mma(y[0], f[cur].q, f[cur].s[0], f[cur].s[1]);
        mma(y[1], f[cur].q, f[cur].s[2], f[cur].s[3]);
        if (kDelta) {
            mma(x[0], f[cur].k, f[cur].s[0], f[cur].s[1]);
            mma(x[1], f[cur].k, f[cur].s[2], f[cur].s[3]);
        }
    }
}

/* Scales, masks and stores one block of stage 2 (see Block). */
__device__ __forceinline__ void block_epilogue(Smem &sm, const Gates &gt, const Block &blk, const float (&acc)[2][4])
{
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
                *reinterpret_cast<uint32_t *>(&sm.p[i][j0]) = pack_half2(val[0], val[1]);
            } else if (bi != bj) {
                *reinterpret_cast<uint32_t *>(&sm.a_neg[i][j0]) = pack_half2(-val[0], -val[1]);
            } else {
                sm.a_diag[bi][i - 16 * bi][j0 - 16 * bj] = val[0];
                sm.a_diag[bi][i - 16 * bi][j0 + 1 - 16 * bj] = val[1];
            }
        }
    }
}

template <int N, bool kDelta>
__device__ __forceinline__ void stage2_warp(Smem &sm, const Gates &gt, const Block (&blk)[3], int mt, int nh,
                                            float (&y)[2][4], float (&x)[2][4])
{
    float acc[3][2][4] = {};
    stage2_products<N, kDelta>(sm, blk, mt, nh, acc, y, x);
#pragma unroll
    for (int n = 0; n < N; ++n) block_epilogue(sm, gt, blk[n], acc[n]);
}

/* ---- stage 3: the triangular solve (GDN), on Uᵀ -------------------------------------------------------------- */

/* Column c of (I + A_bb)^{-1} by forward substitution, written as fp16. */
__device__ __forceinline__ void invert_diagonal_column(Smem &sm, int b, int c)
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

/* Solver warp `solver`, after its diagonal blocks of A (2·solver, 2·solver + 1) are stored: their inverses. */
__device__ __forceinline__ void invert_own_diagonal_blocks(Smem &sm, int solver)
{
    const int lane = threadIdx.x & 31;
    __syncwarp();
    invert_diagonal_column(sm, 2 * solver + (lane >> 4), lane & 15);
}

/* Uᵀ for the 16 columns of solver warp `solver`: Uᵀ_b = (R'ᵀ_b − Σ_{c<b} Uᵀ_c A_bcᵀ) T_bbᵀ, R' = R · 2^e. */
__device__ __forceinline__ void solve_u(Smem &sm, const Gates &gt, int solver, float u_scale)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int col = 16 * solver + g;
    uint32_t u_frag[kBlocks][4];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
        /* everything of this block that does not depend on earlier blocks is loaded first */
        uint32_t a_frag[kBlocks - 1][4], tb[4];
#pragma unroll
        for (int c = 0; c < b; ++c) load_b_nk(sm.a_neg, 16 * b, 16 * c, a_frag[c]);
        load_b_nk(sm.tinv[b], 0, 0, tb);
        float acc[2][4];
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            const int i = 16 * b + 8 * nt + 2 * t;
            acc[nt][0] = sm.r[i][col] * u_scale;
            acc[nt][1] = sm.r[i + 1][col] * u_scale;
            acc[nt][2] = sm.r[i][col + 8] * u_scale;
            acc[nt][3] = sm.r[i + 1][col + 8] * u_scale;
        }
        float scale_ut[2][2];
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int i = 16 * b + 8 * nt + 2 * t + e;
                scale_ut[nt][e] = gt.gamma[i] * sm.nk[i];
            }
#pragma unroll
        for (int c = 0; c < b; ++c) {
            mma(acc[0], u_frag[c], a_frag[c][0], a_frag[c][1]);
            mma(acc[1], u_frag[c], a_frag[c][2], a_frag[c][3]);
        }
        uint32_t rhs[4];
        accumulators_to_a(acc, rhs);
        float u[2][4] = {};
        mma(u[0], rhs, tb[0], tb[1]);
        mma(u[1], rhs, tb[2], tb[3]);
        accumulators_to_a(u, u_frag[b]);
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = 16 * b + 8 * nt + 2 * t + (e & 1), j = col + 8 * (e >> 1);
                sm.u[i][j] = __float2half_rn(u[nt][e]);
                sm.ut[i][j] = __float2half_rn(u[nt][e] * scale_ut[nt][e & 1]);
            }
        }
    }
}

/* ---- state tile in registers: warp w holds rows 16w.., all 32 columns (4 n-tiles) ----------------------------- */

template <typename State> __device__ __forceinline__ State *state_tile(const Params &p, const Cta &cta, int slot)
{
    const la_layer &L = p.layer;
    return static_cast<State *>(p.state.recurrent) + ((size_t)slot * L.hv + cta.head) * (size_t)kDk * L.dv +
           cta.tile * kTileCols;
}

__device__ __forceinline__ void load2(const float *src, float &a, float &b)
{
    const float2 v = *reinterpret_cast<const float2 *>(src);
    a = v.x, b = v.y;
}
__device__ __forceinline__ void load2(const uint16_t *src, float &a, float &b)
{
    const uint32_t v = *reinterpret_cast<const uint32_t *>(src);
    a = bf16_bits_to_float(v & 0xffffu), b = bf16_bits_to_float(v >> 16);
}
__device__ __forceinline__ void store2(float *dst, float a, float b)
{
    *reinterpret_cast<float2 *>(dst) = make_float2(a, b);
}
__device__ __forceinline__ void store2(uint16_t *dst, float a, float b)
{
    *reinterpret_cast<uint32_t *>(dst) = (uint32_t)float_to_bf16_bits(a) | ((uint32_t)float_to_bf16_bits(b) << 16);
}

template <typename State> __device__ __forceinline__ void load_state(const State *tile, int dv, float (&s)[4][4])
{
    const int w = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            load2(tile + (size_t)(16 * w + g + 8 * h) * dv + 8 * nt + 2 * t, s[nt][2 * h], s[nt][2 * h + 1]);
}

template <typename State> __device__ __forceinline__ void store_state(State *tile, int dv, const float (&s)[4][4])
{
    const int w = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            store2(tile + (size_t)(16 * w + g + 8 * h) * dv + 8 * nt + 2 * t, s[nt][2 * h], s[nt][2 * h + 1]);
}

__device__ __forceinline__ float tile_abs_max(const float (&s)[4][4])
{
    float m = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) m = fmaxf(m, fabsf(s[nt][e]));
    return m;
}

/* S' = S · scale into shared memory as the fp16 operand of stage 2. */
__device__ __forceinline__ void stage_state(Smem &sm, const float (&s)[4][4], float scale)
{
    const int w = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            *reinterpret_cast<uint32_t *>(&sm.s[16 * w + g + 8 * h][8 * nt + 2 * t]) =
                pack_half2(s[nt][2 * h] * scale, s[nt][2 * h + 1] * scale);
}

/* Stage 4 of a warp, in one loop over the chunk's 16-token blocks:
 *   O = e^G n_q Y / 2^s + P U for its 16 tokens × 16 columns (m-tile mt, nh), written as bf16;
 *   S ← e^{G_C} S + K̂ᵀ Ũ' / 2^e for its 16 rows of the state (Ũ' = e^{G_C − G} n_k U · 2^e).
 * Blocks past the chunk's tokens add nothing and are skipped. */
__device__ __forceinline__ void outputs_and_state(const Params &p, const Cta &cta, Smem &sm, const Gates &gt, int mt,
                                                  int nh, int c0, int len, const float (&y)[2][4], float (&s)[4][4],
                                                  float s_inv, float u_scale)
{
    const int w = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float o[2][4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int i = 16 * mt + g + 8 * h;
        const float f = gt.exp_g[i] * sm.nq[i] * s_inv * u_scale;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            o[nt][2 * h] = y[nt][2 * h] * f;
            o[nt][2 * h + 1] = y[nt][2 * h + 1] * f;
        }
    }
    const float pre = gt.exp_g[kChunk - 1] * u_scale, post = 1.0f / u_scale;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] *= pre;

#pragma unroll
    for (int kb = 0; kb < kBlocks; ++kb) {
        if (16 * kb >= len) break;
        uint32_t ap[4], bu[4], ak[4], b0[4], b1[4];
        const bool output_block = kb <= mt;
        if (output_block) {
            load_a(sm.p, 16 * mt, 16 * kb, ap);
            load_b_kn(sm.u, 16 * kb, 16 * nh, bu);
        }
        load_a_transposed(sm.k, 16 * w, 16 * kb, ak);
        load_b_kn(sm.ut, 16 * kb, 0, b0);
        load_b_kn(sm.ut, 16 * kb, 16, b1);
        if (output_block) {
            mma(o[0], ap, bu[0], bu[1]);
            mma(o[1], ap, bu[2], bu[3]);
        }
        mma(s[0], ak, b0[0], b0[1]);
        mma(s[1], ak, b0[2], b0[3]);
        mma(s[2], ak, b1[0], b1[1]);
        mma(s[3], ak, b1[2], b1[3]);
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] *= post;

    const int col0 = cta.head * p.layer.dv + cta.tile * kTileCols + 16 * nh + 2 * t;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int i = 16 * mt + g + 8 * h;
        if (i >= len) continue;
        uint16_t *row = p.io.out + (cta.seq.token_offset + c0 + i) * p.io.out_stride + col0;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            const uint16_t lo = float_to_bf16_bits(o[nt][2 * h] * post), hi = float_to_bf16_bits(o[nt][2 * h + 1] * post);
            if (p.out_pairs) {
                *reinterpret_cast<uint32_t *>(row + 8 * nt) = (uint32_t)lo | ((uint32_t)hi << 16);
            } else {
                row[8 * nt] = lo;
                row[8 * nt + 1] = hi;
            }
        }
    }
}

/* ---- the kernel ---------------------------------------------------------------------------------------------- */

__device__ __forceinline__ int chunk_length(const la_seq &seq, int c0)
{
    const int room = c0 == 0 ? kChunk - (int)(seq.start_position % kChunk) : kChunk;
    return min(seq.num_tokens - c0, room);
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

template <bool kDelta, typename State>
__global__ void __launch_bounds__(kThreads, 1) chunk_prefill_kernel(const __grid_constant__ Params p)
{
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    Smem &sm = *reinterpret_cast<Smem *>(smem_bytes);
    const la_layer &L = p.layer;

    Cta cta;
    cta.tile = blockIdx.x % p.tiles;
    cta.head = (blockIdx.x / p.tiles) % L.hv;
    cta.seq = p.seqs[blockIdx.x / p.tiles / L.hv];
    /* the whole cluster (one head) leaves together */
    if (cta.seq.state_slot < 0 || cta.seq.num_tokens < p.min_tokens) return;
    cta.qk_head = cta.head / (L.hv / L.hk);
    cta.halo = L.conv_width > 1 ? L.conv_width - 1 : 0;
    cta.rank = cluster_rank();
    cta.csize = cluster_size();
    cta.qk_tokens = kChunk / (int)cta.csize;

    const int tid = threadIdx.x, warp = tid / 32;
    const int n = cta.seq.num_tokens;

    /* The state loads go first: nothing below needs them until the first chunk's products. */
    float s[4][4] = {};
    if (cta.seq.init_slot >= 0) load_state(state_tile<State>(p, cta, cta.seq.init_slot), L.dv, s);

    for (int c = tid; c < kRawCols; c += kThreads) {
        const int ch = raw_channel(p, cta, c);
        for (int j = 0; j < kMaxWidth; ++j) sm.conv_w[j][c] = j < L.conv_width ? L.conv_weight[(size_t)ch * L.conv_width + j] : 0.0f;
        sm.conv_b[c] = L.conv_width > 0 && L.conv_bias ? L.conv_bias[ch] : 0.0f;
    }
    if (tid < 2) sm.s_max[tid] = sm.v_max[tid] = sm.r_max[tid] = 0u;

    GateInputs gates = {};
    int len = n > 0 ? chunk_length(cta.seq, 0) : 0;
    if (n > 0) load_chunk(p, cta, sm, 0, len, gates);
    __syncthreads();
    block_max_into(&sm.s_max[0], tile_abs_max(s));
    if (warp == kGateWarp && n > 0) chunk_gates(p, cta, sm.gates[0], gates, len);

    /* The next checkpoint is fetched one chunk ahead, so its load never waits on the chunk's critical path. */
    int next_cp = cta.seq.checkpoint_begin;
    const int cp_end = cta.seq.checkpoint_begin + cta.seq.checkpoint_count;
    la_checkpoint next = next_checkpoint(p, next_cp, cp_end);
    wait_chunk_loads();
    cluster_barrier(cta.csize); /* every CTA of the cluster runs before anyone stores into it */

    const int mt = warp & 3, nh = warp >> 2; /* this warp's tokens and columns in stages 2 and 4 */
    const int lane = tid & 31, g = lane >> 2, t = lane & 3;
    Block blk[3];
    const int blocks = stage2_blocks(kDelta, warp, blk);
    for (int c0 = 0, parity = 0; c0 < n; c0 += len, parity ^= 1) {
        len = chunk_length(cta.seq, c0);
        const Gates &gt = sm.gates[parity];

        /* ---- stage 1 ---- */
        const float s_scale = pow2_scale(__uint_as_float(sm.s_max[parity]), kStateTarget);
        stage_state(sm, s, s_scale);
        if (tid == 0) sm.s_max[parity ^ 1] = sm.v_max[parity ^ 1] = sm.r_max[parity ^ 1] = 0u;
        block_max_into(&sm.v_max[parity], conv_chunk(p, cta, sm, len));
        cluster_barrier(cta.csize);

        /* the next chunk's inputs stream in while this one is computed */
        const int next_c0 = c0 + len, next_len = next_c0 < n ? chunk_length(cta.seq, next_c0) : 0;
        if (next_len > 0) load_chunk(p, cta, sm, next_c0, next_len, gates);

        /* ---- stage 2 ---- */
        float y[2][4] = {}, x[2][4] = {};
        if (blocks == 3)
            stage2_warp<3, kDelta>(sm, gt, blk, mt, nh, y, x);
        else if (blocks == 2)
            stage2_warp<2, kDelta>(sm, gt, blk, mt, nh, y, x);
        else
            stage2_warp<1, kDelta>(sm, gt, blk, mt, nh, y, x);
        if (kDelta && warp >= kSolverWarp0) invert_own_diagonal_blocks(sm, warp - kSolverWarp0);
        const float s_inv = 1.0f / s_scale;
        if (kDelta) {
            float r_abs = 0.0f;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int i = 16 * mt + g + 8 * h;
                const float f = gt.exp_g[i] * sm.nk[i] * s_inv, beta = gt.beta[i];
#pragma unroll
                for (int nt = 0; nt < 2; ++nt) {
                    const int j = 16 * nh + 8 * nt + 2 * t;
                    const float2 v = *reinterpret_cast<const float2 *>(&sm.v[i][j]);
                    const float r0 = beta * (v.x - f * x[nt][2 * h]), r1 = beta * (v.y - f * x[nt][2 * h + 1]);
                    *reinterpret_cast<float2 *>(&sm.r[i][j]) = make_float2(r0, r1);
                    r_abs = fmaxf(r_abs, fmaxf(fabsf(r0), fabsf(r1)));
                }
            }
            block_max_into(&sm.r_max[parity], r_abs);
        } else {
            const float u_scale = pow2_scale(__uint_as_float(sm.v_max[parity]), kUTarget);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int i = 16 * mt + g + 8 * h;
                const float f = gt.gamma[i] * sm.nk[i];
#pragma unroll
                for (int nt = 0; nt < 2; ++nt) {
                    const int j = 16 * nh + 8 * nt + 2 * t;
                    const float2 v = *reinterpret_cast<const float2 *>(&sm.v[i][j]);
                    *reinterpret_cast<uint32_t *>(&sm.u[i][j]) = pack_half2(v.x * u_scale, v.y * u_scale);
                    *reinterpret_cast<uint32_t *>(&sm.ut[i][j]) = pack_half2(v.x * u_scale * f, v.y * u_scale * f);
                }
            }
        }
        __syncthreads();

        /* ---- stage 3 ---- */
        const float u_scale = pow2_scale(__uint_as_float(kDelta ? sm.r_max[parity] : sm.v_max[parity]), kUTarget);
        if (kDelta) {
            if (warp >= kSolverWarp0) solve_u(sm, gt, warp - kSolverWarp0, u_scale);
            __syncthreads();
        }

        /* ---- stage 4 ---- */
        outputs_and_state(p, cta, sm, gt, mt, nh, c0, len, y, s, s_inv, u_scale);
        block_max_into(&sm.s_max[parity ^ 1], tile_abs_max(s));
        const int64_t done = cta.seq.start_position + c0 + len;
        for (; next.position <= done; next = next_checkpoint(p, ++next_cp, cp_end))
            if (next.position == done) store_state(state_tile<State>(p, cta, next.slot), L.dv, s);
        if (warp == kGateWarp && next_len > 0) chunk_gates(p, cta, sm.gates[parity ^ 1], gates, next_len);
        wait_chunk_loads();
        cluster_barrier(cta.csize);
    }
    store_state(state_tile<State>(p, cta, cta.seq.state_slot), L.dv, s);
}

/* ---- launch ---------------------------------------------------------------------------------------------------- */

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

/* Clusters of dv tiles of one head share the q/k conv: the cluster size must divide the tiles of a head and the
 * chunk. The largest such size, except where all CTAs fit in one wave of single CTAs but not of clusters (a GPC holds
 * whole clusters only, so fewer CTAs run at once): then the largest that still fits, or none. */
template <typename Kernel>
unsigned cluster_size_for(Kernel kernel, cudaLaunchConfig_t config, int tiles, unsigned blocks)
{
    int device = 0, sms = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
        (void)cudaGetLastError();
        return 1;
    }
    for (int size = kMaxCluster; size >= 2; size /= 2) {
        if (tiles % size != 0 || kChunk % size != 0) continue;
        config.attrs[0].val.clusterDim.x = (unsigned)size;
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
            (void)cudaGetLastError();
            continue;
        }
        if (clusters > 0 && (blocks > (unsigned)sms || blocks / (unsigned)size <= (unsigned)clusters))
            return (unsigned)size;
    }
    return 1;
}

template <bool kDelta, typename State>
cudaError_t launch(const Params &p, unsigned blocks, bool allow_clusters, cudaStream_t stream)
{
    auto kernel = chunk_prefill_kernel<kDelta, State>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(Smem));
    if (err != cudaSuccess) return err;

    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = sizeof(Smem);
    config.stream = stream;
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = 1;
    attribute.val.clusterDim.y = 1;
    attribute.val.clusterDim.z = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    attribute.val.clusterDim.x = allow_clusters ? cluster_size_for(kernel, config, p.tiles, blocks) : 1;
    if (attribute.val.clusterDim.x == 1) config.numAttrs = 0;
    err = cudaLaunchKernelEx(&config, kernel, p);
    return err != cudaSuccess ? err : cudaGetLastError();
}

bool supported(const la_layer &L)
{
    return (L.kind == LA_KIND_GATED_DELTANET || L.kind == LA_KIND_SIMPLE_GLA) && L.hk > 0 && L.hv > 0 &&
           L.hv % L.hk == 0 && L.dk == kDk && L.dv >= kTileCols && L.dv % kTileCols == 0 && L.conv_width >= 0 &&
           L.conv_width <= kMaxWidth && (L.state_dtype == LA_STATE_F32 || L.state_dtype == LA_STATE_BF16);
}

} // namespace

extern "C" int la_cuda_chunk_prefill_supported(const la_layer *layer) { return supported(*layer); }

/* The launcher behind the public entries: sequences with fewer than min_tokens tokens are skipped. */
static int chunk_prefill(const la_layer *layer, const la_batch *batch, const la_io *io, const la_state_view *state,
                         struct CUstream_st *stream, int allow_clusters, int32_t min_tokens)
{
    if (!supported(*layer)) return cudaErrorInvalidValue;
    if (batch->num_seqs <= 0) return cudaSuccess;

    Params p;
    p.layer = *layer;
    p.channels = la_channels(layer);
    p.seqs = batch->seqs;
    p.checkpoints = batch->checkpoints;
    p.io = *io;
    p.state = *state;
    p.tiles = layer->dv / kTileCols;
    const bool conv_aligned = layer->conv_width < 2 || (aligned16(state->conv) && p.channels % 8 == 0);
    p.vector_loads = aligned16(io->qkv) && io->qkv_stride % 8 == 0 && layer->dv % 8 == 0 && conv_aligned;
    p.out_pairs = ((uintptr_t)io->out & 3u) == 0 && io->out_stride % 2 == 0;
    p.min_tokens = min_tokens;

    const long long blocks = (long long)batch->num_seqs * layer->hv * p.tiles;
    if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    const bool delta = layer->kind == LA_KIND_GATED_DELTANET, f32 = layer->state_dtype == LA_STATE_F32;
    const bool clusters = allow_clusters != 0;
    if (delta) return f32 ? launch<true, float>(p, (unsigned)blocks, clusters, stream)
                          : launch<true, uint16_t>(p, (unsigned)blocks, clusters, stream);
    return f32 ? launch<false, float>(p, (unsigned)blocks, clusters, stream)
               : launch<false, uint16_t>(p, (unsigned)blocks, clusters, stream);
}

extern "C" int la_cuda_chunk_prefill_clusters(const la_layer *layer, const la_batch *batch, const la_io *io,
                                              const la_state_view *state, struct CUstream_st *stream,
                                              int allow_clusters)
{
    return chunk_prefill(layer, batch, io, state, stream, allow_clusters, 0);
}

extern "C" int la_cuda_chunk_prefill(const la_layer *layer, const la_batch *batch, const la_io *io,
                                     const la_state_view *state, struct CUstream_st *stream)
{
    return chunk_prefill(layer, batch, io, state, stream, 1, 0);
}

extern "C" int la_cuda_chunk_prefill_long(const la_layer *layer, const la_batch *batch, const la_io *io,
                                          const la_state_view *state, struct CUstream_st *stream, int32_t min_tokens)
{
    return chunk_prefill(layer, batch, io, state, stream, 1, min_tokens);
}
