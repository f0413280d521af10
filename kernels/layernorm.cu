// Fused LayerNorm on the GPU: forward (y, mean, rstd) and backward (dx, dweight, dbias), float32,
// any row length C. Contract in layernorm.h; bindings in layernorm.cpp; Python in
// tinytorch/kernels/layernorm.py; the lesson in chapters/11_cuda_kernels/README.md.
//
//   forward   mean = sum(x) / C, var = sum((x - mean)^2) / C, rstd = 1 / sqrt(var + eps),
//             y = (x - mean) * rstd * w + b                       (mean, rstd saved: (N,))
//   backward  xhat = (x - mean) * rstd, g = dy * w,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   (two row sums per row)
//             dweight = sum over rows of dy * xhat, dbias = sum over rows of dy
//
// Versions (each kept and tested; the Python layer picks one with version=, DEFAULT_VERSION):
//   v1  one thread per row. Forward: three loops over the row (sum, squared deviations,
//       write). Backward: one thread per row for dx, one thread per COLUMN for dweight/dbias
//       (walks all N rows). Simple and slow: a warp's 32 threads read 32 different rows, so
//       the loads are not coalesced, and small N leaves most of the GPU idle.
//   v2  one warp per row. Lanes read consecutive elements (coalesced). Forward statistics in
//       ONE pass with Welford's update per lane, lanes merged with Chan's formula through warp
//       shuffles; a second pass writes y. Backward: a warp per row for dx (the two row sums by
//       shuffles), then a separate kernel for dweight/dbias: 32 columns x 8 row-threads per
//       block, partial sums per block in a workspace, and a finishing kernel that adds the
//       partials column by column in a fixed order (deterministic, no atomics).
//   v3  one block per row (scales to long rows), block-wide reductions (shuffles, then shared
//       memory across warps). Two-pass statistics: the re-reads of the row hit L1/L2, so DRAM
//       sees x once. Backward FUSED: each block takes a contiguous chunk of rows, writes dx
//       and accumulates its dweight/dbias partials (each thread owns fixed columns, so no two
//       threads touch one partial) in one pass over x and dy, then the finishing kernel.
//   v4  v3 with the row held in REGISTERS and 16-byte (float4) loads and stores: x and dy are
//       read from DRAM exactly once, y and dx written once, and the backward's dweight/dbias
//       partials live in registers until the block's chunk of rows is done. Templated on the
//       float4s per thread (1, 2 or 4; up to 512 threads): needs C % 4 == 0, C <= 8192 and
//       16-byte-aligned pointers, otherwise it runs v3 (same results, documented fallback).
//   v5  for short rows (C <= 1024, C % 4 == 0, aligned): v4's registers and float4, but ONE
//       WARP per row and 4 rows per block, so the row loop has no __syncthreads (warp
//       shuffles only) and many rows are in flight per SM. At C = 768 v4 runs a 192-thread
//       block per row that waits on two block-wide barriers per row and reached only ~37% of
//       copy bandwidth. Backward: each warp owns a contiguous chunk of rows and keeps its
//       dweight/dbias partials in registers; the block adds its warps' partials in warp order
//       (shared memory), then ln_bwd_finish. Other rows: v4 (then v3).
//
// The arguments (version, N, C >= 1, N < 2^31 rows for one grid, the workspace) are checked
// once, in Python (tinytorch/kernels/layernorm.py), before any launch. Launch errors are
// checked after every launch (TT_CHECK_LAUNCH) and thrown as std::runtime_error naming the
// kernel. No --use_fast_math: 1/sqrt and divisions are IEEE.
// g = dy * w is computed with __fmul_rn (never fused into an FMA) so the row sum and dx see the
// same rounded g: with C = 1, dx = rstd * (g - mean(g)) is then exactly 0, as it should be.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.h"
#include "layernorm.h"

