"""Fused softmax attention (chapter 11): softmax(scale * Q K^T + mask) V without the T x T matrix.

Raw arrays (NumPy arrays run the C++/OpenMP kernels, CuPy arrays the CUDA kernels):

    out, lse = forward(q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None)
    dq, dk, dv = backward(q, k, v, out, lse, grad_out, is_causal=False, key_padding_mask=None,
                          scale=None, version=None)

- q (B, H, Tq, D), k and v (B, H, Tk, D): float32, C-contiguous, all on one device; D is 32, 64
  or 128; any lengths. out (B, H, Tq, D); lse (B, H, Tq) is each query's log-sum-exp of its
  scaled scores, what the backward needs to recompute the probabilities (+inf for a query
  whose keys are all masked).
- `scale` defaults to 1/sqrt(D). `is_causal`: query i sees keys j <= i (top-left aligned, as
  PyTorch's is_causal).
- `key_padding_mask` (B, Tk) bool: True = that key is masked out (ignored) for every query of
  that batch entry. This is the meaning of nn.MultiheadAttention's `key_padding_mask` (True =
  ignore) and the OPPOSITE of a boolean `attn_mask` in F.scaled_dot_product_attention (True =
  may attend).
- A query with every key masked gets output 0 and gradient 0 (not NaN).
- `version`: the numbered kernel (see kernels/attention.cu and kernels/attention.cpp):
  CPU 1 naive, 2 row-at-a-time, 3 tiled; CUDA 1 naive, 2 row, 3 tiled in shared memory,
  4 register-tiled, 5 tensor cores (3xTF32; its backward is version 4's). None = the default
  (DEFAULT_VERSION), the fastest correct one.
Bad input (dtype, shape, contiguity, device, head dim, version) raises TypeError or ValueError
before any kernel runs.

The CPU's tiled version is compiled for several instruction sets (AVX-512, AVX2, and the
baseline: SSE2 on x86-64) and uses the best this CPU has: `tinytorch.kernels.cpu_isa()` says
which, `cpu_isas()` lists the choices, `set_cpu_isa(name)` picks a lesser one.

`online_softmax_attention(q, k, v, ...)` is the same algorithm in NumPy/CuPy array code (the
reference the chapter derives; slow).

The Tensor level (the autograd Function, and what F.scaled_dot_product_attention asks first)
is in `tinytorch.kernels.attention_autograd`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend

__all__ = [
    "online_softmax_attention",
    "forward",
    "backward",
    "CPU_VERSIONS",
    "CUDA_VERSIONS",
    "DEFAULT_VERSION",
    "HEAD_DIMS",
]

HEAD_DIMS = (32, 64, 128)
CPU_VERSIONS = (1, 2, 3)
CUDA_VERSIONS = (1, 2, 3, 4, 5)
DEFAULT_VERSION = {"cpu": 3, "cuda": 5}


def _lib():
    from . import build

    return build.load()


def _device(arrays, what):
    devices = {backend.device_of(a) for a in arrays}
    if len(devices) != 1:
        raise ValueError(f"attention {what}: all arrays must be on one device, got {devices}")
    return devices.pop()


def _check(q, k, v, key_padding_mask, version, what="forward"):
    """Validate the inputs; returns (device, version, kpm as contiguous uint8 or None)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, backend.ARRAY_TYPES):
            raise TypeError(
                f"attention {what}: {name} must be a NumPy or CuPy array, got "
                f"{type(x).__name__} (for Tensors use "
                "tinytorch.kernels.attention_autograd.attention())"
            )
        if x.dtype != np.float32:
            raise TypeError(f"attention {what}: {name} must be float32, got {x.dtype}")
        if x.ndim != 4:
            raise ValueError(
                f"attention {what}: {name} must be 4-D (B, H, T, D), got shape {tuple(x.shape)}"
            )
        if not x.flags.c_contiguous:
            raise ValueError(
                f"attention {what}: {name} must be C-contiguous (copy it with "
                f"ascontiguousarray); shape {tuple(x.shape)}"
            )
    device = _device((q, k, v), what)
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"attention {what}: expected q (B, H, Tq, D) and k, v (B, H, Tk, D); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(
            f"attention {what}: head dim {q.shape[3]} is not supported; expected one "
            f"of {HEAD_DIMS} (the composed path handles any)"
        )
    versions = CUDA_VERSIONS if device == "cuda" else CPU_VERSIONS
    version = DEFAULT_VERSION[device] if version is None else version
    if version not in versions:
        raise ValueError(
            f"attention {what}: version {version!r} does not exist on {device}; "
            f"expected one of {versions}"
        )
    kpm = None
    if key_padding_mask is not None:
        m = key_padding_mask
        B, Tk = q.shape[0], k.shape[2]
        if not isinstance(m, backend.ARRAY_TYPES) or m.dtype != np.bool_:
            raise TypeError(
                f"attention {what}: key_padding_mask must be a bool array (B, Tk), "
                f"True = masked out; got {type(m).__name__} "
                f"{getattr(m, 'dtype', '')}"
            )
        if tuple(m.shape) != (B, Tk):
            raise ValueError(
                f"attention {what}: key_padding_mask has shape {tuple(m.shape)}; "
                f"expected (B, Tk) = {(B, Tk)}"
            )
        if backend.device_of(m) != device:
            raise ValueError(
                f"attention {what}: key_padding_mask is on "
                f"{backend.device_of(m)} but q is on {device}"
            )
        kpm = backend.xp_of(m).ascontiguousarray(m).view(np.uint8)
    return device, version, kpm


