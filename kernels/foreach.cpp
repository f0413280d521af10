// Multi-tensor ("foreach") kernels on the CPU (C++ and OpenMP), float32: one call works on
// every tensor of a list, as PyTorch's torch._foreach_* and fused optimizers do.
//
//   adam_step      Adam / AdamW over all parameters of a group at once, in place: p, exp_avg,
//                  exp_avg_sq (and max_exp_avg_sq for AMSGrad) read and written once each,
//                  instead of the composed update's dozen NumPy passes (one temporary each)
//                  per parameter (tinytorch/optim/adam.py's adam_update, the twin).
//   sum_squares    sum over all tensors of g^2 (in double): clip_grad_norm_'s total norm.
//   scale          every tensor *= coef, in place: the clipping itself.
//
// The tensors are cut into pieces of kChunk elements and the pieces spread over the OpenMP
// threads, so one large and many small tensors balance. adam_step does the composed update's
// float32 operations in the same order with the same rounding (no fused multiply-add, IEEE
// sqrt and division): its results equal adam_update's bit for bit. Lists arrive as addresses
// of int64 arrays of pointers and sizes; tinytorch/kernels/foreach.py checked every tensor.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"
#if defined(__x86_64__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // (immintrin.h: _mm512_undefined_ps)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TT_FE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TT_FE_CLONES
#endif

namespace py = pybind11;

