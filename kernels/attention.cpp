// Fused softmax attention on the CPU (C++ and OpenMP), and the pybind11 bindings of the
// attention family (the CPU functions, and the CUDA launchers of attention.cu when built with
// TT_WITH_CUDA).
//
// Same contract as the GPU (see attention.h): q (B, H, Tq, D), k and v (B, H, Tk, D), float32,
// contiguous; lse (B, H, Tq) natural-log log-sum-exp, +inf for a query with every key masked
// (its output and gradients are 0); kpm (B, Tk) bool/uint8, 1 = key masked out; causal is
// top-left aligned (query i sees keys j <= i). v1 and v2 take any D; v3 is compiled for 32, 64
// and 128.
//
// Versions, the same steps as on the GPU:
//   v1 naive  per (batch, head): the whole (Tq, Tk) score matrix, a softmax, P V. Backward
//             materializes P and dS the same way.
//   v2 row    one query row at a time over the keys one at a time: the online softmax.
//             Backward: dQ row by row, dK and dV key row by key row (no shared writes).
//   v3 tiled  blocks of 32 queries against 64-key tiles: the score tile is a small matrix
//             product whose inner loop runs along the 64 keys (vectorized: the tile of K is
//             stored transposed), a vectorizable exp2, and O += P V along the head dim.
//             Backward: one pass per (batch, head) over key tiles and query tiles, recomputing
//             P from the saved lse, accumulating dK, dV for the key tile and dQ in place.
// The bindings take raw host pointers and sizes (as the CUDA ones take device pointers): the
// Python layer (tinytorch/kernels/attention.py) has checked dtypes, shapes, contiguity, the head
// dim and the version, once; the GIL is released while a kernel runs.
// Work is split over (batch, head, query block) with OpenMP; each output element is written
// by one thread (deterministic). The hot loops of v3 are compiled three times, for AVX-512
// (16-float vectors), AVX2 (8) and plain x86-64 (SSE2, 4), and the CPU picks at the first call
// (kernels/simd.h; the module's `cpu_isa()` says which).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention.h"
#include "common.h"
#include "simd.h"

namespace py = pybind11;

