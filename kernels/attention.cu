// Fused softmax attention on the GPU, float32:  O = softmax(scale * Q K^T + mask) V.
//
// Shapes (see attention.h): q (B, H, Tq, D), k and v (B, H, Tk, D), o (B, H, Tq, D), contiguous;
// lse (B, H, Tq) = log-sum-exp of each query's scaled scores (natural log, +inf when every key
// of that query is masked); kpm (B, Tk) uint8, 1 = key masked out (optional). D is 32, 64 or
// 128; any Tq, Tk >= 1 (tails handled). Causal masking is top-left aligned as in PyTorch (query
// i sees keys j <= i). A query whose keys are all masked gets output 0 and gradient 0.
//
// Versions (each kept, tested and benchmarked; chapter 11 walks through them):
//   v1 naive      the textbook: S = scale Q K^T written to global memory (B*H*Tq*Tk floats),
//                 a softmax kernel over its rows, then O = P V; one thread per output element.
//                 The backward materializes P and dS the same way. Memory O(B*H*T^2).
//   v2 row        fused, one warp per query row: the online softmax (running max m and sum l,
//                 rescaling the accumulator whenever the max grows) over the keys one at a time;
//                 no T x T matrix anywhere. Backward: one warp per query row for dQ and one warp
//                 per key row for dK, dV (each output written by exactly one warp: no atomics).
//   v3 tiled      a block of 4 warps owns 32 query rows; 32-key tiles of K and V are staged in
//                 shared memory and reused by all 32 rows; each lane computes one score column.
//                 Backward: the same tiling, a dK/dV kernel over key tiles and a dQ kernel over
//                 query tiles.
//   v4 registers  register-tiled: each thread computes a 4 x 8 (or 4 x 4) micro-tile of scores
//                 and a 4 x D/8 micro-tile of O with float4 shared-memory loads, so each value
//                 loaded feeds several FMAs (the SGEMM trick); the online softmax's row max and
//                 sum are reduced across the 8 lanes that share a row. The log2-domain trick
//                 (scores scaled by log2(e), exp2f) saves a multiply per score.
//   v5 tensor     the v4 algorithm with both matrix products on the tensor cores (mma.sync
//                 m16n8k8 TF32 with float32 accumulation), each product done as three TF32
//                 products (hi*hi + hi*lo + lo*hi, "3xTF32") so the result keeps float32
//                 accuracy; each key tile's P V is summed in a fresh accumulator and added to O
//                 in float32 (the tensor cores' own accumulation truncates). Forward only; its
//                 backward is v4's.
// Tile shapes were picked by a sweep on an H100 (benchmarks/results/attention_gpu_tiles_*).
// The backward of v2..v5 recomputes P from Q, K and the saved lse (the FlashAttention trick:
// store O(T) numbers, not O(T^2)), with D_i = rowsum(dO_i * O_i):
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attention.h"
#include "common.h"

// The dynamic shared memory of a launch (its size is the launch's third <<<>>> argument).
extern __shared__ __align__(16) unsigned char tt_attention_smem[];
#define TT_DYNAMIC_SMEM() reinterpret_cast<float*>(tt_attention_smem)

