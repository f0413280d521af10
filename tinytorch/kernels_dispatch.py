"""Where the library decides between a fused kernel and the composed tensor-op path.

Each function returns a Tensor when a fused kernel handles the call, or None to let the caller
use the composed path (the reference the kernels are tested against). The switch
`tinytorch.kernels.set_fused(False)` / `with tinytorch.kernels.composed():` forces None.

The rules (measured, see chapter 11 and benchmarks/results/):
- LayerNorm: fused on the GPU, and on the CPU (the C++/OpenMP kernel beats the NumPy
  composition of mean, var and normalize; `tinytorch.kernels.layernorm.USE_ON_CPU`).
- Attention: fused on the GPU and on the CPU whenever the kernel supports the call (float32,
  head dim 32, 64 or 128, no dropout, a causal flag or a key-padding style mask). The C++
  kernel beat the NumPy composition at every measured size, the chapter 07 GPT's (T = 64)
  included (benchmarks/results/attention_cpu_cpu.md); CPU_ATTENTION_MIN_SCORES (per-head
  score-matrix entries below which the CPU uses the composed path) is kept as a knob.
- GELU (exact, float32): fused on the CPU only (kernels/gelu.cpp: one pass instead of the
  composition's ten; benchmarks/results/gelu_cpu_cpu.md); the GPU keeps the composed CuPy ops.
Anything unsupported (float64, other head dims, dropout, arbitrary additive masks, GELU's tanh
approximation) takes the composed path, which handles every case.
"""

from __future__ import annotations

CPU_ATTENTION_MIN_SCORES = 0


def _enabled() -> bool:
    from .kernels import fused_enabled

    return fused_enabled()


def layer_norm(input, shape, weight, bias, eps):
    if not _enabled():
        return None
    from .kernels import layernorm

    return layernorm.dispatch(input, shape, weight, bias, eps)


def gelu(input, approximate):
    if not _enabled():
        return None
    from .kernels import gelu as G

    return G.dispatch(input, approximate)


def scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale):
    if not _enabled():
        return None
    if q.device == "cpu" and q.shape[-2] * k.shape[-2] < CPU_ATTENTION_MIN_SCORES:
        return None
    from .kernels import attention_autograd

    return attention_autograd.dispatch(q, k, v, attn_mask, dropout_p, is_causal, scale)
