"""Scaled dot-product attention: softmax(Q K^T / sqrt(d_k)) V, with PyTorch's semantics.

    scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None)

q is (..., L, E) - L queries - and k, v are (..., S, E) and (..., S, Ev) - S keys and values;
the leading dims (batch, heads) broadcast. The output is (..., L, Ev).

Masks, as in torch.nn.functional.scaled_dot_product_attention:
- a boolean `attn_mask` says which query/key pairs may attend: True = take part;
- a floating `attn_mask` is *added* to the scores (0 keeps, -inf removes, anything else biases);
- `is_causal=True` lets query i see keys 0..i only (the top-left aligned lower triangle);
- every mask broadcasts to the scores' shape (..., L, S).
A query whose keys are all masked gets an output of 0 (and gradient 0) rather than NaN, as
PyTorch's SDPA does.

The composed path below is the reference: one batched matmul for the scores, the mask, a
softmax over keys, dropout on the weights, one batched matmul with the values. A fused kernel
(tinytorch.kernels.attention.dispatch) may take the call first; it is tested against this path.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import backend, ops
from ..kernels import attention as fused_attention
from ..tensor import Tensor

__all__ = ["scaled_dot_product_attention", "attention_with_weights", "causal_mask"]


def softmax_rows(scores: Tensor) -> Tensor:
    """Softmax over the last dim (the keys), 0 for rows where every key is masked out."""
    return ops.masked_softmax(scores, -1)


@functools.lru_cache(maxsize=64)
def _cached_causal(L: int, S: int, device: str):
    xp = backend.get_xp(device)
    # BEGIN EXERCISE ch06: causal_mask - (L, S) bool, True where query i may see key j <= i
    mask = xp.tril(xp.ones((L, S), dtype=bool))
    # END EXERCISE
    return mask


def causal_mask(L: int, S: int | None = None, device: str = "cpu") -> Tensor:
    """(L, S) boolean mask, True where query i may attend key j, i.e. j <= i (cached per
    size and device: the causal path builds it once, not at every step)."""
    return Tensor._wrap(_cached_causal(L, L if S is None else S, device))


def _check(q, k, v, attn_mask, is_causal, dropout_p):
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"scaled_dot_product_attention: {name} must be a Tensor, got {type(t).__name__}"
            )
        if t.ndim < 2 or t.dtype.kind != "f":
            raise ValueError(
                f"scaled_dot_product_attention: {name} must be a floating tensor "
                f"with at least 2 dims (..., seq, features), got shape "
                f"{tuple(t.shape)} and dtype {t.dtype}"
            )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"scaled_dot_product_attention: query, key and value must share a "
            f"dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: query has {q.shape[-1]} features but "
            f"key has {k.shape[-1]} (shapes {tuple(q.shape)} and "
            f"{tuple(k.shape)}); they must match"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: key has {k.shape[-2]} positions but "
            f"value has {v.shape[-2]} (shapes {tuple(k.shape)} and "
            f"{tuple(v.shape)}); they must match"
        )
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"scaled_dot_product_attention: the batch dims of query "
            f"{tuple(q.shape)}, key {tuple(k.shape)} and value {tuple(v.shape)} "
            f"do not broadcast"
        ) from None
    scores = (*batch, q.shape[-2], k.shape[-2])
    if attn_mask is not None:
        if is_causal:
            raise ValueError(
                "scaled_dot_product_attention: pass either attn_mask or "
                "is_causal=True, not both (as in PyTorch)"
            )
        if not isinstance(attn_mask, Tensor):
            raise TypeError(
                f"scaled_dot_product_attention: attn_mask must be a Tensor, got "
                f"{type(attn_mask).__name__}"
            )
        if attn_mask.dtype.kind not in "bf":
            raise TypeError(
                f"scaled_dot_product_attention: attn_mask must be bool or "
                f"floating, got {attn_mask.dtype}"
            )
        ok = attn_mask.ndim >= 1
        try:
            ok = ok and np.broadcast_shapes(attn_mask.shape, scores) == scores
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"scaled_dot_product_attention: attn_mask has shape "
                f"{tuple(attn_mask.shape)} but must broadcast to the attention "
                f"scores' shape {scores} = (*batch, L, S)"
            )
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(
            f"scaled_dot_product_attention: dropout_p must be in [0, 1], got {dropout_p}"
        )


def attention_with_weights(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """The composed attention; returns (output (..., L, Ev), weights (..., L, S)).

    `weights` are the softmax probabilities after dropout (what nn.MultiheadAttention returns
    with need_weights=True). No checks: scaled_dot_product_attention validates first.
    """
    L, S = q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    # BEGIN EXERCISE ch06: sdpa - Q K^T * scale, the mask, softmax_rows, dropout, then @ V
    scores = ops.matmul(q, ops.transpose(k, -2, -1)) * scale  # (..., L, S)
    neg_inf = scores.dtype.type(-math.inf)  # a typed scalar keeps float32 float32
    if is_causal:  # hide the future: keep key j only where j <= i
        scores = ops.where(causal_mask(L, S, q.device), scores, neg_inf)
    elif attn_mask is not None and attn_mask.dtype.kind == "b":  # True = may attend
        scores = ops.where(attn_mask, scores, neg_inf)
    elif attn_mask is not None:  # additive: 0 keeps, -inf removes, other values bias
        scores = scores + attn_mask.to(scores.dtype)
    weights = softmax_rows(scores)
    if dropout_p > 0.0:
        weights = ops.dropout(weights, dropout_p, training=True)
    out = ops.matmul(weights, v)  # (..., L, Ev): each query's weighted average of values
    # END EXERCISE
    return out, weights


def scaled_dot_product_attention(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale=None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(query key^T * scale + mask) value; see the module docstring for the masks.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). `scale` defaults to
    1/sqrt(E). Dropout (probability dropout_p) is applied to the attention weights whenever
    dropout_p > 0, as in PyTorch (modules pass 0.0 in eval mode).
    """
    if enable_gqa:
        raise NotImplementedError(
            "scaled_dot_product_attention: enable_gqa (grouped-query "
            "attention) is not supported; repeat the key/value heads"
        )
    _check(query, key, value, attn_mask, is_causal, dropout_p)
    fused = fused_attention.dispatch(query, key, value, attn_mask, dropout_p, is_causal, scale)
    if fused is not None:
        return fused
    return attention_with_weights(query, key, value, attn_mask, dropout_p, is_causal, scale)[0]
