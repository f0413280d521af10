// Elementwise ops, reductions and copies on the CPU (C++ and OpenMP), float32: the everyday ops
// of tinytorch/ops (exp, tanh, sigmoid, relu, add, mul, sum, mean, transpose + reshape, cat) for
// large arrays.
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
//   sums            over everything, over the last dim (one value per row; x scale for mean),
//                   over the rows (the backward of broadcasting a row; optionally of g * y)
//   copy            a strided 3-d view into a C-contiguous array: plain copies, broadcasts
//                   (stride 0: fills), row slices (cat's backward), and transposed layouts in
//                   32 x 32 tiles that stay in cache (transpose + reshape)
//
// exp is Cody-Waite range reduction plus a degree-7 polynomial (Cephes' expf; within 2 ulp),
// tanh an odd polynomial for |x| < 0.625 (Cephes' tanhf) and (1 - e)/(1 + e), e = exp(-2|x|),
// beyond; sigmoid 1/(1 + e) or e/(1 + e), e = exp(-|x|), so nothing overflows. Sums accumulate
// in float vectors over blocks of kBlock elements and add the blocks in double (at least as
// accurate as NumPy's pairwise sum). The math runs on vec<W> (kernels/simd.h), one copy per
// instruction set. The bindings take raw host pointers and sizes: tinytorch/kernels/
// elementwise.py has checked dtype, contiguity and shapes, once.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "common.h"
#include "simd.h"

namespace py = pybind11;

