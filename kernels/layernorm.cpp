// Fused LayerNorm on the CPU (C++ and OpenMP), and the pybind11 bindings of the layernorm
// family (the CPU functions, and the CUDA launchers of layernorm.cu when built with
// TT_WITH_CUDA).
//
// Same algorithm as the fastest GPU version (see layernorm.cu), shaped for a CPU:
//   forward   one row per iteration of an OpenMP loop over rows: mean, then the variance of
//             (x - mean) (two passes over a row that sits in L1/L2, so exact and cheap), then
//             y = (x - mean) * rstd * w + b. `omp simd reduction` vectorizes the float sums
//             without -ffast-math; the row functions are compiled for AVX-512/AVX2/x86-64
//             (the forward's with target_clones, the backward's with simd.h's entries).
//   backward  rows are split into a FIXED number of chunks (min(64, N/16), not one per
//             thread), so on a given machine the result does not depend on the thread count
//             (bitwise). Per row: s1 = sum(g), s2 = sum(g * xhat)
//             with g = dy * w, then dx = rstd * (g - s1/C - xhat * s2/C), and the chunk's
//             partial dweight += dy * xhat, dbias += dy. A finishing loop adds the chunks'
//             partials column by column in chunk order: deterministic, no atomics.
// Pointers arrive as integers (numpy .ctypes.data); the Python layer (tinytorch/kernels/
// layernorm.py) has checked dtype (float32), contiguity, shapes and N, C >= 1, once; the GIL is
// released while the kernel runs.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "layernorm.h"
#include "simd.h"

namespace py = pybind11;