namespace tt {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kInf = INFINITY;


__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
// Reductions over the 8 lanes of a row group (lanes that differ only in bits 0..2).
__device__ __forceinline__ float group8_sum(float x) {
    for (int o = 1; o < 8; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float group8_max(float x) {
    for (int o = 1; o < 8; o <<= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// May query i see key j?
__device__ __forceinline__ bool visible(int i, int j, int Tk, bool causal, const std::uint8_t* kpm) {
    return j < Tk && !(causal && j > i) && !(kpm && kpm[j]);
}

// The end of a row: 1/l to normalize O, and the saved lse. m2 is the running max in log2 units;
// m2 == -inf means every key was masked: output 0 and lse = +inf, so that the backward's
// exp2(s - lse) is 0 for that row too.
__device__ __forceinline__ void row_finish(float m2, float l, float& inv_l, float& lse) {
    if (m2 == -kInf) {
        inv_l = 0.f;
        lse = kInf;
    } else {
        inv_l = 1.f / l;
        lse = (m2 + log2f(l)) * kLn2;
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by every backward: Dvec[r] = sum_c dO[r, c] * O[r, c], one warp per row.
__global__ void rowdot_kernel(const float* __restrict__ dout, const float* __restrict__ o,
                              float* __restrict__ dvec, long rows, int D) {
    long r = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;  // uniform per warp
    float acc = 0.f;
    for (int c = lane; c < D; c += 32) acc += dout[r * D + c] * o[r * D + c];
    acc = warp_sum(acc);
    if (lane == 0) dvec[r] = acc;
}

void launch_rowdot(const float* dout, const float* o, float* dvec, const AttnShape& s,
                   cudaStream_t st) {
    long rows = (long)s.B * s.H * s.Tq;
    rowdot_kernel<<<dim3((unsigned)((rows + 7) / 8)), dim3(256), 0, st>>>(dout, o, dvec, rows, s.D);
    TT_CHECK_LAUNCH("attention rowdot");
}

// ---------------------------------------------------------------------------------------------
// v1: naive. A batched matrix product C[z] = alpha * A[z] B[z] with arbitrary strides (so the
// same kernel does Q K^T, P V, P^T dO, ...), one thread per element of C.
__global__ void v1_bmm(const float* __restrict__ A, long sAz, int sar, int sac,
                       const float* __restrict__ Bm, long sBz, int sbr, int sbc,
                       float* __restrict__ C, int M, int N, int K, float alpha) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int r = blockIdx.y * blockDim.y + threadIdx.y;
    long z = blockIdx.z;
    if (r >= M || c >= N) return;
    const float* a = A + z * sAz + (long)r * sar;
    const float* b = Bm + z * sBz + (long)c * sbc;
    float acc = 0.f;
    for (int kk = 0; kk < K; ++kk) acc += a[(long)kk * sac] * b[(long)kk * sbr];
    C[z * M * N + (long)r * N + c] = alpha * acc;
}

void v1_matmul(const float* A, long sAz, int sar, int sac, const float* Bm, long sBz, int sbr,
               int sbc, float* C, int Z, int M, int N, int K, float alpha, cudaStream_t st) {
    dim3 block(32, 8), grid((N + 31) / 32, (M + 7) / 8, Z);
    v1_bmm<<<grid, block, 0, st>>>(A, sAz, sar, sac, Bm, sBz, sbr, sbc, C, M, N, K, alpha);
    TT_CHECK_LAUNCH("attention v1_bmm");
}

// Row softmax of the masked scores, in place (scores -> probabilities), and the row's lse.
__global__ void v1_softmax(float* __restrict__ S, float* __restrict__ lse,
                           const std::uint8_t* __restrict__ kpm, long rows, int H, int Tq,
                           int Tk, bool causal) {
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // uniform per warp
    int i = (int)(row % Tq);
    int b = (int)(row / ((long)H * Tq));
    const std::uint8_t* km = kpm ? kpm + (long)b * Tk : nullptr;
    float* s = S + row * Tk;
    float m = -kInf;
    for (int j = lane; j < Tk; j += 32) {
        float x = visible(i, j, Tk, causal, km) ? s[j] : -kInf;
        s[j] = x;
        m = fmaxf(m, x);
    }
    m = warp_max(m);
    if (m == -kInf) {  // every key masked: P = 0, lse = +inf
        for (int j = lane; j < Tk; j += 32) s[j] = 0.f;
        if (lane == 0) lse[row] = kInf;
        return;
    }
    float sum = 0.f;
    for (int j = lane; j < Tk; j += 32) sum += expf(s[j] - m);
    sum = warp_sum(sum);
    for (int j = lane; j < Tk; j += 32) s[j] = expf(s[j] - m) / sum;
    if (lane == 0) lse[row] = m + logf(sum);
}

// Backward helpers: P = exp(S - lse) on visible entries (recomputed, since v1's forward
// overwrote nothing it could keep), then dS = P * (dP - D) in place over dP.
__global__ void v1_probs(float* __restrict__ S, const float* __restrict__ lse,
                         const std::uint8_t* __restrict__ kpm, long n, int H, int Tq, int Tk,
                         bool causal) {
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int j = (int)(idx % Tk);
    long row = idx / Tk;
    int i = (int)(row % Tq);
    int b = (int)(row / ((long)H * Tq));
    const std::uint8_t* km = kpm ? kpm + (long)b * Tk : nullptr;
    S[idx] = visible(i, j, Tk, causal, km) ? expf(S[idx] - lse[row]) : 0.f;
}

__global__ void v1_dsoftmax(const float* __restrict__ P, float* __restrict__ dP,
                            const float* __restrict__ dvec, long n, int Tk) {
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    dP[idx] = P[idx] * (dP[idx] - dvec[idx / Tk]);
}

void v1_forward(const float* q, const float* k, const float* v, const std::uint8_t* kpm, float* o,
                float* lse, float* work, const AttnShape& s, cudaStream_t st) {
    int Z = s.B * s.H, Tq = s.Tq, Tk = s.Tk, D = s.D;
    float* S = work;  // (Z, Tq, Tk)
    v1_matmul(q, (long)Tq * D, D, 1, k, (long)Tk * D, 1, D, S, Z, Tq, Tk, D, s.scale, st);
    long rows = (long)Z * Tq;
    v1_softmax<<<dim3((unsigned)((rows + 7) / 8)), dim3(256), 0, st>>>(S, lse, kpm, rows, s.H, Tq,
        Tk, s.causal);
    TT_CHECK_LAUNCH("attention v1_softmax");
    v1_matmul(S, (long)Tq * Tk, Tk, 1, v, (long)Tk * D, D, 1, o, Z, Tq, D, Tk, 1.f, st);
}

void v1_backward(const float* q, const float* k, const float* v, const std::uint8_t* kpm,
                 const float* lse, const float* dout, float* dq, float* dk, float* dv,
                 float* work, const float* dvec, const AttnShape& s, cudaStream_t st) {
    int Z = s.B * s.H, Tq = s.Tq, Tk = s.Tk, D = s.D;
    long n = (long)Z * Tq * Tk;
    float* P = work;
    float* dS = work + n;
    unsigned blocks = (unsigned)((n + 255) / 256);
    v1_matmul(q, (long)Tq * D, D, 1, k, (long)Tk * D, 1, D, P, Z, Tq, Tk, D, s.scale, st);
    v1_probs<<<dim3(blocks), dim3(256), 0, st>>>(P, lse, kpm, n, s.H, Tq, Tk, s.causal);
    TT_CHECK_LAUNCH("attention v1_probs");
    v1_matmul(dout, (long)Tq * D, D, 1, v, (long)Tk * D, 1, D, dS, Z, Tq, Tk, D, 1.f, st);
    v1_dsoftmax<<<dim3(blocks), dim3(256), 0, st>>>(P, dS, dvec, n, Tk);
    TT_CHECK_LAUNCH("attention v1_dsoftmax");
    // dV = P^T dO, dK = scale dS^T Q, dQ = scale dS K
    v1_matmul(P, (long)Tq * Tk, 1, Tk, dout, (long)Tq * D, D, 1, dv, Z, Tk, D, Tq, 1.f, st);
    v1_matmul(dS, (long)Tq * Tk, 1, Tk, q, (long)Tq * D, D, 1, dk, Z, Tk, D, Tq, s.scale, st);
    v1_matmul(dS, (long)Tq * Tk, Tk, 1, k, (long)Tk * D, D, 1, dq, Z, Tq, D, Tk, s.scale, st);
}

// ---------------------------------------------------------------------------------------------
// v2: one warp per query row, keys one at a time, the online softmax. Lane l holds elements
// l, l+32, ... of the row (E = D/32 of them).
template <int D>
__global__ void __launch_bounds__(128) v2_forward_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, float* __restrict__ o, float* __restrict__ lse, int H,
    int Tq, int Tk, float scale, bool causal) {
    constexpr int E = D / 32;
    int lane = threadIdx.x & 31;
    int i = blockIdx.x * 4 + (threadIdx.x >> 5);
    long bh = blockIdx.y;
    if (i >= Tq) return;  // uniform per warp
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    const float* qi = q + (bh * Tq + i) * D;
    const float* kb = k + bh * Tk * D;
    const float* vb = v + bh * Tk * D;
    float c = scale * kLog2e;  // scores in log2 units: exp(x) = exp2(x * log2 e)
    float qr[E], acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) qr[e] = qi[lane + 32 * e] * c, acc[e] = 0.f;
    float m = -kInf, l = 0.f;
    int jend = causal ? min(Tk, i + 1) : Tk;
    for (int j = 0; j < jend; ++j) {
        if (km && km[j]) continue;  // same j for the whole warp: uniform
        float sc = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) sc += qr[e] * kb[(long)j * D + lane + 32 * e];
        sc = warp_sum(sc);
        float mn = fmaxf(m, sc);      // the new running max (finite: sc is)
        float alpha = exp2f(m - mn);  // rescales what was summed under the old max (0 at first)
        float p = exp2f(sc - mn);
        l = l * alpha + p;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[e] = acc[e] * alpha + p * vb[(long)j * D + lane + 32 * e];
        m = mn;
    }
    float inv_l, row_lse;
    row_finish(m, l, inv_l, row_lse);
#pragma unroll
    for (int e = 0; e < E; ++e) o[(bh * Tq + i) * D + lane + 32 * e] = acc[e] * inv_l;
    if (lane == 0) lse[bh * Tq + i] = row_lse;
}

template <int D>
__global__ void __launch_bounds__(128) v2_dq_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, const float* __restrict__ lse,
    const float* __restrict__ dout, const float* __restrict__ dvec, float* __restrict__ dq, int H,
    int Tq, int Tk, float scale, bool causal) {
    constexpr int E = D / 32;
    int lane = threadIdx.x & 31;
    int i = blockIdx.x * 4 + (threadIdx.x >> 5);
    long bh = blockIdx.y;
    if (i >= Tq) return;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    const float* kb = k + bh * Tk * D;
    const float* vb = v + bh * Tk * D;
    long row = bh * Tq + i;
    float c = scale * kLog2e, lse2 = lse[row] * kLog2e, Di = dvec[row];
    float qr[E], dor[E], acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) {
        qr[e] = q[row * D + lane + 32 * e] * c;
        dor[e] = dout[row * D + lane + 32 * e];
        acc[e] = 0.f;
    }
    int jend = causal ? min(Tk, i + 1) : Tk;
    for (int j = 0; j < jend; ++j) {
        if (km && km[j]) continue;
        float sc = 0.f, dp = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            sc += qr[e] * kb[(long)j * D + lane + 32 * e];
            dp += dor[e] * vb[(long)j * D + lane + 32 * e];
        }
        sc = warp_sum(sc);
        dp = warp_sum(dp);
        float ds = exp2f(sc - lse2) * (dp - Di);
#pragma unroll
        for (int e = 0; e < E; ++e) acc[e] += ds * kb[(long)j * D + lane + 32 * e];
    }
#pragma unroll
    for (int e = 0; e < E; ++e) dq[row * D + lane + 32 * e] = acc[e] * scale;
}

