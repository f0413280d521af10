// Elementwise ops on the CPU (C++ and OpenMP), float32, for large arrays: exp, tanh, sigmoid,
// relu, add, sub, mul, div and their backwards, as tinytorch/ops runs them (the sums are in
// reduce.cpp, the copies of strided views in copy.cpp; all three share elementwise.h).
//
// NumPy runs each of these on one core, often in several passes (sigmoid's composed forward
// makes four: negate, exp, add 1, reciprocal; tanh's backward two: 1 - y*y, then times g). Here
// every op is one pass over memory, split over the OpenMP threads in chunks of kChunk elements:
//
//   unary forward   y = exp(x), tanh(x), sigmoid(x), relu(x)
//   unary backward  dx = g*y, g*(1 - y*y), g*y*(1 - y), (y > 0 ? g : 0)   (from the saved output)
//   binary          out = a + b, a - b, a * b, a / b; both the same size, one of them a row
//                   broadcast over the other's rows, or one a scalar
//   div backward    ga = g / b and gb = -(g / b) * out in one pass
//   mul backward    ga = g*b and gb = g*a in one pass (either may be skipped)
//
// exp is Cody-Waite range reduction plus a degree-7 polynomial (Cephes' expf; within 2 ulp),
// tanh an odd polynomial for |x| < 0.625 (Cephes' tanhf) and (1 - e)/(1 + e), e = exp(-2|x|),
// beyond; sigmoid 1/(1 + e) or e/(1 + e), e = exp(-|x|), so nothing overflows. The math runs on
// vec<W> (kernels/simd.h), one copy per instruction set. The bindings take raw host pointers
// and sizes: tinytorch/kernels/elementwise.py has checked dtype, contiguity and shapes, once.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

#include "common.h"
#include "elementwise.h"

namespace py = pybind11;

