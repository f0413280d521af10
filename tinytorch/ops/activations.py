"""The activations: tanh, sigmoid, relu and gelu (exact, or PyTorch's tanh approximation).

Each is a Function with forward and backward side by side, then the lowercase function users
call. The backwards reuse the forward's output where the derivative is a function of it
(tanh' = 1 - tanh^2, sigmoid' = s (1 - s)), computed in place: at large sizes the memory
traffic, not the arithmetic, is the cost.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..kernels import elementwise as _ew

_F32 = np.dtype("float32")


def _fused_backward(name, out, g):
    """g * name'(x) from the saved output, by the kernels (large float32 arrays), else None."""
    return _ew.unary_backward(name, out, g) if _ew.takes(g) else None


class Tanh(Function):
    def forward(self, a):
        self.out = _ew.unary("tanh", a) if _ew.takes(a) else backend.xp_of(a).tanh(a)
        return self.out

    def backward(self, g):
        dx = _fused_backward("tanh", self.out, g)
        if dx is not None:
            return dx
        # BEGIN EXERCISE ch01: activation_backward - tanh' = 1 - tanh^2, from the saved output
        d = 1 - self.out * self.out  # tanh' = 1 - tanh^2, then times g in place (one array
        d *= g  # less to allocate: at large sizes memory traffic is the cost)
        return d
        # END EXERCISE


def sigmoid_array(a, out=None):
    """1 / (1 + exp(-a)) on a raw array, into `out` (a itself when None: in place; the fused
    LSTM and GRU layers use that on their gate slices). Four vectorized passes, accurate to the
    last bit for every a; exp(-a) = inf for a < -88 (float32) gives exactly 0, so that overflow
    is expected and silenced."""
    xp = backend.xp_of(a)
    out = xp.negative(a, out=a if out is None else out)
    with np.errstate(over="ignore"):
        xp.exp(out, out=out)
    out += 1
    return xp.reciprocal(out, out=out)


class Sigmoid(Function):
    def forward(self, a):
        if _ew.takes(a):  # one pass instead of sigmoid_array's four
            self.out = _ew.unary("sigmoid", a)
        else:
            self.out = sigmoid_array(a, out=backend.xp_of(a).empty_like(a))
        return self.out

    def backward(self, g):
        dx = _fused_backward("sigmoid", self.out, g)
        if dx is not None:
            return dx
        # BEGIN EXERCISE ch01: activation_backward - sigmoid' = s (1 - s), s the saved output
        d = 1 - self.out  # sigmoid' = s (1 - s), times g, in place
        d *= self.out
        d *= g
        return d
        # END EXERCISE


class ReLU(Function):
    def forward(self, a):
        if _ew.takes(a):
            self.out = _ew.unary("relu", a)
        else:
            self.out = backend.xp_of(a).maximum(a, a.dtype.type(0))  # relu(-inf) = 0, nan stays
        return self.out

    def backward(self, g):
        dx = _fused_backward("relu", self.out, g)
        if dx is not None:
            return dx
        # BEGIN EXERCISE ch01: activation_backward - relu' = 1 where the output is > 0, else 0
        return g * (self.out > 0)
        # END EXERCISE


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


def tanh(a):
    return Tanh.apply(a)


def sigmoid(a):
    return Sigmoid.apply(a)


def relu(a):
    return ReLU.apply(a)


def gelu(a, approximate: str = "none"):
    return GELU.apply(a, approximate=approximate)
