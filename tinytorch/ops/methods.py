"""Tensor methods and operators, each a direct call into an op (no dispatch layer)."""

from __future__ import annotations

from .. import ops
from ..tensor import Tensor
from . import misc


def _rsub(self, other):
    return ops.sub(other, self)


def _rdiv(self, other):
    return ops.div(other, self)


def _rpow(self, other):
    return ops.pow(other, self)


def _rmod(self, other):
    return ops.remainder(other, self)


def _rfloordiv(self, other):
    return ops.floor_divide(other, self)


def _rmatmul(self, other):
    return ops.matmul(other, self)


def _T(self):
    return ops.permute(self, tuple(reversed(range(self.ndim))))


def _mT(self):
    return ops.transpose(self, -2, -1)


def _t(self):
    if self.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dims, got shape {tuple(self.shape)}")
    return ops.transpose(self, 0, -1) if self.ndim == 2 else self


def _view(self, *shape):
    return ops.reshape(self, *shape)


def _split(self, split_size, dim=0):
    return ops.split(self, split_size, dim)


_METHODS = {
    "__add__": ops.add,
    "__radd__": ops.add,
    "__sub__": ops.sub,
    "__rsub__": _rsub,
    "__mul__": ops.mul,
    "__rmul__": ops.mul,
    "__truediv__": ops.div,
    "__rtruediv__": _rdiv,
    "__pow__": ops.pow,
    "__rpow__": _rpow,
    "__matmul__": ops.matmul,
    "__rmatmul__": _rmatmul,
    "__mod__": ops.remainder,
    "__rmod__": _rmod,
    "__floordiv__": ops.floor_divide,
    "__rfloordiv__": _rfloordiv,
    "remainder": ops.remainder,
    "floor_divide": ops.floor_divide,
    "__neg__": ops.neg,
    "__abs__": ops.abs,
    "__getitem__": ops.getitem,
    "__eq__": ops.eq,
    "__ne__": ops.ne,
    "__lt__": ops.lt,
    "__le__": ops.le,
    "__gt__": ops.gt,
    "__ge__": ops.ge,
    "__invert__": ops.logical_not,
    "add": ops.add,
    "sub": ops.sub,
    "mul": ops.mul,
    "div": ops.div,
    "pow": ops.pow,
    "neg": ops.neg,
    "abs": ops.abs,
    "exp": ops.exp,
    "log": ops.log,
    "sqrt": ops.sqrt,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "relu": ops.relu,
    "gelu": ops.gelu,
    "clamp": ops.clamp,
    "masked_fill": ops.masked_fill,
    "matmul": ops.matmul,
    "sum": ops.sum,
    "mean": ops.mean,
    "var": ops.var,
    "std": ops.std,
    "max": ops.max,
    "min": ops.min,
    "argmax": ops.argmax,
    "argmin": ops.argmin,
    "topk": ops.topk,
    "reshape": ops.reshape,
    "view": _view,
    "permute": ops.permute,
    "transpose": ops.transpose,
    "expand": ops.expand,
    "expand_as": ops.expand_as,
    "squeeze": ops.squeeze,
    "unsqueeze": ops.unsqueeze,
    "flatten": ops.flatten,
    "split": _split,
    "chunk": ops.chunk,
    "softmax": ops.softmax,
    "log_softmax": ops.log_softmax,
    "eq": ops.eq,
    "ne": ops.ne,
    "lt": ops.lt,
    "le": ops.le,
    "gt": ops.gt,
    "ge": ops.ge,
    "logical_not": ops.logical_not,
    "clone": misc.clone,
    "contiguous": misc.contiguous,
    "all": misc.all,
    "any": misc.any,
    "t": _t,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
Tensor.T = property(_T)
Tensor.mT = property(_mT)