namespace tt {
namespace {

using i64 = std::int64_t;

__device__ __forceinline__ float warp_sum(float v) {
    // butterfly: every lane ends with the same bits (a + b == b + a in floating point)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum of (a, b) over the block, returned to every thread. blockDim.x is a multiple of 32.
// `sh` holds 64 floats; the leading __syncthreads lets a caller reuse it call after call.
__device__ __forceinline__ float2 block_sum2(float a, float b, float* sh) {
    a = warp_sum(a);
    b = warp_sum(b);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) {
        sh[wid] = a;
        sh[32 + wid] = b;
    }
    __syncthreads();
    a = lane < nw ? sh[lane] : 0.f;
    b = lane < nw ? sh[32 + lane] : 0.f;
    return make_float2(warp_sum(a), warp_sum(b));
}

// ---------------------------------------------------------------- v1: one thread per row
__global__ void ln_fwd_v1(const float* __restrict__ x, const float* __restrict__ w,
                          const float* __restrict__ b, float* __restrict__ y,
                          float* __restrict__ mean, float* __restrict__ rstd, i64 N, i64 C,
                          float eps) {
    const i64 r = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= N) return;
    const float* xr = x + r * C;
    float s = 0.f;
    for (i64 c = 0; c < C; ++c) s += xr[c];
    const float m = s / (float)C;
    float ss = 0.f;
    for (i64 c = 0; c < C; ++c) {
        const float d = xr[c] - m;
        ss += d * d;
    }
    const float rs = 1.f / sqrtf(ss / (float)C + eps);
    for (i64 c = 0; c < C; ++c) y[r * C + c] = (xr[c] - m) * rs * w[c] + b[c];
    mean[r] = m;
    rstd[r] = rs;
}

__global__ void ln_bwd_dx_v1(const float* __restrict__ dy, const float* __restrict__ x,
                             const float* __restrict__ w, const float* __restrict__ mean,
                             const float* __restrict__ rstd, float* __restrict__ dx, i64 N,
                             i64 C) {
    const i64 r = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= N) return;
    const float m = mean[r], rs = rstd[r];
    float s1 = 0.f, s2 = 0.f;
    for (i64 c = 0; c < C; ++c) {
        const float g = __fmul_rn(dy[r * C + c], w[c]);
        s1 += g;
        s2 += g * (x[r * C + c] - m) * rs;
    }
    const float a = s1 / (float)C, bb = s2 / (float)C;
    for (i64 c = 0; c < C; ++c) {
        const float xh = (x[r * C + c] - m) * rs;
        dx[r * C + c] = rs * (__fmul_rn(dy[r * C + c], w[c]) - a - xh * bb);
    }
}

__global__ void ln_bwd_dwdb_v1(const float* __restrict__ dy, const float* __restrict__ x,
                               const float* __restrict__ mean, const float* __restrict__ rstd,
                               float* __restrict__ dw, float* __restrict__ db, i64 N, i64 C) {
    const i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sw = 0.f, sb = 0.f;
    for (i64 r = 0; r < N; ++r) {
        const float g = dy[r * C + c];
        sw += g * (x[r * C + c] - mean[r]) * rstd[r];
        sb += g;
    }
    dw[c] = sw;
    db[c] = sb;
}

// ---------------------------------------------------------------- v2: one warp per row
__global__ void ln_fwd_v2(const float* __restrict__ x, const float* __restrict__ w,
                          const float* __restrict__ b, float* __restrict__ y,
                          float* __restrict__ mean, float* __restrict__ rstd, i64 N, i64 C,
                          float eps) {
    const int lane = threadIdx.x & 31;
    const i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= N) return;  // the whole warp leaves together
    const float* xr = x + r * C;
    // Welford per lane: one pass, numerically stable
    float n = 0.f, m = 0.f, M2 = 0.f;
    for (i64 c = lane; c < C; c += 32) {
        const float v = xr[c];
        n += 1.f;
        const float d = v - m;
        m += d / n;
        M2 += d * (v - m);
    }
    // Chan's merge down a tree to lane 0, then broadcast (the same value to every lane)
    for (int o = 16; o > 0; o >>= 1) {
        const float nb = __shfl_down_sync(0xffffffffu, n, o);
        const float mb = __shfl_down_sync(0xffffffffu, m, o);
        const float M2b = __shfl_down_sync(0xffffffffu, M2, o);
        if (lane + o < 32 && nb > 0.f) {
            if (n == 0.f) {
                n = nb, m = mb, M2 = M2b;
            } else {
                const float nt = n + nb, d = mb - m, f = nb / nt;
                m += d * f;
                M2 += M2b + d * d * n * f;
                n = nt;
            }
        }
    }
    m = __shfl_sync(0xffffffffu, m, 0);
    M2 = __shfl_sync(0xffffffffu, M2, 0);
    const float rs = 1.f / sqrtf(M2 / (float)C + eps);
    float* yr = y + r * C;
    for (i64 c = lane; c < C; c += 32) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
    if (lane == 0) {
        mean[r] = m;
        rstd[r] = rs;
    }
}