// One warp per key row j: loop over the queries that see it.
template <int D>
__global__ void __launch_bounds__(128) v2_dkdv_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, const float* __restrict__ lse,
    const float* __restrict__ dout, const float* __restrict__ dvec, float* __restrict__ dk,
    float* __restrict__ dv, int H, int Tq, int Tk, float scale, bool causal) {
    constexpr int E = D / 32;
    int lane = threadIdx.x & 31;
    int j = blockIdx.x * 4 + (threadIdx.x >> 5);
    long bh = blockIdx.y;
    if (j >= Tk) return;
    long krow = bh * Tk + j;
    bool masked = kpm && kpm[(bh / H) * Tk + j];
    const float* qb = q + bh * Tq * D;
    const float* dob = dout + bh * Tq * D;
    float c = scale * kLog2e;
    float kr[E], vr[E], dka[E], dva[E];
#pragma unroll
    for (int e = 0; e < E; ++e) {
        kr[e] = k[krow * D + lane + 32 * e] * c;
        vr[e] = v[krow * D + lane + 32 * e];
        dka[e] = 0.f, dva[e] = 0.f;
    }
    int istart = masked ? Tq : (causal ? j : 0);  // a masked key gets no gradient
    for (int i = istart; i < Tq; ++i) {
        float sc = 0.f, dp = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            sc += kr[e] * qb[(long)i * D + lane + 32 * e];
            dp += vr[e] * dob[(long)i * D + lane + 32 * e];
        }
        sc = warp_sum(sc);
        dp = warp_sum(dp);
        long row = bh * Tq + i;
        float p = exp2f(sc - lse[row] * kLog2e);
        float ds = p * (dp - dvec[row]);
#pragma unroll
        for (int e = 0; e < E; ++e) {
            dva[e] += p * dob[(long)i * D + lane + 32 * e];
            dka[e] += ds * qb[(long)i * D + lane + 32 * e];
        }
    }
#pragma unroll
    for (int e = 0; e < E; ++e) {
        dk[krow * D + lane + 32 * e] = dka[e] * scale;
        dv[krow * D + lane + 32 * e] = dva[e];
    }
}

// ---------------------------------------------------------------------------------------------
// v3: 32 x 32 tiles in shared memory. Block = 4 warps = 32 query rows (8 per warp); in the score
// step lane l owns key column l of the tile; in the P V step it owns output columns l, l+32, ...
// Rows of shared arrays are padded by one float so lane l reading row l hits bank l.
constexpr int V3_TILE = 32;

// Copy rows [row0, row0 + 32) of a (T, D) matrix into dst (row stride D + 1), zero past T.
template <int D>
__device__ __forceinline__ void v3_load(float* dst, const float* src, int row0, int T, float mul) {
    for (int idx = threadIdx.x; idx < V3_TILE * D; idx += 128) {
        int r = idx / D, cc = idx % D;
        dst[r * (D + 1) + cc] = row0 + r < T ? src[(long)(row0 + r) * D + cc] * mul : 0.f;
    }
}

template <int D>
__global__ void __launch_bounds__(128) v3_forward_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, float* __restrict__ o, float* __restrict__ lse, int H,
    int Tq, int Tk, float scale, bool causal) {
    constexpr int E = D / 32, LD = D + 1, R = 8;  // R rows per warp
    float* Qs = TT_DYNAMIC_SMEM();
    float* Ks = Qs + V3_TILE * LD;
    float* Vs = Ks + V3_TILE * LD;
    float* Ps = Vs + V3_TILE * LD;  // (32, 33)
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int q0 = (gridDim.x - 1 - blockIdx.x) * V3_TILE;  // the longest (causal) tiles first
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    v3_load<D>(Qs, q + bh * Tq * D, q0, Tq, scale * kLog2e);
    float m[R], l[R], acc[R][E];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        m[r] = -kInf, l[r] = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[r][e] = 0.f;
    }
    int kend = causal ? min(Tk, q0 + V3_TILE) : Tk;
    for (int k0 = 0; k0 < kend; k0 += V3_TILE) {
        __syncthreads();  // everyone is done with the previous K, V tiles
        v3_load<D>(Ks, k + bh * Tk * D, k0, Tk, 1.f);
        v3_load<D>(Vs, v + bh * Tk * D, k0, Tk, 1.f);
        __syncthreads();
        float sc[R];
#pragma unroll
        for (int r = 0; r < R; ++r) sc[r] = 0.f;
        for (int d = 0; d < D; ++d) {
            float kv = Ks[lane * LD + d];
#pragma unroll
            for (int r = 0; r < R; ++r) sc[r] += Qs[(w * R + r) * LD + d] * kv;
        }
        int j = k0 + lane;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float x = visible(q0 + w * R + r, j, Tk, causal, km) ? sc[r] : -kInf;
            float mn = fmaxf(m[r], warp_max(x));
            float mu = mn == -kInf ? 0.f : mn;  // all masked so far: avoid -inf - -inf
            float p = exp2f(x - mu);
            float alpha = exp2f(m[r] - mu);
            l[r] = l[r] * alpha + warp_sum(p);
            m[r] = mn;
            Ps[(w * R + r) * (V3_TILE + 1) + lane] = p;
#pragma unroll
            for (int e = 0; e < E; ++e) acc[r][e] *= alpha;
        }
        __syncwarp();  // P rows are private to the warp
        for (int jj = 0; jj < V3_TILE; ++jj) {
            float vv[E];
#pragma unroll
            for (int e = 0; e < E; ++e) vv[e] = Vs[jj * LD + lane + 32 * e];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float p = Ps[(w * R + r) * (V3_TILE + 1) + jj];
#pragma unroll
                for (int e = 0; e < E; ++e) acc[r][e] += p * vv[e];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = q0 + w * R + r;
        if (i >= Tq) continue;
        float inv_l, row_lse;
        row_finish(m[r], l[r], inv_l, row_lse);
#pragma unroll
        for (int e = 0; e < E; ++e) o[(bh * Tq + i) * D + lane + 32 * e] = acc[r][e] * inv_l;
        if (lane == 0) lse[bh * Tq + i] = row_lse;
    }
}