def _aligned(x):
    """CUDA kernels load float4: a CuPy view that starts mid-allocation may be misaligned."""
    return x if x.data.ptr % 16 == 0 else x.copy()


def _scale(scale, D):
    return 1.0 / math.sqrt(D) if scale is None else float(scale)


def _is_f32_c(x, shape, device) -> bool:
    """Whether `x` is a C-contiguous float32 array of `shape` on `device` (what kernels read)."""
    return (
        isinstance(x, backend.ARRAY_TYPES)
        and x.dtype == np.float32
        and tuple(x.shape) == tuple(shape)
        and x.flags.c_contiguous
        and backend.device_of(x) == device
    )


def _outputs(given, shapes, xp, device, what):
    """Preallocated output arrays (checked) or fresh ones."""
    if given is None:
        return [xp.empty(s, np.float32) for s in shapes]
    for x, s in zip(given, shapes):
        if not _is_f32_c(x, s, device):
            raise ValueError(
                f"attention {what}: output arrays must be C-contiguous float32 of "
                f"shapes {[tuple(s) for s in shapes]} on {device}"
            )
    return list(given)


def forward(q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None, out=None):
    """(out (B, H, Tq, D), lse (B, H, Tq)); see the module docstring. `out` = an optional
    (out, lse) pair of arrays to write into."""
    device, version, kpm = _check(q, k, v, key_padding_mask, version)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    xp = backend.get_xp(device)
    scale = _scale(scale, D)
    out, lse = _outputs(out, ((B, H, Tq, D), (B, H, Tq)), xp, device, "forward")
    if out.size == 0:
        return out, lse
    if Tk == 0:  # no keys at all: every query is fully masked
        out[...] = 0
        lse[...] = np.inf
        return out, lse
    lib = _lib()
    if device == "cpu":
        lib.attention_forward_cpu(q, k, v, kpm, out, lse, bool(is_causal), scale, version)
        return out, lse
    fn = _cuda_fn(lib, "attention_forward_cuda")
    q, k, v = _aligned(q), _aligned(k), _aligned(v)
    work = xp.empty(
        max(1, lib.attention_workspace_floats(B, H, Tq, Tk, D, version, False)), np.float32
    )
    fn(
        q.data.ptr,
        k.data.ptr,
        v.data.ptr,
        0 if kpm is None else kpm.data.ptr,
        out.data.ptr,
        lse.data.ptr,
        work.data.ptr,
        B,
        H,
        Tq,
        Tk,
        D,
        scale,
        bool(is_causal),
        version,
        xp.cuda.get_current_stream().ptr,
    )
    return out, lse