__global__ void ln_bwd_dx_v2(const float* __restrict__ dy, const float* __restrict__ x,
                             const float* __restrict__ w, const float* __restrict__ mean,
                             const float* __restrict__ rstd, float* __restrict__ dx, i64 N,
                             i64 C) {
    const int lane = threadIdx.x & 31;
    const i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= N) return;
    const float m = mean[r], rs = rstd[r];
    const float *xr = x + r * C, *gr = dy + r * C;
    float s1 = 0.f, s2 = 0.f;
    for (i64 c = lane; c < C; c += 32) {
        const float g = __fmul_rn(gr[c], w[c]);
        s1 += g;
        s2 += g * (xr[c] - m) * rs;
    }
    const float a = warp_sum(s1) / (float)C, bb = warp_sum(s2) / (float)C;
    for (i64 c = lane; c < C; c += 32)
        dx[r * C + c] = rs * (__fmul_rn(gr[c], w[c]) - a - (xr[c] - m) * rs * bb);
}

constexpr int kV2Rows = 8;  // row-threads per dweight/dbias block (blockDim = 32 x 8)

// Partial sums of dweight/dbias: block (bx, by) sums columns bx*32.. over the rows
// by*8 + ty, by*8 + ty + G*8, ...; the 8 row-threads are added in a fixed order.
__global__ void ln_bwd_dwdb_partial_v2(const float* __restrict__ dy, const float* __restrict__ x,
                                       const float* __restrict__ mean,
                                       const float* __restrict__ rstd, float* __restrict__ work,
                                       i64 N, i64 C) {
    __shared__ float sw[kV2Rows][33], sb[kV2Rows][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const i64 c = (i64)blockIdx.x * 32 + tx, G = gridDim.y;
    float aw = 0.f, ab = 0.f;
    if (c < C) {
        for (i64 r = (i64)blockIdx.y * kV2Rows + ty; r < N; r += G * kV2Rows) {
            const float g = dy[r * C + c];
            aw += g * (x[r * C + c] - mean[r]) * rstd[r];
            ab += g;
        }
    }
    sw[ty][tx] = aw;
    sb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && c < C) {
        for (int k = 1; k < kV2Rows; ++k) aw += sw[k][tx], ab += sb[k][tx];
        work[blockIdx.y * C + c] = aw;
        work[(G + blockIdx.y) * C + c] = ab;
    }
}

// Finishing reduction (v2, v3, v4): dweight[c] = sum over the G partial rows, in order.
__global__ void ln_bwd_finish(const float* __restrict__ work, float* __restrict__ dw,
                              float* __restrict__ db, i64 G, i64 C) {
    const i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.f, ab = 0.f;
    for (i64 k = 0; k < G; ++k) {
        aw += work[k * C + c];
        ab += work[(G + k) * C + c];
    }
    dw[c] = aw;
    db[c] = ab;
}

// ---------------------------------------------------------------- v3: one block per row
__global__ void ln_fwd_v3(const float* __restrict__ x, const float* __restrict__ w,
                          const float* __restrict__ b, float* __restrict__ y,
                          float* __restrict__ mean, float* __restrict__ rstd, i64 N, i64 C,
                          float eps) {
    __shared__ float sh[64];
    const i64 r = blockIdx.x;
    const float* xr = x + r * C;
    float s = 0.f;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    const float m = block_sum2(s, 0.f, sh).x / (float)C;
    float ss = 0.f;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = xr[c] - m;  // a re-read: served by L1/L2, not DRAM
        ss += d * d;
    }
    const float rs = 1.f / sqrtf(block_sum2(ss, 0.f, sh).x / (float)C + eps);
    float* yr = y + r * C;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
    if (threadIdx.x == 0) {
        mean[r] = m;
        rstd[r] = rs;
    }
}

// Fused backward: block k takes rows [N*k/G, N*(k+1)/G), writes dx, and accumulates its
// partial dweight/dbias in work rows k and G + k (thread t owns columns t, t + blockDim, ...).
__global__ void ln_bwd_v3(const float* __restrict__ dy, const float* __restrict__ x,
                          const float* __restrict__ w, const float* __restrict__ mean,
                          const float* __restrict__ rstd, float* __restrict__ dx,
                          float* __restrict__ work, i64 N, i64 C) {
    __shared__ float sh[64];
    const i64 G = gridDim.x, k = blockIdx.x;
    float* pdw = work + k * C;
    float* pdb = work + (G + k) * C;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) pdw[c] = 0.f, pdb[c] = 0.f;
    const i64 r0 = N * k / G, r1 = N * (k + 1) / G;
    for (i64 r = r0; r < r1; ++r) {
        const float m = mean[r], rs = rstd[r];
        const float *xr = x + r * C, *gr = dy + r * C;
        float s1 = 0.f, s2 = 0.f;
        for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
            const float g = __fmul_rn(gr[c], w[c]);
            s1 += g;
            s2 += g * (xr[c] - m) * rs;
        }
        const float2 s = block_sum2(s1, s2, sh);
        const float a = s.x / (float)C, bb = s.y / (float)C;
        float* dxr = dx + r * C;
        for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
            const float g = gr[c], xh = (xr[c] - m) * rs;
            dxr[c] = rs * (__fmul_rn(g, w[c]) - a - xh * bb);
            pdw[c] += g * xh;
            pdb[c] += g;
        }
    }
}

