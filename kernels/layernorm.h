// Fused LayerNorm: the CUDA launchers that kernels/layernorm.cpp binds under TT_WITH_CUDA
// (definitions and the version history in kernels/layernorm.cu).
//
// Layout: x, y, dy, dx are (N, C) float32, contiguous; weight, bias, dweight, dbias are (C,);
// mean and rstd are (N,) (rstd = 1 / sqrt(var + eps), biased variance, as PyTorch saves).
// Pointers are device pointers; `stream` is a cudaStream_t passed as an integer. The backward's
// workspace (per-block partial sums of dweight/dbias) is allocated by the caller (CuPy) with
// layernorm_workspace_floats() floats. The arguments are checked once, in Python
// (tinytorch/kernels/layernorm.py); launch failures throw std::runtime_error naming the kernel.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tt {

// Versions 1..kLnCudaVersions exist on the GPU (see the header of layernorm.cu).
constexpr int kLnCudaVersions = 5;

std::size_t layernorm_workspace_floats(std::int64_t N, std::int64_t C, int version);

void layernorm_forward_cuda(const float* x, const float* w, const float* b, float* y, float* mean,
                            float* rstd, std::int64_t N, std::int64_t C, float eps, int version,
                            std::uintptr_t stream);

// dx, dweight and dbias are written in full (no accumulation): deterministic, no atomics.
void layernorm_backward_cuda(const float* dy, const float* x, const float* w, const float* mean,
                             const float* rstd, float* dx, float* dw, float* db, float* work,
                             std::int64_t N, std::int64_t C, int version, std::uintptr_t stream);

}  // namespace tt
