"""Fused softmax attention (chapter 11): softmax(scale * Q K^T + mask) V without the T x T matrix.

Raw arrays (NumPy arrays run the C++/OpenMP kernels, CuPy arrays the CUDA kernels):

    out, lse = forward(q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None)
    dq, dk, dv = backward(q, k, v, out, lse, grad_out, is_causal=False, key_padding_mask=None,
                          scale=None, version=None)
    out, lse = online_softmax_attention(q, k, v, ...)    # the algorithm in array code

- q (B, H, Tq, D), k and v (B, H, Tk, D): float32, C-contiguous, all on one device; D is 32, 64
  or 128; any lengths. out (B, H, Tq, D); lse (B, H, Tq) is each query's log-sum-exp of its
  scaled scores, what the backward needs to recompute the probabilities (+inf for a query
  whose keys are all masked). `scale` defaults to 1/sqrt(D). `is_causal`: query i sees keys
  j <= i (top-left aligned, as PyTorch's is_causal).
- `key_padding_mask` (B, Tk) bool: True = that key is masked out for every query of that batch
  entry: nn.MultiheadAttention's `key_padding_mask` (True = ignore), the OPPOSITE of a boolean
  `attn_mask` in F.scaled_dot_product_attention (True = may attend).
- A query with every key masked gets output 0 and gradient 0 (not NaN).
- `version`: the numbered kernel (kernels/attention.cu, kernels/attention.cpp): CPU 1 naive,
  2 row-at-a-time, 3 tiled; CUDA 1 naive, 2 row, 3 tiled in shared memory, 4 register-tiled,
  5 tensor cores (3xTF32; its backward is version 4's). None = DEFAULT_VERSION.
Bad input (dtype, shape, contiguity, device, head dim, version) raises TypeError or ValueError
here, before any kernel runs (the bindings check nothing again).

The CPU's tiled version is compiled for several instruction sets (AVX-512, AVX2, and the
baseline: SSE2 on x86-64) and uses the best this CPU has: `tinytorch.kernels.cpu_isa()`.

Tensor level (what F.scaled_dot_product_attention uses):

    supports(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None) -> bool
    attention(q, k, v, is_causal=False, key_padding_mask=None, scale=None) -> Tensor
    dispatch(q, k, v, attn_mask, dropout_p, is_causal, scale) -> Tensor or None

`FlashAttention` is the autograd Function: its forward saves q, k, v, out and lse (O(T) extra,
never the T x T matrix), its backward recomputes the probabilities. `supports` is False - the
composed path then runs - for dtypes other than float32, head dims other than 32/64/128, value
head dim != query head dim, batch dims that would broadcast, dropout_p > 0, a float attn_mask,
a boolean attn_mask that is not a key padding mask (shape (B, 1, 1, S) or (1, 1, 1, S) for 4-D
inputs, (N, 1, S) for 3-D; a (L, S) pattern goes the composed way), and when the kernel module
cannot be built for the device. Non-contiguous inputs (nn.MultiheadAttention's per-head views)
are copied first.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from .common import (
    check_array,
    cuda_fn,
    lib,
    one_device,
    outputs,
    pick_version,
    ptr,
    runs_on,
    stream,
)

__all__ = [
    "forward",
    "backward",
    "online_softmax_attention",
    "FlashAttention",
    "supports",
    "attention",
    "dispatch",
    "CPU_VERSIONS",
    "CUDA_VERSIONS",
    "DEFAULT_VERSION",
    "HEAD_DIMS",
]

HEAD_DIMS = (32, 64, 128)
CPU_VERSIONS = (1, 2, 3)
CUDA_VERSIONS = (1, 2, 3, 4, 5)
VERSIONS = {"cpu": CPU_VERSIONS, "cuda": CUDA_VERSIONS}
DEFAULT_VERSION = {"cpu": 3, "cuda": 5}
MAX_CUDA_BATCH_HEADS = 65535  # B * H is the grid's y dimension


# ---- raw arrays ---------------------------------------------------------------------------------
def _check(q, k, v, key_padding_mask, version, where):
    """Validate the inputs; returns (device, version, kpm as contiguous uint8 or None)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_array(x, name, where)
        if x.ndim != 4:
            raise ValueError(f"{where}: {name} must be 4-D (B, H, T, D), got {tuple(x.shape)}")
    device = one_device((q, k, v), where)
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"{where}: expected q (B, H, Tq, D) and k, v (B, H, Tk, D); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(
            f"{where}: head dim {q.shape[3]} is not supported; expected one of {HEAD_DIMS} "
            "(the composed path handles any)"
        )
    if device == "cuda" and q.shape[0] * q.shape[1] > MAX_CUDA_BATCH_HEADS:
        raise ValueError(f"{where}: B * H = {q.shape[0] * q.shape[1]} > {MAX_CUDA_BATCH_HEADS}")
    version = pick_version(version, device, VERSIONS, DEFAULT_VERSION, where)
    m = key_padding_mask
    if m is None:
        return device, version, None
    if not isinstance(m, backend.ARRAY_TYPES) or m.dtype != np.bool_:
        raise TypeError(
            f"{where}: key_padding_mask must be a bool array (B, Tk), True = masked out; "
            f"got {type(m).__name__} {getattr(m, 'dtype', '')}"
        )
    B, Tk = q.shape[0], k.shape[2]
    if tuple(m.shape) != (B, Tk):
        raise ValueError(
            f"{where}: key_padding_mask has shape {tuple(m.shape)}; expected (B, Tk) = {(B, Tk)}"
        )
    if backend.device_of(m) != device:
        raise ValueError(f"{where}: key_padding_mask is on {backend.device_of(m)}, q on {device}")
    return device, version, backend.xp_of(m).ascontiguousarray(m).view(np.uint8)


