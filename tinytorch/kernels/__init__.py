"""Hand-written kernels (chapter 11): fused LayerNorm, fused softmax attention, fused GELU.

The compiled module (C++/OpenMP for the CPU, CUDA for the GPU, bound with pybind11) is built on
first use by `tinytorch.kernels.build.load()` (compilers and flags: `toolchain`). Each family
module - `layernorm`, `attention`, `gelu` - has the same shape:

    forward(...), backward(...)    raw arrays in, raw arrays out; every check happens here, once
    <Name>Function                 the autograd Function over them
    supports(...) -> bool          whether the kernel can take this Tensor-level call here
    dispatch(...) -> Tensor/None   what nn.functional calls first; None = use the composed ops

`common` holds what they share (the module, the array checks, output allocation).

When each kernel is used (measured; chapter 11 and benchmarks/results/):
- LayerNorm (F.layer_norm, nn.LayerNorm): on the GPU and on the CPU whenever supported
  (float32, weight/bias of the normalized shape or None). The C++/OpenMP kernel beats the NumPy
  composition of mean, var and normalize (benchmarks/results/kernels_cpu_cpu.md).
- Attention (F.scaled_dot_product_attention, nn.MultiheadAttention, the GPT): on the GPU and the
  CPU whenever supported (float32, head dim 32, 64 or 128, no dropout, a causal flag or a
  key-padding style mask). The C++ kernel beat the NumPy composition at every measured size,
  the chapter 07 GPT's (T = 64) included (benchmarks/results/attention_cpu_cpu.md), so there is
  no minimum size.
- GELU (F.gelu, nn.GELU; exact, float32): on the CPU only (kernels/gelu.cpp: one pass instead
  of the composition's ten; benchmarks/results/gelu_cpu_cpu.md); the GPU keeps the composed
  CuPy ops.
- Chapter 12's training-step kernels, on the CPU for float32: the softmax family (`softmax`:
  softmax, masked softmax, log_softmax and the cross-entropy over rows, for tinytorch.softmax,
  log_softmax and F.cross_entropy, from 8,192 elements up, 32,768 for the cross-entropy:
  smaller calls keep the composed ops, as for the elementwise kernels below), the multi-tensor
  optimizer step and gradient norm (`foreach`: Adam/AdamW.step, clip_grad_norm_) and the LSTM
  cell's pointwise work (`lstm`: nn.LSTM layers with a hidden size that is a multiple of 16).
- Elementwise (chapter 12; tinytorch/kernels/elementwise.py): exp, tanh, sigmoid, relu, add,
  sub, mul, div, sum, mean, cat and the copies of strided views (transpose + reshape, a leaf's
  gradient) inside the ops themselves, on the CPU for float32 arrays of at least 65,536 elements:
  one pass on every core instead of NumPy's one or more on one core
  (benchmarks/results/ops_cpu.md). Smaller arrays keep NumPy (the call costs more than the work).
Anything unsupported (float64, other head dims, dropout, arbitrary additive masks, GELU's tanh
approximation, a module that did not build) takes the composed path, which handles every case.

The switch forces the composed path (plain NumPy/CuPy tensor ops), which is what the kernels
are tested against and what chapter 11 compares them with. Only the families' `dispatch`
functions read it:

    tinytorch.kernels.set_fused(False)        # from now on
    with tinytorch.kernels.composed():        # inside this block only
        y = F.layer_norm(x, (C,), w, b)
"""

from __future__ import annotations

import contextlib
import warnings

__all__ = [
    "set_fused",
    "fused_enabled",
    "composed",
    "available",
    "build_error",
    "cpu_isas",
    "cpu_isa",
    "set_cpu_isa",
    "using_cpu_isa",
]

_fused = True
_warned = False


def set_fused(enabled: bool) -> None:
    """Use the fused kernels where supported (True, the default) or always the composed ops."""
    global _fused
    _fused = bool(enabled)


def fused_enabled() -> bool:
    return _fused


@contextlib.contextmanager
def composed():
    """Force the composed (unfused) path inside a `with` block; restores the setting after."""
    prev = fused_enabled()
    set_fused(False)
    try:
        yield
    finally:
        set_fused(prev)


def available() -> bool:
    """Whether the kernel module builds and imports here (builds it on the first call)."""
    from . import build

    global _warned
    try:
        build.load()
        return True
    except Exception as e:
        if not _warned:  # say once why the library runs the composed ops instead
            _warned = True
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(
                f"tinytorch kernels unavailable, using the composed ops instead: {first} "
                "(tinytorch.kernels.build_error() has the full compiler output)",
                RuntimeWarning,
                stacklevel=2,
            )
        return False


def cpu_isas() -> list[str]:
    """The instruction sets this CPU can run the vectorized CPU kernels (attention v3, GELU,
    LayerNorm's backward, chapter 12's families) with, best first: a subset of ["avx512",
    "avx2", "base"] ("base" = x86-64's SSE2, or the plain build elsewhere). See
    kernels/simd.h."""
    from . import build

    return list(build.load().cpu_isas())


def cpu_isa() -> str:
    """The instruction set the vectorized CPU kernels use now (the best, unless set)."""
    from . import build

    return build.load().cpu_isa()


def set_cpu_isa(name: str) -> str:
    """Run the vectorized CPU kernels with instruction set `name` (one of cpu_isas()) from now
    on, for the whole process; returns the previous one. For comparing them: the results
    agree to float32 rounding."""
    from . import build

    return build.load().set_cpu_isa(name)  # ValueError for an unknown or unsupported name


@contextlib.contextmanager
def using_cpu_isa(name: str):
    """Run the vectorized CPU kernels with instruction set `name` inside a `with` block only;
    restores the previous one after."""
    previous = set_cpu_isa(name)
    try:
        yield
    finally:
        set_cpu_isa(previous)


def build_error() -> Exception | None:
    """Why `available()` is False (the build's error, with the compiler output), else None."""
    from . import build

    try:
        build.load()
        return None
    except Exception as e:
        return e