// ---------------------------------------------------------------- v4: registers + float4
__device__ __forceinline__ float4 f4(float v) { return make_float4(v, v, v, v); }

template <int VPT>
__global__ void __launch_bounds__(512)
    ln_fwd_v4(const float4* __restrict__ x, const float4* __restrict__ w,
              const float4* __restrict__ b, float4* __restrict__ y, float* __restrict__ mean,
              float* __restrict__ rstd, i64 N, int C4, float eps) {
    __shared__ float sh[64];
    const i64 r = blockIdx.x;
    float4 v[VPT];
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        const int c = threadIdx.x + i * blockDim.x;
        v[i] = c < C4 ? x[r * C4 + c] : f4(0.f);
        s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    const float C = 4.f * (float)C4;
    const float m = block_sum2(s, 0.f, sh).x / C;
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        const int c = threadIdx.x + i * blockDim.x;
        if (c < C4) {
            const float a = v[i].x - m, bb = v[i].y - m, cc = v[i].z - m, d = v[i].w - m;
            ss += (a * a + bb * bb) + (cc * cc + d * d);
        }
    }
    const float rs = 1.f / sqrtf(block_sum2(ss, 0.f, sh).x / C + eps);
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        const int c = threadIdx.x + i * blockDim.x;
        if (c < C4) {
            const float4 ww = w[c], bv = b[c];
            float4 o;
            o.x = (v[i].x - m) * rs * ww.x + bv.x;
            o.y = (v[i].y - m) * rs * ww.y + bv.y;
            o.z = (v[i].z - m) * rs * ww.z + bv.z;
            o.w = (v[i].w - m) * rs * ww.w + bv.w;
            y[r * C4 + c] = o;
        }
    }
    if (threadIdx.x == 0) {
        mean[r] = m;
        rstd[r] = rs;
    }
}

