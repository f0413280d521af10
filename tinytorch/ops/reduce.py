"""Reductions: sum, mean, var, max/min (with indices), and argmax/topk (no gradient).

`dim` may be None (all dims), an int (negative counts from the end) or a tuple; `keepdim`
keeps reduced dims as size 1. Backward re-inserts the reduced dims, then broadcasts.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .. import backend
from ..autograd import Function
from ..kernels import elementwise as _ew
from ..tensor import Tensor

values_indices = namedtuple("values_indices", ["values", "indices"])


def _axes(dim, ndim, op):
    """Normalize `dim` to a sorted tuple of non-negative axes (None: every axis)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out, n = [], ndim if ndim else 1  # a 0-d tensor accepts dim 0 / -1, as in PyTorch
    for d in dims:
        if not -n <= d < n:
            raise IndexError(
                f"{op}: dim {d} is out of range for a tensor with {ndim} dims "
                f"(expected {-n}..{n - 1})"
            )
        out.append(d % n)
    return tuple(sorted(set(out))) if ndim else ()


def _expand_back(g, shape, axes, keepdim):
    """Reshape a reduced gradient so it broadcasts against the input's `shape`."""
    # BEGIN EXERCISE ch01: reduction_backward - put the reduced axes back as size 1 (keepdim)
    if not keepdim:
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return g
    # END EXERCISE


def _fused_sum(a, axes, keepdim, mean):
    """a.sum or a.mean over every axis or the last one by the kernels (large float32 arrays),
    else None."""
    if not _ew.takes(a):
        return None
    if len(axes) == a.ndim:
        out = _ew.sum_all(a)
        if mean:
            out = (out / a.dtype.type(a.size)).astype(a.dtype)
    elif axes == (a.ndim - 1,):
        out = _ew.sum_lastdim(a, 1.0 / a.shape[-1] if mean else 1.0)
    else:
        return None
    return (
        out.reshape(tuple(1 if i in axes else n for i, n in enumerate(a.shape))) if keepdim else out
    )


class Sum(Function):
    def forward(self, a, axes=(), keepdim=False):
        self.shape, self.axes, self.keepdim = a.shape, axes, keepdim
        out = _fused_sum(a, axes, keepdim, mean=False)
        return a.sum(axis=axes, keepdims=keepdim) if out is None else out

    def backward(self, g):
        # BEGIN EXERCISE ch01: reduction_backward - every summed element gets g: broadcast it back
        g = _expand_back(g, self.shape, self.axes, self.keepdim)
        return backend.xp_of(g).broadcast_to(g, self.shape)
        # END EXERCISE


class Mean(Function):
    def forward(self, a, axes=(), keepdim=False):
        self.shape, self.axes, self.keepdim = a.shape, axes, keepdim
        self.n = 1
        for ax in axes:
            self.n *= a.shape[ax]
        out = _fused_sum(a, axes, keepdim, mean=True)
        return a.mean(axis=axes, keepdims=keepdim) if out is None else out

    def backward(self, g):
        # BEGIN EXERCISE ch01: reduction_backward - each of the n averaged elements gets g / n
        g = _expand_back(g, self.shape, self.axes, self.keepdim) / self.n
        return backend.xp_of(g).broadcast_to(g, self.shape)
        # END EXERCISE


class Var(Function):
    """Variance with Bessel's correction by default (correction=1), as torch.var."""

    def forward(self, a, axes=(), keepdim=False, correction=1):
        n = 1
        for ax in axes:
            n *= a.shape[ax]
        self.centered = a - a.mean(axis=axes, keepdims=True)
        self.axes, self.keepdim, self.shape = axes, keepdim, a.shape
        self.denom = n - correction if n > correction else 0  # (max is shadowed here)
        ss = (self.centered * self.centered).sum(axis=axes, keepdims=keepdim)
        return ss / self.denom if self.denom else ss * float("nan")

    def backward(self, g):
        g = _expand_back(g, self.shape, self.axes, self.keepdim)
        return g * self.centered * (2.0 / self.denom if self.denom else float("nan"))


