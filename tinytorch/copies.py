"""Two copies autograd and the ops avoid or make cheap: stealing a gradient, and the tiled copy.

`steal_or_copy(g)`: when backward stores a gradient in a leaf's `.grad`, it keeps the array
itself if nothing else can see it (PyTorch "steals" such gradients the same way), and stores a
copy otherwise, so two leaves never alias one array (Add's backward hands the same `g` to both
of its inputs; in-place updates of one `.grad` must not change the other).

`c_copy(a)`: a C-ordered copy that is fast for large transposed layouts (a gradient that
arrives as the transpose of a matrix, `reshape` of a `.T`). Large float32 views go to the
elementwise kernels (tinytorch/kernels/elementwise.py: every core, W x W blocks transposed in
registers); the NumPy tiles below are the fallback.

Both are optimizations only: replacing `steal_or_copy` by `c_copy` (always copy), or `c_copy`
by `a.copy()`, changes no result.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["c_copy", "steal_or_copy", "transposed_layout"]


def _refcount(array) -> int:
    return sys.getrefcount(array)


def _refcount_of_an_unshared_local() -> int:
    local = np.empty(0)  # held only by this variable, as `g` is held by the caller below
    return _refcount(local)


# What sys.getrefcount reports, inside steal_or_copy, for an array that only the caller's one
# variable holds. Measured rather than assumed: the number differs between Python versions.
_UNSHARED = _refcount_of_an_unshared_local()


def steal_or_copy(array):
    """`array` itself when the caller's one variable is its only reference, else a C copy.

    Call it as `steal_or_copy(g)` where `g` is a local that the caller got from a container it
    already removed it from (`g = grads.pop(key)`, or a parameter passed such a temporary):
    any other reference (a dict entry, another leaf's pending gradient, a Function's saved
    state) raises the count and forces a copy. Views (`array.base` set) are always copied:
    their memory belongs to another array.
    """
    if array.base is None and sys.getrefcount(array) <= _UNSHARED:
        return array
    return c_copy(array)


def transposed_layout(array) -> bool:
    """A large NumPy array whose second-to-last axis, not its last, is the contiguous one."""
    return (
        isinstance(array, np.ndarray)
        and array.size >= 65536
        and array.ndim >= 2
        and array.strides[-2] == array.itemsize
        and not array.flags.c_contiguous
    )


def c_copy(array):
    """A C-ordered copy of `array`.

    NumPy copies a transposed matrix in the destination's order, reading the source with a
    large stride: nearly every element costs a cache (and TLB) miss. Copying 256 x 32 tiles
    keeps both sides in cache: 1.3-2x faster for large arrays whose last axis is strided (a
    gradient that arrives as the transpose of a matrix); PyTorch's own copy is faster still,
    and so is the kernels' copy, which large float32 arrays take first (any layout that
    collapses to 3 axes: transposed, sliced, broadcast)."""
    if array.size >= 65536 and isinstance(array, np.ndarray):
        from .kernels import elementwise  # (imported here: autograd loads this module early)

        out = elementwise.copy(array)  # on every core, tiled for transposed layouts
        if out is not None:
            return out
    if not transposed_layout(array):
        return array.copy()
    out = np.empty(array.shape, array.dtype)
    rows, cols = array.shape[-2:]
    for i in range(0, rows, 256):
        for j in range(0, cols, 32):
            out[..., i : i + 256, j : j + 32] = array[..., i : i + 256, j : j + 32]
    return out