namespace tt {
namespace {

enum Unary { kExp = 0, kTanh = 1, kSigmoid = 2, kRelu = 3 };
enum Binary { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3 };

// ---- vector math ---------------------------------------------------------------------------
template <int W>
inline vec<W> vabs(vec<W> x) {
    ivec<W> bits;
    std::memcpy(&bits, &x, sizeof bits);
    bits &= 0x7fffffff;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

// exp(x): x = n ln2 + f, |f| <= ln2 / 2, exp(f) by Cephes' polynomial, 2^n as two factors
// 2^(n/2) 2^(n - n/2) so that results between 2^-149 and 2^-126 come out as denormals and
// exp(x > 88.73) as inf. NaN stays NaN.
template <int W>
inline vec<W> vexp(vec<W> x) {
    vec<W> xc = vmin<W>(vmax<W>(x, vsplat<W>(-104.f)), vsplat<W>(89.f));
    const vec<W> big = vsplat<W>(12582912.f);  // 1.5 * 2^23: adding it rounds to an integer
    vec<W> r = (xc * 1.44269504088896341f + big) - big;
    vec<W> f = xc - r * 0.693359375f;
    f = f - r * -2.12194440e-4f;
    vec<W> p = vsplat<W>(1.9875691500e-4f);
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    p = p * f * f + f + 1.f;
    const ivec<W> n = __builtin_convertvector(r, ivec<W>);
    const ivec<W> n1 = n >> 1;
    const ivec<W> b1 = (n1 + 127) << 23, b2 = (n - n1 + 127) << 23;
    vec<W> s1, s2;
    std::memcpy(&s1, &b1, sizeof s1);
    std::memcpy(&s2, &b2, sizeof s2);
    const vec<W> out = p * s1 * s2;
    return x == x ? out : x;
}

template <int W>
inline vec<W> vtanh(vec<W> x) {
    const vec<W> ax = vabs<W>(x);
    const vec<W> z = x * x;
    vec<W> p = vsplat<W>(-5.70498872745e-3f);
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const vec<W> small = p * z * x + x;
    const vec<W> e = vexp<W>(-2.f * ax);
    const vec<W> t = (1.f - e) / (1.f + e);
    const vec<W> large = x < 0.f ? -t : t;
    return ax < 0.625f ? small : large;
}

template <int W>
inline vec<W> vsigmoid(vec<W> x) {
    const vec<W> e = vexp<W>(-vabs<W>(x));
    const vec<W> inv = 1.f / (1.f + e);
    return x >= 0.f ? inv : e * inv;
}

template <int W>
inline vec<W> vrelu(vec<W> x) {
    return x < 0.f ? vec<W>{} : x;  // NaN stays NaN, as in PyTorch
}

template <int W>
inline void unary_fwd(int op, const float* x, float* y, i64 n) {
    switch (op) {
        case kExp: return map1<W>(x, y, n, [](vec<W> v) { return vexp<W>(v); });
        case kTanh: return map1<W>(x, y, n, [](vec<W> v) { return vtanh<W>(v); });
        case kSigmoid: return map1<W>(x, y, n, [](vec<W> v) { return vsigmoid<W>(v); });
        default: return map1<W>(x, y, n, [](vec<W> v) { return vrelu<W>(v); });
    }
}

template <int W>
inline void unary_bwd(int op, const float* y, const float* g, float* dx, i64 n) {
    switch (op) {
        case kExp: return map2<W>(y, g, dx, n, [](vec<W> v, vec<W> d) { return d * v; });
        case kTanh:
            return map2<W>(y, g, dx, n, [](vec<W> v, vec<W> d) { return d * (1.f - v * v); });
        case kSigmoid:
            return map2<W>(y, g, dx, n, [](vec<W> v, vec<W> d) { return d * (v * (1.f - v)); });
        default:
            return map2<W>(y, g, dx, n,
                           [](vec<W> v, vec<W> d) { return v > 0.f ? d : vec<W>{}; });
    }
}

template <int W>
inline void binary(int op, const float* a, const float* b, float* out, i64 n) {
    switch (op) {
        case kAdd: return map2<W>(a, b, out, n, [](vec<W> u, vec<W> v) { return u + v; });
        case kSub: return map2<W>(a, b, out, n, [](vec<W> u, vec<W> v) { return u - v; });
        case kMul: return map2<W>(a, b, out, n, [](vec<W> u, vec<W> v) { return u * v; });
        default: return map2<W>(a, b, out, n, [](vec<W> u, vec<W> v) { return u / v; });
    }
}

// out = a op s, or s op a (left)
template <int W>
inline void binary_scalar(int op, const float* a, float s, float* out, i64 n, bool left) {
    const vec<W> c = vsplat<W>(s);
    if (left) {
        switch (op) {
            case kAdd: return map1<W>(a, out, n, [c](vec<W> u) { return c + u; });
            case kSub: return map1<W>(a, out, n, [c](vec<W> u) { return c - u; });
            case kMul: return map1<W>(a, out, n, [c](vec<W> u) { return c * u; });
            default: return map1<W>(a, out, n, [c](vec<W> u) { return c / u; });
        }
    }
    switch (op) {
        case kAdd: return map1<W>(a, out, n, [c](vec<W> u) { return u + c; });
        case kSub: return map1<W>(a, out, n, [c](vec<W> u) { return u - c; });
        case kMul: return map1<W>(a, out, n, [c](vec<W> u) { return u * c; });
        default: return map1<W>(a, out, n, [c](vec<W> u) { return u / c; });
    }
}

// out = a / b: ga = g / b, gb = -(g / b) * out (the composed Div's formula and rounding)
template <int W>
inline void div_bwd(const float* g, const float* b, const float* out, float* ga, float* gb,
                    i64 n) {
    i64 i = 0;
    for (; i + W <= n; i += W) {
        const vec<W> t = vload<W>(g + i) / vload<W>(b + i);
        if (ga) vstore<W>(ga + i, t);
        if (gb) vstore<W>(gb + i, -(t * vload<W>(out + i)));
    }
    for (; i < n; ++i) {
        const float t = g[i] / b[i];
        if (ga) ga[i] = t;
        if (gb) gb[i] = -(t * out[i]);
    }
}

template <int W>
inline void mul_bwd(const float* g, const float* a, const float* b, float* ga, float* gb, i64 n) {
    if (!ga) return map2<W>(g, a, gb, n, [](vec<W> u, vec<W> v) { return u * v; });
    if (!gb) return map2<W>(g, b, ga, n, [](vec<W> u, vec<W> v) { return u * v; });
    i64 i = 0;
    for (; i + W <= n; i += W) {
        const vec<W> d = vload<W>(g + i);
        vstore<W>(ga + i, d * vload<W>(b + i));
        vstore<W>(gb + i, d * vload<W>(a + i));
    }
    for (; i < n; ++i) {
        ga[i] = g[i] * b[i];
        gb[i] = g[i] * a[i];
    }
}

// ---- one copy per instruction set --------------------------------------------------------
struct Table {
    void (*unary_fwd)(int, const float*, float*, i64);
    void (*unary_bwd)(int, const float*, const float*, float*, i64);
    void (*binary)(int, const float*, const float*, float*, i64);
    void (*binary_scalar)(int, const float*, float, float*, i64, bool);
    void (*div_bwd)(const float*, const float*, const float*, float*, float*, i64);
    void (*mul_bwd)(const float*, const float*, const float*, float*, float*, i64);
};

#define TT_EW_ENTRIES(isa, attr, W)                                                          \
    attr void unary_fwd_##isa(int op, const float* x, float* y, i64 n) {                    \
        unary_fwd<W>(op, x, y, n);                                                          \
    }                                                                                       \
    attr void unary_bwd_##isa(int op, const float* y, const float* g, float* dx, i64 n) {   \
        unary_bwd<W>(op, y, g, dx, n);                                                      \
    }                                                                                       \
    attr void binary_##isa(int op, const float* a, const float* b, float* out, i64 n) {     \
        binary<W>(op, a, b, out, n);                                                        \
    }                                                                                       \
    attr void binary_scalar_##isa(int op, const float* a, float s, float* out, i64 n,       \
                                  bool left) {                                              \
        binary_scalar<W>(op, a, s, out, n, left);                                           \
    }                                                                                       \
    attr void div_bwd_##isa(const float* g, const float* b, const float* out, float* ga,    \
                            float* gb, i64 n) {                                             \
        div_bwd<W>(g, b, out, ga, gb, n);                                                   \
    }                                                                                       \
    attr void mul_bwd_##isa(const float* g, const float* a, const float* b, float* ga,      \
                            float* gb, i64 n) {                                             \
        mul_bwd<W>(g, a, b, ga, gb, n);                                                     \
    }                                                                                       \
    const Table table_##isa = {unary_fwd_##isa,     unary_bwd_##isa, binary_##isa,          \
                               binary_scalar_##isa, div_bwd_##isa,   mul_bwd_##isa};
