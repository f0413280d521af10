"""`Tensor`: one NumPy or CuPy array, plus what autograd needs.

A Tensor holds `.data` (the array), `.grad` (a Tensor, filled by `backward()`),
`.requires_grad`, and `_ctx`, the Function that produced it (None for leaves). Every method
that computes (`x * y`, `x.sum()`, `x.T`, ...) is one function of `tinytorch.ops`, where each
op's forward and backward sit side by side: the operator table at the bottom of this file
attaches them.
"""

from __future__ import annotations

import numpy as np

from . import autograd, backend
from ._tensor_str import format_array
from .dtypes import _default_dtype, as_dtype, bool_, float32, float64, int32, int64


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_priority__ = 1000  # numpy scalars/arrays on the left defer to our reflected ops

    def __init__(self, data, dtype=None, device=None, requires_grad: bool = False):
        dtype = as_dtype(dtype)
        if isinstance(data, Tensor):
            data = data.data
        on_gpu = backend.is_cupy(data)
        device = backend.check_device(device or ("cuda" if on_gpu else "cpu"))
        if on_gpu or isinstance(data, np.ndarray | np.generic):
            arr = backend.to_device(data, device)  # arrays keep their dtype unless told
        else:  # Python numbers / nested lists: PyTorch's default dtypes
            arr = np.asarray(data)
            arr = backend.to_device(np.asarray(arr, dtype=dtype or _default_dtype(arr)), device)
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
        self.data = arr
        self.grad = None
        self._ctx = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array, requires_grad: bool = False) -> Tensor:
        """A Tensor around an existing array, without copies or checks (internal)."""
        t = cls.__new__(cls)
        t.data, t.grad, t._ctx, t.requires_grad = array, None, None, requires_grad
        return t

    # ---- attributes -------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return "cpu" if isinstance(self.data, np.ndarray) else "cuda"

    @property
    def xp(self):
        return np if isinstance(self.data, np.ndarray) else backend.get_xp("cuda")

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    __hash__ = object.__hash__  # __eq__ is elementwise, as in PyTorch

    # ---- autograd -----------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(
                f"only floating-point tensors can require gradients; this tensor is "
                f"{self.data.dtype} (shape {tuple(self.shape)}). Use .float() first."
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use .detach()")
        self.requires_grad = requires_grad
        return self

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into each leaf's `.grad` (see tinytorch.autograd)."""
        autograd.backward(self, gradient, retain_graph)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory, as in PyTorch)."""
        return Tensor._wrap(self.data)

    # ---- conversion ---------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError(
                "Can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()"
            )
        return backend.to_device(self.data, "cpu")

    def item(self):
        if self.data.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element; this one has shape {tuple(self.shape)}"
            )
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_device(self.data, "cpu").tolist()

    # Python numbers from one-element tensors: `float(loss)`, `if mask.any():`, f"{loss:.3f}"
    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements (shape "
                f"{tuple(self.shape)}) is ambiguous; use .any() or .all()"
            )
        return bool(self.data.reshape(()))

    def __format__(self, spec: str) -> str:
        if spec and self.data.size == 1:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def to(self, *args, dtype=None, device=None) -> Tensor:
        """`.to(device)`, `.to(dtype)` or both; returns self when nothing changes."""
        for a in args:
            if isinstance(a, str) and (a in backend.DEVICES or a.startswith("cuda")):
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            device = backend.check_device(device)
            if device != self.device:
                from .ops.misc import to_device

                out = to_device(out, device)
        if dtype is not None and as_dtype(dtype) != out.dtype:
            from .ops.misc import cast

            out = cast(out, as_dtype(dtype))
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def float(self) -> Tensor:
        return self.to(float32)

    def double(self) -> Tensor:
        return self.to(float64)

    def long(self) -> Tensor:
        return self.to(int64)

    def int(self) -> Tensor:
        return self.to(int32)

    def bool(self) -> Tensor:
        return self.to(bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    # ---- in-place updates of leaves (initialization, optimizers) -----------------------
    def _check_inplace(self, op: str) -> None:
        if self._ctx is not None:
            raise RuntimeError(
                f"{op}: in-place update of a tensor that is part of a graph (produced by "
                f"{self._ctx.name}) is not supported; in-place ops are for leaves"
            )
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                f"{op}: a leaf that requires grad cannot be updated in place while grad is "
                "recorded; wrap the update in `with tinytorch.no_grad():`"
            )

    def copy_(self, src) -> Tensor:
        self._check_inplace("copy_")
        src = src.data if isinstance(src, Tensor) else src
        arr = self.xp.asarray(backend.to_device(src, self.device) if self.device == "cpu" else src)
        if arr.shape != self.shape and np.broadcast_shapes(arr.shape, self.shape) != self.shape:
            raise RuntimeError(
                f"copy_: source shape {tuple(arr.shape)} does not broadcast to {tuple(self.shape)}"
            )
        self.data[...] = arr
        return self

    def fill_(self, value) -> Tensor:
        self._check_inplace("fill_")
        self.data.fill(value)
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        self._check_inplace("normal_")
        r = backend.rng(self.device).standard_normal(self.shape, dtype=float64)
        self.data[...] = (r * std + mean).astype(self.dtype)
        return self

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        self._check_inplace("uniform_")
        r = backend.rng(self.device).random(self.shape, dtype=float64)
        self.data[...] = (r * (b - a) + a).astype(self.dtype)
        return self

    def __setitem__(self, index, value) -> None:
        self._check_inplace("__setitem__")
        from .ops.shape import _raw_index

        value = value.data if isinstance(value, Tensor) else value
        self.data[_raw_index(index)] = value

    # ---- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        arr = backend.to_device(self.data, "cpu")
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (float32, int64, bool_) or (arr.size == 0 and self.dtype != float32):
            extras.append(f"dtype=tinytorch.{self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn={self._ctx!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([format_array(arr)] + extras) + ")"


# ---- the operator table -------------------------------------------------------------------
# Every computing method and operator of Tensor is one function of tinytorch.ops (where each
# op's forward and backward sit side by side). They are attached here, after the class, because
# the ops themselves import Tensor.
def _operator_table() -> dict:
    from .ops import activations, elementwise, linalg, misc, reduce, shape
    from .ops import nn as nn_ops

    e, r, s = elementwise, reduce, shape

    def gelu(self, approximate: str = "none"):
        from .nn.functional import gelu  # F.gelu's path: the fused kernel where it applies

        return gelu(self, approximate)

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dims, got shape {self.shape}")
        return s.transpose(self, 0, -1) if self.ndim == 2 else self

    return {
        # arithmetic; the reflected forms (2 - x) swap the operands
        "__add__": e.add,
        "__radd__": e.add,
        "__sub__": e.sub,
        "__rsub__": lambda self, other: e.sub(other, self),
        "__mul__": e.mul,
        "__rmul__": e.mul,
        "__truediv__": e.div,
        "__rtruediv__": lambda self, other: e.div(other, self),
        "__pow__": e.pow,
        "__rpow__": lambda self, other: e.pow(other, self),
        "__matmul__": linalg.matmul,
        "__rmatmul__": lambda self, other: linalg.matmul(other, self),
        "__mod__": e.remainder,
        "__rmod__": lambda self, other: e.remainder(other, self),
        "__floordiv__": e.floor_divide,
        "__rfloordiv__": lambda self, other: e.floor_divide(other, self),
        "__neg__": e.neg,
        "__abs__": e.abs,
        "__getitem__": s.getitem,
        # comparisons (no gradient)
        "__eq__": misc.eq,
        "__ne__": misc.ne,
        "__lt__": misc.lt,
        "__le__": misc.le,
        "__gt__": misc.gt,
        "__ge__": misc.ge,
        "__invert__": misc.logical_not,
        "eq": misc.eq,
        "ne": misc.ne,
        "lt": misc.lt,
        "le": misc.le,
        "gt": misc.gt,
        "ge": misc.ge,
        "logical_not": misc.logical_not,
        # elementwise
        "add": e.add,
        "sub": e.sub,
        "mul": e.mul,
        "div": e.div,
        "pow": e.pow,
        "remainder": e.remainder,
        "floor_divide": e.floor_divide,
        "neg": e.neg,
        "abs": e.abs,
        "exp": e.exp,
        "log": e.log,
        "sqrt": e.sqrt,
        "clamp": e.clamp,
        "masked_fill": e.masked_fill,
        "tanh": activations.tanh,
        "sigmoid": activations.sigmoid,
        "relu": activations.relu,
        "gelu": gelu,
        "matmul": linalg.matmul,
        # reductions
        "sum": r.sum,
        "mean": r.mean,
        "var": r.var,
        "std": r.std,
        "max": r.max,
        "min": r.min,
        "argmax": r.argmax,
        "argmin": r.argmin,
        "topk": r.topk,
        "all": misc.all,
        "any": misc.any,
        "softmax": nn_ops.softmax,
        "log_softmax": nn_ops.log_softmax,
        # shapes
        "reshape": s.reshape,
        "view": lambda self, *shape: s.reshape(self, *shape),
        "permute": s.permute,
        "transpose": s.transpose,
        "t": t,
        "T": property(lambda self: s.permute(self, tuple(reversed(range(self.ndim))))),
        "mT": property(lambda self: s.transpose(self, -2, -1)),
        "expand": s.expand,
        "expand_as": s.expand_as,
        "squeeze": s.squeeze,
        "unsqueeze": s.unsqueeze,
        "flatten": s.flatten,
        "split": lambda self, split_size, dim=0: s.split(self, split_size, dim),
        "chunk": s.chunk,
        "clone": misc.clone,
        "contiguous": misc.contiguous,
    }


for _name, _method in _operator_table().items():
    setattr(Tensor, _name, _method)
autograd._Tensor = Tensor
