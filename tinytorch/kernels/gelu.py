"""Fused GELU on the CPU (chapter 11): y = x * Phi(x) in one pass over memory (kernels/gelu.cpp).

Raw arrays (NumPy, float32, C-contiguous, any shape):

    y = forward(x)
    dx = backward(x, grad)

Bad input (type, dtype, contiguity, shape) raises TypeError or ValueError here, before the
kernel runs (the binding checks nothing again).

Tensor level:

    supports(x, approximate="none") -> bool
    gelu(x) -> Tensor                        # the autograd Function GELUFunction
    dispatch(input, approximate) -> Tensor or None

`supports` is False - F.gelu then runs the composed ops of tinytorch/ops/activations.py, the
reference the kernel is tested against - for what the kernel does not do: CuPy arrays (the GPU
keeps the composed CuPy ops), dtypes other than float32, approximate="tanh", empty tensors, and
when the module cannot be built. A non-contiguous input is copied first.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from .common import check_array, lib, ptr, runs_on

__all__ = ["forward", "backward", "GELUFunction", "supports", "gelu", "dispatch"]


def _check(x, name, where, shape=None):
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{where}: {name} must be a NumPy array (the kernel is CPU only), "
            f"got {type(x).__name__}"
        )
    check_array(x, name, where, shape)


def forward(x):
    """y = x * Phi(x) (float32, x's shape)."""
    _check(x, "x", "gelu forward")
    y = np.empty_like(x)
    if x.size:
        lib().gelu_forward_cpu(ptr(x), ptr(y), x.size)
    return y


def backward(x, grad):
    """dx = grad * (Phi(x) + x * phi(x)) (float32, x's shape)."""
    _check(x, "x", "gelu backward")
    _check(grad, "grad", "gelu backward", x.shape)
    dx = np.empty_like(x)
    if x.size:
        lib().gelu_backward_cpu(ptr(x), ptr(grad), ptr(dx), x.size)
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
    if not isinstance(x, Tensor) or approximate != "none":
        return False
    if x.device != "cpu" or x.dtype != np.float32 or x.data.size == 0:
        return False
    return runs_on("cpu")


def gelu(x):
    """Tensor-level fused exact GELU (CPU, float32)."""
    return GELUFunction.apply(x)


def dispatch(input, approximate="none"):
    """For F.gelu: the fused result, or None for the composed path (the fused path is switched
    off, or supports() says no)."""
    from . import fused_enabled

    if not fused_enabled() or not supports(input, approximate):
        return None
    return gelu(input)
