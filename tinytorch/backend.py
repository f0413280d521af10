"""One array-module switch: `xp` is numpy on "cpu" and cupy on "cuda".

Op code is written once against `xp`; this module is the only place that knows CuPy exists.
"""

from __future__ import annotations

import numpy as np

try:  # CuPy is optional: without it (or without a GPU) "cuda" is a clear error.
    import cupy as _cupy

    try:
        _CUDA_OK = _cupy.cuda.runtime.getDeviceCount() > 0
        _CUDA_WHY = "" if _CUDA_OK else "CuPy found no CUDA device"
    except Exception as e:  # noqa: BLE001 - any driver/runtime failure means "no GPU"
        _CUDA_OK, _CUDA_WHY = False, f"CuPy could not reach a CUDA device ({e})"
except ImportError:
    _cupy = None
    _CUDA_OK, _CUDA_WHY = False, "CuPy is not installed (pip install -e '.[cuda]')"

DEVICES = ("cpu", "cuda")
ARRAY_TYPES = (np.ndarray,) if _cupy is None else (np.ndarray, _cupy.ndarray)


def cuda_is_available() -> bool:
    return _CUDA_OK


def check_device(device) -> str:
    """Normalize a device name and fail clearly when it cannot be used."""
    device = str(device)
    if device.startswith("cuda:"):
        device = "cuda"  # one GPU only: "cuda:0" is "cuda"
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if device == "cuda" and not _CUDA_OK:
        raise RuntimeError(f"device 'cuda' was requested but is not available: {_CUDA_WHY}")
    return device


def get_xp(device: str):
    """The array module for a device name."""
    return _cupy if device == "cuda" else np


def device_of(array) -> str:
    return "cpu" if isinstance(array, np.ndarray) else "cuda"


def is_cupy(array) -> bool:
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def xp_of(array):
    """The array module that owns `array` (numpy for NumPy arrays and scalars)."""
    return np if isinstance(array, np.ndarray | np.generic) else _cupy


def to_device(array, device: str):
    """Copy an array to `device` (no copy when it is already there)."""
    if device == "cuda":
        return _cupy.asarray(array)
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, np.generic):
        return np.asarray(array)
    return _cupy.asnumpy(array)


def special(array):
    """scipy.special or cupyx.scipy.special (erf, expit), matching the array's device."""
    if is_cupy(array):
        import cupyx.scipy.special as sp
    else:
        import scipy.special as sp
    return sp


# ---- random numbers: one seeded generator per device, reset by tinytorch.manual_seed ----
_rng = {"cpu": np.random.default_rng()}


def manual_seed(seed: int) -> None:
    """Seed every generator tinytorch uses (CPU, and the GPU when present)."""
    _rng["cpu"] = np.random.default_rng(seed)
    if _CUDA_OK:
        _rng["cuda"] = _cupy.random.default_rng(seed)


def rng(device: str = "cpu"):
    if device == "cuda" and "cuda" not in _rng:
        _rng["cuda"] = _cupy.random.default_rng()
    return _rng[device]