namespace tt {
namespace {

constexpr int kLnCpuVersions = 1;
constexpr std::int64_t kMaxChunks = 64;      // row chunks of the backward (fixed: deterministic)
constexpr std::int64_t kMinChunkRows = 16;   // ... of at least this many rows (few partials)
constexpr std::int64_t kParallelMin = 1 << 18;  // below: one thread (see kernels/elementwise.h)

// The forward's per-row work is compiled for AVX-512, AVX2 and plain x86-64; the loader picks one
// for this CPU (GCC function multi-versioning; the backward's copies are below). `omp simd
// reduction` vectorizes the float sums without -ffast-math: each SIMD lane keeps its own partial
// sum (a pairwise-like order, accurate enough for float32 at any C we test, see
// tests/test_ch11_layernorm.py).
// No fused multiply-add contraction here: dx = rstd * (g - mean(g) - ...) must see the same
// rounded g = dy * w that its row sum saw (with C = 1, dx is exactly 0 only then).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TT_CLONES
#endif

TT_CLONES void row_forward(const float* __restrict__ xr, const float* __restrict__ w,
                           const float* __restrict__ b, float* __restrict__ yr, float* mean,
                           float* rstd, std::int64_t C, float eps) {
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (std::int64_t c = 0; c < C; ++c) s += xr[c];
    const float m = s / static_cast<float>(C);
    float ss = 0.f;  // two-pass variance: the row is in L1/L2 now, so this is cheap and exact
#pragma omp simd reduction(+ : ss)
    for (std::int64_t c = 0; c < C; ++c) {
        const float d = xr[c] - m;
        ss += d * d;
    }
    const float rs = 1.f / std::sqrt(ss / static_cast<float>(C) + eps);
#pragma omp simd
    for (std::int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
    *mean = m;
    *rstd = rs;
}

// One row of the backward: dx, and this row's share of dweight and dbias added to the chunk's
// partial sums pdw, pdb. With g = dy * w and xhat = (x - m) * rs:
//   dx = rs * (g - mean(g) - xhat * mean(g * xhat)),  pdw += dy * xhat,  pdb += dy.
// Inlined into backward_chunk_<isa> below, one copy per instruction set.
inline void row_backward(const float* __restrict__ gr, const float* __restrict__ xr,
                            const float* __restrict__ w, float m, float rs,
                            float* __restrict__ dxr, float* __restrict__ pdw,
                            float* __restrict__ pdb, std::int64_t C) {
    // BEGIN EXERCISE ch11: layernorm_backward_cpp - dxr, and add the row to pdw and pdb
    float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
    for (std::int64_t c = 0; c < C; ++c) {
        const float g = gr[c] * w[c];
        s1 += g;
        s2 += g * ((xr[c] - m) * rs);
    }
    const float a = s1 / static_cast<float>(C), bb = s2 / static_cast<float>(C);
#pragma omp simd
    for (std::int64_t c = 0; c < C; ++c) {
        const float xh = (xr[c] - m) * rs;
        dxr[c] = rs * (gr[c] * w[c] - a - xh * bb);
        pdw[c] += gr[c] * xh;
        pdb[c] += gr[c];
    }
    // END EXERCISE
}

// The rows [r0, r1) of one chunk, compiled once per instruction set with simd.h's entries and
// chosen by its switch (tinytorch.kernels.cpu_isa()), not with target_clones as the forward: an
// exception cannot pass through GCC's clone dispatcher (it ends the process), and the exercise's
// stub of row_backward throws one. Spelled out rather than with TT_FOR_EACH_ISA: row_backward is
// written with `omp simd`, not vec<W> (no width to pass), and the targets leave FMA out (no
// contraction in this file, see row_forward).
typedef void (*ChunkFn)(const float*, const float*, const float*, const float*, const float*,
                        float*, float*, float*, std::int64_t, std::int64_t, std::int64_t);
#define TT_LN_BACKWARD_ENTRY(isa, attr)                                                       \
    attr void backward_chunk_##isa(const float* dy, const float* x, const float* w,          \
                                   const float* mean, const float* rstd, float* dx, float* pdw, \
                                   float* pdb, std::int64_t r0, std::int64_t r1, std::int64_t C) { \
        for (std::int64_t r = r0; r < r1; ++r)                                                 \
            row_backward(dy + r * C, x + r * C, w, mean[r], rstd[r], dx + r * C, pdw, pdb, C); \
    }
TT_LN_BACKWARD_ENTRY(base, TT_BASE_ENTRY)
#if TT_X86
TT_LN_BACKWARD_ENTRY(avx512, TT_ENTRY("avx512f"))
TT_LN_BACKWARD_ENTRY(avx2, TT_ENTRY("avx2"))
#endif
ChunkFn pick_backward_chunk() { return TT_PICK_ISA(backward_chunk); }

TT_CLONES void add_rows(const float* __restrict__ part, std::int64_t K, std::int64_t C,
                        std::int64_t c0, std::int64_t c1, float* __restrict__ out) {
    // out[c] = sum over k of part[k][c], k in order (deterministic), for c in [c0, c1)
#pragma omp simd
    for (std::int64_t c = c0; c < c1; ++c) out[c] = part[c];
    for (std::int64_t k = 1; k < K; ++k) {
        const float* p = part + k * C;
#pragma omp simd
        for (std::int64_t c = c0; c < c1; ++c) out[c] += p[c];
    }
}

void ln_forward_cpu(const float* x, const float* w, const float* b, float* y, float* mean,
                    float* rstd, std::int64_t N, std::int64_t C, float eps) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
    for (std::int64_t r = 0; r < N; ++r)
        row_forward(x + r * C, w, b, y + r * C, mean + r, rstd + r, C, eps);
}

void ln_backward_cpu(const float* dy, const float* x, const float* w, const float* mean,
                     const float* rstd, float* dx, float* dw, float* db, std::int64_t N,
                     std::int64_t C) {
    const std::int64_t K = std::max<std::int64_t>(
        1, std::min<std::int64_t>(kMaxChunks, (N + kMinChunkRows - 1) / kMinChunkRows));
    std::vector<float> part(static_cast<std::size_t>(2 * K * C));
    const ChunkFn chunk = pick_backward_chunk();
    parallel_for(K, N * C >= kParallelMin, 1, [&](std::int64_t k) {
        float* pdw = part.data() + k * C;
        float* pdb = part.data() + (K + k) * C;
        std::fill(pdw, pdw + C, 0.f);
        std::fill(pdb, pdb + C, 0.f);
        chunk(dy, x, w, mean, rstd, dx, pdw, pdb, N * k / K, N * (k + 1) / K, C);
    });
    // Finishing reduction: the chunks' partials in chunk order, columns split over threads.
    constexpr std::int64_t kCols = 1024;
    const std::int64_t nb = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (K * C >= kParallelMin)
    for (std::int64_t j = 0; j < 2 * nb; ++j) {
        const bool is_b = j >= nb;
        const std::int64_t c0 = (j % nb) * kCols, c1 = std::min(C, c0 + kCols);
        add_rows(part.data() + (is_b ? K * C : 0), K, C, c0, c1, is_b ? db : dw);
    }
}

}  // namespace
}  // namespace tt

