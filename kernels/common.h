// Shared helpers for tinytorch's kernels (included by every kernels/<family>.cpp and .cu).
//
// Error model: kernels never crash the process. Host code checks its arguments and throws
// std::runtime_error, which pybind11 turns into a Python RuntimeError; every CUDA launch is
// followed by TT_CUDA_CHECK_LAUNCH, which turns a failed launch into an exception that names
// the kernel and carries cudaGetErrorString.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__) || defined(TT_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace tt {

// Throw a runtime_error with `what` unless `cond` holds (argument checks in host code).
inline void require(bool cond, const std::string& what) {
    if (!cond) throw std::runtime_error(what);
}

// A raw pointer passed from Python as an integer (numpy .ctypes.data, cupy .data.ptr).
template <typename T>
inline T* ptr_of(std::uintptr_t p) {
    return reinterpret_cast<T*>(p);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

#if defined(__CUDACC__) || defined(TT_WITH_CUDA)
inline void cuda_check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string(what) + ": CUDA error " + cudaGetErrorName(err) +
                                 ": " + cudaGetErrorString(err));
}

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }
#endif

}  // namespace tt

#if defined(__CUDACC__) || defined(TT_WITH_CUDA)
// After a call that returns cudaError_t: TT_CUDA_CHECK(cudaMemsetAsync(...), "memset").
#define TT_CUDA_CHECK(expr, what) ::tt::cuda_check((expr), (what))
// After a kernel launch: catches bad launch configurations (cudaGetLastError).
#define TT_CUDA_CHECK_LAUNCH(kernel_name) ::tt::cuda_check(cudaGetLastError(), (kernel_name))
#endif
