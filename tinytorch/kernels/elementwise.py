"""Elementwise ops, reductions and copies for large float32 arrays on the CPU (chapter 12): one
pass over memory on every core (kernels/elementwise.cpp, kernels/reduce.cpp, kernels/copy.cpp,
sharing kernels/elementwise.h), where NumPy makes one or more passes on one core.

The ops of tinytorch/ops keep their Functions and their NumPy code (the composed twin, which
handles every case); inside forward and backward they hand the arithmetic to these raw-array
functions when `takes(array)` says so, and otherwise run NumPy as before:

    unary(name, x) -> y                      name: "exp", "tanh", "sigmoid", "relu"
    unary_backward(name, y, grad) -> dx      from the saved output y = name(x)
    binary(name, a, b) -> out or None        "add", "sub", "mul", "div": a and b of one shape,
                                             one a row (the other's last dim), or a Python scalar
    mul_backward(grad, a, b, need_a, need_b) -> (ga, gb) or None
    div_backward(grad, b, out, need_a, need_b) -> (ga, gb) or None
    sum_all(x) -> 0-d array; sum_lastdim(x, scale) -> x.shape[:-1]; colsum(x, y) -> x.shape[-1:]
    copy(src) -> C-contiguous copy or None   (strided, broadcast and transposed views)
    cat(arrays, axis) -> out or None

`takes(x)`: x is a NumPy float32 C-contiguous array of at least MIN_SIZE elements, the fused
path is on (tinytorch.kernels.set_fused / composed()) and the module built. Below MIN_SIZE NumPy
is faster: the arithmetic takes microseconds, and waking a second thread, or even one call into
the module, costs about as much (benchmarks/ops_cpu.py, 64 x 64). The functions that may
return None do so for layouts the kernel does not cover; the caller then runs NumPy.

Results agree with the NumPy twins: add, sub, mul, div (and their backwards), copies and cat
exactly; exp, tanh and sigmoid
within a few float32 ulps (Cephes' polynomials); sums to float32 rounding (float vectors over
blocks of 1024, blocks added in double).
"""

from __future__ import annotations

import numpy as np

from . import fused_enabled
from .common import lib, ptr, runs_on

__all__ = [
    "MIN_SIZE",
    "takes",
    "unary",
    "unary_backward",
    "binary",
    "mul_backward",
    "div_backward",
    "sum_all",
    "sum_lastdim",
    "colsum",
    "copy",
    "cat",
]

MIN_SIZE = 1 << 16  # elements; kernels/elementwise.cpp goes parallel from the same size
_F32 = np.dtype("float32")
_UNARY = {"exp": 0, "tanh": 1, "sigmoid": 2, "relu": 3}
_BINARY = {"add": 0, "sub": 1, "mul": 2, "div": 3}
_SCALARS = (int, float)  # Python numbers: NumPy rounds them to float32 first, and so do we


_built = False  # the module built and imported (checked once; it never unloads)


def _on() -> bool:
    global _built
    if not fused_enabled():
        return False
    if not _built:
        _built = runs_on("cpu")
    return _built


def takes(x) -> bool:
    """Whether the kernels compute on array x here (see the module docstring)."""
    return (
        type(x) is np.ndarray
        and x.size >= MIN_SIZE
        and x.dtype is _F32
        and x.flags.c_contiguous
        and _on()
    )


def _contiguous_f32(x) -> bool:
    return type(x) is np.ndarray and x.dtype is _F32 and x.flags.c_contiguous


def unary(name, x):
    """y = exp(x), tanh(x), sigmoid(x) or relu(x) (x float32, C-contiguous)."""
    y = np.empty_like(x)
    lib().ew_unary_forward_cpu(_UNARY[name], ptr(x), ptr(y), x.size)
    return y


def unary_backward(name, y, grad):
    """dx = grad * name'(x), from the output y = name(x); None unless y and grad are
    C-contiguous float32 of one shape."""
    if not (_contiguous_f32(grad) and _contiguous_f32(y)) or grad.shape != y.shape:
        return None
    dx = np.empty_like(y)
    lib().ew_unary_backward_cpu(_UNARY[name], ptr(y), ptr(grad), ptr(dx), y.size)
    return dx


def _is_row(b, a) -> bool:
    """b holds one row that broadcasts over a's rows: shape (C,) or (1, ..., 1, C)."""
    return (
        b.ndim <= a.ndim
        and b.ndim >= 1
        and b.shape[-1] == a.shape[-1]
        and all(n == 1 for n in b.shape[:-1])
        and b.size < a.size
    )


