"""Moves between devices and dtypes, copies, and comparisons (which carry no gradient)."""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..copies import c_copy
from ..tensor import Tensor


class ToDevice(Function):
    def forward(self, a, device="cpu"):
        self.src = backend.device_of(a)
        return backend.to_device(a, device)

    def backward(self, g):
        return backend.to_device(g, self.src)


class Cast(Function):
    def forward(self, a, dtype=None):
        self.src = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.src) if self.src.kind == "f" else None


class Copy(Function):
    """clone() (always a copy) and contiguous() (a C-ordered copy): gradient passes through."""

    def forward(self, a, contiguous=False):
        return c_copy(a) if contiguous else a.copy()

    def backward(self, g):
        return g


def clone(input):
    return Copy.apply(input)


def contiguous(input):
    """`input` itself when its array is already C-contiguous, else a C-ordered copy."""
    if input.data.flags.c_contiguous:
        return input
    return Copy.apply(input, contiguous=True)


def to_device(input, device: str):
    return ToDevice.apply(input, device=device)


def cast(input, dtype):
    if input.requires_grad and dtype.kind != "f":  # leaves the graph, as in PyTorch
        return Tensor._wrap(input.data.astype(dtype))
    return Cast.apply(input, dtype=dtype)


def _compare(op):
    def compare(a, b):
        if isinstance(b, Tensor):
            if a.device != b.device:
                raise RuntimeError(f"comparison between a {a.device} and a {b.device} tensor")
            b = b.data
        return Tensor._wrap(op(a.data, b))

    return compare


eq = _compare(lambda a, b: a == b)
ne = _compare(lambda a, b: a != b)
lt = _compare(lambda a, b: a < b)
le = _compare(lambda a, b: a <= b)
gt = _compare(lambda a, b: a > b)
ge = _compare(lambda a, b: a >= b)


def all(input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """True where every element (along `dim`) is nonzero; a bool tensor, no gradient."""
    return Tensor._wrap(input.xp.asarray(input.data.all(axis=dim, keepdims=keepdim)))


def any(input, dim=None, keepdim: bool = False):  # noqa: A001
    return Tensor._wrap(input.xp.asarray(input.data.any(axis=dim, keepdims=keepdim)))


def logical_not(input):
    return Tensor._wrap(~input.data if input.dtype.kind == "b" else input.data == 0)