class MaxMin(Function):
    """max/min over all elements (gradient shared among ties, as PyTorch) or along one dim
    (gradient to the index returned)."""

    def forward(self, a, axis=None, keepdim=False, largest=True):
        xp = backend.xp_of(a)
        self.shape, self.axis, self.keepdim = a.shape, axis, keepdim
        if axis is None:
            out = a.max() if largest else a.min()
            self.mask = a == out
            return out
        idx = a.argmax(axis=axis) if largest else a.argmin(axis=axis)
        self.indices = idx  # (the shape without `axis`) returned to the caller as well
        self.idx = xp.expand_dims(idx, axis)
        out = xp.take_along_axis(a, self.idx, axis=axis)
        return out if keepdim else out.squeeze(axis)

    def backward(self, g):
        xp = backend.xp_of(g)
        if self.axis is None:
            return self.mask * (g / self.mask.sum().astype(g.dtype))
        if not self.keepdim:
            g = xp.expand_dims(g, self.axis)
        if xp is np:  # scatter into zeros: one write per row instead of a one-hot product
            out = np.zeros(self.shape, dtype=g.dtype)
            np.put_along_axis(out, self.idx, g, axis=self.axis)
            return out
        # a one-hot of the winning index along `axis` (portable: CuPy has no put_along_axis)
        n = self.shape[self.axis]
        pos = xp.arange(n).reshape((n,) + (1,) * (len(self.shape) - self.axis - 1))
        return (pos == self.idx) * g


def sum(input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    return Sum.apply(input, axes=_axes(dim, input.ndim, "sum"), keepdim=keepdim)


def mean(input, dim=None, keepdim: bool = False):
    if input.dtype.kind != "f":
        raise RuntimeError(f"mean: needs a floating-point tensor, got {input.dtype}")
    return Mean.apply(input, axes=_axes(dim, input.ndim, "mean"), keepdim=keepdim)


def var(input, dim=None, unbiased: bool = True, keepdim: bool = False, correction=None):
    if correction is None:
        correction = 1 if unbiased else 0
    return Var.apply(
        input, axes=_axes(dim, input.ndim, "var"), keepdim=keepdim, correction=correction
    )


def std(input, dim=None, unbiased: bool = True, keepdim: bool = False, correction=None):
    return var(input, dim, unbiased, keepdim, correction) ** 0.5


def _max_min(input, dim, keepdim, largest):
    op = "max" if largest else "min"
    if input.data.size == 0:
        raise RuntimeError(f"{op}: the input of shape {tuple(input.shape)} is empty")
    if dim is None:
        return MaxMin.apply(input, largest=largest)
    if not isinstance(dim, int):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    axis = _axes(dim, input.ndim, op)[0]
    values = MaxMin.apply(input, axis=axis, keepdim=keepdim, largest=largest)
    ctx = values._ctx  # reuse the indices the forward found (when it kept a graph)
    if ctx is not None:
        idx = ctx.idx if keepdim else ctx.indices
    else:
        a = input.data
        idx = a.argmax(axis=axis) if largest else a.argmin(axis=axis)
        if keepdim:
            idx = input.xp.expand_dims(idx, axis)
    return values_indices(values, Tensor._wrap(idx.astype("int64")))


def max(input, dim=None, keepdim: bool = False):  # noqa: A001
    """The largest element, or (values, indices) along `dim`."""
    if isinstance(dim, Tensor):  # torch.max(a, b): elementwise maximum
        return maximum(input, dim)
    return _max_min(input, dim, keepdim, True)


def min(input, dim=None, keepdim: bool = False):  # noqa: A001
    if isinstance(dim, Tensor):
        return minimum(input, dim)
    return _max_min(input, dim, keepdim, False)


def maximum(a, b):
    from .elementwise import where

    return where(a >= b, a, b)


def minimum(a, b):
    from .elementwise import where

    return where(a <= b, a, b)


def argmax(input, dim=None, keepdim: bool = False):
    return _arg(input, dim, keepdim, True)


def argmin(input, dim=None, keepdim: bool = False):
    return _arg(input, dim, keepdim, False)


def _arg(input, dim, keepdim, largest):
    a = input.data
    if dim is None:
        idx = a.argmax() if largest else a.argmin()
        out = input.xp.asarray(idx).reshape((1,) * a.ndim if keepdim else ())
    else:
        axis = _axes(dim, a.ndim, "argmax")[0]
        out = a.argmax(axis=axis) if largest else a.argmin(axis=axis)
        if keepdim:
            out = input.xp.expand_dims(out, axis)
    return Tensor._wrap(out.astype("int64"))


def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    """The k largest (or smallest) elements along `dim`: (values, indices), no gradient.

    Values are returned sorted (descending for largest), as PyTorch does by default.
    """
    a, xp = input.data, input.xp
    axis = _axes(dim, a.ndim, "topk")[0]
    n = a.shape[axis] if a.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k={k} is out of range for dim {dim} of size {n}")
    key = -a if largest else a
    idx = xp.argsort(key, axis=axis, kind="stable")
    idx = xp.take(idx, xp.arange(k), axis=axis)
    values = xp.take_along_axis(a, idx, axis=axis)
    return values_indices(Tensor._wrap(values), Tensor._wrap(idx.astype("int64")))