def binary(name, a, b):
    """a op b (op: add, sub, mul, div) for C-contiguous float32 arrays of one shape, a full one
    and a row (either side), or one such array and a Python scalar (either side); None for
    anything else (other broadcasts, strided arrays, other dtypes)."""
    op = _BINARY[name]
    if type(b) in _SCALARS or type(a) in _SCALARS:
        left = type(a) in _SCALARS
        x, s = (b, a) if left else (a, b)
        if not _contiguous_f32(x):
            return None
        out = np.empty_like(x)
        lib().ew_binary_scalar_cpu(op, ptr(x), float(np.float32(s)), ptr(out), x.size, left)
        return out
    if not (_contiguous_f32(a) and _contiguous_f32(b)):
        return None
    mode, full = 0, a
    if a.shape != b.shape:
        if a.ndim >= 1 and _is_row(b, a):
            mode = 1
        elif b.ndim >= 1 and _is_row(a, b):
            mode, full = 2, b
        else:
            return None
    out = np.empty_like(full)
    cols = full.shape[-1] if full.ndim else 1
    lib().ew_binary_cpu(op, ptr(a), ptr(b), ptr(out), full.size // max(cols, 1), cols, mode)
    return out


def mul_backward(grad, a, b, need_a, need_b):
    """(grad * b, grad * a), each unbroadcast to its input's shape (None where not needed),
    in one pass for equal shapes; a row input gets its gradient by colsum. None for anything
    else."""
    if type(a) in _SCALARS or type(b) in _SCALARS:  # the other is grad's shape: one product
        left = type(a) in _SCALARS
        need = need_b if left else need_a
        g = binary("mul", grad, a if left else b) if need else None
        if need and g is None:
            return None
        return (None, g) if left else (g, None)
    if not (_contiguous_f32(grad) and _contiguous_f32(a) and _contiguous_f32(b)):
        return None
    if a.shape == b.shape == grad.shape:
        ga = np.empty_like(a) if need_a else None
        gb = np.empty_like(b) if need_b else None
        lib().ew_mul_backward_cpu(ptr(grad), ptr(a), ptr(b), ptr(ga), ptr(gb), grad.size)
        return ga, gb
    swap = b.shape == grad.shape and a.shape != grad.shape
    full, row = (b, a) if swap else (a, b)
    if full.shape != grad.shape or not _is_row(row, full):
        return None
    need_full, need_row = (need_b, need_a) if swap else (need_a, need_b)
    g_full = binary("mul", grad, row) if need_full else None
    g_row = colsum(grad, full).reshape(row.shape) if need_row else None
    return (g_row, g_full) if swap else (g_full, g_row)


def div_backward(grad, b, out, need_a, need_b):
    """For out = a / b with a, b, out and grad of one shape: (grad / b, -(grad / b) * out) in
    one pass (None where not needed); None for other shapes or layouts."""
    if (
        not all(_contiguous_f32(v) for v in (grad, b, out))
        or not grad.shape == b.shape == out.shape
    ):
        return None
    ga = np.empty_like(b) if need_a else None
    gb = np.empty_like(b) if need_b else None
    lib().ew_div_backward_cpu(ptr(grad), ptr(b), ptr(out), ptr(ga), ptr(gb), grad.size)
    return ga, gb


def sum_all(x):
    """The sum of every element, as a 0-d float32 array."""
    return np.asarray(np.float32(lib().ew_sum_cpu(ptr(x), x.size)))


def sum_lastdim(x, scale=1.0):
    """scale * x.sum(axis=-1) (scale = 1 / n: the mean), shape x.shape[:-1]."""
    cols = x.shape[-1]
    out = np.empty(x.shape[:-1], _F32)
    lib().ew_sum_lastdim_cpu(ptr(x), ptr(out), x.size // cols if cols else 0, cols, scale)
    return out


def colsum(x, y=None):
    """(x * y).sum over every axis but the last (y None: x.sum), shape (x.shape[-1],): the
    backward of broadcasting a row (a bias) over x's rows. y must have x's shape."""
    cols = x.shape[-1]
    out = np.empty(cols, _F32)
    lib().ew_colsum_cpu(ptr(x), ptr(y), ptr(out), x.size // cols if cols else 0, cols)
    return out


def _collapse(shape, strides):
    """(shape, element strides) with size-1 axes dropped and axes merged where one stride steps
    over the next axis exactly; None when some stride is negative or not a whole element."""
    dims = []
    for n, s in zip(shape, strides):
        if s < 0 or s % 4:
            return None
        if n == 1:
            continue
        s //= 4
        if dims and dims[-1][1] == s * n:
            dims[-1] = (dims[-1][0] * n, s)
        else:
            dims.append((n, s))
    return dims


def copy(src):
    """A C-contiguous float32 copy of a NumPy float32 array of any non-negative strides (a
    transposed, sliced or broadcast view) that collapse to at most 3 axes; None otherwise (or
    when small, or the kernels are off)."""
    if type(src) is not np.ndarray or src.dtype is not _F32 or src.size < MIN_SIZE:
        return None
    dims = _collapse(src.shape, src.strides)
    if dims is None or len(dims) > 3 or not _on():
        return None
    dims = [(1, 0)] * (3 - len(dims)) + dims
    out = np.empty(src.shape, _F32)
    (n0, s0), (n1, s1), (n2, s2) = dims
    lib().ew_copy_cpu(ptr(src), ptr(out), n0, n1, n2, s0, s1, s2, n2)
    return out


def cat(arrays, axis):
    """np.concatenate(arrays, axis) for C-contiguous float32 arrays; None otherwise."""
    if sum(a.size for a in arrays) < MIN_SIZE or not all(_contiguous_f32(a) for a in arrays):
        return None
    if not _on():
        return None
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = np.empty(shape, _F32)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    width = out.size // outer if outer else 0  # elements of one outer index in out
    k = lib()
    offset = 0
    for a in arrays:
        inner = a.size // outer if outer else 0
        if inner:  # out[i, offset : offset + inner] = a[i, :], as a strided copy into out
            k.ew_copy_cpu(ptr(a), ptr(out) + 4 * offset, 1, outer, inner, 0, inner, 1, width)
        offset += inner
    return out