template <int VPT>
__global__ void __launch_bounds__(512)
    ln_bwd_v4(const float4* __restrict__ dy, const float4* __restrict__ x,
              const float4* __restrict__ w, const float* __restrict__ mean,
              const float* __restrict__ rstd, float4* __restrict__ dx, float4* __restrict__ work,
              i64 N, int C4) {
    __shared__ float sh[64];
    const i64 G = gridDim.x, k = blockIdx.x;
    float4 adw[VPT], adb[VPT];
#pragma unroll
    for (int i = 0; i < VPT; ++i) adw[i] = f4(0.f), adb[i] = f4(0.f);
    const float C = 4.f * (float)C4;
    const i64 r0 = N * k / G, r1 = N * (k + 1) / G;
    for (i64 r = r0; r < r1; ++r) {
        const float m = mean[r], rs = rstd[r];
        float4 xv[VPT], gv[VPT];
        float s1 = 0.f, s2 = 0.f;
#pragma unroll
        for (int i = 0; i < VPT; ++i) {
            const int c = threadIdx.x + i * blockDim.x;
            xv[i] = c < C4 ? x[r * C4 + c] : f4(0.f);
            gv[i] = c < C4 ? dy[r * C4 + c] : f4(0.f);
            if (c < C4) {
                const float4 ww = w[c];
                xv[i].x = (xv[i].x - m) * rs;  // xv now holds xhat
                xv[i].y = (xv[i].y - m) * rs;
                xv[i].z = (xv[i].z - m) * rs;
                xv[i].w = (xv[i].w - m) * rs;
                const float gx = __fmul_rn(gv[i].x, ww.x), gy = __fmul_rn(gv[i].y, ww.y),
                            gz = __fmul_rn(gv[i].z, ww.z), gw = __fmul_rn(gv[i].w, ww.w);
                s1 += (gx + gy) + (gz + gw);
                s2 += (gx * xv[i].x + gy * xv[i].y) + (gz * xv[i].z + gw * xv[i].w);
            }
        }
        const float2 s = block_sum2(s1, s2, sh);
        const float a = s.x / C, bb = s.y / C;
#pragma unroll
        for (int i = 0; i < VPT; ++i) {
            const int c = threadIdx.x + i * blockDim.x;
            if (c < C4) {
                const float4 ww = w[c], xh = xv[i], g = gv[i];
                float4 o;
                o.x = rs * (__fmul_rn(g.x, ww.x) - a - xh.x * bb);
                o.y = rs * (__fmul_rn(g.y, ww.y) - a - xh.y * bb);
                o.z = rs * (__fmul_rn(g.z, ww.z) - a - xh.z * bb);
                o.w = rs * (__fmul_rn(g.w, ww.w) - a - xh.w * bb);
                dx[r * C4 + c] = o;
                adw[i].x += g.x * xh.x, adw[i].y += g.y * xh.y;
                adw[i].z += g.z * xh.z, adw[i].w += g.w * xh.w;
                adb[i].x += g.x, adb[i].y += g.y, adb[i].z += g.z, adb[i].w += g.w;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        const int c = threadIdx.x + i * blockDim.x;
        if (c < C4) {
            work[k * C4 + c] = adw[i];
            work[(G + k) * C4 + c] = adb[i];
        }
    }
}

// ---------------------------------------------------------------- v5: one warp per row, float4
constexpr int kV5Warps = 4;  // rows (warps) per block

__device__ __forceinline__ void add4(float4& a, const float4& b) {
    a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
}

template <int VPT>
__global__ void __launch_bounds__(32 * kV5Warps)
    ln_fwd_v5(const float4* __restrict__ x, const float4* __restrict__ w,
              const float4* __restrict__ b, float4* __restrict__ y, float* __restrict__ mean,
              float* __restrict__ rstd, i64 N, int C4, float eps) {
    const int lane = threadIdx.x & 31;
    const i64 r = (i64)blockIdx.x * kV5Warps + (threadIdx.x >> 5);
    if (r >= N) return;  // the whole warp leaves together
    float4 v[VPT];
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        const int c = lane + 32 * i;
        v[i] = c < C4 ? x[r * C4 + c] : f4(0.f);
        s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    const float C = 4.f * (float)C4;
    const float m = warp_sum(s) / C;
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        if (lane + 32 * i < C4) {
            const float a = v[i].x - m, bb = v[i].y - m, cc = v[i].z - m, d = v[i].w - m;
            ss += (a * a + bb * bb) + (cc * cc + d * d);
        }
    }
    const float rs = 1.f / sqrtf(warp_sum(ss) / C + eps);
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
        const int c = lane + 32 * i;
        if (c < C4) {
            const float4 ww = w[c], bv = b[c];
            float4 o;
            o.x = (v[i].x - m) * rs * ww.x + bv.x;
            o.y = (v[i].y - m) * rs * ww.y + bv.y;
            o.z = (v[i].z - m) * rs * ww.z + bv.z;
            o.w = (v[i].w - m) * rs * ww.w + bv.w;
            y[r * C4 + c] = o;
        }
    }
    if (lane == 0) {
        mean[r] = m;
        rstd[r] = rs;
    }
}

