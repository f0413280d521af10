"""tinytorch's dtypes (NumPy's), PyTorch's names for them, and PyTorch's default dtypes."""

from __future__ import annotations

import numpy as np

float32 = np.dtype("float32")
float64 = np.dtype("float64")
float16 = np.dtype("float16")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")
long, double, half = int64, float64, float16

_DTYPES = {
    "float32": float32,
    "float": float32,
    "float64": float64,
    "double": float64,
    "int64": int64,
    "long": int64,
    "int32": int32,
    "int": int32,
    "bool": bool_,
    "float16": float16,
    "half": float16,
}


def as_dtype(dtype):
    """A numpy dtype from a dtype, a name ("float32") or a Python type."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    if dtype is float:
        return float32
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    return np.dtype(dtype)


def _default_dtype(arr):
    """PyTorch's inference for Python data: floats -> float32, ints -> int64, bools -> bool."""
    k = arr.dtype.kind
    if k == "f":
        return float32
    if k in "iu":
        return int64
    if k == "b":
        return bool_
    raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