// dK, dV for 32 keys per block: warp w owns keys w*8..w*8+7; in the score step lane l owns
// query l of the current query tile.
template <int D>
__global__ void __launch_bounds__(128) v3_dkdv_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, const float* __restrict__ lse,
    const float* __restrict__ dout, const float* __restrict__ dvec, float* __restrict__ dk,
    float* __restrict__ dv, int H, int Tq, int Tk, float scale, bool causal) {
    constexpr int E = D / 32, LD = D + 1, R = 8, LP = V3_TILE + 1;
    float* Ks = TT_DYNAMIC_SMEM();
    float* Vs = Ks + V3_TILE * LD;
    float* Qs = Vs + V3_TILE * LD;
    float* dOs = Qs + V3_TILE * LD;
    float* Pt = dOs + V3_TILE * LD;  // (32 keys, 33)
    float* dSt = Pt + V3_TILE * LP;
    float* lse2s = dSt + V3_TILE * LP;
    float* Ds = lse2s + V3_TILE;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int k0 = blockIdx.x * V3_TILE;
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    float c = scale * kLog2e;
    v3_load<D>(Ks, k + bh * Tk * D, k0, Tk, c);
    v3_load<D>(Vs, v + bh * Tk * D, k0, Tk, 1.f);
    float dka[R][E], dva[R][E];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < E; ++e) dka[r][e] = 0.f, dva[r][e] = 0.f;
    for (int q0 = causal ? k0 : 0; q0 < Tq; q0 += V3_TILE) {
        __syncthreads();
        v3_load<D>(Qs, q + bh * Tq * D, q0, Tq, 1.f);
        v3_load<D>(dOs, dout + bh * Tq * D, q0, Tq, 1.f);
        if (threadIdx.x < V3_TILE) {
            int i = q0 + threadIdx.x;
            lse2s[threadIdx.x] = i < Tq ? lse[bh * Tq + i] * kLog2e : kInf;
            Ds[threadIdx.x] = i < Tq ? dvec[bh * Tq + i] : 0.f;
        }
        __syncthreads();
        float sc[R], dp[R];
#pragma unroll
        for (int r = 0; r < R; ++r) sc[r] = 0.f, dp[r] = 0.f;
        for (int d = 0; d < D; ++d) {
            float qv = Qs[lane * LD + d], dov = dOs[lane * LD + d];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                sc[r] += Ks[(w * R + r) * LD + d] * qv;
                dp[r] += Vs[(w * R + r) * LD + d] * dov;
            }
        }
        int i = q0 + lane;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            int j = k0 + w * R + r;
            float p = (i < Tq && visible(i, j, Tk, causal, km)) ? exp2f(sc[r] - lse2s[lane]) : 0.f;
            Pt[(w * R + r) * LP + lane] = p;
            dSt[(w * R + r) * LP + lane] = p * (dp[r] - Ds[lane]);
        }
        __syncwarp();
        for (int ii = 0; ii < V3_TILE; ++ii) {
            float dov[E], qv[E];
#pragma unroll
            for (int e = 0; e < E; ++e) {
                dov[e] = dOs[ii * LD + lane + 32 * e];
                qv[e] = Qs[ii * LD + lane + 32 * e];
            }
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float p = Pt[(w * R + r) * LP + ii], ds = dSt[(w * R + r) * LP + ii];
#pragma unroll
                for (int e = 0; e < E; ++e) dva[r][e] += p * dov[e], dka[r][e] += ds * qv[e];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int j = k0 + w * R + r;
        if (j >= Tk) continue;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            dk[(bh * Tk + j) * D + lane + 32 * e] = dka[r][e] * scale;
            dv[(bh * Tk + j) * D + lane + 32 * e] = dva[r][e];
        }
    }
}

// dQ for 32 queries per block: warp w owns queries w*8.., lane l owns key l of the key tile.
template <int D>
__global__ void __launch_bounds__(128) v3_dq_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, const float* __restrict__ lse,
    const float* __restrict__ dout, const float* __restrict__ dvec, float* __restrict__ dq, int H,
    int Tq, int Tk, float scale, bool causal) {
    constexpr int E = D / 32, LD = D + 1, R = 8, LP = V3_TILE + 1;
    float* Qs = TT_DYNAMIC_SMEM();
    float* dOs = Qs + V3_TILE * LD;
    float* Ks = dOs + V3_TILE * LD;
    float* Vs = Ks + V3_TILE * LD;
    float* dSs = Vs + V3_TILE * LD;  // (32 queries, 33)
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int q0 = (gridDim.x - 1 - blockIdx.x) * V3_TILE;
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    v3_load<D>(Qs, q + bh * Tq * D, q0, Tq, scale * kLog2e);
    v3_load<D>(dOs, dout + bh * Tq * D, q0, Tq, 1.f);
    float lse2[R], Di[R], acc[R][E];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = q0 + w * R + r;
        lse2[r] = i < Tq ? lse[bh * Tq + i] * kLog2e : kInf;
        Di[r] = i < Tq ? dvec[bh * Tq + i] : 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[r][e] = 0.f;
    }
    int kend = causal ? min(Tk, q0 + V3_TILE) : Tk;
    for (int k0 = 0; k0 < kend; k0 += V3_TILE) {
        __syncthreads();
        v3_load<D>(Ks, k + bh * Tk * D, k0, Tk, 1.f);
        v3_load<D>(Vs, v + bh * Tk * D, k0, Tk, 1.f);
        __syncthreads();
        float sc[R], dp[R];
#pragma unroll
        for (int r = 0; r < R; ++r) sc[r] = 0.f, dp[r] = 0.f;
        for (int d = 0; d < D; ++d) {
            float kv = Ks[lane * LD + d], vv = Vs[lane * LD + d];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                sc[r] += Qs[(w * R + r) * LD + d] * kv;
                dp[r] += dOs[(w * R + r) * LD + d] * vv;
            }
        }
        int j = k0 + lane;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float p = visible(q0 + w * R + r, j, Tk, causal, km) ? exp2f(sc[r] - lse2[r]) : 0.f;
            dSs[(w * R + r) * LP + lane] = p * (dp[r] - Di[r]);
        }
        __syncwarp();
        for (int jj = 0; jj < V3_TILE; ++jj) {
            float kv[E];
#pragma unroll
            for (int e = 0; e < E; ++e) kv[e] = Ks[jj * LD + lane + 32 * e];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float ds = dSs[(w * R + r) * LP + jj];
#pragma unroll
                for (int e = 0; e < E; ++e) acc[r][e] += ds * kv[e];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = q0 + w * R + r;
        if (i >= Tq) continue;
#pragma unroll
        for (int e = 0; e < E; ++e) dq[(bh * Tq + i) * D + lane + 32 * e] = acc[r][e] * scale;
    }
}

// ---------------------------------------------------------------------------------------------
// v4: register tiling. A warp's 32 lanes form 4 row groups x 8 column groups (rg = lane / 8,
// cg = lane % 8). A thread owns rows r0 + 4 i (i < TM) of its warp's slice, score columns
// cg + 8 j (j < TN), and output columns cg*4 + 32 u + {0..3} (u < D/32). Shared rows are padded
// to keep float4 loads conflict-free: +4 floats for (rows, D) arrays, +8 for score tiles.

// acc[i][j] += A[ra + 4i, :] . B[cg + 8j, :] over D (both in shared memory, row-major)
template <int TM, int TN, int D>
__device__ __forceinline__ void mm_nt(float (&acc)[TM][TN], const float* A, int lda, int ra,
                                      const float* Bm, int ldb, int cg) {
#pragma unroll 2
    for (int d = 0; d < D; d += 4) {
        float4 a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = *reinterpret_cast<const float4*>(A + (ra + 4 * i) * lda + d);
#pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = *reinterpret_cast<const float4*>(Bm + (cg + 8 * j) * ldb + d);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
                acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
                acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
                acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
            }
    }
}

// acc[i][4u + t] += sum_kk P[ra + 4i, kk] * V[kk, cg*4 + 32u + t] over kk < KN
template <int TM, int D, int KN>
__device__ __forceinline__ void mm_nn(float (&acc)[TM][D / 8], const float* P, int ldp, int ra,
                                      const float* V, int ldv, int cg) {
    constexpr int TU = D / 32;
#pragma unroll 2
    for (int kk = 0; kk < KN; kk += 4) {
        float4 p[TM];
#pragma unroll
        for (int i = 0; i < TM; ++i) p[i] = *reinterpret_cast<const float4*>(P + (ra + 4 * i) * ldp + kk);
#pragma unroll
        for (int t = 0; t < 4; ++t) {
#pragma unroll
            for (int u = 0; u < TU; ++u) {
                float4 b = *reinterpret_cast<const float4*>(V + (kk + t) * ldv + cg * 4 + 32 * u);
#pragma unroll
                for (int i = 0; i < TM; ++i) {
                    float pv = t == 0 ? p[i].x : t == 1 ? p[i].y : t == 2 ? p[i].z : p[i].w;
                    acc[i][4 * u + 0] = fmaf(pv, b.x, acc[i][4 * u + 0]);
                    acc[i][4 * u + 1] = fmaf(pv, b.y, acc[i][4 * u + 1]);
                    acc[i][4 * u + 2] = fmaf(pv, b.z, acc[i][4 * u + 2]);
                    acc[i][4 * u + 3] = fmaf(pv, b.w, acc[i][4 * u + 3]);
                }
            }
        }
    }
}