def _aligned(x):
    """CUDA kernels load float4: a CuPy view that starts mid-allocation may be misaligned."""
    return x if x.data.ptr % 16 == 0 else x.copy()


def _scale(scale, D):
    return 1.0 / math.sqrt(D) if scale is None else float(scale)


def forward(q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None, out=None):
    """(out (B, H, Tq, D), lse (B, H, Tq)); see the module docstring. `out` = an optional
    (out, lse) pair of arrays to write into."""
    where = "attention forward"
    device, version, kpm = _check(q, k, v, key_padding_mask, version, where)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    out, lse = outputs(out, ((B, H, Tq, D), (B, H, Tq)), device, where)
    if out.size == 0:
        return out, lse
    if Tk == 0:  # no keys at all: every query is fully masked
        out[...], lse[...] = 0, np.inf
        return out, lse
    sizes = (B, H, Tq, Tk, D, _scale(scale, D), bool(is_causal), version)
    if device == "cpu":
        lib().attention_forward_cpu(*(ptr(a) for a in (q, k, v, kpm, out, lse)), *sizes)
        return out, lse
    fn = cuda_fn("attention", "attention_forward_cuda")
    xp = backend.get_xp(device)
    q, k, v = _aligned(q), _aligned(k), _aligned(v)
    work = xp.empty(
        max(1, lib().attention_workspace_floats(B, H, Tq, Tk, D, version, False)), np.float32
    )
    fn(*(ptr(a) for a in (q, k, v, kpm, out, lse, work)), *sizes, stream(xp))
    return out, lse


def backward(
    q, k, v, out, lse, grad_out, is_causal=False, key_padding_mask=None, scale=None,
    version=None, grads=None,
):  # fmt: skip
    """(dq, dk, dv), shaped like q, k, v, from forward's out and lse and the output gradient.
    `grads` = an optional (dq, dk, dv) triple of arrays to write into."""
    where = "attention backward"
    device, version, kpm = _check(q, k, v, key_padding_mask, version, where)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    check_array(out, "out", where, q.shape, device)
    check_array(grad_out, "grad_out", where, q.shape, device)
    check_array(lse, "lse", where, (B, H, Tq), device)
    dq, dk, dv = outputs(grads, (q.shape, k.shape, v.shape), device, where)
    if q.size == 0 or k.size == 0:
        dq[...], dk[...], dv[...] = 0, 0, 0
        return dq, dk, dv
    sizes = (B, H, Tq, Tk, D, _scale(scale, D), bool(is_causal), version)
    if device == "cpu":
        arrays = (q, k, v, kpm, out, lse, grad_out, dq, dk, dv)
        lib().attention_backward_cpu(*(ptr(a) for a in arrays), *sizes)
        return dq, dk, dv
    fn = cuda_fn("attention", "attention_backward_cuda")
    xp = backend.get_xp(device)
    q, k, v, out, grad_out = (_aligned(x) for x in (q, k, v, out, grad_out))
    work = xp.empty(
        max(1, lib().attention_workspace_floats(B, H, Tq, Tk, D, version, True)), np.float32
    )
    arrays = (q, k, v, kpm, out, lse, grad_out, dq, dk, dv, work)
    fn(*(ptr(a) for a in arrays), *sizes, stream(xp))
    return dq, dk, dv


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
        # BEGIN EXERCISE ch11: online_softmax - fold this block's scores s into m, l and acc
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