// Each warp takes a contiguous chunk of rows and keeps its dweight/dbias partials in registers;
// at the end the block adds its warps' partials in warp order (shared memory) and writes one
// partial row per block for ln_bwd_finish.
template <int VPT>
__global__ void __launch_bounds__(32 * kV5Warps)
    ln_bwd_v5(const float4* __restrict__ dy, const float4* __restrict__ x,
              const float4* __restrict__ w, const float* __restrict__ mean,
              const float* __restrict__ rstd, float4* __restrict__ dx, float4* __restrict__ work,
              i64 N, int C4) {
    __shared__ float4 sh[kV5Warps][32 * VPT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const i64 G = gridDim.x, k = blockIdx.x;
    const i64 W = G * kV5Warps, wg = k * kV5Warps + warp;
    const i64 r0 = N * wg / W, r1 = N * (wg + 1) / W;
    const float C = 4.f * (float)C4;
    float4 adw[VPT], adb[VPT];
#pragma unroll
    for (int i = 0; i < VPT; ++i) adw[i] = f4(0.f), adb[i] = f4(0.f);
    for (i64 r = r0; r < r1; ++r) {
        const float m = mean[r], rs = rstd[r];
        float4 xv[VPT], gv[VPT];
        float s1 = 0.f, s2 = 0.f;
#pragma unroll
        for (int i = 0; i < VPT; ++i) {
            const int c = lane + 32 * i;
            xv[i] = c < C4 ? x[r * C4 + c] : f4(0.f);
            gv[i] = c < C4 ? dy[r * C4 + c] : f4(0.f);
            if (c < C4) {
                const float4 ww = w[c];
                xv[i].x = (xv[i].x - m) * rs;  // xv now holds xhat
                xv[i].y = (xv[i].y - m) * rs;
                xv[i].z = (xv[i].z - m) * rs;
                xv[i].w = (xv[i].w - m) * rs;
                const float gx = __fmul_rn(gv[i].x, ww.x), gy = __fmul_rn(gv[i].y, ww.y),
                            gz = __fmul_rn(gv[i].z, ww.z), gw = __fmul_rn(gv[i].w, ww.w);
                s1 += (gx + gy) + (gz + gw);
                s2 += (gx * xv[i].x + gy * xv[i].y) + (gz * xv[i].z + gw * xv[i].w);
            }
        }
        const float a = warp_sum(s1) / C, bb = warp_sum(s2) / C;
#pragma unroll
        for (int i = 0; i < VPT; ++i) {
            const int c = lane + 32 * i;
            if (c < C4) {
                const float4 ww = w[c], xh = xv[i], g = gv[i];
                float4 o;
                o.x = rs * (__fmul_rn(g.x, ww.x) - a - xh.x * bb);
                o.y = rs * (__fmul_rn(g.y, ww.y) - a - xh.y * bb);
                o.z = rs * (__fmul_rn(g.z, ww.z) - a - xh.z * bb);
                o.w = rs * (__fmul_rn(g.w, ww.w) - a - xh.w * bb);
                dx[r * C4 + c] = o;
                adw[i].x += g.x * xh.x, adw[i].y += g.y * xh.y;
                adw[i].z += g.z * xh.z, adw[i].w += g.w * xh.w;
                add4(adb[i], g);
            }
        }
    }
    // the block's partial = its warps' partials added in warp order (deterministic)
    for (int pass = 0; pass < 2; ++pass) {
#pragma unroll
        for (int i = 0; i < VPT; ++i) sh[warp][lane + 32 * i] = pass == 0 ? adw[i] : adb[i];
        __syncthreads();
        for (int c = threadIdx.x; c < C4; c += blockDim.x) {
            float4 t = sh[0][c];
#pragma unroll
            for (int q = 1; q < kV5Warps; ++q) add4(t, sh[q][c]);
            work[(pass * G + k) * C4 + c] = t;
        }
        __syncthreads();
    }
}

// ---------------------------------------------------------------- launch helpers
int round32(i64 n) { return (int)std::max<i64>(32, (n + 31) / 32 * 32); }

int v3_threads(i64 C) { return round32(std::min<i64>(512, (C + 3) / 4)); }

// v4: the fewest float4s per thread (1, 2, 4) that cover the row with at most 512 threads;
// 0 when the row is too long for v4.
int v4_vpt(i64 C) {
    const i64 C4 = C / 4;
    for (int v : {1, 2, 4})
        if ((C4 + v - 1) / v <= 512) return v;
    return 0;
}

int v4_threads(i64 C, int vpt) { return round32((C / 4 + vpt - 1) / vpt); }

bool v4_ok(i64 C, std::initializer_list<const void*> ptrs) {
    if (C % 4 != 0 || v4_vpt(C) == 0) return false;
    for (const void* p : ptrs)
        if (!is_aligned16(p)) return false;
    return true;
}

int num_sms() { return sm_count(); }

// Blocks (row chunks) of the fused backward (v3, v4): as many as fit on the GPU at once (the
// occupancy calculator for the kernel that runs at this C), never more than rows. It depends
// only on (N, C, device), so the workspace size and the launch agree, and v4's fallback to v3
// uses the same count.
i64 fused_blocks(i64 N, i64 C) {
    const int vpt = v4_vpt(C);
    int per_sm = 0, threads = 0;
    cudaError_t err;
    if (C % 4 == 0 && vpt) {
        threads = v4_threads(C, vpt);
        if (vpt == 1)
            err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ln_bwd_v4<1>, threads, 0);
        else if (vpt == 2)
            err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ln_bwd_v4<2>, threads, 0);
        else
            err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ln_bwd_v4<4>, threads, 0);
    } else {
        threads = v3_threads(C);
        err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ln_bwd_v3, threads, 0);
    }
    TT_CUDA_CHECK(err, "layernorm: cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    per_sm = std::max(1, per_sm);
    return std::max<i64>(1, std::min<i64>(N, (i64)num_sms() * per_sm));
}