namespace tt {
namespace {

using namespace simd;
using i64 = std::int64_t;
constexpr i64 kChunk = 1 << 15;        // elements per piece
constexpr i64 kParallelMin = 1 << 16;  // below this many elements in all: one thread

struct Piece {
    i64 tensor, begin, end;
};

std::vector<Piece> cut(const i64* sizes, i64 count) {
    std::vector<Piece> out;
    for (i64 t = 0; t < count; ++t)
        for (i64 b = 0; b < sizes[t]; b += kChunk) out.push_back({t, b, std::min(sizes[t], b + kChunk)});
    return out;
}

i64 total(const i64* sizes, i64 count) {
    i64 n = 0;
    for (i64 t = 0; t < count; ++t) n += sizes[t];
    return n;
}

struct AdamArgs {
    float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay;
    bool decoupled, maximize;
};

// The square root of W lanes: GCC's vectors have no sqrt operator, and std::sqrt in a loop
// stays a scalar call (errno), so the instruction itself. Each is inlined into its ISA's entry.
#if TT_X86
__attribute__((target("avx512f"))) inline vec<16> vsqrt(vec<16> x) {
    return reinterpret_cast<vec<16>>(_mm512_sqrt_ps(reinterpret_cast<__m512>(x)));
}
__attribute__((target("avx2"))) inline vec<8> vsqrt(vec<8> x) {
    return reinterpret_cast<vec<8>>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
}
inline vec<4> vsqrt(vec<4> x) {
    return reinterpret_cast<vec<4>>(_mm_sqrt_ps(reinterpret_cast<__m128>(x)));
}
#else
inline vec<4> vsqrt(vec<4> x) {
    for (int k = 0; k < 4; ++k) x[k] = std::sqrt(x[k]);
    return x;
}
#endif

// W elements of one parameter (or 1 < W of a tail, through zero-padded copies); the order of
// operations is adam_update's (see the header). amax (AMSGrad) may be nullptr.
template <int W>
inline void adam_vec(float* p, const float* g, float* m, float* v, float* amax, i64 n,
                     float step_size, float bc2_sqrt, const AdamArgs& a) {
    float bp[W] = {}, bg[W] = {}, bm[W] = {}, bv[W] = {}, bx[W] = {};
    const bool tail = n < W;
    float *P = p, *M = m, *V = v, *X = amax;
    const float* G = g;
    if (tail) {  // copy in, run the vector, copy out
        std::memcpy(bp, p, n * sizeof(float));
        std::memcpy(bg, g, n * sizeof(float));
        std::memcpy(bm, m, n * sizeof(float));
        std::memcpy(bv, v, n * sizeof(float));
        if (amax) std::memcpy(bx, amax, n * sizeof(float));
        P = bp, G = bg, M = bm, V = bv, X = amax ? bx : nullptr;
    }
    vec<W> gi = vload<W>(G), pi = vload<W>(P);
    if (a.maximize) gi = -gi;
    if (a.weight_decay != 0.f) {
        if (a.decoupled)
            pi = pi * a.decay;  // AdamW: p *= 1 - lr * wd, first
        else
            gi = gi + a.weight_decay * pi;  // Adam: g += wd * p
    }
    const vec<W> mi = vload<W>(M) * a.beta1 + a.one_minus_beta1 * gi;
    const vec<W> vi = vload<W>(V) * a.beta2 + (a.one_minus_beta2 * gi) * gi;
    vec<W> second = vi;
    if (X) {  // AMSGrad: the running maximum of exp_avg_sq is the denominator
        second = vmax<W>(vload<W>(X), vi);
        vstore<W>(X, second);
    }
    const vec<W> denom = vsqrt(second) / bc2_sqrt + a.eps;
    vstore<W>(P, pi - step_size * (mi / denom));
    vstore<W>(M, mi);
    vstore<W>(V, vi);
    if (tail) {
        std::memcpy(p, bp, n * sizeof(float));
        std::memcpy(m, bm, n * sizeof(float));
        std::memcpy(v, bv, n * sizeof(float));
        if (amax) std::memcpy(amax, bx, n * sizeof(float));
    }
}

template <int W>
inline void adam_range(float* p, const float* g, float* m, float* v, float* amax, i64 n,
                       float step_size, float bc2_sqrt, const AdamArgs& a) {
    i64 i = 0;
    for (; i + W <= n; i += W)
        adam_vec<W>(p + i, g + i, m + i, v + i, amax ? amax + i : nullptr, W, step_size,
                    bc2_sqrt, a);
    if (i < n)
        adam_vec<W>(p + i, g + i, m + i, v + i, amax ? amax + i : nullptr, n - i, step_size,
                    bc2_sqrt, a);
}

// One copy per instruction set, spelled out rather than with simd.h's TT_FOR_EACH_ISA: these
// targets leave FMA out (no fused multiply-add anywhere in this file, see the top).
typedef void (*AdamFn)(float*, const float*, float*, float*, float*, i64, float, float,
                       const AdamArgs&);
#define TT_ADAM_ENTRY(isa, attr, W)                                                           \
    attr void adam_##isa(float* p, const float* g, float* m, float* v, float* amax, i64 n,    \
                         float step_size, float bc2_sqrt, const AdamArgs& a) {                \
        adam_range<W>(p, g, m, v, amax, n, step_size, bc2_sqrt, a);                          \
    }
#if TT_X86
TT_ADAM_ENTRY(avx512, TT_ENTRY("avx512f"), 16)
TT_ADAM_ENTRY(avx2, TT_ENTRY("avx2"), 8)
#endif
TT_ADAM_ENTRY(base, TT_BASE_ENTRY, 4)

AdamFn pick_adam() { return TT_PICK_ISA(adam); }

TT_FE_CLONES double sumsq_range(const float* __restrict__ g, i64 n) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (i64 i = 0; i < n; ++i) s += static_cast<double>(g[i]) * g[i];
    return s;
}

TT_FE_CLONES void scale_range(float* __restrict__ g, i64 n, float c) {
#pragma omp simd
    for (i64 i = 0; i < n; ++i) g[i] *= c;
}

template <class T>
const T* as_array(std::uintptr_t p) {
    return reinterpret_cast<const T*>(p);
}

