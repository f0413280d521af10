// Fused softmax family on the CPU (C++ and OpenMP), float32, rows of a C-contiguous (N, C):
//
//   softmax        y  = exp(x - max) / sum exp(x - max)           backward dx = y (g - sum(g y))
//   log_softmax    y  = x - max - log sum exp(x - max)            backward dx = g - exp(y) sum(g)
//   cross-entropy  loss_n = (1 - eps) w[t] (lse - x[t]) + (eps / C) sum_c w[c] (lse - x[c])
//                  with lse = max + log sum exp(x - max)           (log_softmax is never stored)
//                  backward dx = s_n (a_n exp(x - lse) - (1 - eps) w[t] onehot(t) - (eps/C) w)
//                  (max and the log-sum are kept apart, two floats per row: see ce_forward_row)
//
// The composed NumPy ops (tinytorch/ops/nn.py, the twins these are tested against) make five
// to eight passes over the (N, C) array, each allocating a temporary; here a row of C floats
// (a few KB, it stays in L1) is read two or three times and written once, and rows run on the
// OpenMP threads. The cross-entropy saves two floats per row (max, log-sum) instead of the
// (N, C) log-probabilities, and its backward rebuilds softmax from x and them.
//
// exp here is not simd.h's vexp2_neg: every argument is x - max <= 0, but softmax's small
// entries are outputs (not only weights summed into an output as in attention), so it needs
// float32 accuracy down to the denormals: Cody-Waite reduction x = n ln2 + r, a degree-7
// polynomial for exp(r) (|r| <= ln2/2, relative error below 1e-7), and 2^n built as two
// halves so results below 2^-126 come out as denormals, as NumPy's do.
//
// Special rows, as NumPy and PyTorch: a NaN anywhere, a +inf, or an all -inf row gives NaN
// (0/0); with zero_masked (attention's masked softmax) an all -inf row gives 0 instead.
// Pointers arrive as integers; tinytorch/kernels/softmax.py checked dtype, contiguity, shapes
// and targets once. The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common.h"
#include "simd.h"

namespace py = pybind11;