void register_layernorm(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    using i64 = std::int64_t;
    m.def("layernorm_cpu_versions", [] { return kLnCpuVersions; });
    m.def(
        "layernorm_forward_cpu",
        [](u x, u w, u b, u y, u mean, u rstd, i64 N, i64 C, float eps) {
            ln_forward_cpu(ptr_of<const float>(x), ptr_of<const float>(w), ptr_of<const float>(b),
                           ptr_of<float>(y), ptr_of<float>(mean), ptr_of<float>(rstd), N, C, eps);
        },
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("mean"),
        py::arg("rstd"), py::arg("N"), py::arg("C"), py::arg("eps"),
        py::call_guard<py::gil_scoped_release>(),
        "Fused LayerNorm forward on the CPU (host pointers as integers): writes y, mean, rstd.");
    m.def(
        "layernorm_backward_cpu",
        [](u dy, u x, u w, u mean, u rstd, u dx, u dw, u db, i64 N, i64 C) {
            ln_backward_cpu(ptr_of<const float>(dy), ptr_of<const float>(x), ptr_of<const float>(w),
                            ptr_of<const float>(mean), ptr_of<const float>(rstd), ptr_of<float>(dx),
                            ptr_of<float>(dw), ptr_of<float>(db), N, C);
        },
        py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("rstd"),
        py::arg("dx"), py::arg("dweight"), py::arg("dbias"), py::arg("N"), py::arg("C"),
        py::call_guard<py::gil_scoped_release>(),
        "Fused LayerNorm backward on the CPU: writes dx, dweight, dbias (deterministic).");
#ifdef TT_WITH_CUDA
    m.def("layernorm_cuda_versions", [] { return kLnCudaVersions; });
    m.def("layernorm_workspace_floats",
          [](i64 N, i64 C, int version) { return layernorm_workspace_floats(N, C, version); });
    m.def(
        "layernorm_forward_cuda",
        [](u x, u w, u b, u y, u mean, u rstd, i64 N, i64 C, float eps, int version, u stream) {
            layernorm_forward_cuda(ptr_of<const float>(x), ptr_of<const float>(w),
                                   ptr_of<const float>(b), ptr_of<float>(y), ptr_of<float>(mean),
                                   ptr_of<float>(rstd), N, C, eps, version, stream);
        },
        py::call_guard<py::gil_scoped_release>(),
        "Fused LayerNorm forward on the GPU (device pointers, CuPy stream as an integer).");
    m.def(
        "layernorm_backward_cuda",
        [](u dy, u x, u w, u mean, u rstd, u dx, u dw, u db, u work, i64 N, i64 C, int version,
           u stream) {
            layernorm_backward_cuda(ptr_of<const float>(dy), ptr_of<const float>(x),
                                    ptr_of<const float>(w), ptr_of<const float>(mean),
                                    ptr_of<const float>(rstd), ptr_of<float>(dx), ptr_of<float>(dw),
                                    ptr_of<float>(db), ptr_of<float>(work), N, C, version, stream);
        },
        py::call_guard<py::gil_scoped_release>(),
        "Fused LayerNorm backward on the GPU: writes dx, dweight, dbias (deterministic).");
#endif
}