TT_FOR_EACH_ISA(TT_EW_ENTRIES)

const Table& table() { return *TT_PICK_ISA(table); }

// ---- the ops -----------------------------------------------------------------------------
void unary_forward(int op, const float* x, float* y, i64 n) {
    const auto fn = table().unary_fwd;
    parallel_chunks(n, kChunk, [&](i64 a, i64 b) { fn(op, x + a, y + a, b - a); });
}

void unary_backward(int op, const float* y, const float* g, float* dx, i64 n) {
    const auto fn = table().unary_bwd;
    parallel_chunks(n, kChunk, [&](i64 a, i64 b) { fn(op, y + a, g + a, dx + a, b - a); });
}

// out (rows, cols) = a op b; mode 0: a and b (rows, cols); 1: b one row (cols,) for every row;
// 2: a one row
void binary_op(int op, const float* a, const float* b, float* out, i64 rows, i64 cols,
               int mode) {
    const auto fn = table().binary;
    if (mode == 0) {
        parallel_chunks(rows * cols, kChunk,
                        [&](i64 s, i64 e) { fn(op, a + s, b + s, out + s, e - s); });
        return;
    }
    const i64 sa = mode == 2 ? 0 : cols, sb = mode == 1 ? 0 : cols;
    parallel_rows(rows, cols, [&](i64 r0, i64 r1) {
        for (i64 r = r0; r < r1; ++r) fn(op, a + r * sa, b + r * sb, out + r * cols, cols);
    });
}

