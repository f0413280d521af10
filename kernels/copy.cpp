// Copies of strided float32 views into C-contiguous arrays on the CPU (C++ and OpenMP): plain
// copies, broadcasts (stride 0: fills), row slices (cat's backward, and cat itself writing its
// inputs side by side), and transposed layouts (transpose + reshape, a gradient that arrives
// transposed) in W x W blocks transposed in registers. tinytorch/copies.py's c_copy and Cat take
// them for large arrays (tinytorch/kernels/elementwise.py). Shared loops: elementwise.h.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>

#include "common.h"
#include "elementwise.h"

namespace py = pybind11;

namespace tt {
namespace {

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

struct Table {
    void (*copy_row)(const float*, float*, i64);
    void (*transpose_copy)(const float*, i64, float*, i64, i64, i64);
};

#define TT_COPY_ENTRIES(isa, attr, W)                                                        \
    attr void copy_row_##isa(const float* s, float* d, i64 n) { copy_row<W>(s, d, n); }     \
    attr void transpose_copy_##isa(const float* s, i64 sj, float* d, i64 ld, i64 ni,        \
                                   i64 nj) {                                                \
        transpose_copy<W>(s, sj, d, ld, ni, nj);                                            \
    }                                                                                       \
    const Table table_##isa = {copy_row_##isa, transpose_copy_##isa};
TT_FOR_EACH_ISA(TT_COPY_ENTRIES)

const Table& table() { return *TT_PICK_ISA(table); }

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

void register_copy(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    auto g = py::call_guard<py::gil_scoped_release>();
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
