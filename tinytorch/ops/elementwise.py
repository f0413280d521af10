"""Elementwise ops: arithmetic with broadcasting, and the pointwise functions.

Each op is a Function with forward and backward side by side, then the lowercase function
users call. Python scalars pass straight through as constants (NumPy treats them as "weak",
so float32 stays float32). Binary backwards reduce broadcast dimensions with `unbroadcast`.
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, unbroadcast
from ..tensor import Tensor


def _shape(x):
    """The shape of an array operand; None for constants (Python or NumPy scalars)."""
    return x.shape if isinstance(x, backend.ARRAY_TYPES) else None


class Add(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        return a + b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa) if na else None,
                unbroadcast(g, self.sb) if nb else None)


class Sub(Function):
    def forward(self, a, b):
        self.sa, self.sb = _shape(a), _shape(b)
        return a - b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa) if na else None,
                unbroadcast(-g, self.sb) if nb else None)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        na, nb = self.needs_input_grad  # skip the product for an input that needs no gradient
        # BEGIN EXERCISE ch01: d(a*b)/da = b and d(a*b)/db = a, each reduced with unbroadcast
        ga = unbroadcast(g * self.b, self.a.shape) if na else None
        gb = unbroadcast(g * self.a, self.b.shape) if nb else None
        # END EXERCISE
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        na, nb = self.needs_input_grad
        a, b = self.a, self.b
        ga = unbroadcast(g / b, a.shape) if na else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if nb else None
        return ga, gb


class Pow(Function):
    """a ** b for tensor or scalar a and b (at least one a tensor)."""

    def forward(self, a, b):
        out = a**b
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
        return g * (1 - self.out * self.out)


class Sigmoid(Function):
    def forward(self, a):
        self.out = backend.special(a).expit(a)  # stable for large |a|
        return self.out

    def backward(self, g):
        return g * self.out * (1 - self.out)


class ReLU(Function):
    def forward(self, a):
        self.mask = a > 0
        return a * self.mask

    def backward(self, g):
        return g * self.mask


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


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
        self.cdf = 0.5 * (1 + backend.special(a).erf(a * (1 / math.sqrt(2.0))))
        return a * self.cdf

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
        return xp.where(cond, a, b)

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
