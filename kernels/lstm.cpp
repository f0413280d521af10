// Fused LSTM cell, pointwise part, on the CPU (C++), float32: one call per time step does all
// the elementwise work between two matrix products (which stay BLAS calls from NumPy).
//
//   forward   a = x W_ih^T + b + h W_hh^T (B, 4H), gates i f g o in place:
//             i, f, o = sigmoid(.), g = tanh(.);  c = f c_prev + i g;  tc = tanh(c);  h = o tc
//   backward  with dh, dc the gradients at h_t, c_t (in and out, in place):
//             dh += g_t;  dc += dh o (1 - tc^2);
//             d_i = dc g i(1-i), d_f = dc c_prev f(1-f), d_g = dc i (1-g^2), d_o = dh tc o(1-o)
//             dc *= f  (what reaches c_{t-1}); then dh = d W_hh in NumPy
//
// The composed twin (tinytorch/nn/rnn_fused.py's FusedLSTMLayer, chapter 05's exercise) spends
// about ten NumPy calls per step forward and five per step backward, plus a dozen passes over
// the whole (T, B, 4H) array to precompute the backward's factors; here one call per step
// reads and writes each element once. Steps address rows of the (T, ...) arrays by the index t
// (the Python side passes base addresses once per sequence, not a pointer per view).
//
// sigmoid and tanh use exp of a non-positive argument (Cody-Waite, degree-7 polynomial,
// relative error about 1e-7): sigmoid(x) = 1 / (1 + e) or e / (1 + e) with e = exp(-|x|), and
// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|), or its odd polynomial for |x| < 1/8
// (where 1 - e would cancel).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

#include "common.h"
#include "simd.h"

namespace py = pybind11;

namespace tt {
namespace {

using namespace simd;
using i64 = std::int64_t;

// exp(x) for x <= 0 (x >= -104 here: arguments are -|x| of finite values, clamped).
template <int W>
inline vec<W> lexp_neg(vec<W> x) {
    const vec<W> zero = vec<W>{};
    x = vmax<W>(x, zero - 87.f);  // below, results are far under float32's precision of 1
    const vec<W> t = x * 1.44269504088896341f + 0.5f;
    ivec<W> n = __builtin_convertvector(t, ivec<W>);
    n = __builtin_convertvector(n, vec<W>) > t ? n - 1 : n;  // floor
    const vec<W> nf = __builtin_convertvector(n, vec<W>);
    const vec<W> r = (x - nf * 0.693145751953125f) - nf * 1.428606765330187e-06f;
    vec<W> p = 1.9841270e-4f + zero;
    p = p * r + 1.3888889e-3f;
    p = p * r + 8.3333333e-3f;
    p = p * r + 4.1666667e-2f;
    p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    const ivec<W> bits = (n + 127) << 23;  // n >= -126 after the clamp
    vec<W> s;
    std::memcpy(&s, &bits, sizeof s);
    return p * s;
}

template <int W>
inline vec<W> vabs(vec<W> x) {
    return x < 0.f ? -x : x;
}

template <int W>
inline vec<W> vsigmoid(vec<W> x) {
    const vec<W> e = lexp_neg<W>(-vabs<W>(x));
    const vec<W> s = 1.f / (1.f + e);
    return x >= 0.f ? s : e * s;
}

template <int W>
inline vec<W> vtanh(vec<W> x) {
    const vec<W> ax = vabs<W>(x);
    const vec<W> e = lexp_neg<W>(-2.f * ax);
    vec<W> big = (1.f - e) / (1.f + e);
    const vec<W> x2 = x * x;  // tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 ...
    vec<W> p = 0.021869488536155203f + vec<W>{};
    p = p * x2 - 0.05396825396825397f;
    p = p * x2 + 0.13333333333333333f;
    p = p * x2 - 0.3333333333333333f;
    const vec<W> small = x + x * x2 * p;
    big = x < 0.f ? -big : big;
    return ax < 0.125f ? small : big;
}

// One step's pointwise forward over rows [b0, b1): a (B, 4H) in place, c, tc, h (B, H).
template <int W>
inline void cell_forward(float* a, const float* c_prev, float* c, float* tc, float* h, i64 b0,
                         i64 b1, i64 H) {
    for (i64 b = b0; b < b1; ++b) {
        float* ab = a + b * 4 * H;
        const float* cp = c_prev + b * H;
        float *cb = c + b * H, *tb = tc + b * H, *hb = h + b * H;
        for (i64 j = 0; j < H; j += W) {  // H % W == 0 (checked in Python)
            const vec<W> i = vsigmoid<W>(vload<W>(ab + j));
            const vec<W> f = vsigmoid<W>(vload<W>(ab + H + j));
            const vec<W> g = vtanh<W>(vload<W>(ab + 2 * H + j));
            const vec<W> o = vsigmoid<W>(vload<W>(ab + 3 * H + j));
            const vec<W> cn = f * vload<W>(cp + j) + i * g;
            const vec<W> t = vtanh<W>(cn);
            vstore<W>(ab + j, i);
            vstore<W>(ab + H + j, f);
            vstore<W>(ab + 2 * H + j, g);
            vstore<W>(ab + 3 * H + j, o);
            vstore<W>(cb + j, cn);
            vstore<W>(tb + j, t);
            vstore<W>(hb + j, o * t);
        }
    }
}

// One step's pointwise backward: gates a (B, 4H) (activated), c_prev, tc, g_t (B, H); dh, dc
// (B, H) in place; d (B, 4H) out.
template <int W>
inline void cell_backward(const float* a, const float* c_prev, const float* tc, const float* gt,
                          float* dh, float* dc, float* d, i64 B, i64 H) {
    for (i64 b = 0; b < B; ++b) {
        const float* ab = a + b * 4 * H;
        float* db = d + b * 4 * H;
        for (i64 j = 0; j < H; j += W) {
            const i64 k = b * H + j;
            const vec<W> i = vload<W>(ab + j), f = vload<W>(ab + H + j);
            const vec<W> g = vload<W>(ab + 2 * H + j), o = vload<W>(ab + 3 * H + j);
            const vec<W> t = vload<W>(tc + k);
            const vec<W> h_ = vload<W>(dh + k) + vload<W>(gt + k);
            const vec<W> c_ = vload<W>(dc + k) + h_ * (o * (1.f - t * t));
            vstore<W>(db + j, c_ * (g * (i * (1.f - i))));
            vstore<W>(db + H + j, c_ * (vload<W>(c_prev + k) * (f * (1.f - f))));
            vstore<W>(db + 2 * H + j, c_ * (i * (1.f - g * g)));
            vstore<W>(db + 3 * H + j, h_ * (t * (o * (1.f - o))));
            vstore<W>(dh + k, h_);
            vstore<W>(dc + k, c_ * f);
        }
    }
}

typedef void (*FwdFn)(float*, const float*, float*, float*, float*, i64, i64, i64);
typedef void (*BwdFn)(const float*, const float*, const float*, const float*, float*, float*,
                      float*, i64, i64);
#define TT_LSTM_ENTRIES(isa, attr, W)                                                          \
    attr void fwd_##isa(float* a, const float* cp, float* c, float* tc, float* h, i64 b0,      \
                        i64 b1, i64 H) {                                                      \
        cell_forward<W>(a, cp, c, tc, h, b0, b1, H);                                          \
    }                                                                                         \
    attr void bwd_##isa(const float* a, const float* cp, const float* tc, const float* gt,    \
                        float* dh, float* dc, float* d, i64 B, i64 H) {                        \
        cell_backward<W>(a, cp, tc, gt, dh, dc, d, B, H);                                     \
    }
