"""Fused attention at the Tensor level (chapter 11): the autograd Function over the raw kernels
of `tinytorch.kernels.attention`, and the check that decides whether a call can use them.

    supports(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None) -> bool
    attention(q, k, v, is_causal=False, key_padding_mask=None, scale=None) -> Tensor
    dispatch(q, k, v, attn_mask, dropout_p, is_causal, scale) -> Tensor or None

`FlashAttention` is the autograd Function: its forward saves q, k, v, out and the log-sum-exp
(O(T) extra, never the T x T matrix), its backward recomputes the probabilities.

`dispatch` is what F.scaled_dot_product_attention asks first (through tinytorch.kernels_dispatch):
it returns None - use the composed path - when the fused path is switched off
(tinytorch.kernels.set_fused(False) or `with tinytorch.kernels.composed():`), when the kernel
module cannot be built, or when the call is not supported: dtype other than float32, head dim
other than 32/64/128, value head dim != query head dim, batch dims that would broadcast,
dropout_p > 0, a float attn_mask, or a boolean attn_mask that is not a key padding mask (shape
(B, 1, 1, S) or (1, 1, 1, S) for 4-D inputs, (N, 1, S) for 3-D; anything else, e.g. a (L, S)
pattern, goes the composed way). Inputs that are not contiguous (nn.MultiheadAttention's
per-head views) are copied first.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from . import attention as raw

__all__ = ["FlashAttention", "supports", "attention", "dispatch"]


# ---- autograd --------------------------------------------------------------------------------
def _as_4d(x):
    """(T, D) -> (1, 1, T, D), (N, T, D) -> (N, 1, T, D), contiguous (a copy only if needed)."""
    xp = backend.xp_of(x)
    x = (
        x.reshape((1,) * (4 - x.ndim) + x.shape)
        if x.ndim == 2
        else (x[:, None] if x.ndim == 3 else x)
    )
    return xp.ascontiguousarray(x)


class FlashAttention(Function):
    """softmax(scale q k^T + masks) v with the fused kernels; q (..., Tq, D), k, v (..., Tk, D)
    with the same 0-2 leading dims. Saves q, k, v, out and lse (O(T) extra), recomputes the
    probabilities in the backward."""

    def forward(self, q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None):
        shape = q.shape
        q4, k4, v4 = _as_4d(q), _as_4d(k), _as_4d(v)
        out, lse = raw.forward(q4, k4, v4, is_causal, key_padding_mask, scale, version)
        self.saved = (q4, k4, v4, out, lse)
        self.kw = dict(
            is_causal=is_causal, key_padding_mask=key_padding_mask, scale=scale, version=version
        )
        self.shapes = (q.shape, k.shape, v.shape)
        return out.reshape(shape)

    def backward(self, grad):
        q4, k4, v4, out, lse = self.saved
        g = backend.xp_of(grad).ascontiguousarray(grad, dtype=np.float32).reshape(out.shape)
        dq, dk, dv = raw.backward(q4, k4, v4, out, lse, g, **self.kw)
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
    xp = attn_mask.xp if hasattr(attn_mask, "xp") else backend.xp_of(attn_mask.data)
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
    if q.shape[-1] not in raw.HEAD_DIMS or dropout_p > 0.0 or q.shape[-2] == 0 or k.shape[-2] == 0:
        return False
    if q.device == "cuda" and math.prod(q.shape[:-2]) > 65535:  # the grid's batch*heads limit
        return False
    if attn_mask is not None:
        if is_causal or _padding_from_attn_mask(attn_mask, q, k) is False:
            return False
        if attn_mask.device != q.device:
            return False
    return True


def attention(q, k, v, is_causal=False, key_padding_mask=None, scale=None, version=None):
    """Tensor-level fused attention; key_padding_mask (B, Tk) bool Tensor or array, True =
    masked out. q (..., Tq, D), k, v (..., Tk, D) float32 with the same leading dims."""
    if isinstance(key_padding_mask, Tensor):
        key_padding_mask = key_padding_mask.data
    return FlashAttention.apply(
        q,
        k,
        v,
        is_causal=bool(is_causal),
        key_padding_mask=key_padding_mask,
        scale=scale,
        version=version,
    )


def dispatch(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """For F.scaled_dot_product_attention: the fused result, or None for the composed path."""
    from . import available, fused_enabled

    if not fused_enabled() or not supports(q, k, v, attn_mask, dropout_p, is_causal, scale):
        return None
    if not available():
        return None
    lib = raw._lib()
    if q.device == "cuda" and not hasattr(lib, "attention_forward_cuda"):
        return None
    kpm = _padding_from_attn_mask(attn_mask, q, k)
    return attention(q, k, v, is_causal, kpm, scale)
