"""Elementwise ops: arithmetic with broadcasting, and the pointwise functions (the activations,
tanh, sigmoid, relu and gelu, are in activations.py).

Each op is a Function with forward and backward side by side, then the lowercase function
users call. Python scalars pass straight through as constants (NumPy treats them as "weak",
so float32 stays float32). Binary backwards reduce broadcast dimensions with `unbroadcast`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function, unbroadcast
from ..kernels import elementwise as _ew
from ..tensor import Tensor


def _shape(x):
    """The shape of an array operand; None for constants (Python or NumPy scalars)."""
    return x.shape if isinstance(x, backend.ARRAY_TYPES) else None


_F64, _F32 = np.dtype("float64"), np.dtype("float32")


def _torch_dtype(out, a, b):
    """PyTorch's result dtype where NumPy widens to float64: int64 / 2, int64 + 0.5 and
    float32 + an int64 tensor stay in the float operand's dtype (float32 for ints). One
    identity test in the common case; a cast only for such mixed operands."""
    if out.dtype is not _F64:
        return out
    floats = [x.dtype for x in (a, b) if isinstance(x, backend.ARRAY_TYPES) and x.dtype.kind == "f"]
    if _F64 in floats:
        return out
    return out.astype(max(floats, key=lambda d: d.itemsize) if floats else _F32)


def _unbroadcast(g, shape):
    """unbroadcast, by the kernels' row sum when a large gradient goes back to a row (a bias
    of shape (C,) added to (..., C))."""
    if len(shape) == 1 and g.ndim >= 2 and g.shape[-1] == shape[0] and _ew.takes(g):
        return _ew.colsum(g)
    return unbroadcast(g, shape)


def _fused(name, a, b):
    """a op b by the kernels (large float32 arrays: one shape, a row, or a Python scalar), else
    None."""
    if _ew.takes(a) or _ew.takes(b):
        return _ew.binary(name, a, b)
    return None


class Add(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        out = _fused("add", a, b)
        return _torch_dtype(a + b, a, b) if out is None else out

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (_unbroadcast(g, self.sa) if na else None, _unbroadcast(g, self.sb) if nb else None)


class Sub(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        out = _fused("sub", a, b)
        return _torch_dtype(a - b, a, b) if out is None else out

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (_unbroadcast(g, self.sa) if na else None, unbroadcast(-g, self.sb) if nb else None)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        out = _fused("mul", a, b)
        return _torch_dtype(a * b, a, b) if out is None else out

    def backward(self, g):
        na, nb = self.needs_input_grad  # skip the product for an input that needs no gradient
        if _ew.takes(g):  # both products in one pass (large float32 arrays)
            grads = _ew.mul_backward(g, self.a, self.b, na, nb)
            if grads is not None:
                return grads
        # BEGIN EXERCISE ch01: elementwise_backward - d(a*b)/da = b, d(a*b)/db = a, unbroadcast
        ga = unbroadcast(g * self.b, self.a.shape) if na else None
        gb = unbroadcast(g * self.a, self.b.shape) if nb else None
        # END EXERCISE
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.sa, self.sb, self.b = _shape(a), _shape(b), b
        out = _fused("div", a, b)
        self.out = _torch_dtype(a / b, a, b) if out is None else out
        return self.out

    def backward(self, g):
        na, nb = self.needs_input_grad
        if _ew.takes(g) and self.sa == self.sb:  # both gradients in one pass
            grads = _ew.div_backward(g, self.b, self.out, na, nb)
            if grads is not None:
                return grads
        # BEGIN EXERCISE ch01: elementwise_backward - d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        g_b = g / self.b  # d(a/b)/da = 1/b
        gb = None
        if nb:  # d(a/b)/db = -a/b^2 = -(1/b) (a/b): reuses g/b and the output
            gb = g_b * self.out
            gb *= -1
            gb = unbroadcast(gb, self.sb)
        return (unbroadcast(g_b, self.sa) if na else None), gb
        # END EXERCISE


class Pow(Function):
    """a ** b for tensor or scalar a and b (at least one a tensor)."""

    def forward(self, a, b):
        out = _torch_dtype(a**b, a, b)
        self.a, self.b, self.out = a, b, out
        return out

    def backward(self, g):
        a, b, out = self.a, self.b, self.out
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            if _shape(b) is None and b == 2:
                ga = g * 2 * a
            else:
                ga = unbroadcast(g * b * a ** (b - 1), a.shape)
        if nb:
            xp = backend.xp_of(out)
            # d(a^b)/db = a^b log a; PyTorch takes it as 0 where a == 0 (and b >= 0)
            log_a = xp.log(xp.where(a == 0, 1, a)) if _shape(a) is not None else math.log(a)
            gb = unbroadcast(g * out * log_a, b.shape)
        return ga, gb


class Remainder(Function):
    """a - floor(a / b) * b: the sign of the divisor, as Python's % and torch.remainder."""

    def forward(self, a, b):
        self.a, self.b = a, b
        xp = backend.xp_of(a if _shape(a) is not None else b)
        return _torch_dtype(xp.remainder(a, b), a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        ga = unbroadcast(g, self.a.shape) if na else None
        gb = None
        if nb:  # d/db (a - floor(a/b) b) = -floor(a/b)
            gb = unbroadcast(-g * backend.xp_of(g).floor(self.a / self.b), self.b.shape)
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Abs(Function):
    def forward(self, a):
        self.a = a
        return backend.xp_of(a).abs(a)

    def backward(self, g):
        return g * backend.xp_of(g).sign(self.a)


class Exp(Function):
    def forward(self, a):
        self.out = _ew.unary("exp", a) if _ew.takes(a) else backend.xp_of(a).exp(a)
        return self.out

    def backward(self, g):
        if _ew.takes(g):  # g * out in one pass on every core
            dx = _ew.unary_backward("exp", self.out, g)
            if dx is not None:
                return dx
        # BEGIN EXERCISE ch01: elementwise_backward - exp' = exp: reuse the saved output
        return g * self.out
        # END EXERCISE


class Log(Function):
    def forward(self, a):
        self.a = a
        return backend.xp_of(a).log(a)

    def backward(self, g):
        # BEGIN EXERCISE ch01: elementwise_backward - log'(a) = 1/a
        return g / self.a
        # END EXERCISE


class Sqrt(Function):
    def forward(self, a):
        self.out = backend.xp_of(a).sqrt(a)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Clamp(Function):
    def forward(self, a, lo=None, hi=None):
        xp = backend.xp_of(a)
        self.mask = xp.ones(a.shape, dtype=bool)
        out = a
        if lo is not None:
            self.mask &= a >= lo
            out = xp.maximum(out, xp.asarray(lo, dtype=a.dtype))
        if hi is not None:
            self.mask &= a <= hi
            out = xp.minimum(out, xp.asarray(hi, dtype=a.dtype))
        return out

    def backward(self, g):
        return g * self.mask


class Where(Function):
    """cond ? a : b, with broadcasting; `cond` is a boolean array (no gradient)."""

    def forward(self, cond, a, b):
        self.cond, self.sa, self.sb = cond, _shape(a), _shape(b)
        xp = backend.xp_of(cond)
        return _torch_dtype(xp.where(cond, a, b), a, b)

    def backward(self, g):
        _, na, nb = self.needs_input_grad
        zero = g.dtype.type(0)
        xp = backend.xp_of(g)
        ga = unbroadcast(xp.where(self.cond, g, zero), self.sa) if na else None
        gb = unbroadcast(xp.where(self.cond, zero, g), self.sb) if nb else None
        return None, ga, gb


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _bool_mask(mask, op):
    m = _raw(mask)
    if getattr(m, "dtype", None) is None or m.dtype.kind != "b":
        raise TypeError(f"{op}: the mask must be a bool tensor, got {getattr(m, 'dtype', type(m))}")
    return m


def add(a, b):
    return Add.apply(a, b)


def sub(a, b):
    return Sub.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b)


