"""Shared test helpers: `from helpers import assert_close, to_numpy`.

Tolerances (documented once, used everywhere through `assert_close`): float64 rtol 1e-7 /
atol 1e-9, float32 rtol 1e-5 / atol 1e-6 for single ops; tests of deep compositions pass
their own, looser, bound and say why.
"""

from __future__ import annotations

import numpy as np

from tinytorch import backend
from tinytorch.tensor import Tensor

TOL = {
    np.dtype("float64"): dict(rtol=1e-7, atol=1e-9),
    np.dtype("float32"): dict(rtol=1e-5, atol=1e-6),
}


def to_numpy(x):
    """A NumPy array from a tinytorch Tensor, a torch tensor, a CuPy or NumPy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch
        return x.detach().cpu().numpy()
    if isinstance(x, Tensor):
        x = x.data
    return backend.to_device(x, "cpu")


def assert_close(actual, expected, rtol=None, atol=None, msg=""):
    """Compare with the suite's per-dtype tolerance (the dtype of `actual`)."""
    a, e = to_numpy(actual), to_numpy(expected)
    tol = TOL.get(a.dtype, dict(rtol=1e-5, atol=1e-6))
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    assert a.shape == e.shape, f"{msg} shape {a.shape} != expected {e.shape}"
    assert not np.isnan(a).any() or np.isnan(e).any(), f"{msg} NaN in result"
    np.testing.assert_allclose(
        a, e.astype(a.dtype) if a.dtype != e.dtype else e, rtol=rtol, atol=atol, err_msg=msg
    )
