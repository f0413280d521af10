// Fused LayerNorm on the CPU (C++ and OpenMP), and the pybind11 bindings of the layernorm
// family (the CPU functions, and the CUDA launchers of layernorm.cu when built with
// TT_WITH_CUDA).
//
// Same algorithm as the fastest GPU version (see layernorm.cu), shaped for a CPU:
//   forward   one row per iteration of an OpenMP loop over rows: mean, then the variance of
//             (x - mean) (two passes over a row that sits in L1/L2, so exact and cheap), then
//             y = (x - mean) * rstd * w + b. The statistics accumulate in double, and
//             `omp simd reduction` lets the compiler vectorize them without -ffast-math.
//   backward  rows are split into a FIXED number of chunks (not one per thread), so the result
//             does not depend on the thread count. Per row: s1 = sum(g), s2 = sum(g * xhat)
//             with g = dy * w, then dx = rstd * (g - s1/C - xhat * s2/C), and the chunk's
//             partial dweight += dy * xhat, dbias += dy. A finishing loop adds the chunks'
//             partials column by column in chunk order: deterministic, no atomics.
// Pointers arrive as integers (numpy .ctypes.data); the Python layer checks dtype (float32),
// contiguity and shapes before calling, and the GIL is released while the kernel runs.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "layernorm.h"

namespace py = pybind11;

namespace tt {
namespace {

constexpr int kLnCpuVersions = 1;
constexpr std::int64_t kMaxChunks = 64;  // row chunks of the backward (fixed: deterministic)

void ln_forward_cpu(const float* x, const float* w, const float* b, float* y, float* mean,
                    float* rstd, std::int64_t N, std::int64_t C, float eps) {
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < N; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (std::int64_t c = 0; c < C; ++c) s += xr[c];
        const double mu = s / static_cast<double>(C);
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (std::int64_t c = 0; c < C; ++c) {
            const double d = xr[c] - mu;
            ss += d * d;
        }
        const float m = static_cast<float>(mu);
        const float rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
#pragma omp simd
        for (std::int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
        mean[r] = m;
        rstd[r] = rs;
    }
}

void ln_backward_cpu(const float* dy, const float* x, const float* w, const float* mean,
                     const float* rstd, float* dx, float* dw, float* db, std::int64_t N,
                     std::int64_t C) {
    const std::int64_t K = std::max<std::int64_t>(1, std::min<std::int64_t>(N, kMaxChunks));
    std::vector<float> part(static_cast<std::size_t>(2 * K * C), 0.0f);
    const double invC = 1.0 / static_cast<double>(C);
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < K; ++k) {
        float* pdw = part.data() + k * C;
        float* pdb = part.data() + (K + k) * C;
        const std::int64_t r0 = N * k / K, r1 = N * (k + 1) / K;
        for (std::int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * C;
            const float* gr = dy + r * C;
            float* dxr = dx + r * C;
            const float m = mean[r], rs = rstd[r];
            double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
            for (std::int64_t c = 0; c < C; ++c) {
                const float g = gr[c] * w[c];
                const float xh = (xr[c] - m) * rs;
                s1 += g;
                s2 += static_cast<double>(g) * xh;
            }
            const float a = static_cast<float>(s1 * invC), bb = static_cast<float>(s2 * invC);
#pragma omp simd
            for (std::int64_t c = 0; c < C; ++c) {
                const float xh = (xr[c] - m) * rs;
                dxr[c] = rs * (gr[c] * w[c] - a - xh * bb);
                pdw[c] += gr[c] * xh;
                pdb[c] += gr[c];
            }
        }
    }
    // Finishing reduction: chunk partials in a fixed order (each column by one thread).
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < C; ++c) {
        double sw = 0.0, sb = 0.0;
        for (std::int64_t k = 0; k < K; ++k) {
            sw += part[k * C + c];
            sb += part[(K + k) * C + c];
        }
        dw[c] = static_cast<float>(sw);
        db[c] = static_cast<float>(sb);
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
            require(N > 0 && C > 0, "layernorm_forward_cpu: N and C must be positive");
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
            require(N > 0 && C > 0, "layernorm_backward_cpu: N and C must be positive");
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
