"""Fused softmax, log_softmax and cross-entropy on the CPU (chapter 12; kernels/softmax.cpp).

Each runs over the rows of a C-contiguous float32 (N, C) array: a row is read two or three times
while it sits in L1 and written once, and rows run on the OpenMP threads, where the composed
NumPy ops (tinytorch/ops/nn.py, the twins) make five to eight passes, each with a temporary.

Raw arrays (NumPy, float32, C-contiguous, N >= 1 and C >= 1):

    y = forward(x, zero_masked=False)                  # softmax of each row
    dx = backward(y, grad)                             # y (grad - sum(grad y))
    y = log_softmax_forward(x)
    dx = log_softmax_backward(y, grad)                 # grad - exp(y) sum(grad)
    loss, stats = cross_entropy_forward(x, target, weight=None, ignore_index=-100,
                                        label_smoothing=0.0)        # (N,), (N, 2)
    dx = cross_entropy_backward(x, target, stats, scale, weight=None, ignore_index=-100,
                                label_smoothing=0.0)   # row n scaled by scale[n]

target: (N,) int64 class indices (0..C-1 or ignore_index), weight: (C,) float32 or None.
The cross-entropy never stores the (N, C) log-probabilities: it keeps stats = (max, log sum
exp(x - max)) per row (log-sum-exp in two parts: huge logits keep their precision) and its
backward rebuilds softmax = exp((x - max) - log sum). Bad input raises TypeError or ValueError here
(the bindings check nothing again).

Tensor level: `SoftmaxFunction`, `LogSoftmaxFunction`, `CrossEntropyFunction` (autograd
Functions over the last dim of x (..., C) / the rows of (N, C)), `supports(x, dim)`, and the
dispatchers that tinytorch.softmax, log_softmax, masked_softmax and F.cross_entropy call first:
`dispatch_softmax`, `dispatch_log_softmax`, `dispatch_cross_entropy` (None = take the composed
ops). The fused path takes float32 CPU tensors of at least MIN_SIZE elements (softmax,
masked softmax, log_softmax) or MIN_SIZE_CROSS_ENTROPY (cross-entropy), softmax over the last
dim only, cross-entropy with class-index targets (weights, ignore_index, label smoothing and
every reduction included); everything else (smaller inputs, float64, CuPy, another dim,
probability targets, a module that did not build, the switch
tinytorch.kernels.set_fused(False)) takes the composed path.

The two sizes play the part of the elementwise kernels' MIN_SIZE. Measured forward + backward,
both paths in the same run: below them the composed NumPy ops are as fast, because the
arithmetic takes microseconds and the fused path's Python (the checks, the Function's saved
state, the calls into the module) costs what the kernel saves. At 64x64 the kernels took about
0.9x the composed ops' time for softmax and log_softmax but 1.2x for the cross-entropy, which
has more Python around its kernel (the target check, weights, the reduction); softmax and
log_softmax win from about 8,192 elements (0.8-0.9x at 128x65), the cross-entropy ties up to
about 32,768 and wins above (768x65, the chapter 07 GPT's logits: 0.85-0.95x). The size is the
first thing each dispatcher tests, so a small call pays one comparison. Tests that check the
kernels through the dispatchers on small inputs set both to 1.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from . import fused_enabled
from .common import check_array, lib, ptr, runs_on

__all__ = [
    "MIN_SIZE",
    "MIN_SIZE_CROSS_ENTROPY",
    "forward",
    "backward",
    "log_softmax_forward",
    "log_softmax_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "SoftmaxFunction",
    "LogSoftmaxFunction",
    "CrossEntropyFunction",
    "supports",
    "dispatch_softmax",
    "dispatch_log_softmax",
    "dispatch_cross_entropy",
]

MIN_SIZE = 1 << 13  # elements of x for softmax and log_softmax (smaller: composed, see above)
MIN_SIZE_CROSS_ENTROPY = 1 << 15  # elements of the logits for the cross-entropy


def _rows(x, name, where):
    """Check a (N, C) float32 NumPy array; returns (N, C)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{where}: {name} must be a NumPy array (the kernel is CPU only), "
            f"got {type(x).__name__}"
        )
    check_array(x, name, where)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{where}: {name} must be a non-empty 2-D (N, C) array, got {x.shape}")
    return x.shape


