"""Fused LayerNorm (chapter 11): y = (x - mean) * rstd * weight + bias in one pass over memory.

Raw arrays (NumPy arrays run the C++/OpenMP kernel, CuPy arrays the CUDA kernels):

    y, mean, rstd = forward(x, weight, bias, eps=1e-5, version=None)
    dx, dweight, dbias = backward(grad_y, x, weight, mean, rstd, version=None)

- x (N, C), grad_y (N, C): float32, C-contiguous, on one device, N >= 1 and C >= 1 (any C,
  odd ones too). weight, bias (C,) float32 contiguous. mean, rstd (N,): what the backward needs
  (rstd = 1 / sqrt(var + eps), biased variance, as PyTorch saves).
- The backward is deterministic: per-block partial sums of dweight/dbias and a finishing
  reduction in a fixed order, no floating-point atomics. The same inputs give the same bits.
- `version`: the numbered kernel (see the header of kernels/layernorm.cu): CUDA 1 thread per
  row, 2 warp per row with Welford, 3 block per row with fused backward, 4 = 3 vectorized
  (float4) with the row in registers, 5 = 4 with one warp per row for C <= 1024 (other C run
  4); CPU 1 (the fused algorithm with OpenMP). None = the default (DEFAULT_VERSION), the
  fastest version validated on a GPU.
Bad input (type, dtype, shape, contiguity, device, empty, version) raises TypeError or
ValueError before any kernel runs; launch failures raise RuntimeError naming the kernel.

Tensor level (what the library uses):

    supports(x, weight, bias) -> bool
    layer_norm(x, weight, bias, eps) -> Tensor      # over the last dim; x (..., C)
    dispatch(input, normalized_shape, weight, bias, eps) -> Tensor or None

`LayerNormFunction` is the autograd Function (gradients to x, weight and bias). Fallbacks, all
documented and none a crash: `supports` is False - use the composed tensor ops - for dtypes
other than float32, empty inputs, weight/bias whose shape is not (C,), mixed devices, and when
the kernel module cannot be built (`tinytorch.kernels.build_error()` says why). A
non-contiguous x is copied first. On the CPU the fused kernel is used when USE_ON_CPU is True
(it beats the NumPy composition there: see benchmarks/results/kernels_cpu_cpu.md).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor

__all__ = [
    "forward",
    "backward",
    "LayerNormFunction",
    "supports",
    "layer_norm",
    "dispatch",
    "CPU_VERSIONS",
    "CUDA_VERSIONS",
    "DEFAULT_VERSION",
    "USE_ON_CPU",
]

CPU_VERSIONS = (1,)
CUDA_VERSIONS = (1, 2, 3, 4, 5)
# v5 is the fastest design for C <= 1024 but had not yet run on a GPU when v4's numbers were
# measured (benchmarks/results/kernels_gpu_*); switch the default once it has.
DEFAULT_VERSION = {"cpu": 1, "cuda": 5}
# The fused C++ kernel is faster than the NumPy composition on the CPU (forward + backward,
# benchmarks/kernels_cpu.py), so the library uses it there too.
USE_ON_CPU = True


def _lib():
    from . import build

    return build.load()


def _ptr(a) -> int:
    """The address of an array's first element (NumPy: host, CuPy: device)."""
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def _check_array(a, name, shape, device, what):
    if not isinstance(a, backend.ARRAY_TYPES):
        raise TypeError(
            f"layernorm {what}: {name} must be a NumPy or CuPy array, got {type(a).__name__} "
            "(use layer_norm() for Tensors)"
        )
    # BEGIN EXERCISE ch11: reject what the kernel cannot read: dtype, shape, C-contiguity
    if a.dtype != np.float32:
        raise TypeError(f"layernorm {what}: {name} must be float32, got {a.dtype}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(
            f"layernorm {what}: {name} has shape {tuple(a.shape)}; expected {tuple(shape)}"
        )
    if not a.flags.c_contiguous:
        raise ValueError(
            f"layernorm {what}: {name} must be C-contiguous (copy it with ascontiguousarray); "
            f"shape {tuple(a.shape)}, strides {a.strides}"
        )
    # END EXERCISE
    if device is not None and backend.device_of(a) != device:
        raise ValueError(
            f"layernorm {what}: {name} is on {backend.device_of(a)} but x is on {device}"
        )


def _check_x(x, what):
    """Validate x (N, C); returns (device, N, C)."""
    _check_array(x, "x", None, None, what)
    if x.ndim != 2:
        raise ValueError(f"layernorm {what}: x must be 2-D (N, C), got shape {tuple(x.shape)}")
    N, C = x.shape
    if N == 0 or C == 0:
        raise ValueError(
            f"layernorm {what}: x is empty (shape {tuple(x.shape)}); the kernels need N >= 1 "
            "and C >= 1 (the composed path handles empty tensors)"
        )
    return backend.device_of(x), N, C


def _version(device, version, what):
    versions = CUDA_VERSIONS if device == "cuda" else CPU_VERSIONS
    version = DEFAULT_VERSION[device] if version is None else version
    if version not in versions:
        raise ValueError(
            f"layernorm {what}: version {version!r} does not exist on {device}; "
            f"expected one of {versions}"
        )
    return version


def _cuda_fn(lib, name):
    fn = getattr(lib, name, None)
    if fn is None:
        from . import build

        raise RuntimeError(
            f"layernorm: the kernel module was built without CUDA ({name} is missing): "
            f"nvcc found: {build.find_nvcc() is not None}, GPU seen: {build.gpu_present()}"
        )
    return fn