# ---- Tensor level ------------------------------------------------------------------------------
def _as_4d(x):
    """(T, D) -> (1, 1, T, D), (N, T, D) -> (N, 1, T, D), contiguous (a copy only if needed)."""
    x = x.reshape((1, 1) + x.shape) if x.ndim == 2 else (x[:, None] if x.ndim == 3 else x)
    return backend.xp_of(x).ascontiguousarray(x)


class FlashAttention(Function):
    """softmax(scale q k^T + masks) v with the fused kernels; q (..., Tq, D), k, v (..., Tk, D)
    with the same 0-2 leading dims. Saves q, k, v, out and lse (O(T) extra), recomputes the
    probabilities in the backward."""

    def forward(self, q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None):
        q4, k4, v4 = _as_4d(q), _as_4d(k), _as_4d(v)
        out, lse = forward(q4, k4, v4, is_causal, key_padding_mask, scale, version)
        self.saved = (q4, k4, v4, out, lse)
        self.kw = dict(
            is_causal=is_causal, key_padding_mask=key_padding_mask, scale=scale, version=version
        )
        self.shapes = (q.shape, k.shape, v.shape)
        return out.reshape(q.shape)

    def backward(self, grad):
        q4, k4, v4, out, lse = self.saved
        g = backend.xp_of(grad).ascontiguousarray(grad, dtype=np.float32).reshape(out.shape)
        dq, dk, dv = backward(q4, k4, v4, out, lse, g, **self.kw)
        return tuple(d.reshape(s) for d, s in zip((dq, dk, dv), self.shapes))


def _padding_from_attn_mask(attn_mask, q, k):
    """SDPA's boolean attn_mask (True = may attend) as a (B, S) key padding mask (True = masked),
    or False when the mask is not of that kind (it varies over heads or queries)."""
    if attn_mask is None:
        return None
    if not isinstance(attn_mask, Tensor) or attn_mask.dtype != np.bool_:
        return False
    n = q.ndim
    if attn_mask.ndim > n:
        return False
    shape = (1,) * (n - attn_mask.ndim) + tuple(attn_mask.shape)
    S = k.shape[-2]
    B = q.shape[0] if n >= 3 else 1
    if shape[-1] != S or any(s != 1 for s in shape[1 if n >= 3 else 0 : -1]):
        return False
    if n >= 3 and shape[0] not in (1, B):
        return False
    xp = backend.xp_of(attn_mask.data)
    m = attn_mask.data.reshape(shape[0] if n >= 3 else 1, S)
    return xp.ascontiguousarray(xp.broadcast_to(~m, (B, S)))


def supports(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None) -> bool:
    """Whether the fused kernels compute this F.scaled_dot_product_attention call exactly."""
    ts = (q, k, v)
    if not all(isinstance(t, Tensor) for t in ts):
        return False
    if any(t.dtype != np.float32 for t in ts) or len({t.device for t in ts}) != 1:
        return False
    if not (2 <= q.ndim <= 4 and q.ndim == k.ndim == v.ndim):
        return False
    if q.shape[:-2] != k.shape[:-2] or k.shape != v.shape or q.shape[-1] != k.shape[-1]:
        return False
    if q.shape[-1] not in HEAD_DIMS or dropout_p > 0.0 or q.shape[-2] == 0 or k.shape[-2] == 0:
        return False
    if q.device == "cuda" and math.prod(q.shape[:-2]) > MAX_CUDA_BATCH_HEADS:
        return False
    if attn_mask is not None:
        if is_causal or _padding_from_attn_mask(attn_mask, q, k) is False:
            return False
        if attn_mask.device != q.device:
            return False
    return runs_on(q.device)


def attention(q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None):
    """Tensor-level fused attention; key_padding_mask (B, Tk) bool Tensor or array, True =
    masked out. q (..., Tq, D), k, v (..., Tk, D) float32 with the same leading dims."""
    if isinstance(key_padding_mask, Tensor):
        key_padding_mask = key_padding_mask.data
    kw = dict(is_causal=bool(is_causal), key_padding_mask=key_padding_mask, scale=scale)
    return FlashAttention.apply(q, k, v, **kw, version=version)


def dispatch(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """For F.scaled_dot_product_attention: the fused result, or None for the composed path (the
    fused path is switched off, or supports() says no)."""
    from . import fused_enabled

    if not fused_enabled() or not supports(q, k, v, attn_mask, dropout_p, is_causal, scale):
        return None
    kpm = _padding_from_attn_mask(attn_mask, q, k)
    return attention(q, k, v, is_causal, kpm, scale)