namespace tt {
namespace {

using namespace simd;
using i64 = std::int64_t;

constexpr i64 kChunk = 1 << 14;        // elements per OpenMP task
constexpr i64 kParallelMin = 1 << 16;  // below: one thread (waking threads costs more)
constexpr i64 kBlock = 1024;           // float accumulation before a sum moves to double

enum Unary { kExp = 0, kTanh = 1, kSigmoid = 2, kRelu = 3 };
enum Binary { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3 };

// ---- vector math ---------------------------------------------------------------------------
template <int W>
inline vec<W> vsplat(float v) {
    return vec<W>{} + v;
}

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

// ---- loops over one range: whole vectors, then the tail through zero-padded vectors ----------
// Elements before y + i is 64-byte aligned: stores that straddle two cache lines cost about
// 20% of a memory-bound loop (NumPy's arrays are only 16-byte aligned).
inline i64 head_to_align(const float* y, i64 n) {
    return std::min<i64>(n, ((0 - reinterpret_cast<std::uintptr_t>(y)) & 63) / sizeof(float));
}

template <int W, class F>
inline void map1_part(const float* x, float* y, i64 n, F f) {  // n < W
    float b[W] = {};
    std::memcpy(b, x, n * sizeof(float));
    vstore<W>(b, f(vload<W>(b)));
    std::memcpy(y, b, n * sizeof(float));
}

template <int W, class F>
inline void map1(const float* x, float* y, i64 n, F f) {
    i64 i = std::min<i64>(head_to_align(y, n), W - 1);
    if (i) map1_part<W>(x, y, i, f);
    for (; i + W <= n; i += W) vstore<W>(y + i, f(vload<W>(x + i)));
    if (i < n) map1_part<W>(x + i, y + i, n - i, f);
}

template <int W, class F>
inline void map2_part(const float* x, const float* z, float* y, i64 n, F f) {  // n < W
    float bx[W] = {}, bz[W] = {};
    std::memcpy(bx, x, n * sizeof(float));
    std::memcpy(bz, z, n * sizeof(float));
    vstore<W>(bx, f(vload<W>(bx), vload<W>(bz)));
    std::memcpy(y, bx, n * sizeof(float));
}

template <int W, class F>
inline void map2(const float* x, const float* z, float* y, i64 n, F f) {
    i64 i = std::min<i64>(head_to_align(y, n), W - 1);
    if (i) map2_part<W>(x, z, y, i, f);
    for (; i + W <= n; i += W) vstore<W>(y + i, f(vload<W>(x + i), vload<W>(z + i)));
    if (i < n) map2_part<W>(x + i, z + i, y + i, n - i, f);
}

// d[0, n) = s[0, n) with aligned stores (glibc's memcpy, which picks `rep movsb` for pieces of
// this size, ran at half speed on misaligned NumPy arrays). The empty asm keeps GCC from
// turning the loop back into a memcpy call.
template <int W>
inline void copy_row(const float* s, float* d, i64 n) {
    i64 i = head_to_align(d, n);
    for (i64 k = 0; k < i; ++k) d[k] = s[k];
    for (; i + 4 * W <= n; i += 4 * W) {
        const vec<W> a = vload<W>(s + i), b = vload<W>(s + i + W);
        const vec<W> c = vload<W>(s + i + 2 * W), e = vload<W>(s + i + 3 * W);
        vstore<W>(d + i, a);
        vstore<W>(d + i + W, b);
        vstore<W>(d + i + 2 * W, c);
        vstore<W>(d + i + 3 * W, e);
        asm volatile("" ::: "memory");
    }
    for (; i < n; ++i) d[i] = s[i];
}

// W x W block transpose in registers: r[k][l] becomes r[l][k]. log2(W) rounds of "interleave
// the low halves of rows k and k + W/2, then the high halves" (a perfect shuffle of rows and
// columns at once; after log2(W) of them each element has moved to its transposed place).
template <int W>
inline void transpose_block(vec<W>* r) {
    ivec<W> lo, hi;
    for (int k = 0; k < W / 2; ++k) {
        lo[2 * k] = k, lo[2 * k + 1] = k + W;
        hi[2 * k] = k + W / 2, hi[2 * k + 1] = k + W / 2 + W;
    }
    for (int round = 1; round < W; round *= 2) {
        vec<W> t[W];
        for (int k = 0; k < W / 2; ++k) {
            t[2 * k] = __builtin_shuffle(r[k], r[k + W / 2], lo);
            t[2 * k + 1] = __builtin_shuffle(r[k], r[k + W / 2], hi);
        }
        for (int k = 0; k < W; ++k) r[k] = t[k];
    }
}

// d[i * ld + j] = s[i + j * sj] for i < ni, j < nj (s is contiguous along i, d along j): W x W
// blocks through registers, so each block reads W source and writes W destination pieces of
// W floats (a cache line at W = 16) instead of striding through memory element by element.
template <int W>
inline void transpose_copy(const float* s, i64 sj, float* d, i64 ld, i64 ni, i64 nj) {
    i64 j0 = 0;
    for (; j0 + W <= nj; j0 += W) {
        i64 i0 = 0;
        for (; i0 + W <= ni; i0 += W) {
            vec<W> r[W];
            for (int k = 0; k < W; ++k) r[k] = vload<W>(s + (j0 + k) * sj + i0);
            transpose_block<W>(r);
            for (int k = 0; k < W; ++k) vstore<W>(d + (i0 + k) * ld + j0, r[k]);
        }
        for (; i0 < ni; ++i0)
            for (i64 j = j0; j < j0 + W; ++j) d[i0 * ld + j] = s[i0 + j * sj];
    }
    for (i64 i = 0; i < ni; ++i)
        for (i64 j = j0; j < nj; ++j) d[i * ld + j] = s[i + j * sj];
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

// sum of x[0, n) (times y when given), in float vectors per kBlock, blocks added in double
template <int W>
inline double sum_range(const float* x, const float* y, i64 n) {
    double total = 0.0;
    for (i64 s = 0; s < n; s += kBlock) {
        const i64 m = std::min(kBlock, n - s);
        vec<W> a0{}, a1{};
        i64 i = 0;
        if (y) {
            for (; i + 2 * W <= m; i += 2 * W) {
                a0 += vload<W>(x + s + i) * vload<W>(y + s + i);
                a1 += vload<W>(x + s + i + W) * vload<W>(y + s + i + W);
            }
        } else {
            for (; i + 2 * W <= m; i += 2 * W) {
                a0 += vload<W>(x + s + i);
                a1 += vload<W>(x + s + i + W);
            }
        }
        float t = hsum<W>(a0 + a1);
        for (; i < m; ++i) t += y ? x[s + i] * y[s + i] : x[s + i];
        total += t;
    }
    return total;
}

// acc[0, cols) += x[row] (* y[row]) for rows [0, rows) of a (rows, cols) block
template <int W>
inline void colsum_rows(const float* x, const float* y, float* acc, i64 rows, i64 cols) {
    for (i64 r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        const float* yr = y ? y + r * cols : nullptr;
        i64 j = 0;
        for (; j + W <= cols; j += W) {
            vec<W> v = vload<W>(xr + j);
            if (yr) v *= vload<W>(yr + j);
            vstore<W>(acc + j, vload<W>(acc + j) + v);
        }
        for (; j < cols; ++j) acc[j] += yr ? xr[j] * yr[j] : xr[j];
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
    double (*sum)(const float*, const float*, i64);
    void (*colsum)(const float*, const float*, float*, i64, i64);
    void (*copy_row)(const float*, float*, i64);
    void (*transpose_copy)(const float*, i64, float*, i64, i64, i64);
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
    attr double sum_##isa(const float* x, const float* y, i64 n) {                          \
        return sum_range<W>(x, y, n);                                                       \
    }                                                                                       \
    attr void colsum_##isa(const float* x, const float* y, float* acc, i64 rows, i64 cols) { \
        colsum_rows<W>(x, y, acc, rows, cols);                                              \
    }                                                                                       \
    attr void copy_row_##isa(const float* s, float* d, i64 n) { copy_row<W>(s, d, n); }     \
    attr void transpose_copy_##isa(const float* s, i64 sj, float* d, i64 ld, i64 ni,        \
                                   i64 nj) {                                                \
        transpose_copy<W>(s, sj, d, ld, ni, nj);                                            \
    }                                                                                       \
    const Table table_##isa = {unary_fwd_##isa,     unary_bwd_##isa, binary_##isa,          \
                               binary_scalar_##isa, div_bwd_##isa,   mul_bwd_##isa,         \
                               sum_##isa,           colsum_##isa,    copy_row_##isa,        \
                               transpose_copy_##isa};
#if TT_X86
TT_EW_ENTRIES(avx512, TT_ENTRY("avx512f,fma"), 16)
TT_EW_ENTRIES(avx2, TT_ENTRY("avx2,fma"), 8)
#endif
TT_EW_ENTRIES(base, TT_BASE_ENTRY, 4)

const Table& table() {
#if TT_X86
    return *simd::pick<const Table*>(&table_avx512, &table_avx2, &table_base);
#else
    return table_base;
#endif
}

// [0, n) in chunks of `chunk` elements over the threads, or one call when small.
template <class Fn>
void parallel_chunks(i64 n, i64 chunk, Fn fn) {
    if (n < kParallelMin) {
        if (n > 0) fn(0, n);
        return;
    }
    const i64 chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (i64 c = 0; c < chunks; ++c) fn(c * chunk, std::min(n, (c + 1) * chunk));
}

// Rows [0, rows) of `cols` elements in blocks of about kChunk elements.
template <class Fn>
void parallel_rows(i64 rows, i64 cols, Fn fn) {
    const i64 per = std::max<i64>(1, kChunk / std::max<i64>(cols, 1));
    if (rows * cols < kParallelMin) {
        if (rows > 0) fn(0, rows);
        return;
    }
    const i64 blocks = (rows + per - 1) / per;
#pragma omp parallel for schedule(static)
    for (i64 c = 0; c < blocks; ++c) fn(c * per, std::min(rows, (c + 1) * per));
}

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

double sum_all(const float* x, i64 n) {
    const auto fn = table().sum;
    if (n < kParallelMin) return fn(x, nullptr, n);
    const i64 chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(chunks);
#pragma omp parallel for schedule(static)
    for (i64 c = 0; c < chunks; ++c)
        part[c] = fn(x + c * kChunk, nullptr, std::min(kChunk, n - c * kChunk));
    double t = 0.0;
    for (double p : part) t += p;
    return t;
}

// out[r] = scale * sum of row r of x (rows, cols)
void sum_lastdim(const float* x, float* out, i64 rows, i64 cols, double scale) {
    const auto fn = table().sum;
    parallel_rows(rows, cols, [&](i64 r0, i64 r1) {
        for (i64 r = r0; r < r1; ++r) out[r] = static_cast<float>(fn(x + r * cols, nullptr, cols) * scale);
    });
}

// out[j] = sum over rows of x[r, j] (* y[r, j]): each thread sums 64 rows at a time into its own
// float row and adds that into its double row; the threads' rows are added last.
void colsum(const float* x, const float* y, float* out, i64 rows, i64 cols) {
    const auto fn = table().colsum;
    constexpr i64 per = 64;  // rows summed in float before the move to double
    const i64 blocks = (rows + per - 1) / per;
    const bool parallel = rows * cols >= kParallelMin;
    std::vector<std::vector<double>> totals;
#pragma omp parallel if (parallel)
    {
#pragma omp single
        totals.resize(omp_get_num_threads());
        const int me = omp_get_thread_num();
        std::vector<double>& tot = totals[me];
        tot.assign(cols, 0.0);
        std::vector<float> acc(cols);
#pragma omp for schedule(static)
        for (i64 c = 0; c < blocks; ++c) {
            const i64 r0 = c * per, r1 = std::min(rows, r0 + per);
            std::fill(acc.begin(), acc.end(), 0.f);
            fn(x + r0 * cols, y ? y + r0 * cols : nullptr, acc.data(), r1 - r0, cols);
            for (i64 j = 0; j < cols; ++j) tot[j] += acc[j];
        }
    }
    for (i64 j = 0; j < cols; ++j) {
        double t = 0.0;
        for (const auto& tot : totals) t += tot[j];
        out[j] = static_cast<float>(t);
    }
}

// dst (n0, n1, n2) from src with element strides (s0, s1, s2) >= 0; dst's rows (the last axis)
// are contiguous and `ld` elements apart (n2: C-contiguous; more: a band of a wider array, as
// cat writes its inputs side by side).
void copy3d(const float* src, float* dst, i64 n0, i64 n1, i64 n2, i64 s0, i64 s1, i64 s2,
            i64 ld) {
    const bool parallel = n0 * n1 * n2 >= kParallelMin;
    const Table& k = table();
    if (s2 <= 1) {  // rows: contiguous (memcpy) or one value repeated (fill)
        const i64 rows = n0 * n1, pieces = (n2 + kChunk - 1) / kChunk;  // long rows: pieces
#pragma omp parallel for schedule(static) if (parallel)
        for (i64 item = 0; item < rows * pieces; ++item) {
            const i64 r = item / pieces, a = (item % pieces) * kChunk;
            const i64 m = std::min(n2, a + kChunk) - a;
            const float* s = src + (r / n1) * s0 + (r % n1) * s1 + a * s2;
            float* d = dst + r * ld + a;
            if (s2 == 1)
                k.copy_row(s, d, m);
            else
                std::fill(d, d + m, *s);
        }
        return;
    }
    if (s1 == 1) {  // a transposed layout: bands of 64 rows of d, W x W blocks in registers
        constexpr i64 B = 64;
        const i64 bands = (n1 + B - 1) / B;
#pragma omp parallel for schedule(static) if (parallel)
        for (i64 t = 0; t < n0 * bands; ++t) {
            const i64 i0 = t / bands, a = (t % bands) * B;
            k.transpose_copy(src + i0 * s0 + a, s2, dst + (i0 * n1 + a) * ld, ld,
                             std::min(B, n1 - a), n2);
        }
        return;
    }
    // both axes strided (a[::2, ::3].T): 32 x 32 tiles of (n1, n2), both sides in cache
    constexpr i64 T = 32;
    const i64 t1 = (n1 + T - 1) / T, t2 = (n2 + T - 1) / T;
#pragma omp parallel for schedule(static) if (parallel)
    for (i64 t = 0; t < n0 * t1; ++t) {
        const i64 i0 = t / t1, a0 = (t % t1) * T, a1 = std::min(n1, a0 + T);
        const float* s = src + i0 * s0;
        float* d = dst + i0 * n1 * ld;
        for (i64 b = 0; b < t2; ++b) {
            const i64 b0 = b * T, b1 = std::min(n2, b0 + T);
            for (i64 j = b0; j < b1; ++j)
                for (i64 i = a0; i < a1; ++i) d[i * ld + j] = s[i * s1 + j * s2];
        }
    }
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
    m.def(
        "ew_sum_cpu", [](u x, i64 n) { return sum_all(ptr_of<const float>(x), n); },
        py::arg("x"), py::arg("n"), g, "the sum of n float32s, as a double");
    m.def(
        "ew_sum_lastdim_cpu",
        [](u x, u out, i64 rows, i64 cols, double scale) {
            sum_lastdim(ptr_of<const float>(x), ptr_of<float>(out), rows, cols, scale);
        },
        py::arg("x"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("scale"), g,
        "out[r] = scale * sum(x[r, :]) for x (rows, cols)");
    m.def(
        "ew_colsum_cpu",
        [](u x, u y, u out, i64 rows, i64 cols) {
            colsum(ptr_of<const float>(x), ptr_of<const float>(y), ptr_of<float>(out), rows,
                   cols);
        },
        py::arg("x"), py::arg("y"), py::arg("out"), py::arg("rows"), py::arg("cols"), g,
        "out[j] = sum over r of x[r, j] (* y[r, j] unless y is 0) for x (rows, cols)");
    m.def(
        "ew_copy_cpu",
        [](u src, u dst, i64 n0, i64 n1, i64 n2, i64 s0, i64 s1, i64 s2, i64 ld) {
            copy3d(ptr_of<const float>(src), ptr_of<float>(dst), n0, n1, n2, s0, s1, s2, ld);
        },
        py::arg("src"), py::arg("dst"), py::arg("n0"), py::arg("n1"), py::arg("n2"),
        py::arg("s0"), py::arg("s1"), py::arg("s2"), py::arg("ld"), g,
        "dst (n0, n1, n2), rows ld elements apart, = src read with element strides "
        "(s0, s1, s2) >= 0");
}
