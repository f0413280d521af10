"""Fused GELU on the CPU (chapter 11): y = x * Phi(x) in one pass over memory (kernels/gelu.cpp).

Raw arrays (NumPy, float32, C-contiguous, any shape):

    y = forward(x)
    dx = backward(x, grad)

Tensor level:

    supports(x, approximate="none") -> bool
    gelu(x) -> Tensor                        # the autograd Function GELUFunction
    dispatch(input, approximate) -> Tensor or None

`dispatch` is what F.gelu and nn.GELU ask first (through tinytorch.kernels_dispatch). It returns
None - use the composed ops of tinytorch/ops/activations.py, the reference the kernel is tested
against - when the fused path is switched off (tinytorch.kernels.set_fused(False) or `with
tinytorch.kernels.composed():`), when the module cannot be built, and for what the kernel does
not do: CuPy arrays (the GPU keeps the composed CuPy ops), dtypes other than float32,
approximate="tanh", empty tensors. A non-contiguous input is copied first.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor

__all__ = ["forward", "backward", "GELUFunction", "supports", "gelu", "dispatch"]


def _lib():
    from . import build

    return build.load()


def _check(x, name, like=None):
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"gelu: {name} must be a NumPy array (the kernel is CPU only), got {type(x).__name__}"
        )
    if x.dtype != np.float32:
        raise TypeError(f"gelu: {name} must be float32, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"gelu: {name} must be C-contiguous (copy it with ascontiguousarray)")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"gelu: {name} has shape {x.shape} but x has {like.shape}")


def forward(x):
    """y = x * Phi(x) (float32, x's shape)."""
    _check(x, "x")
    y = np.empty_like(x)
    if x.size:
        _lib().gelu_forward_cpu(x, y)
    return y


def backward(x, grad):
    """dx = grad * (Phi(x) + x * phi(x)) (float32, x's shape)."""
    _check(x, "x")
    _check(grad, "grad", like=x)
    dx = np.empty_like(x)
    if x.size:
        _lib().gelu_backward_cpu(x, grad, dx)
    return dx


class GELUFunction(Function):
    """The exact GELU by the fused kernel; saves x only (the backward recomputes Phi and phi)."""

    def forward(self, x):
        self.x = np.ascontiguousarray(x)
        return forward(self.x)

    def backward(self, grad):
        return backward(self.x, np.ascontiguousarray(grad, dtype=np.float32))


def supports(x, approximate="none") -> bool:
    """Whether the fused kernel computes gelu(x, approximate) here."""
    from . import available, fused_enabled

    if not fused_enabled() or not isinstance(x, Tensor) or approximate != "none":
        return False
    if x.device != "cpu" or x.dtype != np.float32 or x.data.size == 0:
        return False
    return available()


def gelu(x):
    """Tensor-level fused exact GELU (CPU, float32)."""
    return GELUFunction.apply(x)


def dispatch(input, approximate="none"):
    """For F.gelu: the fused result, or None for the composed path."""
    return gelu(input) if supports(input, approximate) else None
