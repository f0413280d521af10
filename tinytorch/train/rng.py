"""Capture and restore the state of every random generator a training run draws from.

A run is reproducible step by step only if, on resume, each generator continues exactly where
it stopped. tinytorch draws from:

- its own generator per device, `tinytorch.backend.rng("cpu")` (dropout masks, `tt.randn`,
  shuffling DataLoaders without a generator of their own) and `rng("cuda")` when a GPU is in use;
- NumPy's legacy global generator (`np.random.rand`, user code) and Python's `random`.

The state is stored without pickle, as a checkpoint holds it: NumPy arrays plus JSON-able
fields (numbers, strings, lists, dicts). NumPy's PCG64 state holds 128-bit integers, which do
not survive a trip through a float-based JSON reader, so every integer of 2**53 or more is
written as {"big_int": "<decimal digits>"}.

    state = get_rng_state()      # before the step
    ...                          # draws
    set_rng_state(state)         # the same draws again
"""

from __future__ import annotations

import random

import numpy as np

from .. import backend
from ..tensor import Tensor

_BIG = 2**53


def _encode(obj):
    """A bit generator's state (nested dicts of ints, strings, arrays) made safe for JSON."""
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, bool | np.bool_):
        return int(obj)
    if isinstance(obj, int | np.integer):
        return {"big_int": str(int(obj))} if abs(int(obj)) >= _BIG else int(obj)
    return obj


def _np(x) -> np.ndarray:
    """A NumPy array from what a loaded checkpoint holds (a Tensor, an array or a list)."""
    data = x.data if isinstance(x, Tensor) else x
    if backend.is_cupy(data):
        data = backend.to_device(data, "cpu")
    return np.asarray(data)


def _decode(obj):
    if hasattr(obj, "shape"):  # an array (a Tensor after tinytorch.load)
        return _np(obj)
    if isinstance(obj, dict):
        if set(obj) == {"big_int"}:
            return int(obj["big_int"])
        return {k: _decode(v) for k, v in obj.items()}
    return obj


def generator_state(gen: np.random.Generator) -> dict:
    """The state of one NumPy Generator, encoded for a checkpoint."""
    return _encode(gen.bit_generator.state)


def set_generator_state(gen: np.random.Generator, state: dict) -> None:
    """Put a Generator back to a state from generator_state (in place: every holder of this
    Generator object, a DataLoader for instance, continues from it)."""
    gen.bit_generator.state = _decode(state)


def _cupy_state(gen) -> np.ndarray:
    """CuPy's cuRAND bit generators (XORWOW by default) keep one state per GPU thread in a
    device array `bit_generator._state` (int8 bytes); it is copied out byte for byte."""
    import cupy

    return cupy.asnumpy(gen.bit_generator._state)


def _set_cupy_state(gen, data) -> None:
    import cupy

    raw = gen.bit_generator._state
    data = _np(data).astype(raw.dtype)
    if raw.size != data.size:
        raise ValueError(
            f"the checkpoint's CUDA generator state has {data.size} bytes, this GPU's "
            f"generator has {raw.size} (a different GPU model or CuPy version)"
        )
    raw[...] = cupy.asarray(data).reshape(raw.shape)


def get_rng_state() -> dict:
    """The state of every generator in use, arrays and JSON-able fields only:

    - "tinytorch_cpu": generator_state(backend.rng("cpu"))
    - "numpy_global": np.random.get_state() as {"name", "keys" (uint32 array), "pos",
      "has_gauss", "cached_gaussian"}
    - "python": random.getstate() as {"version", "internal" (uint64 array), "has_gauss_next"
      (0/1), "gauss_next" (a float, 0.0 when None)}
    - "tinytorch_cuda": _cupy_state(backend._rng["cuda"]), only when tinytorch has drawn on
      the GPU ("cuda" in backend._rng)."""
    # BEGIN EXERCISE ch08: rng_capture - the dict of every generator's state (see the docstring)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "tinytorch_cpu": generator_state(backend.rng("cpu")),
        "numpy_global": {
            "name": name,
            "keys": np.asarray(keys, dtype=np.uint32).copy(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": np.asarray(internal, dtype=np.uint64),
            "has_gauss_next": int(gauss_next is not None),
            "gauss_next": float(gauss_next or 0.0),
        },
    }
    if "cuda" in backend._rng:
        state["tinytorch_cuda"] = _cupy_state(backend._rng["cuda"])
    return state
    # END EXERCISE


def set_rng_state(state: dict) -> None:
    """Restore what get_rng_state returned (arrays may come back as NumPy arrays or lists)."""
    # BEGIN EXERCISE ch08: rng_capture - put each generator back from get_rng_state's dict
    set_generator_state(backend.rng("cpu"), state["tinytorch_cpu"])
    g = state["numpy_global"]
    np.random.set_state(
        (
            g["name"],
            _np(g["keys"]).astype(np.uint32),
            int(g["pos"]),
            int(g["has_gauss"]),
            float(g["cached_gaussian"]),
        )
    )
    p = state["python"]
    internal = tuple(int(v) for v in _np(p["internal"]).tolist())
    gauss = float(p["gauss_next"]) if int(p["has_gauss_next"]) else None
    random.setstate((int(p["version"]), internal, gauss))
    if "tinytorch_cuda" in state:
        _set_cupy_state(backend.rng("cuda"), state["tinytorch_cuda"])
    # END EXERCISE
