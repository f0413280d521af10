// Helpers shared by the kernel families (kernels/<family>.{cpp,cu}).
//
// - TT_CHECK(cond, msg): throw std::invalid_argument(msg) when a precondition fails; pybind11
//   turns it into a Python ValueError, so bad input never crashes the process.
// - TT_CUDA_CHECK(expr, what): run a CUDA runtime call; on failure throw std::runtime_error
//   carrying `what` (the kernel or call name) and cudaGetErrorString (a Python RuntimeError).
// - TT_CHECK_LAUNCH(what): cudaGetLastError() after a <<<...>>> launch, same error.
// - tt::as_stream(uintptr_t): the cudaStream_t that Python passed as an integer (CuPy's
//   `cupy.cuda.get_current_stream().ptr`; 0 is the legacy default stream).
// - tt::require(cond, msg) (the function form of TT_CHECK), tt::ptr_of<T>(uintptr_t) (a pointer
//   passed from Python as an integer), tt::ceil_div, tt::is_aligned16, tt::sm_count().
// - tt::parallel_for(n, parallel, chunk, body): an OpenMP loop that carries an exception out of
//   the parallel region (C++ sources only).
// Arguments are validated once, in Python (tinytorch/kernels/<family>.py), before a binding is
// called: the bindings take raw pointers and sizes and trust them.
// Only the CUDA parts need cuda_runtime.h; a .cpp can include this file without CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>

#define TT_CHECK(cond, msg)                                                 \
    do {                                                                    \
        if (!(cond)) throw std::invalid_argument(std::string(msg));        \
    } while (0)

namespace tt {

inline constexpr long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// Whether a pointer can be read with 16-byte (float4) loads.
inline bool is_aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

// A precondition: throws std::invalid_argument (Python ValueError) with `msg` when false.
inline void require(bool cond, const char* msg) {
    if (!cond) throw std::invalid_argument(msg);
}
inline void require(bool cond, const std::string& msg) {
    if (!cond) throw std::invalid_argument(msg);
}

// A pointer that Python passed as an integer (numpy .ctypes.data, cupy .data.ptr).
template <typename T>
inline T* ptr_of(std::uintptr_t p) {
    return reinterpret_cast<T*>(p);
}

#if !defined(__CUDACC__)
// body(i) for i in [0, n), on OpenMP threads when `parallel`, `chunk` iterations at a time
// (dynamic schedule). An exception thrown by body (an exercise's stub, say) is carried out of
// the parallel region and rethrown here: one escaping an OpenMP region ends the process
// instead of raising a Python error.
template <class Body>
void parallel_for(std::int64_t n, bool parallel, std::int64_t chunk, Body body) {
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, chunk) if (parallel)
    for (std::int64_t i = 0; i < n; ++i) {
        try {
            body(i);
        } catch (...) {
#pragma omp critical(tt_parallel_for_error)
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
}
#endif

}  // namespace tt

#if defined(__CUDACC__) || defined(TT_WITH_CUDA_RUNTIME)
#include <cuda_runtime.h>

namespace tt {

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* what, const char* file, int line) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") at " +
                             file + ":" + std::to_string(line));
}

// Number of SMs of the current device (cached per device; cheap after the first call).
inline int sm_count() {
    static int cached[64] = {0};
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 108;
    if (cached[dev] == 0) {
        int n = 0;
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        cached[dev] = n > 0 ? n : 108;
    }
    return cached[dev];
}

}  // namespace tt

#define TT_CUDA_CHECK(expr, what)                                              \
    do {                                                                       \
        cudaError_t tt_err_ = (expr);                                          \
        if (tt_err_ != cudaSuccess) ::tt::cuda_fail(tt_err_, what, __FILE__, __LINE__); \
    } while (0)

#define TT_CHECK_LAUNCH(what) TT_CUDA_CHECK(cudaGetLastError(), what)
#endif