def backward(
    q,
    k,
    v,
    out,
    lse,
    grad_out,
    is_causal=False,
    key_padding_mask=None,
    scale=None,
    version=None,
    grads=None,
):
    """(dq, dk, dv), shaped like q, k, v, from forward's out and lse and the output gradient.
    `grads` = an optional (dq, dk, dv) triple of arrays to write into."""
    device, version, kpm = _check(q, k, v, key_padding_mask, version, "backward")
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    for name, x, shape in (
        ("out", out, q.shape),
        ("grad_out", grad_out, q.shape),
        ("lse", lse, (B, H, Tq)),
    ):
        if not _is_f32_c(x, shape, device):
            raise ValueError(
                f"attention backward: {name} must be a C-contiguous float32 array of "
                f"shape {tuple(shape)} on {device}; got {type(x).__name__} "
                f"{getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}"
            )
    xp = backend.get_xp(device)
    scale = _scale(scale, D)
    dq, dk, dv = _outputs(grads, (q.shape, k.shape, v.shape), xp, device, "backward")
    if q.size == 0 or k.size == 0:
        dq[...], dk[...], dv[...] = 0, 0, 0
        return dq, dk, dv
    lib = _lib()
    if device == "cpu":
        lib.attention_backward_cpu(
            q, k, v, kpm, out, lse, grad_out, dq, dk, dv, bool(is_causal), scale, version
        )
        return dq, dk, dv
    fn = _cuda_fn(lib, "attention_backward_cuda")
    q, k, v, out, grad_out = (_aligned(x) for x in (q, k, v, out, grad_out))
    work = xp.empty(
        max(1, lib.attention_workspace_floats(B, H, Tq, Tk, D, version, True)), np.float32
    )
    fn(
        q.data.ptr,
        k.data.ptr,
        v.data.ptr,
        0 if kpm is None else kpm.data.ptr,
        out.data.ptr,
        lse.data.ptr,
        grad_out.data.ptr,
        dq.data.ptr,
        dk.data.ptr,
        dv.data.ptr,
        work.data.ptr,
        B,
        H,
        Tq,
        Tk,
        D,
        scale,
        bool(is_causal),
        version,
        xp.cuda.get_current_stream().ptr,
    )
    return dq, dk, dv


def _cuda_fn(lib, name):
    fn = getattr(lib, name, None)
    if fn is None:
        raise RuntimeError(
            "attention: the kernel module was built without CUDA (nvcc was not "
            "found, or TINYTORCH_NO_CUDA is set), so CuPy arrays cannot run it"
        )
    return fn


# ---- the algorithm in array code -------------------------------------------------------------
def online_softmax_attention(q, k, v, is_causal=False, key_padding_mask=None, scale=None, block=64):
    """What every fused version computes, written with NumPy/CuPy array ops: the keys are
    visited `block` at a time and only a running max m, a running sum l and a running output
    acc are kept per query - never the (Tq, Tk) matrix. q (B, H, Tq, D), k, v (B, H, Tk, D)
    (any float dtype) -> (out (B, H, Tq, D), lse (B, H, Tq)), with the conventions of
    forward(). The kernels' reference in chapter 11; slow (a Python loop over key blocks)."""
    xp = backend.xp_of(q)
    Tq, D = q.shape[-2], q.shape[-1]
    scale = _scale(scale, D)
    m = xp.full(q.shape[:-1] + (1,), -np.inf, q.dtype)  # running max of the scores
    l = xp.zeros(q.shape[:-1] + (1,), q.dtype)  # running sum of exp(score - m)
    acc = xp.zeros(q.shape, q.dtype)  # running sum of exp(score - m) * v
    rows = xp.arange(Tq)[:, None]
    for j0 in range(0, k.shape[-2], block):
        kb, vb = k[..., j0 : j0 + block, :], v[..., j0 : j0 + block, :]
        s = q @ xp.swapaxes(kb, -1, -2) * scale  # (B, H, Tq, block)
        if is_causal:
            s = xp.where(xp.arange(j0, j0 + kb.shape[-2])[None, :] <= rows, s, -np.inf)
        if key_padding_mask is not None:
            s = xp.where(key_padding_mask[:, None, None, j0 : j0 + block], -np.inf, s)
        # BEGIN EXERCISE ch11: the online softmax update of m, l and acc for this block of keys
        m_new = xp.maximum(m, s.max(-1, keepdims=True))
        m_use = xp.where(xp.isneginf(m_new), 0, m_new)  # nothing visible yet: any finite shift
        alpha = xp.exp(m - m_use)  # rescales what was summed under the old max (0 at first)
        p = xp.exp(s - m_use)
        l = l * alpha + p.sum(-1, keepdims=True)
        acc = acc * alpha + p @ vb
        m = m_new
        # END EXERCISE
    seen = ~xp.isneginf(m)  # False for a query whose keys are all masked: output 0, lse +inf
    out = xp.where(seen, acc / xp.where(seen, l, 1), 0)
    lse = xp.where(seen, m + xp.log(xp.where(seen, l, 1)), np.inf)[..., 0]
    return out.astype(q.dtype), lse.astype(q.dtype)