def _outputs(given, shapes, xp, device, what):
    """Preallocated output arrays (checked) or fresh ones."""
    if given is None:
        return [xp.empty(s, np.float32) for s in shapes]
    for i, (a, s) in enumerate(zip(given, shapes)):
        _check_array(a, f"output {i}", s, device, what)
    return list(given)


def forward(x, weight, bias, eps=1e-5, version=None, out=None):
    """(y (N, C), mean (N,), rstd (N,)) for x (N, C), weight and bias (C,). `out` = an optional
    (y, mean, rstd) triple of arrays to write into."""
    device, N, C = _check_x(x, "forward")
    _check_array(weight, "weight", (C,), device, "forward")
    _check_array(bias, "bias", (C,), device, "forward")
    version = _version(device, version, "forward")
    xp = backend.get_xp(device)
    y, mean, rstd = _outputs(out, ((N, C), (N,), (N,)), xp, device, "forward")
    lib = _lib()
    args = [_ptr(a) for a in (x, weight, bias, y, mean, rstd)]
    if device == "cpu":
        lib.layernorm_forward_cpu(*args, N, C, float(eps))
    else:
        fn = _cuda_fn(lib, "layernorm_forward_cuda")
        fn(*args, N, C, float(eps), version, xp.cuda.get_current_stream().ptr)
    return y, mean, rstd


def backward(grad_y, x, weight, mean, rstd, version=None, grads=None):
    """(dx (N, C), dweight (C,), dbias (C,)) from forward's saved mean and rstd. `grads` = an
    optional (dx, dweight, dbias) triple of arrays to write into."""
    device, N, C = _check_x(x, "backward")
    _check_array(grad_y, "grad_y", (N, C), device, "backward")
    _check_array(weight, "weight", (C,), device, "backward")
    _check_array(mean, "mean", (N,), device, "backward")
    _check_array(rstd, "rstd", (N,), device, "backward")
    version = _version(device, version, "backward")
    xp = backend.get_xp(device)
    dx, dw, db = _outputs(grads, ((N, C), (C,), (C,)), xp, device, "backward")
    lib = _lib()
    args = [_ptr(a) for a in (grad_y, x, weight, mean, rstd, dx, dw, db)]
    if device == "cpu":
        lib.layernorm_backward_cpu(*args, N, C)
    else:
        fn = _cuda_fn(lib, "layernorm_backward_cuda")
        # the per-block partial sums of dweight/dbias, allocated by CuPy on its current stream
        work = xp.empty((max(1, lib.layernorm_workspace_floats(N, C, version)),), np.float32)
        fn(*args, work.data.ptr, N, C, version, xp.cuda.get_current_stream().ptr)
    return dx, dw, db


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
        # BEGIN EXERCISE ch11: call backward() on (N, C) arrays; return a gradient per input
        xp = backend.xp_of(x2)
        g = xp.ascontiguousarray(grad.reshape(x2.shape), dtype=np.float32)
        dx = xp.empty(self.shape, np.float32)  # x's shape, written through an (N, C) view
        _, dw, db = backward(g, x2, w, mean, rstd, self.version, grads=self._grads(dx, xp))
        return (dx if need_x else None, dw if need_w else None, db if need_b else None)
        # END EXERCISE

    def _grads(self, dx, xp):
        C = self.shape[-1]
        return (dx.reshape(-1, C), xp.empty((C,), np.float32), xp.empty((C,), np.float32))


def supports(x, weight=None, bias=None) -> bool:
    """Whether the fused kernel can take layer_norm(x, weight, bias) over x's last dim."""
    from . import available, fused_enabled

    if not fused_enabled() or not isinstance(x, Tensor):
        return False
    if x.dtype != np.float32 or x.ndim == 0 or x.data.size == 0:
        return False
    if x.device == "cpu" and not USE_ON_CPU:
        return False
    C = x.shape[-1]
    for p in (weight, bias):
        if p is None:
            continue
        if not isinstance(p, Tensor) or p.dtype != np.float32 or tuple(p.shape) != (C,):
            return False
        if p.device != x.device:
            return False
    if not available():
        return False
    if x.device == "cuda" and not hasattr(_lib(), "layernorm_forward_cuda"):
        return False
    return True


def layer_norm(x, weight=None, bias=None, eps=1e-5, version=None):
    """Tensor-level fused LayerNorm over the last dim; x (..., C), weight and bias (C,) or None.
    Gradients flow to x, weight and bias."""
    return LayerNormFunction.apply(x, weight, bias, eps=float(eps), version=version)


def dispatch(input, normalized_shape, weight, bias, eps):
    """For F.layer_norm: the fused result, or None for the composed path. A normalized_shape of
    several dims is flattened into one (weight and bias too)."""
    shape = tuple(normalized_shape)
    if not isinstance(input, Tensor) or len(shape) == 0 or input.ndim < len(shape):
        return None
    if len(shape) > 1:
        C = int(np.prod(shape))
        if any(p is not None and tuple(p.shape) != shape for p in (weight, bias)):
            return None
        x = input.reshape(*input.shape[: input.ndim - len(shape)], C)
        w = None if weight is None else weight.reshape(C)
        b = None if bias is None else bias.reshape(C)
        if not supports(x, w, b):
            return None
        return layer_norm(x, w, b, eps).reshape(*input.shape)
    if not supports(input, weight, bias):
        return None
    return layer_norm(input, weight, bias, eps)