// v5: float4s per lane, the fewest of 1, 2, 4, 6, 8 that cover the row with one warp (C <= 1024)
int v5_vpt(i64 C) {
    if (C % 4 != 0) return 0;
    const i64 C4 = C / 4;
    for (int v : {1, 2, 4, 6, 8})
        if (C4 <= 32 * v) return v;
    return 0;
}

bool v5_ok(i64 C, std::initializer_list<const void*> ptrs) {
    if (v5_vpt(C) == 0) return false;
    for (const void* p : ptrs)
        if (!is_aligned16(p)) return false;
    return true;
}

template <int VPT>
int v5_per_sm() {
    int n = 0;
    TT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, ln_bwd_v5<VPT>,
                                                                32 * kV5Warps, 0),
                  "layernorm: cudaOccupancyMaxActiveBlocksPerMultiprocessor (v5)");
    return std::max(1, n);
}

// Blocks of v5's backward: as many as fit at once, never more than needed for one row per warp.
i64 v5_blocks(i64 N, i64 C) {
    int per_sm = 1;
    switch (v5_vpt(C)) {
        case 1: per_sm = v5_per_sm<1>(); break;
        case 2: per_sm = v5_per_sm<2>(); break;
        case 4: per_sm = v5_per_sm<4>(); break;
        case 6: per_sm = v5_per_sm<6>(); break;
        default: per_sm = v5_per_sm<8>(); break;
    }
    const i64 need = (N + kV5Warps - 1) / kV5Warps;
    return std::max<i64>(1, std::min<i64>(need, (i64)num_sms() * per_sm));
}

i64 v2_blocks(i64 N) { return std::max<i64>(1, std::min<i64>((N + kV2Rows - 1) / kV2Rows, 128)); }

}  // namespace

std::size_t layernorm_workspace_floats(std::int64_t N, std::int64_t C, int version) {
    if (version == 1) return 0;
    i64 G = version == 2 ? v2_blocks(N) : fused_blocks(N, C);
    if (version == 5 && v5_vpt(C)) G = std::max(G, v5_blocks(N, C));  // v5, or its fallback
    return (std::size_t)(2 * G * C);
}

void layernorm_forward_cuda(const float* x, const float* w, const float* b, float* y, float* mean,
                            float* rstd, std::int64_t N, std::int64_t C, float eps, int version,
                            std::uintptr_t stream_) {
    cudaStream_t st = as_stream(stream_);
    if (version == 5 && v5_ok(C, {x, w, b, y})) {
        const int C4 = (int)(C / 4);
        const unsigned grid = (unsigned)((N + kV5Warps - 1) / kV5Warps), th = 32 * kV5Warps;
        auto x4 = (const float4*)x, w4 = (const float4*)w, b4 = (const float4*)b;
        auto y4 = (float4*)y;
        switch (v5_vpt(C)) {
            case 1: ln_fwd_v5<1><<<grid, th, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps); break;
            case 2: ln_fwd_v5<2><<<grid, th, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps); break;
            case 4: ln_fwd_v5<4><<<grid, th, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps); break;
            case 6: ln_fwd_v5<6><<<grid, th, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps); break;
            default: ln_fwd_v5<8><<<grid, th, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps);
        }
        TT_CHECK_LAUNCH("ln_fwd_v5");
        return;
    }
    if (version == 5) version = 4;  // rows v5 cannot take: v4 (which may fall back to v3)
    if (version == 4 && v4_ok(C, {x, w, b, y})) {
        const int vpt = v4_vpt(C), threads = v4_threads(C, vpt), C4 = (int)(C / 4);
        auto x4 = (const float4*)x, w4 = (const float4*)w, b4 = (const float4*)b;
        auto y4 = (float4*)y;
        if (vpt == 1) ln_fwd_v4<1><<<N, threads, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps);
        if (vpt == 2) ln_fwd_v4<2><<<N, threads, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps);
        if (vpt == 4) ln_fwd_v4<4><<<N, threads, 0, st>>>(x4, w4, b4, y4, mean, rstd, N, C4, eps);
        TT_CHECK_LAUNCH("ln_fwd_v4");
    } else if (version >= 3) {  // v3, or v4's fallback for rows it cannot vectorize
        ln_fwd_v3<<<N, v3_threads(C), 0, st>>>(x, w, b, y, mean, rstd, N, C, eps);
        TT_CHECK_LAUNCH("ln_fwd_v3");
    } else if (version == 2) {
        const int warps = 8;
        ln_fwd_v2<<<(N + warps - 1) / warps, 32 * warps, 0, st>>>(x, w, b, y, mean, rstd, N, C,
                                                                 eps);
        TT_CHECK_LAUNCH("ln_fwd_v2");
    } else {
        ln_fwd_v1<<<(N + 127) / 128, 128, 0, st>>>(x, w, b, y, mean, rstd, N, C, eps);
        TT_CHECK_LAUNCH("ln_fwd_v1");
    }
}