namespace tt {
namespace {

using namespace simd;  // vec<W>, vload, vstore, vexp2_neg, ... (kernels/simd.h)

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Cpu {
    const float *q, *k, *v;
    const std::uint8_t* kpm;  // (B, Tk) or null
    int B, H, Tq, Tk, D;
    float scale;
    bool causal;
    const std::uint8_t* mask_row(long bh) const { return kpm ? kpm + (bh / H) * Tk : nullptr; }
    // Threads only for calls big enough to amortize waking them (tens of microseconds with
    // sleeping threads): about 4 MFLOP, some 30 microseconds on one core. The chapter 07 GPT's
    // 25 MFLOP per layer is above it (the threshold was 64 MFLOP before; measured in
    // benchmarks/results/attention_cpu_cpu.md).
    bool parallel() const { return 4.0 * B * H * (double)Tq * Tk * D > 4e6; }
    // Keys of the tile j0 .. j0 + nk - 1 that some query of the block i0 .. i0 + nr - 1 may
    // see: with a causal mask none past i0 + nr - 1 (their P and dS are 0, so skipped).
    int keys_seen(int i0, int nr, int j0, int nk) const {
        return causal ? std::min(nk, i0 + nr - j0) : nk;
    }
    bool visible(int i, int j, const std::uint8_t* km) const {
        return !(causal && j > i) && !(km && km[j]);
    }
};

// ---- v1: naive ------------------------------------------------------------------------------
void v1_forward(const Cpu& a, float* o, float* lse) {
    const int Tq = a.Tq, Tk = a.Tk, D = a.D;
#pragma omp parallel if (a.parallel())
    {
        std::vector<float> S((std::size_t)Tq * Tk);
#pragma omp for schedule(dynamic)
        for (long bh = 0; bh < (long)a.B * a.H; ++bh) {
            const float *q = a.q + bh * Tq * D, *k = a.k + bh * Tk * D, *v = a.v + bh * Tk * D;
            const std::uint8_t* km = a.mask_row(bh);
            for (int i = 0; i < Tq; ++i) {
                float* s = &S[(std::size_t)i * Tk];
                float m = -kInf;
                for (int j = 0; j < Tk; ++j) {
                    float x = 0.f;
                    for (int d = 0; d < D; ++d) x += q[(long)i * D + d] * k[(long)j * D + d];
                    s[j] = a.visible(i, j, km) ? x * a.scale : -kInf;
                    m = std::max(m, s[j]);
                }
                float* out = o + (bh * Tq + i) * D;
                if (m == -kInf) {  // every key masked
                    std::fill(out, out + D, 0.f);
                    lse[bh * Tq + i] = kInf;
                    continue;
                }
                float sum = 0.f;
                for (int j = 0; j < Tk; ++j) sum += (s[j] = std::exp(s[j] - m));
                for (int d = 0; d < D; ++d) out[d] = 0.f;
                for (int j = 0; j < Tk; ++j) {
                    float p = s[j] / sum;
                    for (int d = 0; d < D; ++d) out[d] += p * v[(long)j * D + d];
                }
                lse[bh * Tq + i] = m + std::log(sum);
            }
        }
    }
}

void v1_backward(const Cpu& a, const float* o, const float* lse, const float* dout, float* dq,
                 float* dk, float* dv) {
    const int Tq = a.Tq, Tk = a.Tk, D = a.D;
#pragma omp parallel if (a.parallel())
    {
        std::vector<float> P((std::size_t)Tq * Tk), dS((std::size_t)Tq * Tk);
#pragma omp for schedule(dynamic)
        for (long bh = 0; bh < (long)a.B * a.H; ++bh) {
            const float *q = a.q + bh * Tq * D, *k = a.k + bh * Tk * D, *v = a.v + bh * Tk * D;
            const float *g = dout + bh * Tq * D, *ob = o + bh * Tq * D;
            const std::uint8_t* km = a.mask_row(bh);
            for (int i = 0; i < Tq; ++i) {
                float Di = 0.f;
                for (int d = 0; d < D; ++d) Di += g[(long)i * D + d] * ob[(long)i * D + d];
                for (int j = 0; j < Tk; ++j) {
                    float s = 0.f, dp = 0.f;
                    for (int d = 0; d < D; ++d) {
                        s += q[(long)i * D + d] * k[(long)j * D + d];
                        dp += g[(long)i * D + d] * v[(long)j * D + d];
                    }
                    float p = a.visible(i, j, km) ? std::exp(s * a.scale - lse[bh * Tq + i]) : 0.f;
                    P[(std::size_t)i * Tk + j] = p;
                    dS[(std::size_t)i * Tk + j] = p * (dp - Di);
                }
            }
            float *dqb = dq + bh * Tq * D, *dkb = dk + bh * Tk * D, *dvb = dv + bh * Tk * D;
            std::fill(dqb, dqb + (long)Tq * D, 0.f);
            std::fill(dkb, dkb + (long)Tk * D, 0.f);
            std::fill(dvb, dvb + (long)Tk * D, 0.f);
            for (int i = 0; i < Tq; ++i)
                for (int j = 0; j < Tk; ++j) {
                    float p = P[(std::size_t)i * Tk + j], ds = dS[(std::size_t)i * Tk + j] * a.scale;
                    for (int d = 0; d < D; ++d) {
                        dvb[(long)j * D + d] += p * g[(long)i * D + d];
                        dkb[(long)j * D + d] += ds * q[(long)i * D + d];
                        dqb[(long)i * D + d] += ds * k[(long)j * D + d];
                    }
                }
        }
    }
}

// ---- v2: one row at a time, online softmax --------------------------------------------------
// One query row against its keys one at a time, keeping only the running max m (in log2
// units), the running sum l of 2^(s - m) and the running output acc: never the row of scores.
void v2_forward(const Cpu& a, float* o, float* lse) {
    const int Tq = a.Tq, Tk = a.Tk, D = a.D;
    const float c = a.scale * kLog2e;
    parallel_for((long)a.B * a.H * Tq, a.parallel(), 16, [&](long row) {
        long bh = row / Tq;
        int i = (int)(row % Tq);
        const float *q = a.q + row * D, *k = a.k + bh * Tk * D, *v = a.v + bh * Tk * D;
        const std::uint8_t* km = a.mask_row(bh);
        float* acc = o + row * D;
        std::fill(acc, acc + D, 0.f);
        float m = -kInf, l = 0.f;
        int jend = a.causal ? std::min(Tk, i + 1) : Tk;
        for (int j = 0; j < jend; ++j) {
            if (km && km[j]) continue;
            float s = 0.f;
            for (int d = 0; d < D; ++d) s += q[d] * k[(long)j * D + d];
            s *= c;  // the score in log2 units: exp(x) = exp2(x * log2(e))
            // BEGIN EXERCISE ch11: online_softmax_cpp - fold score s of key j into m, l and acc
            float mn = std::max(m, s);
            float alpha = std::exp2(m - mn), p = std::exp2(s - mn);  // alpha = 0 the first time
            l = l * alpha + p;
            for (int d = 0; d < D; ++d) acc[d] = acc[d] * alpha + p * v[(long)j * D + d];
            m = mn;
            // END EXERCISE
        }
        float inv = m == -kInf ? 0.f : 1.f / l;
        for (int d = 0; d < D; ++d) acc[d] *= inv;
        lse[row] = m == -kInf ? kInf : (m + std::log2(l)) * kLn2;
    });
}

void v2_backward(const Cpu& a, const float* o, const float* lse, const float* dout, float* dq,
                 float* dk, float* dv) {
    const int Tq = a.Tq, Tk = a.Tk, D = a.D;
    const long rows = (long)a.B * a.H * Tq;
    std::vector<float> Dv(rows);
#pragma omp parallel for if (a.parallel()) schedule(static)
    for (long r = 0; r < rows; ++r) {
        float x = 0.f;
        for (int d = 0; d < D; ++d) x += dout[r * D + d] * o[r * D + d];
        Dv[r] = x;
    }
#pragma omp parallel for if (a.parallel()) schedule(dynamic, 16)
    for (long row = 0; row < rows; ++row) {  // dQ, one query row at a time
        long bh = row / Tq;
        int i = (int)(row % Tq);
        const float *q = a.q + row * D, *g = dout + row * D;
        const float *k = a.k + bh * Tk * D, *v = a.v + bh * Tk * D;
        const std::uint8_t* km = a.mask_row(bh);
        float* acc = dq + row * D;
        std::fill(acc, acc + D, 0.f);
        int jend = a.causal ? std::min(Tk, i + 1) : Tk;
        for (int j = 0; j < jend; ++j) {
            if (km && km[j]) continue;
            float s = 0.f, dp = 0.f;
            for (int d = 0; d < D; ++d) s += q[d] * k[(long)j * D + d], dp += g[d] * v[(long)j * D + d];
            float ds = std::exp(s * a.scale - lse[row]) * (dp - Dv[row]) * a.scale;
            for (int d = 0; d < D; ++d) acc[d] += ds * k[(long)j * D + d];
        }
    }
    const long krows = (long)a.B * a.H * Tk;
#pragma omp parallel for if (a.parallel()) schedule(dynamic, 16)
    for (long kr = 0; kr < krows; ++kr) {  // dK and dV, one key row at a time
        long bh = kr / Tk;
        int j = (int)(kr % Tk);
        const float *k = a.k + kr * D, *v = a.v + kr * D;
        const std::uint8_t* km = a.mask_row(bh);
        float *dka = dk + kr * D, *dva = dv + kr * D;
        std::fill(dka, dka + D, 0.f);
        std::fill(dva, dva + D, 0.f);
        if (km && km[j]) continue;
        for (int i = a.causal ? j : 0; i < Tq; ++i) {
            const float *q = a.q + (bh * Tq + i) * D, *g = dout + (bh * Tq + i) * D;
            float s = 0.f, dp = 0.f;
            for (int d = 0; d < D; ++d) s += q[d] * k[d], dp += g[d] * v[d];
            float p = std::exp(s * a.scale - lse[bh * Tq + i]);
            float ds = p * (dp - Dv[bh * Tq + i]) * a.scale;
            for (int d = 0; d < D; ++d) dva[d] += p * g[d], dka[d] += ds * q[d];
        }
    }
}

// ---- v3: tiled ------------------------------------------------------------------------------
// The two small matrix products of a tile are written on W-float vectors (GCC's vector
// extension) with several independent accumulators in registers, so the loops run at the FMA
// units' rate instead of waiting on loads and stores of the accumulators. W is the machine's
// vector width: 16 floats with AVX-512, 8 with AVX2, 4 with SSE2 (plain x86-64). A vector wider
// than the machine's registers is split by the compiler into several and, with 16 of them in
// flight, spilled to the stack: on an AVX2-only CPU a 16-float version ran 21 times slower than
// this one (chapter 11, section 11). Each block of accumulators (2 x U vectors for the scores,
// U = 4 with AVX2 and SSE2, 2 with AVX-512's 32 registers; 4 x 2 for the products with V) fits
// the 16 registers of AVX2 and SSE2.
constexpr int BR = 32, BC = 64;

// Vectors per column block of a score tile: 2 x 16 floats with AVX-512, 4 x 8 with AVX2,
// 4 x 4 with SSE2, so that a causal tile's masked half (32 keys) is a whole block it skips.
template <int W>
constexpr int kScoreU = W >= 16 ? 2 : 4;

// The columns of a tile to compute when keys past `kv` are masked: kv rounded up to a block.
template <int W>
inline int score_cols(int kv) {
    constexpr int blk = kScoreU<W> * W;
    return std::min(BC, (kv + blk - 1) / blk * blk);
}

// S[r][0..ncols) = mul * sum_d A[r][d] * Bt[d][0..ncols) for r < nr (ncols: a multiple of the
// column block, score_cols); A rows have D floats, Bt is (D, BC): a K (or V) tile stored
// transposed. Two rows by U vectors of S at a time.
template <int D, int W>
inline void tile_scores(float* S, const float* A, int nr, float mul, const float* Bt, int ncols) {
    constexpr int U = kScoreU<W>;
    static_assert(BC % (U * W) == 0, "the key tile must be a whole number of column blocks");
    int r = 0;
    for (; r + 2 <= nr; r += 2) {  // two rows share each load of Bt
        const float *x0 = A + (long)r * D, *x1 = x0 + D;
        for (int c = 0; c < ncols; c += U * W) {
            vec<W> a0[U] = {}, a1[U] = {};
            for (int d = 0; d < D; ++d) {
                float s0 = x0[d], s1 = x1[d];
                for (int u = 0; u < U; ++u) {
                    vec<W> b = vload<W>(Bt + d * BC + c + W * u);
                    a0[u] += s0 * b;
                    a1[u] += s1 * b;
                }
            }
            for (int u = 0; u < U; ++u) {
                vstore<W>(S + r * BC + c + W * u, a0[u] * mul);
                vstore<W>(S + (r + 1) * BC + c + W * u, a1[u] * mul);
            }
        }
    }
    for (; r < nr; ++r)
        for (int c = 0; c < ncols; c += U * W) {
            vec<W> a0[U] = {};
            for (int d = 0; d < D; ++d)
                for (int u = 0; u < U; ++u)
                    a0[u] += A[(long)r * D + d] * vload<W>(Bt + d * BC + c + W * u);
            for (int u = 0; u < U; ++u) vstore<W>(S + r * BC + c + W * u, a0[u] * mul);
        }
}

// C[r][0..D) += sum_{kk < kn} A[r * sar + kk * sak] * B[kk][0..D) for r < rows (C, B rows have
// D floats). Four rows by two vectors of C stay in registers while kk runs.
template <int D, int W>
inline void gemm_acc(float* C, int rows, const float* A, int sar, int sak, int kn, const float* B) {
    static_assert(D % (2 * W) == 0, "the head dim must be a whole number of column pairs");
    int r = 0;
    for (; r + 4 <= rows; r += 4)
        for (int c = 0; c < D; c += 2 * W) {
            vec<W> acc[4][2];
            for (int i = 0; i < 4; ++i)
                acc[i][0] = vload<W>(C + (r + i) * D + c), acc[i][1] = vload<W>(C + (r + i) * D + c + W);
            for (int kk = 0; kk < kn; ++kk) {
                vec<W> b0 = vload<W>(B + (long)kk * D + c), b1 = vload<W>(B + (long)kk * D + c + W);
                for (int i = 0; i < 4; ++i) {
                    float a = A[(r + i) * sar + kk * sak];
                    acc[i][0] += a * b0;
                    acc[i][1] += a * b1;
                }
            }
            for (int i = 0; i < 4; ++i)
                vstore<W>(C + (r + i) * D + c, acc[i][0]), vstore<W>(C + (r + i) * D + c + W, acc[i][1]);
        }
    for (; r < rows; ++r)
        for (int c = 0; c < D; c += W) {
            vec<W> acc = vload<W>(C + r * D + c);
            for (int kk = 0; kk < kn; ++kk) acc += A[r * sar + kk * sak] * vload<W>(B + (long)kk * D + c);
            vstore<W>(C + r * D + c, acc);
        }
}

// Bt[d][j] = M[j][d] for j < nk (rows of a (T, D) matrix), zero for j >= nk
template <int D>
inline void transpose_tile(float* Bt, const float* M, int nk) {
    for (int j = 0; j < nk; ++j)
        for (int d = 0; d < D; ++d) Bt[d * BC + j] = M[(long)j * D + d];
    for (int d = 0; d < D; ++d)
        for (int j = nk; j < BC; ++j) Bt[d * BC + j] = 0.f;
}

// -inf at the keys query i may not see in row s of the tile of keys j0 .. j0 + BC - 1: those
// past the causal limit (j0 + j > i) or past the tile's nk keys in one fill, then padding keys
// below that limit. (A per-key test of `visible` here took 16% of the forward at T = 64.)
inline void mask_tile_row(float* s, const Cpu& a, int i, int j0, int nk, const std::uint8_t* km) {
    const int lim = a.causal ? std::min(nk, std::max(0, i - j0 + 1)) : nk;
    std::fill(s + lim, s + BC, -kInf);
    if (km)
        for (int j = 0; j < lim; ++j)
            if (km[j0 + j]) s[j] = -kInf;
}

template <int D, int W>
inline void v3_forward_block(const Cpu& a, long bh, int i0, float* o, float* lse, float* S,
                             float* Kt, float* acc) {
    constexpr int NV = BC / W;
    const int Tq = a.Tq, Tk = a.Tk;
    const float c = a.scale * kLog2e;
    const float *q = a.q + (bh * Tq + i0) * D, *k = a.k + bh * Tk * D, *v = a.v + bh * Tk * D;
    const std::uint8_t* km = a.mask_row(bh);
    int nr = std::min(BR, Tq - i0);
    float m[BR], l[BR];
    for (int r = 0; r < BR; ++r) m[r] = -kInf, l[r] = 0.f;
    std::fill(acc, acc + BR * D, 0.f);
    int kend = a.causal ? std::min(Tk, i0 + nr) : Tk;
    for (int j0 = 0; j0 < kend; j0 += BC) {
        int nk = std::min(BC, Tk - j0);
        const int kv = a.keys_seen(i0, nr, j0, nk);
        transpose_tile<D>(Kt, k + (long)j0 * D, nk);
        tile_scores<D, W>(S, q, nr, c, Kt, score_cols<W>(kv));  // scores in log2 units
        bool need_mask = km || nk < BC || (a.causal && j0 + BC - 1 > i0);
        for (int r = 0; r < nr; ++r) {  // the online softmax, row by row
            float* s = S + r * BC;
            if (need_mask) mask_tile_row(s, a, i0 + r, j0, nk, km);
            vec<W> x[NV], mx = vload<W>(s);
            for (int u = 0; u < NV; ++u) mx = vmax<W>(mx, x[u] = vload<W>(s + W * u));
            float mn = std::max(m[r], hmax<W>(mx));
            float mu = mn == -kInf ? 0.f : mn;
            float alpha = vexp2_neg<W>(vec<W>{} + (m[r] - mu))[0];  // one lane is enough
            vec<W> psum = {};
            for (int u = 0; u < NV; ++u) {
                x[u] = vexp2_neg<W>(x[u] - mu);
                psum += x[u];
                vstore<W>(s + W * u, x[u]);
            }
            l[r] = l[r] * alpha + hsum<W>(psum);
            m[r] = mn;
            for (int d = 0; d < D; ++d) acc[r * D + d] *= alpha;
        }
        gemm_acc<D, W>(acc, nr, S, BC, 1, kv, v + (long)j0 * D);  // O += P V
    }
    for (int r = 0; r < nr; ++r) {
        float inv = m[r] == -kInf ? 0.f : 1.f / l[r];
        float* out = o + (bh * Tq + i0 + r) * D;
        for (int d = 0; d < D; ++d) out[d] = acc[r * D + d] * inv;
        lse[bh * Tq + i0 + r] = m[r] == -kInf ? kInf : (m[r] + std::log2(l[r])) * kLn2;
    }
}

template <int D, int W>
inline void v3_forward_range(const Cpu& a, long t0, long t1, float* o, float* lse) {
    std::vector<float> S(BR * BC), Kt(D * BC), acc(BR * D);
    const long nb = (a.Tq + BR - 1) / BR;
    for (long t = t0; t < t1; ++t)
        v3_forward_block<D, W>(a, t / nb, (int)(t % nb) * BR, o, lse, S.data(), Kt.data(), acc.data());
}

// One (batch, head): dK, dV per key tile (outer loop), dQ accumulated in place over key tiles.
template <int D, int W>
inline void v3_backward_head(const Cpu& a, long bh, const float* lse, const float* dvec,
                             const float* dout, float* dq, float* dk, float* dv, float* buf) {
    const int Tq = a.Tq, Tk = a.Tk;
    const float c = a.scale * kLog2e;
    const float *q = a.q + bh * Tq * D, *k = a.k + bh * Tk * D, *v = a.v + bh * Tk * D;
    const float* g = dout + bh * Tq * D;
    const std::uint8_t* km = a.mask_row(bh);
    float *Kt = buf, *Vt = Kt + D * BC, *P = Vt + D * BC, *dS = P + BR * BC;
    float *dKb = dS + BR * BC, *dVb = dKb + BC * D;
    float* dqb = dq + bh * Tq * D;
    std::fill(dqb, dqb + (long)Tq * D, 0.f);
    for (int j0 = 0; j0 < Tk; j0 += BC) {
        int nk = std::min(BC, Tk - j0);
        transpose_tile<D>(Kt, k + (long)j0 * D, nk);
        transpose_tile<D>(Vt, v + (long)j0 * D, nk);
        std::fill(dKb, dKb + BC * D, 0.f);
        std::fill(dVb, dVb + BC * D, 0.f);
        for (int i0 = a.causal ? (j0 / BR) * BR : 0; i0 < Tq; i0 += BR) {
            int nr = std::min(BR, Tq - i0);
            const int kv = a.keys_seen(i0, nr, j0, nk), ncols = score_cols<W>(kv);
            tile_scores<D, W>(P, q + (long)i0 * D, nr, c, Kt, ncols);
            tile_scores<D, W>(dS, g + (long)i0 * D, nr, 1.f, Vt, ncols);  // dP = dO V^T
            bool need_mask = km || nk < BC || (a.causal && j0 + BC - 1 > i0);
            for (int r = 0; r < nr; ++r) {
                float *p = P + r * BC, *ds = dS + r * BC;
                float l2 = lse[bh * Tq + i0 + r] * kLog2e, Di = dvec[bh * Tq + i0 + r];
                if (need_mask) mask_tile_row(p, a, i0 + r, j0, nk, km);
                for (int u = 0; u < ncols; u += W) {  // (columns past ncols are never read)
                    vec<W> pu = vexp2_neg<W>(vload<W>(p + u) - l2);
                    vstore<W>(p + u, pu);
                    vstore<W>(ds + u, pu * (vload<W>(ds + u) - Di));
                }
            }
            gemm_acc<D, W>(dVb, kv, P, 1, BC, nr, g + (long)i0 * D);   // dV += P^T dO
            gemm_acc<D, W>(dKb, kv, dS, 1, BC, nr, q + (long)i0 * D);  // dK += dS^T Q
            gemm_acc<D, W>(dqb + (long)i0 * D, nr, dS, BC, 1, kv, k + (long)j0 * D);  // dQ += dS K
        }
        for (int j = 0; j < nk; ++j)
            for (int d = 0; d < D; ++d) {
                dk[(bh * Tk + j0 + j) * D + d] = dKb[j * D + d] * a.scale;
                dv[(bh * Tk + j0 + j) * D + d] = dVb[j * D + d];
            }
    }
    for (long x = 0; x < (long)Tq * D; ++x) dqb[x] *= a.scale;
}

template <int D, int W>
inline void v3_backward_range(const Cpu& a, long h0, long h1, const float* lse, const float* dvec,
                              const float* dout, float* dq, float* dk, float* dv) {
    std::vector<float> buf(2 * D * BC + 2 * BR * BC + 2 * BC * D);
    for (long bh = h0; bh < h1; ++bh)
        v3_backward_head<D, W>(a, bh, lse, dvec, dout, dq, dk, dv, buf.data());
}

// The entry points, compiled once per instruction set with that set's vector width; `flatten`
// inlines the templates above into each, so each copy uses its own instructions throughout.
typedef void (*FwdFn)(const Cpu&, long, long, float*, float*);
typedef void (*BwdFn)(const Cpu&, long, long, const float*, const float*, const float*, float*,
                      float*, float*);

#define TT_ISA_ENTRIES(isa, attr, W)                                                          \
    template <int D>                                                                          \
    attr void v3_fwd_##isa(const Cpu& a, long t0, long t1, float* o, float* l) {              \
        v3_forward_range<D, W>(a, t0, t1, o, l);                                              \
    }                                                                                         \
    template <int D>                                                                          \
    attr void v3_bwd_##isa(const Cpu& a, long h0, long h1, const float* lse, const float* dv_, \
                           const float* g, float* dq, float* dk, float* dv) {                 \
        v3_backward_range<D, W>(a, h0, h1, lse, dv_, g, dq, dk, dv);                          \
    }
