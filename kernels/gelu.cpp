// Fused GELU on the CPU (C++ and OpenMP), exact form (PyTorch's approximate='none'), float32:
//
//   forward   y  = x * Phi(x),                   Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   backward  dx = g * (Phi(x) + x * phi(x)),    phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//
// The composed GELU (tinytorch/ops/activations.py) makes about ten passes over memory for the
// forward (scale, clip, the erf polynomial step by step, then x * Phi) and seven for the
// backward, each allocating an array; these read x (and g) once and write once, every element
// finished in registers. There is one version: the lesson of LayerNorm (fusion wins when the
// work is memory-bound) with nothing new to tile, so no CUDA twin; on the GPU the library keeps
// the composed CuPy ops.
//
// erf is the rational approximation that the composed float32 path uses too (XLA's and
// Eigen's: x * P(x^2) / Q(x^2) on [-4, 4], +-1 beyond; within 5e-7 of erf); exp(-x^2/2) is
// 2^(-x^2 log2(e) / 2) by simd.h's polynomial (relative error below 2e-7). Both run on vec<W>
// (kernels/simd.h), one copy per instruction set. The bindings take raw host pointers and a
// length: tinytorch/kernels/gelu.py has checked dtype, contiguity and shapes, once.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "simd.h"

namespace py = pybind11;

namespace tt {
namespace {

using namespace simd;

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kHalfLog2e = 0.72134752044448170f;  // log2(e) / 2
constexpr std::int64_t kChunk = 1 << 14;            // elements per OpenMP task
constexpr std::int64_t kParallelMin = 1 << 19;  // below: one thread (see kernels/elementwise.h)

// erf(x) = x * P(x^2) / Q(x^2) with x clipped to [-4, 4] (erf(4) = 1 - 1.5e-8).
template <int W>
inline vec<W> verf(vec<W> x) {
    x = vmin<W>(vmax<W>(x, vec<W>{} - 4.f), vec<W>{} + 4.f);
    const vec<W> x2 = x * x;
    vec<W> p = -2.72614225801306e-10f + vec<W>{};
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    vec<W> q = -1.45660718464996e-05f + vec<W>{};
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return x * p / q;
}

template <int W>
inline vec<W> gelu_fwd(vec<W> v) {
    return v * (0.5f + 0.5f * verf<W>(v * kInvSqrt2));
}

template <int W>
inline vec<W> gelu_bwd(vec<W> v, vec<W> g) {
    const vec<W> cdf = 0.5f + 0.5f * verf<W>(v * kInvSqrt2);
    const vec<W> pdf = kInvSqrt2Pi * vexp2_neg<W>(-kHalfLog2e * v * v);
    return g * (cdf + v * pdf);
}

// One range [0, n): whole vectors, then the tail through a zero-padded vector.
template <int W>
inline void forward_range(const float* x, float* y, std::int64_t n) {
    std::int64_t i = 0;
    for (; i + W <= n; i += W) vstore<W>(y + i, gelu_fwd<W>(vload<W>(x + i)));
    if (i < n) {
        float buf[W] = {};
        std::memcpy(buf, x + i, (n - i) * sizeof(float));
        vstore<W>(buf, gelu_fwd<W>(vload<W>(buf)));
        std::memcpy(y + i, buf, (n - i) * sizeof(float));
    }
}

template <int W>
inline void backward_range(const float* x, const float* g, float* dx, std::int64_t n) {
    std::int64_t i = 0;
    for (; i + W <= n; i += W)
        vstore<W>(dx + i, gelu_bwd<W>(vload<W>(x + i), vload<W>(g + i)));
    if (i < n) {
        float bx[W] = {}, bg[W] = {};
        std::memcpy(bx, x + i, (n - i) * sizeof(float));
        std::memcpy(bg, g + i, (n - i) * sizeof(float));
        vstore<W>(bx, gelu_bwd<W>(vload<W>(bx), vload<W>(bg)));
        std::memcpy(dx + i, bx, (n - i) * sizeof(float));
    }
}

typedef void (*FwdFn)(const float*, float*, std::int64_t);
typedef void (*BwdFn)(const float*, const float*, float*, std::int64_t);

#define TT_GELU_ENTRIES(isa, attr, W)                                                       \
    attr void fwd_##isa(const float* x, float* y, std::int64_t n) {                        \
        forward_range<W>(x, y, n);                                                         \
    }                                                                                      \
    attr void bwd_##isa(const float* x, const float* g, float* dx, std::int64_t n) {       \
        backward_range<W>(x, g, dx, n);                                                    \
    }
TT_FOR_EACH_ISA(TT_GELU_ENTRIES)

FwdFn pick_fwd() { return TT_PICK_ISA(fwd); }
BwdFn pick_bwd() { return TT_PICK_ISA(bwd); }

// [0, n) in chunks of kChunk elements over the threads, or one call when small.
template <class Fn>
void parallel_chunks(std::int64_t n, Fn fn) {
    if (n < kParallelMin) {
        fn(0, n);
        return;
    }
    const std::int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) fn(c * kChunk, std::min(n, (c + 1) * kChunk));
}

void forward_cpu(const float* x, float* y, std::int64_t n) {
    const FwdFn fn = pick_fwd();
    parallel_chunks(n, [&](std::int64_t a, std::int64_t b) { fn(x + a, y + a, b - a); });
}

void backward_cpu(const float* x, const float* g, float* dx, std::int64_t n) {
    const BwdFn fn = pick_bwd();
    parallel_chunks(n, [&](std::int64_t a, std::int64_t b) { fn(x + a, g + a, dx + a, b - a); });
}

}  // namespace
}  // namespace tt

void register_gelu(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    m.def(
        "gelu_forward_cpu",
        [](u x, u y, std::int64_t n) { forward_cpu(ptr_of<const float>(x), ptr_of<float>(y), n); },
        py::arg("x"), py::arg("y"), py::arg("n"), py::call_guard<py::gil_scoped_release>(),
        "y = x * Phi(x) (exact GELU) over n float32s (host pointers as integers)");
    m.def(
        "gelu_backward_cpu",
        [](u x, u g, u dx, std::int64_t n) {
            backward_cpu(ptr_of<const float>(x), ptr_of<const float>(g), ptr_of<float>(dx), n);
        },
        py::arg("x"), py::arg("grad"), py::arg("dx"), py::arg("n"),
        py::call_guard<py::gil_scoped_release>(),
        "dx = grad * (Phi(x) + x * phi(x)) over n float32s (host pointers as integers)");
}