void adam_step(std::uintptr_t params, std::uintptr_t grads, std::uintptr_t exp_avgs,
               std::uintptr_t exp_avg_sqs, std::uintptr_t max_exp_avg_sqs, std::uintptr_t sizes,
               std::uintptr_t step_sizes, std::uintptr_t bc2_sqrts, i64 count, const AdamArgs& a) {
    const i64* P = as_array<i64>(params);
    const i64* G = as_array<i64>(grads);
    const i64* M = as_array<i64>(exp_avgs);
    const i64* V = as_array<i64>(exp_avg_sqs);
    const i64* VM = max_exp_avg_sqs ? as_array<i64>(max_exp_avg_sqs) : nullptr;
    const i64* S = as_array<i64>(sizes);
    const double* ss = as_array<double>(step_sizes);
    const double* bc = as_array<double>(bc2_sqrts);
    const std::vector<Piece> pieces = cut(S, count);
    const i64 np = static_cast<i64>(pieces.size());
    const AdamFn adam_range = pick_adam();
#pragma omp parallel for schedule(static) if (total(S, count) >= kParallelMin)
    for (i64 k = 0; k < np; ++k) {
        const Piece& q = pieces[k];
        const i64 t = q.tensor, b = q.begin;
        float* amax = VM ? reinterpret_cast<float*>(VM[t]) + b : nullptr;
        adam_range(reinterpret_cast<float*>(P[t]) + b, reinterpret_cast<const float*>(G[t]) + b,
                   reinterpret_cast<float*>(M[t]) + b, reinterpret_cast<float*>(V[t]) + b, amax,
                   q.end - b, static_cast<float>(ss[t]), static_cast<float>(bc[t]), a);
    }
}

double sum_squares(std::uintptr_t ptrs, std::uintptr_t sizes, i64 count) {
    const i64* A = as_array<i64>(ptrs);
    const i64* S = as_array<i64>(sizes);
    const std::vector<Piece> pieces = cut(S, count);
    const i64 np = static_cast<i64>(pieces.size());
    std::vector<double> part(static_cast<std::size_t>(np));
#pragma omp parallel for schedule(static) if (total(S, count) >= kParallelMin)
    for (i64 k = 0; k < np; ++k) {
        const Piece& q = pieces[k];
        part[k] = sumsq_range(reinterpret_cast<const float*>(A[q.tensor]) + q.begin, q.end - q.begin);
    }
    double s = 0.0;  // the pieces in order: the same bits whatever the thread count
    for (double x : part) s += x;
    return s;
}

void scale(std::uintptr_t ptrs, std::uintptr_t sizes, i64 count, float c) {
    const i64* A = as_array<i64>(ptrs);
    const i64* S = as_array<i64>(sizes);
    const std::vector<Piece> pieces = cut(S, count);
    const i64 np = static_cast<i64>(pieces.size());
#pragma omp parallel for schedule(static) if (total(S, count) >= kParallelMin)
    for (i64 k = 0; k < np; ++k) {
        const Piece& q = pieces[k];
        scale_range(reinterpret_cast<float*>(A[q.tensor]) + q.begin, q.end - q.begin, c);
    }
}

}  // namespace
}  // namespace tt

void register_foreach(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    m.def(
        "foreach_adam_step_cpu",
        [](u params, u grads, u exp_avgs, u exp_avg_sqs, u max_exp_avg_sqs, u sizes,
           u step_sizes, u bc2_sqrts, i64 count, double beta1, double beta2, double eps,
           double weight_decay, double decay, bool decoupled, bool maximize) {
            // the float32 constants NumPy would make of these Python floats
            const AdamArgs a{static_cast<float>(beta1),        static_cast<float>(1.0 - beta1),
                             static_cast<float>(beta2),        static_cast<float>(1.0 - beta2),
                             static_cast<float>(eps),          static_cast<float>(weight_decay),
                             static_cast<float>(decay),        decoupled,
                             maximize};
            adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes, step_sizes,
                      bc2_sqrts, count, a);
        },
        py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::arg("sizes"), py::arg("step_sizes"),
        py::arg("bc2_sqrts"), py::arg("count"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("decay"), py::arg("decoupled"),
        py::arg("maximize"), py::call_guard<py::gil_scoped_release>(),
        "Adam/AdamW update of `count` float32 tensors in place (int64 arrays of pointers)");
    m.def("foreach_sum_squares_cpu", &sum_squares, py::arg("ptrs"), py::arg("sizes"),
          py::arg("count"), py::call_guard<py::gil_scoped_release>(),
          "sum of x^2 over `count` float32 tensors, accumulated in double");
    m.def("foreach_scale_cpu", &scale, py::arg("ptrs"), py::arg("sizes"), py::arg("count"),
          py::arg("c"), py::call_guard<py::gil_scoped_release>(),
          "x *= c for `count` float32 tensors, in place");
}