void binary_scalar_op(int op, const float* a, float s, float* out, i64 n, bool left) {
    const auto fn = table().binary_scalar;
    parallel_chunks(n, kChunk, [&](i64 i, i64 e) { fn(op, a + i, s, out + i, e - i, left); });
}

void div_backward(const float* g, const float* b, const float* out, float* ga, float* gb,
                  i64 n) {
    const auto fn = table().div_bwd;
    parallel_chunks(n, kChunk, [&](i64 s, i64 e) {
        fn(g + s, b + s, out + s, ga ? ga + s : nullptr, gb ? gb + s : nullptr, e - s);
    });
}

void mul_backward(const float* g, const float* a, const float* b, float* ga, float* gb, i64 n) {
    const auto fn = table().mul_bwd;
    parallel_chunks(n, kChunk, [&](i64 s, i64 e) {
        fn(g + s, a + s, b + s, ga ? ga + s : nullptr, gb ? gb + s : nullptr, e - s);
    });
}

}  // namespace
}  // namespace tt

void register_elementwise(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    auto g = py::call_guard<py::gil_scoped_release>();
    m.def(
        "ew_unary_forward_cpu",
        [](int op, u x, u y, i64 n) {
            unary_forward(op, ptr_of<const float>(x), ptr_of<float>(y), n);
        },
        py::arg("op"), py::arg("x"), py::arg("y"), py::arg("n"), g,
        "y = f(x) over n float32s; op 0 exp, 1 tanh, 2 sigmoid, 3 relu (host pointers)");
    m.def(
        "ew_unary_backward_cpu",
        [](int op, u y, u grad, u dx, i64 n) {
            unary_backward(op, ptr_of<const float>(y), ptr_of<const float>(grad), ptr_of<float>(dx),
                           n);
        },
        py::arg("op"), py::arg("y"), py::arg("grad"), py::arg("dx"), py::arg("n"), g,
        "dx = grad * f'(x) from the output y = f(x) (op as in ew_unary_forward_cpu)");
    m.def(
        "ew_binary_cpu",
        [](int op, u a, u b, u out, i64 rows, i64 cols, int mode) {
            binary_op(op, ptr_of<const float>(a), ptr_of<const float>(b), ptr_of<float>(out),
                      rows, cols, mode);
        },
        py::arg("op"), py::arg("a"), py::arg("b"), py::arg("out"), py::arg("rows"),
        py::arg("cols"), py::arg("mode"), g,
        "out (rows, cols) = a op b, op 0 +, 1 -, 2 *, 3 /; mode 0: a, b (rows, cols); 1: b one "
        "row (cols,); 2: a one row");
    m.def(
        "ew_binary_scalar_cpu",
        [](int op, u a, float s, u out, i64 n, bool left) {
            binary_scalar_op(op, ptr_of<const float>(a), s, ptr_of<float>(out), n, left);
        },
        py::arg("op"), py::arg("a"), py::arg("s"), py::arg("out"), py::arg("n"),
        py::arg("left"), g, "out = a op s (s op a when left) over n float32s, op as ew_binary_cpu");
    m.def(
        "ew_div_backward_cpu",
        [](u grad, u b, u out, u ga, u gb, i64 n) {
            div_backward(ptr_of<const float>(grad), ptr_of<const float>(b),
                         ptr_of<const float>(out), ptr_of<float>(ga), ptr_of<float>(gb), n);
        },
        py::arg("grad"), py::arg("b"), py::arg("out"), py::arg("ga"), py::arg("gb"), py::arg("n"),
        g, "out = a / b: ga = grad / b, gb = -(grad / b) * out in one pass (0 skips one)");
    m.def(
        "ew_mul_backward_cpu",
        [](u grad, u a, u b, u ga, u gb, i64 n) {
            mul_backward(ptr_of<const float>(grad), ptr_of<const float>(a),
                         ptr_of<const float>(b), ptr_of<float>(ga), ptr_of<float>(gb), n);
        },
        py::arg("grad"), py::arg("a"), py::arg("b"), py::arg("ga"), py::arg("gb"), py::arg("n"),
        g, "ga = grad * b, gb = grad * a in one pass (a 0 pointer skips that output)");
}