// Rows [row0, row0 + ROWS) of a (T, D) matrix into shared dst (row stride D + 4), times mul,
// zeros past T. float4 global loads, coalesced.
template <int D, int ROWS, int NT>
__device__ __forceinline__ void load_rows(float* dst, const float* src, int row0, int T, float mul) {
    constexpr int V = D / 4;
    for (int idx = threadIdx.x; idx < ROWS * V; idx += NT) {
        int r = idx / V, cc = (idx % V) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (row0 + r < T) {
            x = *reinterpret_cast<const float4*>(src + (long)(row0 + r) * D + cc);
            x.x *= mul, x.y *= mul, x.z *= mul, x.w *= mul;
        }
        *reinterpret_cast<float4*>(dst + r * (D + 4) + cc) = x;
    }
}

template <int D, int BR, int BC, int NW>
struct V4Fwd {
    static constexpr int NT = 32 * NW, TM = BR / NW / 4, TN = BC / 8, LD = D + 4, LP = BC + 8;
    static constexpr int kSmemFloats = BR * LD + 2 * BC * LD + BR * LP;
};

template <int D, int BR, int BC, int NW>
__global__ void __launch_bounds__(32 * NW) v4_forward_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, float* __restrict__ o, float* __restrict__ lse, int H,
    int Tq, int Tk, float scale, bool causal) {
    using C = V4Fwd<D, BR, BC, NW>;
    constexpr int TM = C::TM, TN = C::TN, LD = C::LD, LP = C::LP, NT = C::NT, TO = D / 8;
    float* Qs = TT_DYNAMIC_SMEM();
    float* Ks = Qs + BR * LD;
    float* Vs = Ks + BC * LD;
    float* Ps = Vs + BC * LD;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, cg = lane & 7;
    int ra = w * (BR / NW) + (lane >> 3);  // this thread's first row in the tile
    int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    load_rows<D, BR, NT>(Qs, q + bh * Tq * D, q0, Tq, scale * kLog2e);
    float m[TM], l[TM], acc[TM][TO];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        m[i] = -kInf, l[i] = 0.f;
#pragma unroll
        for (int t = 0; t < TO; ++t) acc[i][t] = 0.f;
    }
    int kend = causal ? min(Tk, q0 + BR) : Tk;
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();
        load_rows<D, BC, NT>(Ks, k + bh * Tk * D, k0, Tk, 1.f);
        load_rows<D, BC, NT>(Vs, v + bh * Tk * D, k0, Tk, 1.f);
        __syncthreads();
        float s[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) s[i][j] = 0.f;
        mm_nt<TM, TN, D>(s, Qs, LD, ra, Ks, LD, cg);
        // Masks only where a tile can hold a masked entry (block-uniform test).
        if (km || k0 + BC > Tk || (causal && k0 + BC - 1 > q0)) {
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j)
                    if (!visible(q0 + ra + 4 * i, k0 + cg + 8 * j, Tk, causal, km)) s[i][j] = -kInf;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            float mt = s[i][0];
#pragma unroll
            for (int j = 1; j < TN; ++j) mt = fmaxf(mt, s[i][j]);
            float mn = fmaxf(m[i], group8_max(mt));
            float mu = mn == -kInf ? 0.f : mn;
            float alpha = exp2f(m[i] - mu);
            float ps = 0.f;
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                float p = exp2f(s[i][j] - mu);
                ps += p;
                Ps[(ra + 4 * i) * LP + cg + 8 * j] = p;
            }
            l[i] = l[i] * alpha + ps;  // this thread's partial sum; reduced at the end
            m[i] = mn;
#pragma unroll
            for (int t = 0; t < TO; ++t) acc[i][t] *= alpha;
        }
        __syncwarp();  // the warp's P rows are read only by the warp
        mm_nn<TM, D, BC>(acc, Ps, LP, ra, Vs, LD, cg);
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        float lt = group8_sum(l[i]);
        int row = q0 + ra + 4 * i;
        float inv_l, row_lse;
        row_finish(m[i], lt, inv_l, row_lse);
        if (row < Tq) {
            float* orow = o + (bh * Tq + row) * D;
#pragma unroll
            for (int u = 0; u < D / 32; ++u)
                *reinterpret_cast<float4*>(orow + cg * 4 + 32 * u) =
                    make_float4(acc[i][4 * u] * inv_l, acc[i][4 * u + 1] * inv_l,
                                acc[i][4 * u + 2] * inv_l, acc[i][4 * u + 3] * inv_l);
            if (cg == 0) lse[bh * Tq + row] = row_lse;
        }
    }
}

// Backward, keys side: a block owns BC keys (rows of S^T), loops over query tiles of BQ.
template <int D, int BC, int BQ, int NW>
struct V4Dkdv {
    static constexpr int NT = 32 * NW, TM = BC / NW / 4, TN = BQ / 8, LD = D + 4, LP = BQ + 8;
    static constexpr int kSmemFloats = 2 * BC * LD + 2 * BQ * LD + 2 * BC * LP + 2 * BQ;
};

template <int D, int BC, int BQ, int NW>
__global__ void __launch_bounds__(32 * NW) v4_dkdv_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, const float* __restrict__ lse,
    const float* __restrict__ dout, const float* __restrict__ dvec, float* __restrict__ dk,
    float* __restrict__ dv, int H, int Tq, int Tk, float scale, bool causal) {
    using C = V4Dkdv<D, BC, BQ, NW>;
    constexpr int TM = C::TM, TN = C::TN, LD = C::LD, LP = C::LP, NT = C::NT, TO = D / 8;
    float* Ks = TT_DYNAMIC_SMEM();
    float* Vs = Ks + BC * LD;
    float* Qs = Vs + BC * LD;
    float* dOs = Qs + BQ * LD;
    float* Pt = dOs + BQ * LD;
    float* dSt = Pt + BC * LP;
    float* lse2s = dSt + BC * LP;
    float* Ds = lse2s + BQ;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, cg = lane & 7;
    int ra = w * (BC / NW) + (lane >> 3);
    int k0 = blockIdx.x * BC;
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    load_rows<D, BC, NT>(Ks, k + bh * Tk * D, k0, Tk, scale * kLog2e);
    load_rows<D, BC, NT>(Vs, v + bh * Tk * D, k0, Tk, 1.f);
    float dka[TM][TO], dva[TM][TO];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int t = 0; t < TO; ++t) dka[i][t] = 0.f, dva[i][t] = 0.f;
    int qstart = causal ? (k0 / BQ) * BQ : 0;
    for (int q0 = qstart; q0 < Tq; q0 += BQ) {
        __syncthreads();
        load_rows<D, BQ, NT>(Qs, q + bh * Tq * D, q0, Tq, 1.f);
        load_rows<D, BQ, NT>(dOs, dout + bh * Tq * D, q0, Tq, 1.f);
        for (int x = threadIdx.x; x < BQ; x += NT) {
            int i = q0 + x;
            lse2s[x] = i < Tq ? lse[bh * Tq + i] * kLog2e : kInf;
            Ds[x] = i < Tq ? dvec[bh * Tq + i] : 0.f;
        }
        __syncthreads();
        float st[TM][TN], dpt[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) st[i][j] = 0.f, dpt[i][j] = 0.f;
        mm_nt<TM, TN, D>(st, Ks, LD, ra, Qs, LD, cg);
        mm_nt<TM, TN, D>(dpt, Vs, LD, ra, dOs, LD, cg);
        bool need_mask = km || k0 + BC > Tk || q0 + BQ > Tq || (causal && q0 < k0 + BC - 1);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int x = cg + 8 * j;
            float l2 = lse2s[x], dd = Ds[x];
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                bool ok = !need_mask || (q0 + x < Tq && visible(q0 + x, k0 + ra + 4 * i, Tk, causal, km));
                float p = ok ? exp2f(st[i][j] - l2) : 0.f;
                Pt[(ra + 4 * i) * LP + x] = p;
                dSt[(ra + 4 * i) * LP + x] = p * (dpt[i][j] - dd);
            }
        }
        __syncwarp();
        mm_nn<TM, D, BQ>(dva, Pt, LP, ra, dOs, LD, cg);
        mm_nn<TM, D, BQ>(dka, dSt, LP, ra, Qs, LD, cg);
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int j = k0 + ra + 4 * i;
        if (j >= Tk) continue;