void layernorm_backward_cuda(const float* dy, const float* x, const float* w, const float* mean,
                             const float* rstd, float* dx, float* dw, float* db, float* work,
                             std::int64_t N, std::int64_t C, int version,
                             std::uintptr_t stream_) {
    cudaStream_t st = as_stream(stream_);
    const int fin_blocks = (int)((C + 255) / 256);
    if (version == 1) {
        ln_bwd_dx_v1<<<(N + 127) / 128, 128, 0, st>>>(dy, x, w, mean, rstd, dx, N, C);
        TT_CHECK_LAUNCH("ln_bwd_dx_v1");
        ln_bwd_dwdb_v1<<<(C + 127) / 128, 128, 0, st>>>(dy, x, mean, rstd, dw, db, N, C);
        TT_CHECK_LAUNCH("ln_bwd_dwdb_v1");
        return;
    }
    if (version == 2) {
        const int warps = 8;
        ln_bwd_dx_v2<<<(N + warps - 1) / warps, 32 * warps, 0, st>>>(dy, x, w, mean, rstd, dx, N,
                                                                    C);
        TT_CHECK_LAUNCH("ln_bwd_dx_v2");
        const i64 G = v2_blocks(N);
        dim3 grid((unsigned)((C + 31) / 32), (unsigned)G), block(32, kV2Rows);
        ln_bwd_dwdb_partial_v2<<<grid, block, 0, st>>>(dy, x, mean, rstd, work, N, C);
        TT_CHECK_LAUNCH("ln_bwd_dwdb_partial_v2");
        ln_bwd_finish<<<fin_blocks, 256, 0, st>>>(work, dw, db, G, C);
        TT_CHECK_LAUNCH("ln_bwd_finish");
        return;
    }
    if (version == 5 && v5_ok(C, {dy, x, w, dx, work})) {
        const i64 G = v5_blocks(N, C);
        const int C4 = (int)(C / 4), th = 32 * kV5Warps;
        auto g4 = (const float4*)dy, x4 = (const float4*)x, w4 = (const float4*)w;
        auto dx4 = (float4*)dx, wk4 = (float4*)work;
        switch (v5_vpt(C)) {
            case 1: ln_bwd_v5<1><<<G, th, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4); break;
            case 2: ln_bwd_v5<2><<<G, th, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4); break;
            case 4: ln_bwd_v5<4><<<G, th, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4); break;
            case 6: ln_bwd_v5<6><<<G, th, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4); break;
            default: ln_bwd_v5<8><<<G, th, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4);
        }
        TT_CHECK_LAUNCH("ln_bwd_v5");
        ln_bwd_finish<<<fin_blocks, 256, 0, st>>>(work, dw, db, G, C);
        TT_CHECK_LAUNCH("ln_bwd_finish");
        return;
    }
    if (version == 5) version = 4;  // rows v5 cannot take: v4 (which may fall back to v3)
    const i64 G = fused_blocks(N, C);
    if (version == 4 && v4_ok(C, {dy, x, w, dx, work})) {
        const int vpt = v4_vpt(C), threads = v4_threads(C, vpt), C4 = (int)(C / 4);
        auto g4 = (const float4*)dy, x4 = (const float4*)x, w4 = (const float4*)w;
        auto dx4 = (float4*)dx, wk4 = (float4*)work;
        if (vpt == 1) ln_bwd_v4<1><<<G, threads, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4);
        if (vpt == 2) ln_bwd_v4<2><<<G, threads, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4);
        if (vpt == 4) ln_bwd_v4<4><<<G, threads, 0, st>>>(g4, x4, w4, mean, rstd, dx4, wk4, N, C4);
        TT_CHECK_LAUNCH("ln_bwd_v4");
    } else {
        ln_bwd_v3<<<G, v3_threads(C), 0, st>>>(dy, x, w, mean, rstd, dx, work, N, C);
        TT_CHECK_LAUNCH("ln_bwd_v3");
    }
    ln_bwd_finish<<<fin_blocks, 256, 0, st>>>(work, dw, db, G, C);
    TT_CHECK_LAUNCH("ln_bwd_finish");
}

}  // namespace tt