TT_FOR_EACH_ISA(TT_ISA_ENTRIES)  // base: x86-64's baseline (SSE2), or 128-bit NEON on ARM

struct V3Fns {
    FwdFn fwd;
    BwdFn bwd;
};

template <int D>
V3Fns pick() {
    return {TT_PICK_ISA(v3_fwd, <D>), TT_PICK_ISA(v3_bwd, <D>)};
}

// The forward and backward copies for head dim D and this CPU's instruction set.
V3Fns v3_fns(int D) {
    if (D == 32) return pick<32>();
    if (D == 64) return pick<64>();
    if (D == 128) return pick<128>();
    throw std::invalid_argument("attention (cpu) v3: head dim " + std::to_string(D) +
                                " is not supported; expected 32, 64 or 128");
}

void v3_forward(const Cpu& a, float* o, float* lse) {
    const long tasks = (long)a.B * a.H * ((a.Tq + BR - 1) / BR);
    const FwdFn fn = v3_fns(a.D).fwd;
#pragma omp parallel for if (a.parallel()) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t += 4) fn(a, t, std::min(tasks, t + 4), o, lse);
}

void v3_backward(const Cpu& a, const float* o, const float* lse, const float* dout, float* dq,
                 float* dk, float* dv) {
    const long rows = (long)a.B * a.H * a.Tq, heads = (long)a.B * a.H;
    std::vector<float> Dv(rows);
    const int D = a.D;
    const BwdFn fn = v3_fns(D).bwd;
#pragma omp parallel for if (a.parallel()) schedule(static)
    for (long r = 0; r < rows; ++r) {
        float x = 0.f;
        for (int d = 0; d < D; ++d) x += dout[r * D + d] * o[r * D + d];
        Dv[r] = x;
    }
#pragma omp parallel for if (a.parallel()) schedule(dynamic, 1)
    for (long h = 0; h < heads; ++h) fn(a, h, h + 1, lse, Dv.data(), dout, dq, dk, dv);
}