#pragma unroll
        for (int u = 0; u < D / 32; ++u) {
            long off = (bh * Tk + j) * D + cg * 4 + 32 * u;
            *reinterpret_cast<float4*>(dk + off) =
                make_float4(dka[i][4 * u] * scale, dka[i][4 * u + 1] * scale,
                            dka[i][4 * u + 2] * scale, dka[i][4 * u + 3] * scale);
            *reinterpret_cast<float4*>(dv + off) =
                make_float4(dva[i][4 * u], dva[i][4 * u + 1], dva[i][4 * u + 2], dva[i][4 * u + 3]);
        }
    }
}

// Backward, queries side: a block owns BR queries, loops over key tiles of BC.
template <int D, int BR, int BC, int NW>
struct V4Dq {
    static constexpr int NT = 32 * NW, TM = BR / NW / 4, TN = BC / 8, LD = D + 4, LP = BC + 8;
    static constexpr int kSmemFloats = 2 * BR * LD + 2 * BC * LD + BR * LP;
};

template <int D, int BR, int BC, int NW>
__global__ void __launch_bounds__(32 * NW) v4_dq_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, const float* __restrict__ lse,
    const float* __restrict__ dout, const float* __restrict__ dvec, float* __restrict__ dq, int H,
    int Tq, int Tk, float scale, bool causal) {
    using C = V4Dq<D, BR, BC, NW>;
    constexpr int TM = C::TM, TN = C::TN, LD = C::LD, LP = C::LP, NT = C::NT, TO = D / 8;
    float* Qs = TT_DYNAMIC_SMEM();
    float* dOs = Qs + BR * LD;
    float* Ks = dOs + BR * LD;
    float* Vs = Ks + BC * LD;
    float* dSs = Vs + BC * LD;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, cg = lane & 7;
    int ra = w * (BR / NW) + (lane >> 3);
    int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    load_rows<D, BR, NT>(Qs, q + bh * Tq * D, q0, Tq, scale * kLog2e);
    load_rows<D, BR, NT>(dOs, dout + bh * Tq * D, q0, Tq, 1.f);
    float lse2[TM], Di[TM], acc[TM][TO];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int row = q0 + ra + 4 * i;
        lse2[i] = row < Tq ? lse[bh * Tq + row] * kLog2e : kInf;
        Di[i] = row < Tq ? dvec[bh * Tq + row] : 0.f;
#pragma unroll
        for (int t = 0; t < TO; ++t) acc[i][t] = 0.f;
    }
    int kend = causal ? min(Tk, q0 + BR) : Tk;
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();
        load_rows<D, BC, NT>(Ks, k + bh * Tk * D, k0, Tk, 1.f);
        load_rows<D, BC, NT>(Vs, v + bh * Tk * D, k0, Tk, 1.f);
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) s[i][j] = 0.f, dp[i][j] = 0.f;
        mm_nt<TM, TN, D>(s, Qs, LD, ra, Ks, LD, cg);
        mm_nt<TM, TN, D>(dp, dOs, LD, ra, Vs, LD, cg);
        bool need_mask = km || k0 + BC > Tk || (causal && k0 + BC - 1 > q0);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                bool ok = !need_mask || visible(q0 + ra + 4 * i, k0 + cg + 8 * j, Tk, causal, km);
                float p = ok ? exp2f(s[i][j] - lse2[i]) : 0.f;
                dSs[(ra + 4 * i) * LP + cg + 8 * j] = p * (dp[i][j] - Di[i]);
            }
        __syncwarp();
        mm_nn<TM, D, BC>(acc, dSs, LP, ra, Ks, LD, cg);
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int row = q0 + ra + 4 * i;
        if (row >= Tq) continue;
#pragma unroll
        for (int u = 0; u < D / 32; ++u)
            *reinterpret_cast<float4*>(dq + (bh * Tq + row) * D + cg * 4 + 32 * u) =
                make_float4(acc[i][4 * u] * scale, acc[i][4 * u + 1] * scale,
                            acc[i][4 * u + 2] * scale, acc[i][4 * u + 3] * scale);
    }
}

// ---------------------------------------------------------------------------------------------
// Host side: pick the instantiation for D and launch.

template <class Kernel>
void set_smem(Kernel kernel, std::size_t bytes) {  // above 48 KB a kernel must opt in
    if (bytes > 48 * 1024)
        TT_CUDA_CHECK(
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
            "attention: reserving shared memory");
}

