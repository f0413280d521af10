// What the CPU kernel families elementwise.cpp, reduce.cpp and copy.cpp share: the sizes at
// which they split work over OpenMP threads, and the loops that apply a vector function over a
// range (whole vectors with 64-byte-aligned stores, then the tail through a zero-padded
// vector). Everything is in an anonymous namespace: each source gets its own copy, compiled into
// its per-instruction-set entry points (kernels/simd.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace tt {
namespace {

using namespace simd;
using i64 = std::int64_t;

constexpr i64 kChunk = 1 << 14;        // elements per OpenMP task
// Waking the sleeping OpenMP threads (OMP_WAIT_POLICY=passive) costs tens of microseconds: a
// 98,304-float add took 83 us on 2 threads against NumPy's 14 us on one (2-core VM), and inside
// chapter 07's GPT step, where BLAS threads hold the other core, no kernel of that size gained
// from the second thread. So a kernel goes parallel only when its work is far above that.
constexpr i64 kParallelMin = 1 << 18;  // below: one thread
constexpr i64 kBlock = 1024;           // float accumulation before a sum moves to double

template <int W>
inline vec<W> vsplat(float v) {
    return vec<W>{} + v;
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

}  // namespace
}  // namespace tt