namespace tt {
namespace {

using namespace simd;
using i64 = std::int64_t;

constexpr i64 kBlockElems = 1 << 14;   // about this many elements per OpenMP task
constexpr i64 kParallelMin = 1 << 17;  // below: one thread (waking threads: kernels/elementwise.h)
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// exp(x) for x <= 0 (and -inf, which gives 0), float32-accurate including denormals.
template <int W>
inline vec<W> vexp_neg(vec<W> x) {
    const vec<W> zero = vec<W>{};
    const auto dead = x < -104.f;  // exp(-104) < half the smallest denormal: exactly 0
    x = dead ? zero - 104.f : x;
    const vec<W> t = x * 1.44269504088896341f + 0.5f;  // n = floor(x log2(e) + 1/2)
    ivec<W> n = __builtin_convertvector(t, ivec<W>);         // (truncates toward zero)
    n = __builtin_convertvector(n, vec<W>) > t ? n - 1 : n;
    const vec<W> nf = __builtin_convertvector(n, vec<W>);
    const vec<W> r = (x - nf * 0.693145751953125f) - nf * 1.428606765330187e-06f;
    vec<W> p = 1.9841270e-4f + zero;  // 1/7!, ..., exp(r) by Horner
    p = p * r + 1.3888889e-3f;
    p = p * r + 8.3333333e-3f;
    p = p * r + 4.1666667e-2f;
    p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    const ivec<W> h = n >> 1;  // 2^n = 2^h 2^(n-h): each half is a normal float for n >= -252
    const ivec<W> b1 = (h + 127) << 23, b2 = (n - h + 127) << 23;
    vec<W> s1, s2;
    std::memcpy(&s1, &b1, sizeof s1);
    std::memcpy(&s2, &b2, sizeof s2);
    return dead ? zero : (x != x ? x : p * s1 * s2);  // NaN stays NaN
}

// The first n (< W) floats at p, the rest of the vector `fill`.
template <int W>
inline vec<W> load_tail(const float* p, i64 n, float fill) {
    float buf[W];
    for (int i = 0; i < W; ++i) buf[i] = i < n ? p[i] : fill;
    return vload<W>(buf);
}
template <int W>
inline void store_tail(float* p, i64 n, vec<W> v) {
    float buf[W];
    vstore<W>(buf, v);
    std::memcpy(p, buf, n * sizeof(float));
}

// max over the row (NaN if the row holds one); `bad` is set when the softmax of this row is NaN
// for NumPy (a NaN, a +inf, or every entry -inf).
template <int W>
inline float row_max(const float* x, i64 C, bool* bad) {
    vec<W> m = vec<W>{} - kInf;
    ivec<W> nan = ivec<W>{};
    i64 i = 0;
    for (; i + W <= C; i += W) {
        const vec<W> v = vload<W>(x + i);
        nan |= (v != v);
        m = vmax<W>(m, v);
    }
    if (i < C) {
        const vec<W> v = load_tail<W>(x + i, C - i, -kInf);
        nan |= (v != v);
        m = vmax<W>(m, v);
    }
    bool any_nan = false;
    for (int k = 0; k < W; ++k) any_nan |= nan[k] != 0;
    const float mx = any_nan ? kNaN : hmax<W>(m);  // (vmax skips NaNs: say so here)
    *bad = any_nan || mx == kInf || mx == -kInf;
    return mx;
}

// sum over the row of exp(x - m), optionally writing each exp(x - m) to y.
template <int W, bool kStore>
inline float row_exp_sum(const float* x, float* y, i64 C, float m) {
    vec<W> s = vec<W>{};
    i64 i = 0;
    for (; i + W <= C; i += W) {
        const vec<W> e = vexp_neg<W>(vload<W>(x + i) - m);
        if (kStore) vstore<W>(y + i, e);
        s += e;
    }
    if (i < C) {
        const vec<W> e = vexp_neg<W>(load_tail<W>(x + i, C - i, -kInf) - m);  // pads give 0
        if (kStore) store_tail<W>(y + i, C - i, e);
        s += e;
    }
    return hsum<W>(s);
}

template <int W>
inline float row_dot(const float* a, const float* b, i64 C) {
    vec<W> s = vec<W>{};
    i64 i = 0;
    for (; i + W <= C; i += W) s += vload<W>(a + i) * vload<W>(b + i);
    if (i < C) s += load_tail<W>(a + i, C - i, 0.f) * load_tail<W>(b + i, C - i, 0.f);
    return hsum<W>(s);
}

template <int W>
inline float row_sum(const float* a, i64 C) {
    vec<W> s = vec<W>{};
    i64 i = 0;
    for (; i + W <= C; i += W) s += vload<W>(a + i);
    if (i < C) s += load_tail<W>(a + i, C - i, 0.f);
    return hsum<W>(s);
}

inline void fill_row(float* y, i64 C, float v) { std::fill(y, y + C, v); }

// ---- softmax ------------------------------------------------------------------------------
template <int W>
inline void softmax_row(const float* x, float* y, i64 C, bool zero_masked) {
    // BEGIN EXERCISE ch12: fused_softmax_rows - m = row_max, y = vexp_neg(x - m) summed (row_exp_sum<W, true>), y *= 1/sum; bad rows: NaN, or 0 if zero_masked and all -inf
    bool bad = false;
    const float m = row_max<W>(x, C, &bad);
    if (bad) {  // NaN, +inf, or all -inf: NaN as NumPy, except attention's fully masked row
        fill_row(y, C, zero_masked && m == -kInf ? 0.f : kNaN);
        return;
    }
    const float s = row_exp_sum<W, true>(x, y, C, m);
    const vec<W> inv = vec<W>{} + 1.f / s;
    i64 i = 0;
    for (; i + W <= C; i += W) vstore<W>(y + i, vload<W>(y + i) * inv);
    for (; i < C; ++i) y[i] *= inv[0];
    // END EXERCISE
}

template <int W>
inline void softmax_backward_row(const float* y, const float* g, float* dx, i64 C) {
    const vec<W> d = vec<W>{} + row_dot<W>(g, y, C);  // dx = y (g - sum(g y))
    i64 i = 0;
    for (; i + W <= C; i += W)
        vstore<W>(dx + i, vload<W>(y + i) * (vload<W>(g + i) - d));
    for (; i < C; ++i) dx[i] = y[i] * (g[i] - d[0]);
}

// ---- log_softmax --------------------------------------------------------------------------
template <int W>
inline void log_softmax_row(const float* x, float* y, i64 C) {
    bool bad = false;
    const float m = row_max<W>(x, C, &bad);
    if (bad) {
        fill_row(y, C, kNaN);
        return;
    }
    // (x - m) - log s, not x - (m + log s): with logits of 1e4, m + log s would round away
    // the digits that log s carries
    const float ls = std::log(row_exp_sum<W, false>(x, nullptr, C, m));
    const vec<W> mv = vec<W>{} + m, lv = vec<W>{} + ls;
    i64 i = 0;
    for (; i + W <= C; i += W) vstore<W>(y + i, (vload<W>(x + i) - mv) - lv);
    for (; i < C; ++i) y[i] = (x[i] - m) - ls;
}

template <int W>
inline void log_softmax_backward_row(const float* y, const float* g, float* dx, i64 C) {
    const vec<W> s = vec<W>{} + row_sum<W>(g, C);  // dx = g - exp(y) sum(g)
    i64 i = 0;
    for (; i + W <= C; i += W)
        vstore<W>(dx + i, vload<W>(g + i) - vexp_neg<W>(vload<W>(y + i)) * s);
    if (i < C) {
        const vec<W> e = vexp_neg<W>(load_tail<W>(y + i, C - i, -kInf));
        for (i64 k = 0; i + k < C; ++k) dx[i + k] = g[i + k] - e[k] * s[0];
    }
}

// ---- cross-entropy (class-index targets) --------------------------------------------------
struct CeArgs {
    const float* w;   // (C,) class weights, or nullptr (all ones)
    float wsum;       // sum of w (C without weights)
    i64 ignore;       // ignore_index
    float eps;        // label smoothing
};

// loss of one row and its max m and log-sum ls (lse = m + ls, kept apart: -log p[c] is
// (m - x[c]) + ls, exact to float32 even for logits of 1e4, where m + ls would round away the
// digits of ls); an ignored row gives loss 0 (m and ls still set).
template <int W>
inline void ce_forward_row(const float* x, i64 t, float* loss, float* stats, i64 C,
                           const CeArgs& a) {
    bool bad = false;
    const float m = row_max<W>(x, C, &bad);
    const float ls = bad ? kNaN : std::log(row_exp_sum<W, false>(x, nullptr, C, m));
    stats[0] = m;
    stats[1] = ls;
    if (t == a.ignore) {
        *loss = 0.f;
        return;
    }
    const float wt = a.w ? a.w[t] : 1.f;
    float out = (1.f - a.eps) * wt * ((m - x[t]) + ls);
    if (a.eps != 0.f) {  // (eps / C) sum_c w[c] (-log p[c]): every term >= 0, no cancellation
        float s = 0.f;
        if (a.w) {
            for (i64 c = 0; c < C; ++c) s += a.w[c] * ((m - x[c]) + ls);
        } else {
            for (i64 c = 0; c < C; ++c) s += (m - x[c]) + ls;
        }
        out += a.eps / static_cast<float>(C) * s;
    }
    *loss = out;
}

// dx of one row, scaled by s (the upstream gradient of this row's loss, / the weight total for
// 'mean'); an ignored row gets 0.
template <int W>
inline void ce_backward_row(const float* x, i64 t, const float* stats, float s, float* dx, i64 C,
                            const CeArgs& a) {
    if (t == a.ignore) {
        fill_row(dx, C, 0.f);
        return;
    }
    const float wt = a.w ? a.w[t] : 1.f;
    const float k = (a.w ? (1.f - a.eps) * wt + a.eps / static_cast<float>(C) * a.wsum : 1.f) * s;
    const vec<W> m = vec<W>{} + stats[0], ls = vec<W>{} + stats[1];  // p = exp((x - m) - ls)
    i64 i = 0;
    for (; i + W <= C; i += W) vstore<W>(dx + i, vexp_neg<W>((vload<W>(x + i) - m) - ls) * k);
    if (i < C) {
        const vec<W> xt = load_tail<W>(x + i, C - i, -kInf);
        store_tail<W>(dx + i, C - i, vexp_neg<W>((xt - m) - ls) * k);
    }
    dx[t] -= (1.f - a.eps) * wt * s;
    if (a.eps != 0.f) {
        const float e = a.eps / static_cast<float>(C) * s;
        if (a.w) {
            for (i64 c = 0; c < C; ++c) dx[c] -= e * a.w[c];
        } else {
            for (i64 c = 0; c < C; ++c) dx[c] -= e;
        }
    }
}

// ---- per-ISA entry points over a range of rows ----------------------------------------------
typedef void (*SmFwd)(const float*, float*, i64, i64, i64, bool);
typedef void (*RowBwd)(const float*, const float*, float*, i64, i64, i64);
typedef void (*LsmFwd)(const float*, float*, i64, i64, i64);
typedef void (*CeFwd)(const float*, const std::int64_t*, float*, float*, i64, i64, i64,
                      const CeArgs&);
typedef void (*CeBwd)(const float*, const std::int64_t*, const float*, const float*, float*, i64,
                      i64, i64, const CeArgs&);

#define TT_SOFTMAX_ENTRIES(isa, attr, W)                                                        \
    attr void sm_fwd_##isa(const float* x, float* y, i64 r0, i64 r1, i64 C, bool zm) {         \
        for (i64 r = r0; r < r1; ++r) softmax_row<W>(x + r * C, y + r * C, C, zm);            \
    }                                                                                        \
    attr void sm_bwd_##isa(const float* y, const float* g, float* dx, i64 r0, i64 r1, i64 C) { \
        for (i64 r = r0; r < r1; ++r)                                                        \
            softmax_backward_row<W>(y + r * C, g + r * C, dx + r * C, C);                    \
    }                                                                                        \
    attr void lsm_fwd_##isa(const float* x, float* y, i64 r0, i64 r1, i64 C) {                 \
        for (i64 r = r0; r < r1; ++r) log_softmax_row<W>(x + r * C, y + r * C, C);            \
    }                                                                                        \
    attr void lsm_bwd_##isa(const float* y, const float* g, float* dx, i64 r0, i64 r1, i64 C) { \
        for (i64 r = r0; r < r1; ++r)                                                        \
            log_softmax_backward_row<W>(y + r * C, g + r * C, dx + r * C, C);                \
    }                                                                                        \
    attr void ce_fwd_##isa(const float* x, const std::int64_t* t, float* loss, float* lse,    \
                           i64 r0, i64 r1, i64 C, const CeArgs& a) {                           \
        for (i64 r = r0; r < r1; ++r)                                                        \
            ce_forward_row<W>(x + r * C, t[r], loss + r, lse + 2 * r, C, a);                  \
    }                                                                                        \
    attr void ce_bwd_##isa(const float* x, const std::int64_t* t, const float* lse,            \
                           const float* s, float* dx, i64 r0, i64 r1, i64 C, const CeArgs& a) { \
        for (i64 r = r0; r < r1; ++r)                                                        \
            ce_backward_row<W>(x + r * C, t[r], lse + 2 * r, s[r], dx + r * C, C, a);         \
    }