template <int D>
void forward_d(const float* q, const float* k, const float* v, const std::uint8_t* kpm, float* o,
               float* lse, const AttnShape& s, int version, cudaStream_t st) {
    unsigned Z = (unsigned)(s.B * s.H);
    if (version == 2) {
        v2_forward_kernel<D><<<dim3((s.Tq + 3) / 4, Z), dim3(128), 0, st>>>(q, k, v, kpm, o, lse,
            s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v2_forward");
    } else if (version == 3) {
        std::size_t bytes = (3 * V3_TILE * (D + 1) + V3_TILE * (V3_TILE + 1)) * sizeof(float);
        set_smem(v3_forward_kernel<D>, bytes);
        v3_forward_kernel<D><<<dim3((s.Tq + V3_TILE - 1) / V3_TILE, Z), dim3(128), bytes, st>>>(q,
            k, v, kpm, o, lse, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v3_forward");
    } else {  // 4
        // Tile shapes: the best of a sweep on an H100 (T = 4096, benchmarks/results/attention_*).
        constexpr int BR = D == 128 ? 128 : 64, BC = 64, NW = D == 128 ? 8 : 4;
        using C = V4Fwd<D, BR, BC, NW>;
        std::size_t bytes = C::kSmemFloats * sizeof(float);
        auto kernel = v4_forward_kernel<D, BR, BC, NW>;
        set_smem(kernel, bytes);
        kernel<<<dim3((s.Tq + BR - 1) / BR, Z), dim3(C::NT), bytes, st>>>(q, k, v, kpm, o, lse, s.H,
            s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v4_forward");
    }
}

template <int D>
void backward_d(const float* q, const float* k, const float* v, const std::uint8_t* kpm,
                const float* lse, const float* dout, const float* dvec, float* dq, float* dk,
                float* dv, const AttnShape& s, int version, cudaStream_t st) {
    unsigned Z = (unsigned)(s.B * s.H);
    if (version == 2) {
        v2_dq_kernel<D><<<dim3((s.Tq + 3) / 4, Z), dim3(128), 0, st>>>(q, k, v, kpm, lse, dout,
            dvec, dq, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v2_dq");
        v2_dkdv_kernel<D><<<dim3((s.Tk + 3) / 4, Z), dim3(128), 0, st>>>(q, k, v, kpm, lse, dout,
            dvec, dk, dv, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v2_dkdv");
    } else if (version == 3) {
        constexpr int LD = D + 1, LP = V3_TILE + 1;
        std::size_t b1 = (4 * V3_TILE * LD + 2 * V3_TILE * LP + 2 * V3_TILE) * sizeof(float);
        set_smem(v3_dkdv_kernel<D>, b1);
        v3_dkdv_kernel<D><<<dim3((s.Tk + V3_TILE - 1) / V3_TILE, Z), dim3(128), b1, st>>>(q, k, v,
            kpm, lse, dout, dvec, dk, dv, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v3_dkdv");
        std::size_t b2 = (4 * V3_TILE * LD + V3_TILE * LP) * sizeof(float);
        set_smem(v3_dq_kernel<D>, b2);
        v3_dq_kernel<D><<<dim3((s.Tq + V3_TILE - 1) / V3_TILE, Z), dim3(128), b2, st>>>(q, k, v,
            kpm, lse, dout, dvec, dq, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v3_dq");
    } else {  // 4 and 5
        constexpr int KC = D == 128 ? 128 : 64, KQ = D == 32 ? 64 : 32, KNW = D == 128 ? 8 : 4;
        using C1 = V4Dkdv<D, KC, KQ, KNW>;
        std::size_t b1 = C1::kSmemFloats * sizeof(float);
        auto k1 = v4_dkdv_kernel<D, KC, KQ, KNW>;
        set_smem(k1, b1);
        k1<<<dim3((s.Tk + KC - 1) / KC, Z), dim3(C1::NT), b1, st>>>(q, k, v, kpm, lse, dout, dvec,
            dk, dv, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v4_dkdv");
        constexpr int QR = D == 128 ? 128 : 64, QC = D == 128 ? 32 : 64, QNW = D == 128 ? 8 : 4;
        using C2 = V4Dq<D, QR, QC, QNW>;
        std::size_t b2 = C2::kSmemFloats * sizeof(float);
        auto k2 = v4_dq_kernel<D, QR, QC, QNW>;
        set_smem(k2, b2);
        k2<<<dim3((s.Tq + QR - 1) / QR, Z), dim3(C2::NT), b2, st>>>(q, k, v, kpm, lse, dout, dvec,
            dq, s.H, s.Tq, s.Tk, s.scale, s.causal);
        TT_CHECK_LAUNCH("attention v4_dq");
    }
}

// ---------------------------------------------------------------------------------------------
// v5: tensor cores. mma.sync m16n8k8 takes TF32 operands (10-bit mantissa) and accumulates in
// float32. One TF32 product loses about 3 decimal digits; splitting each operand x into
// hi = tf32(x) and lo = tf32(x - hi) and summing lo*hi + hi*lo + hi*hi (the lo*lo term is below
// float32's rounding) gives float32 accuracy for 3x the tensor work ("3xTF32", what CUTLASS and
// PyTorch's float32 attention kernels do). A warp owns 16 query rows. Fragment layouts (PTX
// ISA, m16n8k8 .tf32), with g = lane / 4 and t = lane % 4:
//   A (16 x 8): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8):  b0 (k = t, n = g), b1 (k = t + 4, n = g)
//   C (16 x 8): c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
// The score tile S comes out in C layout, but P V needs P in A layout. Rather than shuffle, the
// 8 keys of each k-step are taken in the order (0, 2, 4, 6, 1, 3, 5, 7): then P's A fragment is
// exactly (c0, c2, c1, c3) of S, and V's B fragment reads rows 2t and 2t + 1.
__device__ __forceinline__ unsigned to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4],
                                         const unsigned (&b)[2]) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();  // the launcher refuses v5 below compute capability 8.0
#endif
}

__device__ __forceinline__ void split_tf32(float x, unsigned& hi, unsigned& lo) {
    hi = to_tf32(x);
    lo = to_tf32(x - __uint_as_float(hi));
}

// Rows [row0, row0 + ROWS) of a (T, D) matrix, split into TF32 hi and lo planes (stride D + 4).
template <int D, int ROWS, int NT>
__device__ __forceinline__ void load_split(float* hi, float* lo, const float* src, int row0, int T) {
    constexpr int V = D / 4;
    for (int idx = threadIdx.x; idx < ROWS * V; idx += NT) {
        int r = idx / V, cc = (idx % V) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (row0 + r < T) x = *reinterpret_cast<const float4*>(src + (long)(row0 + r) * D + cc);
        unsigned h0, h1, h2, h3, l0, l1, l2, l3;
        split_tf32(x.x, h0, l0), split_tf32(x.y, h1, l1);
        split_tf32(x.z, h2, l2), split_tf32(x.w, h3, l3);
        *reinterpret_cast<float4*>(hi + r * (D + 4) + cc) = make_float4(
            __uint_as_float(h0), __uint_as_float(h1), __uint_as_float(h2), __uint_as_float(h3));
        *reinterpret_cast<float4*>(lo + r * (D + 4) + cc) = make_float4(
            __uint_as_float(l0), __uint_as_float(l1), __uint_as_float(l2), __uint_as_float(l3));
    }
}

// d += a b in three TF32 products (small terms first)
__device__ __forceinline__ void mma_3xtf32(float (&d)[4], const unsigned (&ah)[4],
                                           const unsigned (&al)[4], const unsigned (&bh)[2],
                                           const unsigned (&bl)[2]) {
    mma_tf32(d, al, bh);
    mma_tf32(d, ah, bl);
    mma_tf32(d, ah, bh);
}

template <int D, int BC, int NW>
struct V5Fwd {
    static constexpr int BR = 16 * NW, NT = 32 * NW, LD = D + 4;
    static constexpr int kSmemFloats = BR * LD + 4 * BC * LD;
};

template <int D, int BC, int NW>
__global__ void __launch_bounds__(32 * NW) v5_forward_kernel(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const std::uint8_t* __restrict__ kpm, float* __restrict__ o, float* __restrict__ lse, int H,
    int Tq, int Tk, float scale, bool causal) {
    using C = V5Fwd<D, BC, NW>;
    constexpr int BR = C::BR, LD = C::LD, NS = BC / 8, NO = D / 8;
    float* Qs = TT_DYNAMIC_SMEM();
    float* Khi = Qs + BR * LD;
    float* Klo = Khi + BC * LD;
    float* Vhi = Klo + BC * LD;
    float* Vlo = Vhi + BC * LD;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    long bh = blockIdx.y;
    const std::uint8_t* km = kpm ? kpm + (bh / H) * Tk : nullptr;
    load_rows<D, BR, C::NT>(Qs, q + bh * Tq * D, q0, Tq, scale * kLog2e);
    const float* Qw = Qs + w * 16 * LD;
    float m[2] = {-kInf, -kInf}, l[2] = {0.f, 0.f}, acc[NO][4];
#pragma unroll
    for (int n = 0; n < NO; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    int kend = causal ? min(Tk, q0 + BR) : Tk;
    for (int k0 = 0; k0 < kend; k0 += BC) {
        __syncthreads();
        load_split<D, BC, C::NT>(Khi, Klo, k + bh * Tk * D, k0, Tk);
        load_split<D, BC, C::NT>(Vhi, Vlo, v + bh * Tk * D, k0, Tk);
        __syncthreads();
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
        for (int d0 = 0; d0 < D; d0 += 8) {
            unsigned ah[4], al[4];
            split_tf32(Qw[g * LD + d0 + t], ah[0], al[0]);
            split_tf32(Qw[(g + 8) * LD + d0 + t], ah[1], al[1]);
            split_tf32(Qw[g * LD + d0 + t + 4], ah[2], al[2]);
            split_tf32(Qw[(g + 8) * LD + d0 + t + 4], ah[3], al[3]);
#pragma unroll
            for (int n = 0; n < NS; ++n) {
                int kr = (n * 8 + g) * LD + d0 + t;
                unsigned bh2[2] = {__float_as_uint(Khi[kr]), __float_as_uint(Khi[kr + 4])};
                unsigned bl2[2] = {__float_as_uint(Klo[kr]), __float_as_uint(Klo[kr + 4])};
                mma_3xtf32(s[n], ah, al, bh2, bl2);
            }
        }
        if (km || k0 + BC > Tk || (causal && k0 + BC - 1 > q0)) {
#pragma unroll
            for (int n = 0; n < NS; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!visible(q0 + w * 16 + g + (e >> 1) * 8, k0 + n * 8 + 2 * t + (e & 1), Tk,
                                 causal, km))
                        s[n][e] = -kInf;
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {  // rows g and g + 8: entries 2r, 2r + 1 of each tile
            float mt = -kInf;
#pragma unroll
            for (int n = 0; n < NS; ++n) mt = fmaxf(mt, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
            float mn = fmaxf(m[r], mt);
            float mu = mn == -kInf ? 0.f : mn;
            float alpha = exp2f(m[r] - mu), ps = 0.f;
#pragma unroll
            for (int n = 0; n < NS; ++n) {
                s[n][2 * r] = exp2f(s[n][2 * r] - mu);
                s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - mu);
                ps += s[n][2 * r] + s[n][2 * r + 1];
            }
            l[r] = l[r] * alpha + ps;
            m[r] = mn;
#pragma unroll
            for (int n = 0; n < NO; ++n) acc[n][2 * r] *= alpha, acc[n][2 * r + 1] *= alpha;
        }
        // P V, 8 keys per k-step in the permuted order. Each output fragment sums this tile
        // in a fresh accumulator, then adds it to O with an ordinary float32 add: the tensor
        // cores' accumulation rounds toward zero, a bias that would grow with T if O itself
        // went through every mma.
        unsigned ph[NS][4], pl[NS][4];
#pragma unroll
        for (int kt = 0; kt < NS; ++kt) {
            split_tf32(s[kt][0], ph[kt][0], pl[kt][0]);
            split_tf32(s[kt][2], ph[kt][1], pl[kt][1]);
            split_tf32(s[kt][1], ph[kt][2], pl[kt][2]);
            split_tf32(s[kt][3], ph[kt][3], pl[kt][3]);
        }
#pragma unroll
        for (int n = 0; n < NO; ++n) {
            float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int kt = 0; kt < NS; ++kt) {
                int vr = (kt * 8 + 2 * t) * LD + n * 8 + g;
                unsigned bh2[2] = {__float_as_uint(Vhi[vr]), __float_as_uint(Vhi[vr + LD])};
                unsigned bl2[2] = {__float_as_uint(Vlo[vr]), __float_as_uint(Vlo[vr + LD])};
                mma_3xtf32(part, ph[kt], pl[kt], bh2, bl2);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[n][e] += part[e];
        }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float lt = l[r];
        lt += __shfl_xor_sync(0xffffffffu, lt, 1);
        lt += __shfl_xor_sync(0xffffffffu, lt, 2);
        float inv_l, row_lse;
        row_finish(m[r], lt, inv_l, row_lse);
        int row = q0 + w * 16 + g + 8 * r;
        if (row < Tq) {
            float* orow = o + (bh * Tq + row) * D;
#pragma unroll
            for (int n = 0; n < NO; ++n)
                *reinterpret_cast<float2*>(orow + n * 8 + 2 * t) =
                    make_float2(acc[n][2 * r] * inv_l, acc[n][2 * r + 1] * inv_l);
            if (t == 0) lse[bh * Tq + row] = row_lse;
        }
    }
}

template <int D>
void v5_forward_d(const float* q, const float* k, const float* v, const std::uint8_t* kpm,
                  float* o, float* lse, const AttnShape& s, cudaStream_t st) {
    constexpr int BC = 32, NW = D == 128 ? 8 : 4;  // the best of a sweep on an H100
    using C = V5Fwd<D, BC, NW>;
    std::size_t bytes = C::kSmemFloats * sizeof(float);
    auto kernel = v5_forward_kernel<D, BC, NW>;
    set_smem(kernel, bytes);
    kernel<<<dim3((s.Tq + C::BR - 1) / C::BR, (unsigned)(s.B * s.H)), dim3(C::NT), bytes, st>>>(q,
        k, v, kpm, o, lse, s.H, s.Tq, s.Tk, s.scale, s.causal);
    TT_CHECK_LAUNCH("attention v5_forward");
}

void v5_forward(const float* q, const float* k, const float* v, const std::uint8_t* kpm, float* o,
                float* lse, const AttnShape& s, cudaStream_t st) {
    int dev = 0, major = 0;
    TT_CUDA_CHECK(cudaGetDevice(&dev), "attention v5: cudaGetDevice");
    TT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
                  "attention v5: compute capability");
    if (major < 8)
        throw std::runtime_error("attention (cuda): version 5 uses TF32 tensor cores, which need "
                                 "compute capability 8.0 or newer");
    if (s.D == 32) v5_forward_d<32>(q, k, v, kpm, o, lse, s, st);
    else if (s.D == 64) v5_forward_d<64>(q, k, v, kpm, o, lse, s, st);
    else v5_forward_d<128>(q, k, v, kpm, o, lse, s, st);
}

}  // namespace

std::size_t attention_workspace_floats(const AttnShape& s, int version, bool backward) {
    std::size_t z = (std::size_t)s.B * s.H, scores = z * s.Tq * s.Tk;
    if (version == 1) return backward ? 2 * scores + z * s.Tq : scores;
    return backward ? z * s.Tq : 0;  // D = rowsum(dO * O)
}

void attention_forward_cuda(const float* q, const float* k, const float* v, const std::uint8_t* kpm,
                            float* o, float* lse, float* work, const AttnShape& s, int version,
                            std::uintptr_t stream) {
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    if (version == 1) return v1_forward(q, k, v, kpm, o, lse, work, s, st);
    if (version == 5) return v5_forward(q, k, v, kpm, o, lse, s, st);
    if (s.D == 32) forward_d<32>(q, k, v, kpm, o, lse, s, version, st);
    else if (s.D == 64) forward_d<64>(q, k, v, kpm, o, lse, s, version, st);
    else forward_d<128>(q, k, v, kpm, o, lse, s, version, st);
}

void attention_backward_cuda(const float* q, const float* k, const float* v,
                             const std::uint8_t* kpm, const float* o, const float* lse,
                             const float* dout, float* dq, float* dk, float* dv, float* work,
                             const AttnShape& s, int version, std::uintptr_t stream) {
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    std::size_t scores = (std::size_t)s.B * s.H * s.Tq * s.Tk;
    float* dvec = version == 1 ? work + 2 * scores : work;
    launch_rowdot(dout, o, dvec, s, st);
    if (version == 1) return v1_backward(q, k, v, kpm, lse, dout, dq, dk, dv, work, dvec, s, st);
    if (s.D == 32) backward_d<32>(q, k, v, kpm, lse, dout, dvec, dq, dk, dv, s, version, st);
    else if (s.D == 64) backward_d<64>(q, k, v, kpm, lse, dout, dvec, dq, dk, dv, s, version, st);
    else backward_d<128>(q, k, v, kpm, lse, dout, dvec, dq, dk, dv, s, version, st);
}

}  // namespace tt