def _targets(target, weight, N, C, ignore_index, where):
    if not isinstance(target, np.ndarray) or target.dtype != np.int64:
        got = getattr(target, "dtype", type(target).__name__)
        raise TypeError(f"{where}: target must be a NumPy int64 array, got {got}")
    check_array(target, "target", where, (N,), dtype=np.int64)
    bad = (target != ignore_index) & ((target < 0) | (target >= C))
    if bad.any():
        raise ValueError(
            f"{where}: target {int(target[bad][0])} is out of range for {C} classes "
            f"(expected 0..{C - 1} or ignore_index={ignore_index})"
        )
    if weight is None:
        return 0, float(C)
    check_array(weight, "weight", where, (C,))
    return ptr(weight), float(weight.sum(dtype=np.float32))


def forward(x, zero_masked=False):
    """Softmax of each row of x (N, C). An all -inf row gives NaN, or 0 with zero_masked."""
    N, C = _rows(x, "x", "softmax forward")
    y = np.empty_like(x)
    lib().softmax_forward_cpu(ptr(x), ptr(y), N, C, bool(zero_masked))
    return y


def backward(y, grad):
    """dx = y * (grad - sum(grad * y)) per row, from the forward's output y (N, C)."""
    N, C = _rows(y, "y", "softmax backward")
    check_array(grad, "grad", "softmax backward", (N, C))
    dx = np.empty_like(y)
    lib().softmax_backward_cpu(ptr(y), ptr(grad), ptr(dx), N, C)
    return dx


def log_softmax_forward(x):
    """x - max - log(sum(exp(x - max))) per row of x (N, C)."""
    N, C = _rows(x, "x", "log_softmax forward")
    y = np.empty_like(x)
    lib().log_softmax_forward_cpu(ptr(x), ptr(y), N, C)
    return y


def log_softmax_backward(y, grad):
    """dx = grad - exp(y) * sum(grad) per row, from the forward's output y (N, C)."""
    N, C = _rows(y, "y", "log_softmax backward")
    check_array(grad, "grad", "log_softmax backward", (N, C))
    dx = np.empty_like(y)
    lib().log_softmax_backward_cpu(ptr(y), ptr(grad), ptr(dx), N, C)
    return dx