TT_FOR_EACH_ISA(TT_LSTM_ENTRIES)

int lane_width() {
    switch (current_isa()) {
        case Isa::avx512: return 16;
        case Isa::avx2: return 8;
        default: return 4;
    }
}

template <class T>
T* at(std::uintptr_t base, i64 index, i64 row) {  // element `index * row` of a float array
    return reinterpret_cast<T*>(base) + index * row;
}

}  // namespace
}  // namespace tt

void register_lstm(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    m.def("lstm_lane_width", &lane_width,
          "floats per vector of the LSTM cell kernels now (H must be a multiple of it)");
    m.def(
        "lstm_cell_forward_cpu",
        [](u acts, u c_prev, u cs, u tcs, u out, i64 t, i64 B, i64 H) {
            const FwdFn f = TT_PICK_ISA(fwd);
            const i64 BH = B * H;
            f(at<float>(acts, t, 4 * BH), reinterpret_cast<const float*>(c_prev),
              at<float>(cs, t, BH), at<float>(tcs, t, BH), at<float>(out, t, BH), 0, B, H);
        },
        py::arg("acts"), py::arg("c_prev"), py::arg("cs"), py::arg("tcs"), py::arg("out"),
        py::arg("t"), py::arg("B"), py::arg("H"), py::call_guard<py::gil_scoped_release>(),
        "step t: gates of acts[t] in place, cs[t] = c, tcs[t] = tanh(c), out[t] = h");
    m.def(
        "lstm_cell_backward_cpu",
        [](u acts, u c_prev, u tcs, u g, u dh, u dc, u d, i64 t, i64 B, i64 H) {
            const BwdFn f = TT_PICK_ISA(bwd);
            const i64 BH = B * H;
            f(at<const float>(acts, t, 4 * BH), reinterpret_cast<const float*>(c_prev),
              at<const float>(tcs, t, BH), at<const float>(g, t, BH), reinterpret_cast<float*>(dh),
              reinterpret_cast<float*>(dc), at<float>(d, t, 4 * BH), B, H);
        },
        py::arg("acts"), py::arg("c_prev"), py::arg("tcs"), py::arg("grad"), py::arg("dh"),
        py::arg("dc"), py::arg("d"), py::arg("t"), py::arg("B"), py::arg("H"),
        py::call_guard<py::gil_scoped_release>(),
        "step t of the backward: d[t] (gate pre-activation gradients), dh and dc in place");
}