TT_FOR_EACH_ISA(TT_SOFTMAX_ENTRIES)

// body(r0, r1) over blocks of rows of about kBlockElems elements, on the OpenMP threads when
// the array is large; exceptions (the exercise's stub) come out as Python errors.
template <class Body>
void over_rows(i64 N, i64 C, Body body) {
    const i64 rows = std::max<i64>(1, kBlockElems / std::max<i64>(1, C));
    const i64 blocks = (N + rows - 1) / rows;
    parallel_for(blocks, N * C >= kParallelMin, 1,
                 [&](i64 b) { body(b * rows, std::min(N, (b + 1) * rows)); });
}

}  // namespace
}  // namespace tt

void register_softmax(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    const auto rel = py::call_guard<py::gil_scoped_release>();
    m.def(
        "softmax_forward_cpu",
        [](u x, u y, i64 N, i64 C, bool zero_masked) {
            const SmFwd f = TT_PICK_ISA(sm_fwd);
            const float* xp = ptr_of<const float>(x);
            float* yp = ptr_of<float>(y);
            over_rows(N, C, [&](i64 a, i64 b) { f(xp, yp, a, b, C, zero_masked); });
        },
        py::arg("x"), py::arg("y"), py::arg("N"), py::arg("C"), py::arg("zero_masked"), rel,
        "y = softmax of each row of x (N, C) (host pointers as integers)");
    m.def(
        "softmax_backward_cpu",
        [](u y, u g, u dx, i64 N, i64 C) {
            const RowBwd f = TT_PICK_ISA(sm_bwd);
            const float *yp = ptr_of<const float>(y), *gp = ptr_of<const float>(g);
            float* dp = ptr_of<float>(dx);
            over_rows(N, C, [&](i64 a, i64 b) { f(yp, gp, dp, a, b, C); });
        },
        py::arg("y"), py::arg("grad"), py::arg("dx"), py::arg("N"), py::arg("C"), rel,
        "dx = y * (grad - sum(grad * y)) per row");
    m.def(
        "log_softmax_forward_cpu",
        [](u x, u y, i64 N, i64 C) {
            const LsmFwd f = TT_PICK_ISA(lsm_fwd);
            const float* xp = ptr_of<const float>(x);
            float* yp = ptr_of<float>(y);
            over_rows(N, C, [&](i64 a, i64 b) { f(xp, yp, a, b, C); });
        },
        py::arg("x"), py::arg("y"), py::arg("N"), py::arg("C"), rel,
        "y = x - max - log(sum(exp(x - max))) per row");
    m.def(
        "log_softmax_backward_cpu",
        [](u y, u g, u dx, i64 N, i64 C) {
            const RowBwd f = TT_PICK_ISA(lsm_bwd);
            const float *yp = ptr_of<const float>(y), *gp = ptr_of<const float>(g);
            float* dp = ptr_of<float>(dx);
            over_rows(N, C, [&](i64 a, i64 b) { f(yp, gp, dp, a, b, C); });
        },
        py::arg("y"), py::arg("grad"), py::arg("dx"), py::arg("N"), py::arg("C"), rel,
        "dx = grad - exp(y) * sum(grad) per row");
    m.def(
        "cross_entropy_forward_cpu",
        [](u x, u t, u w, float wsum, u loss, u lse, i64 N, i64 C, i64 ignore, float eps) {
            const CeFwd f = TT_PICK_ISA(ce_fwd);
            const CeArgs a{w ? ptr_of<const float>(w) : nullptr, wsum, ignore, eps};
            const float* xp = ptr_of<const float>(x);
            const std::int64_t* tp = ptr_of<const std::int64_t>(t);
            float *lp = ptr_of<float>(loss), *sp = ptr_of<float>(lse);
            over_rows(N, C, [&](i64 r0, i64 r1) { f(xp, tp, lp, sp, r0, r1, C, a); });
        },
        py::arg("x"), py::arg("target"), py::arg("weight"), py::arg("weight_sum"),
        py::arg("loss"), py::arg("lse"), py::arg("N"), py::arg("C"), py::arg("ignore_index"),
        py::arg("label_smoothing"), rel,
        "per-row cross-entropy loss (N,) and (max, log sum exp(x - max)) per row (N, 2); "
        "weight 0 = none");
    m.def(
        "cross_entropy_backward_cpu",
        [](u x, u t, u w, float wsum, u lse, u scale, u dx, i64 N, i64 C, i64 ignore,
           float eps) {
            const CeBwd f = TT_PICK_ISA(ce_bwd);
            const CeArgs a{w ? ptr_of<const float>(w) : nullptr, wsum, ignore, eps};
            const float *xp = ptr_of<const float>(x), *lp = ptr_of<const float>(lse),
                        *sp = ptr_of<const float>(scale);
            const std::int64_t* tp = ptr_of<const std::int64_t>(t);
            float* dp = ptr_of<float>(dx);
            over_rows(N, C, [&](i64 r0, i64 r1) { f(xp, tp, lp, sp, dp, r0, r1, C, a); });
        },
        py::arg("x"), py::arg("target"), py::arg("weight"), py::arg("weight_sum"),
        py::arg("lse"), py::arg("scale"), py::arg("dx"), py::arg("N"), py::arg("C"),
        py::arg("ignore_index"), py::arg("label_smoothing"), rel,
        "dx (N, C) of the cross-entropy, each row scaled by scale[n]");
}