constexpr int kCpuVersions = 3;

// ---- entry points (the arguments were checked in Python: tinytorch/kernels/attention.py) ------
void forward_cpu(const Cpu& a, float* o, float* lse, int version) {
    if (version == 1) v1_forward(a, o, lse);
    else if (version == 2) v2_forward(a, o, lse);
    else v3_forward(a, o, lse);
}

void backward_cpu(const Cpu& a, const float* o, const float* lse, const float* dout, float* dq,
                  float* dk, float* dv, int version) {
    if (version == 1) v1_backward(a, o, lse, dout, dq, dk, dv);
    else if (version == 2) v2_backward(a, o, lse, dout, dq, dk, dv);
    else v3_backward(a, o, lse, dout, dq, dk, dv);
}

}  // namespace
}  // namespace tt

void register_attention(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    m.def("attention_cpu_versions", [] { return kCpuVersions; });
    m.def(
        "attention_forward_cpu",
        [](u q, u k, u v, u kpm, u o, u lse, int B, int H, int Tq, int Tk, int D, float scale,
           bool causal, int version) {
            Cpu a{ptr_of<const float>(q), ptr_of<const float>(k), ptr_of<const float>(v),
                  ptr_of<const std::uint8_t>(kpm), B, H, Tq, Tk, D, scale, causal};
            forward_cpu(a, ptr_of<float>(o), ptr_of<float>(lse), version);
        },
        py::call_guard<py::gil_scoped_release>(),
        "Fused attention forward on the CPU (host pointers as integers; kpm = 0 for no mask): "
        "writes out (B, H, Tq, D) and lse (B, H, Tq).");
    m.def(
        "attention_backward_cpu",
        [](u q, u k, u v, u kpm, u o, u lse, u dout, u dq, u dk, u dv, int B, int H, int Tq,
           int Tk, int D, float scale, bool causal, int version) {
            Cpu a{ptr_of<const float>(q), ptr_of<const float>(k), ptr_of<const float>(v),
                  ptr_of<const std::uint8_t>(kpm), B, H, Tq, Tk, D, scale, causal};
            backward_cpu(a, ptr_of<const float>(o), ptr_of<const float>(lse),
                         ptr_of<const float>(dout), ptr_of<float>(dq), ptr_of<float>(dk),
                         ptr_of<float>(dv), version);
        },
        py::call_guard<py::gil_scoped_release>(),
        "Fused attention backward on the CPU: writes dq, dk, dv.");
#ifdef TT_WITH_CUDA
    m.def("attention_cuda_versions", [] { return kAttnCudaVersions; });
    m.def("attention_workspace_floats",
          [](int B, int H, int Tq, int Tk, int D, int version, bool backward) {
              return attention_workspace_floats(AttnShape{B, H, Tq, Tk, D, 1.f, false}, version,
                                                backward);
          });
    m.def("attention_forward_cuda",
          [](u q, u k, u v, u kpm, u o, u lse, u work, int B, int H, int Tq, int Tk, int D,
             float scale, bool causal, int version, u stream) {
              attention_forward_cuda((const float*)q, (const float*)k, (const float*)v,
                                     (const std::uint8_t*)kpm, (float*)o, (float*)lse,
                                     (float*)work, AttnShape{B, H, Tq, Tk, D, scale, causal},
                                     version, stream);
          },
          "Fused attention forward on the GPU (device pointers; kpm = 0 for no mask).");
    m.def("attention_backward_cuda",
          [](u q, u k, u v, u kpm, u o, u lse, u dout, u dq, u dk, u dv, u work, int B, int H,
             int Tq, int Tk, int D, float scale, bool causal, int version, u stream) {
              attention_backward_cuda((const float*)q, (const float*)k, (const float*)v,
                                      (const std::uint8_t*)kpm, (const float*)o, (const float*)lse,
                                      (const float*)dout, (float*)dq, (float*)dk, (float*)dv,
                                      (float*)work, AttnShape{B, H, Tq, Tk, D, scale, causal},
                                      version, stream);
          },
          "Fused attention backward on the GPU (device pointers).");
#endif
}
