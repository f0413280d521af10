"""Fused LayerNorm (chapter 11): y = (x - mean) * rstd * weight + bias in one pass over memory.

Raw arrays (NumPy arrays run the C++/OpenMP kernel, CuPy arrays the CUDA kernels):

    y, mean, rstd = forward(x, weight, bias, eps=1e-5, version=None)
    dx, dweight, dbias = backward(grad_y, x, weight, mean, rstd, version=None)
    y, mean, rstd, dx, dweight, dbias = reference(x, weight, bias, grad_y, eps)   # float64

- x (N, C), grad_y (N, C): float32, C-contiguous, on one device, N >= 1 and C >= 1 (any C,
  odd ones too). weight, bias (C,) float32 contiguous. mean, rstd (N,): what the backward needs
  (rstd = 1 / sqrt(var + eps), biased variance, as PyTorch saves).
- The backward is deterministic: per-block partial sums of dweight/dbias and a finishing
  reduction in a fixed order, no floating-point atomics. The same inputs give the same bits.
- `version`: the numbered kernel (see the header of kernels/layernorm.cu): CUDA 1 thread per
  row, 2 warp per row with Welford, 3 block per row with fused backward, 4 = 3 vectorized
  (float4) with the row in registers, 5 = 4 with one warp per row for C <= 1024 (other C run
  4); CPU 1 (the fused algorithm with OpenMP). None = DEFAULT_VERSION.
- `reference` is the same computation in float64 NumPy, the formulas of the lesson's section 1:
  what the kernels are checked against (tests, chapter 11's main.py).
Bad input (type, dtype, shape, contiguity, device, empty, version) raises TypeError or
ValueError here, before any kernel runs (the bindings check nothing again); launch failures
raise RuntimeError naming the kernel.

Tensor level (what the library uses):

    supports(x, weight, bias) -> bool
    layer_norm(x, weight, bias, eps) -> Tensor      # over the last dim; x (..., C)
    dispatch(input, normalized_shape, weight, bias, eps) -> Tensor or None

`LayerNormFunction` is the autograd Function (gradients to x, weight and bias). `supports` is
False - F.layer_norm then runs the composed tensor ops - for dtypes other than float32, empty
inputs, weight/bias whose shape is not (C,), mixed devices, and when the kernel module cannot
be built for x's device (`tinytorch.kernels.build_error()` says why). A non-contiguous x is
copied first.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from .common import check_array, cuda_fn, lib, outputs, pick_version, ptr, runs_on, stream

__all__ = [
    "forward",
    "backward",
    "reference",
    "LayerNormFunction",
    "supports",
    "layer_norm",
    "dispatch",
    "CPU_VERSIONS",
    "CUDA_VERSIONS",
    "DEFAULT_VERSION",
]

CPU_VERSIONS = (1,)
CUDA_VERSIONS = (1, 2, 3, 4, 5)
VERSIONS = {"cpu": CPU_VERSIONS, "cuda": CUDA_VERSIONS}
# v5 (one warp per row for C <= 1024) is the fastest measured on an H100
# (benchmarks/results/kernels_gpu_*); the CPU has one version.
DEFAULT_VERSION = {"cpu": 1, "cuda": 5}
MAX_CUDA_ROWS = (1 << 31) - 1  # the CUDA grids index rows with 32-bit block numbers


def _check_x(x, where):
    """Validate x (N, C); returns (device, N, C)."""
    check_array(x, "x", where)
    if x.ndim != 2:
        raise ValueError(f"{where}: x must be 2-D (N, C), got shape {tuple(x.shape)}")
    N, C = x.shape
    if N == 0 or C == 0:
        raise ValueError(
            f"{where}: x is empty (shape {tuple(x.shape)}); the kernels need N >= 1 "
            "and C >= 1 (the composed path handles empty tensors)"
        )
    device = backend.device_of(x)
    if device == "cuda" and N > MAX_CUDA_ROWS:
        raise ValueError(f"{where}: {N} rows; the CUDA kernels take at most {MAX_CUDA_ROWS}")
    return device, N, C


def forward(x, weight, bias, eps=1e-5, version=None, out=None):
    """(y (N, C), mean (N,), rstd (N,)) for x (N, C), weight and bias (C,). `out` = an optional
    (y, mean, rstd) triple of arrays to write into."""
    where = "layernorm forward"
    device, N, C = _check_x(x, where)
    check_array(weight, "weight", where, (C,), device)
    check_array(bias, "bias", where, (C,), device)
    version = pick_version(version, device, VERSIONS, DEFAULT_VERSION, where)
    y, mean, rstd = outputs(out, ((N, C), (N,), (N,)), device, where)
    args = [ptr(a) for a in (x, weight, bias, y, mean, rstd)]
    if device == "cpu":
        lib().layernorm_forward_cpu(*args, N, C, float(eps))
    else:
        fn = cuda_fn("layernorm", "layernorm_forward_cuda")
        fn(*args, N, C, float(eps), version, stream(backend.get_xp(device)))
    return y, mean, rstd


def backward(grad_y, x, weight, mean, rstd, version=None, grads=None):
    """(dx (N, C), dweight (C,), dbias (C,)) from forward's saved mean and rstd. `grads` = an
    optional (dx, dweight, dbias) triple of arrays to write into."""
    where = "layernorm backward"
    device, N, C = _check_x(x, where)
    check_array(grad_y, "grad_y", where, (N, C), device)
    check_array(weight, "weight", where, (C,), device)
    check_array(mean, "mean", where, (N,), device)
    check_array(rstd, "rstd", where, (N,), device)
    version = pick_version(version, device, VERSIONS, DEFAULT_VERSION, where)
    dx, dw, db = outputs(grads, ((N, C), (C,), (C,)), device, where)
    args = [ptr(a) for a in (grad_y, x, weight, mean, rstd, dx, dw, db)]
    if device == "cpu":
        lib().layernorm_backward_cpu(*args, N, C)
    else:
        fn = cuda_fn("layernorm", "layernorm_backward_cuda")
        xp = backend.get_xp(device)
        # the per-block partial sums of dweight/dbias, allocated by CuPy on its current stream
        work = xp.empty((max(1, lib().layernorm_workspace_floats(N, C, version)),), np.float32)
        fn(*args, ptr(work), N, C, version, stream(xp))
    return dx, dw, db


def reference(x, weight, bias, grad_y, eps=1e-5):
    """float64 LayerNorm over the last dim and its gradients, in NumPy: x (N, C), weight and
    bias (C,), grad_y (N, C) -> (y (N, C), mean (N,), rstd (N,), dx (N, C), dweight (C,),
    dbias (C,)). The oracle the kernels are checked against."""
    arrays = (x, weight, bias, grad_y)
    x, w, b, dy = (np.asarray(backend.to_device(a, "cpu"), np.float64) for a in arrays)
    # BEGIN EXERCISE ch11: layernorm_reference - y, mean, rstd (biased variance) and dx, dw, db
    mean = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    g = dy * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return xhat * w + b, mean[:, 0], rstd[:, 0], dx, (dy * xhat).sum(0), dy.sum(0)
    # END EXERCISE


class LayerNormFunction(Function):
    """Fused LayerNorm over the last dim: x (..., C), weight and bias (C,) or None."""

    def forward(self, x, weight, bias, eps=1e-5, version=None):
        xp = backend.xp_of(x)
        C = x.shape[-1]
        self.shape = x.shape
        x2 = xp.ascontiguousarray(x.reshape(-1, C))
        # absent weight/bias are ones/zeros: one kernel handles every case
        w = xp.ones((C,), np.float32) if weight is None else xp.ascontiguousarray(weight)
        b = xp.zeros((C,), np.float32) if bias is None else xp.ascontiguousarray(bias)
        # outputs allocated in x's own shape, written through an (N, C) view: what we return
        # is then no view, which the autograd engine would copy (an extra pass over memory)
        y = xp.empty(self.shape, np.float32)
        mean = xp.empty((x2.shape[0],), np.float32)
        rstd = xp.empty((x2.shape[0],), np.float32)
        forward(x2, w, b, eps, version, out=(y.reshape(x2.shape), mean, rstd))
        self.saved = (x2, w, mean, rstd)
        self.version = version
        return y

    def backward(self, grad):
        x2, w, mean, rstd = self.saved
        need_x, need_w, need_b = (tuple(self.needs_input_grad) + (False,) * 3)[:3]
        # BEGIN EXERCISE ch11: layernorm_function_backward - call backward(), one grad per input
        xp = backend.xp_of(x2)
        C = self.shape[-1]
        g = xp.ascontiguousarray(grad.reshape(x2.shape), dtype=np.float32)
        dx = xp.empty(self.shape, np.float32)  # x's shape, written through an (N, C) view
        grads = (dx.reshape(-1, C), xp.empty((C,), np.float32), xp.empty((C,), np.float32))
        _, dw, db = backward(g, x2, w, mean, rstd, self.version, grads=grads)
        return (dx if need_x else None, dw if need_w else None, db if need_b else None)
        # END EXERCISE


def supports(x, weight=None, bias=None) -> bool:
    """Whether the fused kernel can take layer_norm(x, weight, bias) over x's last dim."""
    if not isinstance(x, Tensor) or x.dtype != np.float32 or x.ndim == 0 or x.data.size == 0:
        return False
    C = x.shape[-1]
    for p in (weight, bias):
        if p is None:
            continue
        if not isinstance(p, Tensor) or p.dtype != np.float32 or tuple(p.shape) != (C,):
            return False
        if p.device != x.device:
            return False
    return runs_on(x.device)


def layer_norm(x, weight=None, bias=None, eps=1e-5, version=None):
    """Tensor-level fused LayerNorm over the last dim; x (..., C), weight and bias (C,) or None.
    Gradients flow to x, weight and bias."""
    return LayerNormFunction.apply(x, weight, bias, eps=float(eps), version=version)


def dispatch(input, normalized_shape, weight, bias, eps):
    """For F.layer_norm: the fused result, or None for the composed path (the fused path is
    switched off, or supports() says no). A normalized_shape of several dims is flattened into
    one (weight and bias too)."""
    from . import fused_enabled

    shape = tuple(normalized_shape)
    if not fused_enabled() or not isinstance(input, Tensor) or not 0 < len(shape) <= input.ndim:
        return None
    x, w, b = input, weight, bias
    if len(shape) > 1:
        if any(p is not None and tuple(p.shape) != shape for p in (weight, bias)):
            return None
        C = int(np.prod(shape))
        x = input.reshape(*input.shape[: input.ndim - len(shape)], C)
        w = None if weight is None else weight.reshape(C)
        b = None if bias is None else bias.reshape(C)
    if not supports(x, w, b):
        return None
    y = layer_norm(x, w, b, eps)
    return y if x is input else y.reshape(*input.shape)
