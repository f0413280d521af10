"""Creating tensors: from data, filled, ranges and random, with PyTorch's signatures.

All take `dtype=None` (float32 for floating values, int64 for integers), `device="cpu"` and
`requires_grad=False`. Random ones draw from tinytorch's seeded generator (manual_seed).
"""

from __future__ import annotations

import numpy as np

from . import backend
from .dtypes import as_dtype, float32, int64
from .tensor import Tensor


def _sizes(size):
    if len(size) == 1 and isinstance(size[0], tuple | list):
        return tuple(size[0])
    return tuple(size)


def _make(arr, requires_grad):
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, numbers, arrays or a Tensor)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray) or backend.is_cupy(data):
        data = data.copy()
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array (its dtype kept)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = (
            float32
            if isinstance(fill_value, float)
            else (np.dtype(bool) if isinstance(fill_value, bool) else int64)
        )
    xp = backend.get_xp(backend.check_device(device))
    size = (size,) if isinstance(size, int) else tuple(size)
    return _make(xp.full(size, fill_value, dtype=as_dtype(dtype)), requires_grad)


def zeros(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return full(_sizes(size), 0, dtype or float32, device, requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return full(_sizes(size), 1, dtype or float32, device, requires_grad)


def empty(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def eye(n, m=None, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    xp = backend.get_xp(backend.check_device(device))
    return _make(xp.eye(n, m, dtype=as_dtype(dtype) or float32), requires_grad)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        floats = any(isinstance(v, float) for v in (start, end, step))
        dtype = float32 if floats else int64
    xp = backend.get_xp(backend.check_device(device))
    return _make(xp.arange(start, end, step).astype(as_dtype(dtype)), requires_grad)


def linspace(start, end, steps, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    xp = backend.get_xp(backend.check_device(device))
    return _make(xp.linspace(start, end, steps).astype(as_dtype(dtype) or float32), requires_grad)


def _random(kind, size, dtype, device, requires_grad, **kw):
    device = backend.check_device(device)
    dtype = as_dtype(dtype) or float32
    if dtype.kind != "f":
        raise TypeError(f"{kind}: needs a floating-point dtype, got {dtype}")
    gen = backend.rng(device)
    # draw float64 then round, so a seed gives the same values in float32 and float64
    arr = gen.standard_normal(size) if kind == "randn" else gen.random(size)
    return _make(arr.astype(dtype), requires_grad)


def randn(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal samples of the given size."""
    return _random("randn", _sizes(size), dtype, device, requires_grad)


def rand(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _random("rand", _sizes(size), dtype, device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device="cpu") -> Tensor:
    """Integers uniform in [low, high) (or [0, low) when high is omitted), int64.

    As torch.randint: `randint(10, (3,))` means high=10, size=(3,).
    """
    if isinstance(high, tuple | list):
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    gen = backend.rng(backend.check_device(device))
    size = (size,) if isinstance(size, int) else tuple(size)
    return Tensor._wrap(gen.integers(low, high, size=size).astype(as_dtype(dtype) or int64))


def randperm(n, dtype=None, device="cpu") -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    device = backend.check_device(device)
    gen = backend.rng(device)
    # (argsort of uniform draws on the GPU: not every CuPy Generator has permutation)
    perm = gen.permutation(n) if device == "cpu" else gen.random(n).argsort()
    return Tensor._wrap(perm.astype(as_dtype(dtype) or int64))


def _like(fn):
    def like(input, dtype=None, device=None, requires_grad=False, **kw):
        return fn(
            *input.shape,
            dtype=dtype or input.dtype,
            device=device or input.device,
            requires_grad=requires_grad,
            **kw,
        )

    like.__name__ = fn.__name__ + "_like"
    like.__doc__ = f"{fn.__name__} with the shape (and by default dtype, device) of `input`."
    return like


zeros_like, ones_like, randn_like, rand_like = map(_like, (zeros, ones, randn, rand))


def empty_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None, device=None) -> Tensor:
    """randint with the shape (and by default dtype, device) of `input`; high exclusive."""
    return randint(
        low, high, input.shape, dtype=dtype or input.dtype, device=device or input.device
    )


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(
        input.shape, fill_value, dtype or input.dtype, device or input.device, requires_grad
    )