def div(a, b):
    return Div.apply(a, b)


def pow(a, b):  # noqa: A001 - PyTorch's name
    return Pow.apply(a, b)


def neg(a):
    return Neg.apply(a)


def remainder(a, b):
    return Remainder.apply(a, b)


def floor_divide(a, b):
    """floor(a / b), as Python's // (no gradient: it is piecewise constant)."""
    xa, xb = _raw(a), _raw(b)
    xp = backend.xp_of(xa if _shape(xa) is not None else xb)
    return Tensor._wrap(xp.asarray(_torch_dtype(xp.floor_divide(xa, xb), xa, xb)))


def abs(a):  # noqa: A001
    return Abs.apply(a)


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def sqrt(a):
    return Sqrt.apply(a)


def clamp(a, min=None, max=None):  # noqa: A002 - PyTorch's names
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return Clamp.apply(a, lo=min, hi=max)


def where(condition, input, other):  # noqa: A002
    """Elements of `input` where `condition` is True, else of `other` (broadcasting)."""
    cond = _bool_mask(condition, "where")
    return Where.apply(cond, input, other)


def masked_fill(input, mask, value):  # noqa: A002
    """`input` with `value` where `mask` is True (mask broadcasts to input's shape)."""
    m = _bool_mask(mask, "masked_fill")
    try:
        shape = backend.np.broadcast_shapes(m.shape, input.shape)
    except ValueError:
        shape = None
    if shape != tuple(input.shape):
        raise RuntimeError(
            f"masked_fill: mask of shape {tuple(m.shape)} does not broadcast to the input's "
            f"shape {tuple(input.shape)}"
        )
    if not isinstance(value, Tensor):
        value = input.dtype.type(value)  # keeps the input's dtype (-inf stays float32)
    return Where.apply(m, value, input)