def cross_entropy_forward(x, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    """(loss (N,), stats (N, 2)): each row's loss (0 where the target is ignore_index) and its
    (max, log sum exp(x - max)), which the backward needs."""
    where = "cross_entropy forward"
    N, C = _rows(x, "x", where)
    wp, wsum = _targets(target, weight, N, C, ignore_index, where)
    loss, stats = np.empty(N, np.float32), np.empty((N, 2), np.float32)
    lib().cross_entropy_forward_cpu(
        ptr(x), ptr(target), wp, wsum, ptr(loss), ptr(stats), N, C, int(ignore_index),
        float(label_smoothing),
    )  # fmt: skip
    return loss, stats


def cross_entropy_backward(
    x, target, stats, scale, weight=None, ignore_index=-100, label_smoothing=0.0
):
    """dL/dx (N, C) where L = sum_n scale[n] * loss_n (scale: the upstream gradient per row);
    stats: the forward's (N, 2)."""
    where = "cross_entropy backward"
    N, C = _rows(x, "x", where)
    wp, wsum = _targets(target, weight, N, C, ignore_index, where)
    check_array(stats, "stats", where, (N, 2))
    check_array(scale, "scale", where, (N,))
    dx = np.empty_like(x)
    lib().cross_entropy_backward_cpu(
        ptr(x), ptr(target), wp, wsum, ptr(stats), ptr(scale), ptr(dx), N, C,
        int(ignore_index), float(label_smoothing),
    )  # fmt: skip
    return dx


# ---- Tensor level --------------------------------------------------------------------------
def _as_rows(x):
    """x (..., C) as a C-contiguous (N, C) float32 array."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


class SoftmaxFunction(Function):
    """Softmax over the last dim of x (..., C); saves the output only."""

    def forward(self, x, zero_masked=False):
        x2 = _as_rows(x)  # (held in a local: the kernel reads it after ptr() returns)
        y = np.empty(x.shape, np.float32)  # x's shape, written through an (N, C) view
        lib().softmax_forward_cpu(ptr(x2), ptr(y), *x2.shape, bool(zero_masked))
        self.y = y
        return y

    def backward(self, grad):
        return backward(self.y.reshape(-1, self.y.shape[-1]), _as_rows(grad)).reshape(grad.shape)


class LogSoftmaxFunction(Function):
    """log_softmax over the last dim of x (..., C); saves the output only."""

    def forward(self, x):
        self.y = log_softmax_forward(_as_rows(x)).reshape(x.shape)
        return self.y

    def backward(self, grad):
        y = self.y.reshape(-1, self.y.shape[-1])
        return log_softmax_backward(y, _as_rows(grad)).reshape(grad.shape)


class CrossEntropyFunction(Function):
    """Cross-entropy of logits x (N, C) against int64 targets (N,), PyTorch's semantics (see
    ops/nn.py's CrossEntropy, the composed twin): weight (C,) or None, ignore_index, reduction,
    label smoothing eps. Saves x and two floats per row."""

    def forward(self, x, target, weight=None, ignore_index=-100, reduction="mean", eps=0.0):
        x = np.ascontiguousarray(x)
        target = np.ascontiguousarray(target, dtype=np.int64)
        w = None if weight is None else np.ascontiguousarray(weight, dtype=np.float32)
        loss, stats = cross_entropy_forward(x, target, w, ignore_index, eps)
        self.saved = (x, target, w, stats)
        self.ignore_index, self.eps, self.reduction = ignore_index, eps, reduction
        self.keep = target != ignore_index
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        # 'mean' divides by the weights of the rows not ignored (nan when all are, as torch)
        wt = self.keep if w is None else w[np.where(self.keep, target, 0)] * self.keep
        self.total = wt.sum(dtype=np.float32)
        return loss.sum() / self.total

    def backward(self, g):
        x, target, w, stats = self.saved
        up = g if self.reduction != "mean" else g / self.total
        scale = np.where(self.keep, up, np.float32(0)).astype(np.float32)  # ignored rows: 0
        scale = np.ascontiguousarray(np.broadcast_to(scale, target.shape))
        dx = cross_entropy_backward(x, target, stats, scale, w, self.ignore_index, self.eps)
        return dx, None


def supports(x, dim=-1, cross_entropy=False) -> bool:
    """Whether the fused kernels take a softmax / log_softmax of x over `dim` (or, with
    cross_entropy, dim=1 of a 2-D x, a cross-entropy): a float32 CPU tensor of at least MIN_SIZE
    (MIN_SIZE_CROSS_ENTROPY) elements, over its last dim, the module built. (The fused switch
    is the dispatchers' to read.)"""
    least = MIN_SIZE_CROSS_ENTROPY if cross_entropy else MIN_SIZE
    if not isinstance(x, Tensor) or x.data.size < least:  # first: the one test small calls see
        return False
    if x.dtype != np.float32 or x.device != "cpu":
        return False
    if x.ndim == 0 or x.data.size == 0 or dim not in (-1, x.ndim - 1):
        return False
    return _built()


_module_built = False  # the module built and imported (checked once; it never unloads)


def _built() -> bool:
    global _module_built
    if not _module_built:
        _module_built = runs_on("cpu")
    return _module_built


def dispatch_softmax(input, dim, zero_masked=False):
    """For tinytorch.softmax / masked_softmax: the fused result, or None (composed path)."""
    if not supports(input, dim) or not fused_enabled():
        return None
    return SoftmaxFunction.apply(input, zero_masked=bool(zero_masked))


def dispatch_log_softmax(input, dim):
    """For tinytorch.log_softmax: the fused result, or None (composed path)."""
    if not supports(input, dim) or not fused_enabled():
        return None
    return LogSoftmaxFunction.apply(input)


def dispatch_cross_entropy(x, target, weight, ignore_index, reduction, eps):
    """For F.cross_entropy after its checks: x (N, C) Tensor, target (N,) int array, weight (C,)
    array or None. The fused result, or None (composed path)."""
    if not supports(x, 1, cross_entropy=True) or x.ndim != 2 or not fused_enabled():
        return None
    if not isinstance(target, np.ndarray):
        return None
    if weight is not None and not isinstance(weight, np.ndarray):
        return None
    return CrossEntropyFunction.apply(
        x, target, weight=weight, ignore_index=ignore_index, reduction=reduction, eps=eps
    )
