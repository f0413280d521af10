// Sums on the CPU (C++ and OpenMP), float32, for large arrays: over everything, over the last
// dim (one value per row; times a scale for mean), and over the rows (the backward of
// broadcasting a row, a bias; optionally of g * y, the backward of multiplying by one).
// Float vectors accumulate blocks of kBlock elements (or 64 rows), the blocks are added in
// double: at least as accurate as NumPy's pairwise float32 sum. Shared loops: elementwise.h.
#include <pybind11/pybind11.h>

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "elementwise.h"

namespace py = pybind11;

namespace tt {
namespace {

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

struct Table {
    double (*sum)(const float*, const float*, i64);
    void (*colsum)(const float*, const float*, float*, i64, i64);
};

#define TT_SUM_ENTRIES(isa, attr, W)                                                         \
    attr double sum_##isa(const float* x, const float* y, i64 n) {                          \
        return sum_range<W>(x, y, n);                                                       \
    }                                                                                       \
    attr void colsum_##isa(const float* x, const float* y, float* acc, i64 rows, i64 cols) { \
        colsum_rows<W>(x, y, acc, rows, cols);                                              \
    }                                                                                       \
    const Table table_##isa = {sum_##isa, colsum_##isa};
TT_FOR_EACH_ISA(TT_SUM_ENTRIES)

const Table& table() { return *TT_PICK_ISA(table); }

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

}  // namespace
}  // namespace tt

void register_reduce(py::module_& m) {
    using namespace tt;
    using u = std::uintptr_t;
    auto g = py::call_guard<py::gil_scoped_release>();
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
}
