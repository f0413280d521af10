// Fused softmax attention: the CUDA launchers that kernels/attention.cpp binds under
// TT_WITH_CUDA (their definitions are in kernels/attention.cu).
//
// Layout: q (B, H, Tq, D), k and v (B, H, Tk, D), o (B, H, Tq, D), all float32 and contiguous;
// lse (B, H, Tq) float32, the natural-log log-sum-exp of each query's scaled scores (+inf for a
// query whose keys are all masked); kpm (B, Tk) uint8, 1 = key masked out, or null for none.
// Causal masking is top-left aligned as in PyTorch: query i sees keys j <= i.
// Every pointer is a device pointer; `stream` is a cudaStream_t passed as an integer. The
// workspace (`work`) is allocated by the caller (CuPy) with attention_workspace_floats() floats.
// The arguments are checked once, in Python (tinytorch/kernels/attention.py: version, head dim,
// B * H <= 65535 for the grid); launch failures throw std::runtime_error naming the kernel.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tt {

struct AttnShape {
    int B, H, Tq, Tk, D;
    float scale;  // multiplies q . k (1/sqrt(D) by default)
    bool causal;
};

// Versions 1..kAttnCudaVersions exist on the GPU (see the header of attention.cu).
constexpr int kAttnCudaVersions = 5;

std::size_t attention_workspace_floats(const AttnShape& s, int version, bool backward);

void attention_forward_cuda(const float* q, const float* k, const float* v, const std::uint8_t* kpm,
                            float* o, float* lse, float* work, const AttnShape& s, int version,
                            std::uintptr_t stream);

// dq, dk, dv are written in full (no accumulation into them): deterministic, no atomics.
void attention_backward_cuda(const float* q, const float* k, const float* v,
                             const std::uint8_t* kpm, const float* o, const float* lse,
                             const float* dout, float* dq, float* dk, float* dv, float* work,
                             const AttnShape& s, int version, std::uintptr_t stream);

}  // namespace tt
