"""Elementwise ops: arithmetic with broadcasting, and the pointwise functions.

Each op is a Function with forward and backward side by side, then the lowercase function
users call. Python scalars pass straight through as constants (NumPy treats them as "weak",
so float32 stays float32). Binary backwards reduce broadcast dimensions with `unbroadcast`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function, unbroadcast
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


class Add(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        return _torch_dtype(a + b, a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa) if na else None, unbroadcast(g, self.sb) if nb else None)


class Sub(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        return _torch_dtype(a - b, a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa) if na else None, unbroadcast(-g, self.sb) if nb else None)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return _torch_dtype(a * b, a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad  # skip the product for an input that needs no gradient
        # BEGIN EXERCISE ch01: d(a*b)/da = b and d(a*b)/db = a, each reduced with unbroadcast
        ga = unbroadcast(g * self.b, self.a.shape) if na else None
        gb = unbroadcast(g * self.a, self.b.shape) if nb else None
        # END EXERCISE
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.sa, self.sb, self.b = _shape(a), _shape(b), b
        self.out = _torch_dtype(a / b, a, b)
        return self.out

    def backward(self, g):
        na, nb = self.needs_input_grad
        g_b = g / self.b  # d(a/b)/da = 1/b
        gb = None
        if nb:  # d(a/b)/db = -a/b^2 = -(1/b) (a/b): reuses g/b and the output
            gb = g_b * self.out
            gb *= -1
            gb = unbroadcast(gb, self.sb)
        return (unbroadcast(g_b, self.sa) if na else None), gb


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
        self.out = backend.xp_of(a).exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return backend.xp_of(a).log(a)

    def backward(self, g):
        return g / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = backend.xp_of(a).sqrt(a)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Tanh(Function):
    def forward(self, a):
        self.out = backend.xp_of(a).tanh(a)
        return self.out

    def backward(self, g):
        d = 1 - self.out * self.out  # tanh' = 1 - tanh^2, then times g in place (one array
        d *= g  # less to allocate: at large sizes memory traffic is the cost)
        return d


class Sigmoid(Function):
    def forward(self, a):
        xp = backend.xp_of(a)
        # 1 / (1 + exp(-a)), in place: accurate to the last bit for every a; exp(-a) = inf
        # for a < -88 (float32) gives exactly 0, so that overflow is expected and silenced
        out = xp.asarray(xp.negative(a))  # (asarray: NumPy returns a scalar for 0-d input)
        with np.errstate(over="ignore"):
            xp.exp(out, out=out)
        out += 1
        self.out = xp.reciprocal(out, out=out)
        return out

    def backward(self, g):
        d = 1 - self.out  # sigmoid' = s (1 - s), times g, in place
        d *= self.out
        d *= g
        return d


class ReLU(Function):
    def forward(self, a):
        self.out = backend.xp_of(a).maximum(a, a.dtype.type(0))  # relu(-inf) = 0, nan stays
        return self.out

    def backward(self, g):
        return g * (self.out > 0)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# erf for float32 on the CPU as XLA and Eigen compute it: x * P(x^2) / Q(x^2) on [-4, 4] and
# +-1 beyond. Within 5e-7 of the exact value (a few float32 ulps) and ~8x faster than
# scipy.special.erf, which works in double precision. float64 (and the GPU) use scipy/cupyx.
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)


def _erf(x):
    if x.dtype != _F32 or not isinstance(x, np.ndarray):
        return backend.special(x).erf(x)
    f = x.dtype.type
    x = np.clip(x, f(-4), f(4))
    x2 = x * x
    p, q = x2 * f(_ERF_P[0]), x2 * f(_ERF_Q[0])
    for i, c in enumerate(_ERF_P[1:]):  # Horner, in place
        p += f(c)
        if i < len(_ERF_P) - 2:
            p *= x2
    for i, c in enumerate(_ERF_Q[1:]):
        q += f(c)
        if i < len(_ERF_Q) - 2:
            q *= x2
    p *= x
    p /= q
    return p


class GELU(Function):
    """x * Phi(x) exactly (erf), or PyTorch's approximate='tanh' formula."""

    def forward(self, a, approximate="none"):
        self.a, self.approximate = a, approximate
        xp = backend.xp_of(a)
        if approximate == "tanh":
            self.t = xp.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a**3))
            return 0.5 * a * (1 + self.t)
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        cdf = _erf(a * a.dtype.type(1 / math.sqrt(2.0)))
        cdf += 1
        cdf *= 0.5
        self.cdf = cdf
        return a * cdf

    def backward(self, g):
        a = self.a
        xp = backend.xp_of(a)
        if self.approximate == "tanh":
            t = self.t
            dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a)
            return g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * dinner)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * a * a)
        return g * (self.cdf + a * pdf)


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


def tanh(a):
    return Tanh.apply(a)


def sigmoid(a):
    return Sigmoid.apply(a)


def relu(a):
    return ReLU.apply(a)


def gelu(a, approximate: str = "none"):
    return GELU.apply(a, approximate=approximate)


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
