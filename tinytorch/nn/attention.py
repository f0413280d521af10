"""Multi-head attention and positional encodings (chapter 06).

`MultiheadAttention` has torch.nn.MultiheadAttention's arguments, parameter names
(`in_proj_weight` (3E, E), `in_proj_bias` (3E,), `out_proj.weight`, `out_proj.bias`; or
`q_proj_weight`, `k_proj_weight`, `v_proj_weight` when kdim/vdim differ from embed_dim),
initialization and mask conventions, so a PyTorch layer's state_dict loads one to one.

Attention by itself does not know the order of its inputs (permuting the keys permutes
nothing in the output), so a sequence model adds position information to its embeddings:
`SinusoidalPositionalEncoding` (fixed, "Attention Is All You Need") or
`LearnedPositionalEmbedding` (a trained table, as in GPT).
"""

from __future__ import annotations

import math

import numpy as np

from .. import creation, ops
from ..tensor import Tensor
from . import functional as F
from . import init
from .functional_attention import attention_with_weights, causal_mask
from .layers import Embedding, Linear
from .module import Module, Parameter

__all__ = [
    "MultiheadAttention",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "sinusoidal_positional_encoding",
]


def _as_additive(mask: Tensor, dtype) -> Tensor:
    """A boolean "True = masked out" mask as 0 / -inf scores; a float mask as it is."""
    if mask.dtype.kind == "b":
        xp = mask.xp
        return Tensor._wrap(xp.where(mask.data, dtype.type(-math.inf), dtype.type(0)))
    return mask.to(dtype)


class MultiheadAttention(Module):
    """Attention over `num_heads` heads of size embed_dim // num_heads, then an output layer.

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
            average_attn_weights=True, is_causal=False) -> (attn_output, attn_weights)

    Shapes (batch_first=False, PyTorch's default): query (L, N, E), key (S, N, kdim), value
    (S, N, vdim) -> output (L, N, E); with batch_first=True, (N, L, E) etc.; unbatched inputs
    (L, E) work too. attn_weights: (N, L, S) averaged over heads, (N, num_heads, L, S) with
    average_attn_weights=False, or None with need_weights=False.

    Masks follow nn.MultiheadAttention (note: the *opposite* of F.scaled_dot_product_attention
    for booleans): in `attn_mask` (L, S) or (N * num_heads, L, S) and `key_padding_mask` (N, S),
    True means "do not attend"; float masks are added to the scores. `is_causal=True` without an
    attn_mask applies the causal mask. A query with every key masked gets output 0 (PyTorch's
    need_weights=True path gives NaN there).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim=None,
        vdim=None,
        batch_first: bool = False,
        device="cpu",
        dtype=None,
    ):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive "
                f"multiple of num_heads ({num_heads})"
            )
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(
                "MultiheadAttention: add_bias_kv and add_zero_attn are not supported"
            )
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout, self.batch_first = dropout, batch_first

        def param(*shape):
            return Parameter(creation.empty(*shape, dtype=dtype, device=device))

        if self._qkv_same_embed_dim:
            self.in_proj_weight = param(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = param(embed_dim, embed_dim)
            self.k_proj_weight = param(embed_dim, self.kdim)
            self.v_proj_weight = param(embed_dim, self.vdim)
        if bias:
            self.in_proj_bias = param(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        # PyTorch's choice: Glorot for the input projections, zero biases; out_proj keeps
        # Linear's default weight initialization.
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def _projections(self, query, key, value):
        """q (N, L, E), k (N, S, E), v (N, S, E): the three input projections."""
        E = self.embed_dim
        # BEGIN EXERCISE ch06: in_projections - x W^T + b with the rows of in_proj_weight/bias
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E : 2 * E], b[2 * E :])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:  # self-attention: one matmul for all three
                q, k, v = F.linear(query, w, b).split(E, dim=-1)
                return q, k, v
            wq, wk, wv = w[:E], w[E : 2 * E], w[2 * E :]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
        # END EXERCISE

    def _merge_masks(self, attn_mask, key_padding_mask, N, L, S, dtype):
        """One mask for the scores (N, heads, L, S), in SDPA's convention, or None."""
        h = self.num_heads
        if attn_mask is not None:
            if tuple(attn_mask.shape) == (N * h, L, S):
                attn_mask = attn_mask.reshape(N, h, L, S)
            elif tuple(attn_mask.shape) != (L, S):
                raise ValueError(
                    f"MultiheadAttention: attn_mask has shape "
                    f"{tuple(attn_mask.shape)}; expected (L, S) = {(L, S)} or "
                    f"(N * num_heads, L, S) = {(N * h, L, S)}"
                )
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask has shape "
                    f"{tuple(key_padding_mask.shape)}; expected (N, S) = {(N, S)}"
                )
            key_padding_mask = key_padding_mask.reshape(N, 1, 1, S)
        masks = [m for m in (attn_mask, key_padding_mask) if m is not None]
        if not masks:
            return None
        # BEGIN EXERCISE ch06: mha_masks - bools (True = blocked) -> SDPA's True = may attend
        if all(m.dtype.kind == "b" for m in masks):  # SDPA's booleans mean "may attend"
            blocked = masks[0].data if len(masks) == 1 else masks[0].data | masks[1].data
            return Tensor._wrap(~blocked)
        # a float mask among them: everything as additive scores (-inf where blocked)
        add = _as_additive(masks[0], dtype)
        return add if len(masks) == 1 else add + _as_additive(masks[1], dtype)
        # END EXERCISE

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights: bool = True,
        attn_mask=None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ):
        unbatched = query.ndim == 2
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"MultiheadAttention: query, key and value must all be 3-D "
                f"(batched) or 2-D (unbatched); got shapes {tuple(query.shape)}, "
                f"{tuple(key.shape)}, {tuple(value.shape)}"
            )
        same = query is key and key is value
        if unbatched:
            query, key, value = (ops.unsqueeze(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = ops.unsqueeze(key_padding_mask, 0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (ops.transpose(t, 0, 1) for t in (query, key, value))
        if same:
            key = value = query
        N, L, E = query.shape
        S = key.shape[1]
        if E != self.embed_dim or key.shape[2] != self.kdim or value.shape[2] != self.vdim:
            raise ValueError(
                f"MultiheadAttention: expected feature sizes (query {self.embed_dim}"
                f", key {self.kdim}, value {self.vdim}); got {E}, {key.shape[2]}, "
                f"{value.shape[2]}"
            )
        if key.shape[:2] != value.shape[:2] or key.shape[0] != N:
            raise ValueError(
                f"MultiheadAttention: key {tuple(key.shape)} and value "
                f"{tuple(value.shape)} must share (batch, source length), and the "
                f"batch must match the query's {N}"
            )

        q, k, v = self._projections(query, key, value)
        h, d = self.num_heads, self.head_dim
        # BEGIN EXERCISE ch06: split_merge_heads - (N, L, E) -> (N, h, L, d) for q, k and v
        # (N, L, E) -> (N, h, L, d): each head attends in its own d-dimensional subspace
        q, k, v = (ops.transpose(t.reshape(N, t.shape[1], h, d), 1, 2) for t in (q, k, v))
        # END EXERCISE
        causal = False
        if is_causal and attn_mask is None:  # "applies a causal mask" (PyTorch's docs)
            if key_padding_mask is None:
                causal = True
            else:  # combine it with the padding: as a "True = blocked" mask
                attn_mask = Tensor._wrap(~causal_mask(L, S, q.device).data)
        mask = self._merge_masks(attn_mask, key_padding_mask, N, L, S, q.dtype)
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = attention_with_weights(q, k, v, mask, p, causal)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, mask, p, causal), None
        # BEGIN EXERCISE ch06: split_merge_heads - (N, h, L, d) -> (N, L, E), then out_proj
        out = self.out_proj(ops.transpose(out, 1, 2).reshape(N, L, E))  # heads side by side
        # END EXERCISE
        if weights is not None and average_attn_weights:
            weights = ops.mean(weights, 1)
        if unbatched:
            out = ops.squeeze(out, 0)
            weights = None if weights is None else ops.squeeze(weights, 0)
        elif not self.batch_first:
            out = ops.transpose(out, 0, 1)
        return out, weights

    def extra_repr(self):
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"dropout={self.dropout}, batch_first={self.batch_first}"
        )


def sinusoidal_positional_encoding(max_len: int, d_model: int, dtype=None, device="cpu") -> Tensor:
    """The (max_len, d_model) table of "Attention Is All You Need", section 3.5:

        PE[pos, 2i]     = sin(pos / 10000^(2i / d_model))
        PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))

    Each pair of columns is a rotation at its own frequency, so PE[pos + k] is a fixed linear
    function of PE[pos]: relative offsets are easy for attention to read.
    """
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    # BEGIN EXERCISE ch06: sinusoidal_table - pe (max_len, d_model): sin on even columns, cos on odd
    freq = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq[: d_model // 2])
    # END EXERCISE
    return creation.tensor(pe, dtype=dtype or "float32", device=device)


def _check_len(T, max_len, what):
    if T > max_len:
        raise ValueError(
            f"{what}: the sequence has {T} positions but the table holds only max_len={max_len}"
        )


class SinusoidalPositionalEncoding(Module):
    """x + PE[:T] (fixed, not trained), then dropout. x is (B, T, d_model) when batch_first
    (the default here), else (T, B, d_model). `offset` starts the positions later (KV caches).
    The table is a non-persistent buffer: it is recomputed, not saved in state_dict."""

    def __init__(
        self,
        d_model: int,
        max_len: int = 5000,
        dropout: float = 0.0,
        batch_first: bool = True,
        dtype=None,
        device="cpu",
    ):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        self.dropout = dropout
        self.register_buffer(
            "pe", sinusoidal_positional_encoding(max_len, d_model, dtype, device), persistent=False
        )

    def forward(self, x, offset: int = 0):
        T = x.shape[1] if self.batch_first else x.shape[0]
        _check_len(offset + T, self.max_len, "SinusoidalPositionalEncoding")
        pe = self.pe[offset : offset + T]
        if not self.batch_first:
            pe = ops.unsqueeze(pe, 1)
        return F.dropout(x + pe.to(x.dtype), self.dropout, self.training)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(Embedding):
    """A trained (max_len, d_model) table of position vectors (GPT's `wpe`), added to x.

    forward(x (B, T, d_model), offset=0) -> x + weight[offset:offset + T]. Its one parameter is
    `weight`, like nn.Embedding's; initialized N(0, 0.02) as in GPT-2.
    """

    def __init__(self, max_len: int, d_model: int, device="cpu", dtype=None):
        super().__init__(max_len, d_model, device=device, dtype=dtype)
        self.max_len = max_len

    def reset_parameters(self):
        init.normal_(self.weight, 0.0, 0.02)

    def forward(self, x, offset: int = 0):
        T = x.shape[1]
        _check_len(offset + T, self.max_len, "LearnedPositionalEmbedding")
        # BEGIN EXERCISE ch06: learned_positions - x + the rows offset .. offset + T - 1 of weight
        pos = creation.arange(offset, offset + T, device=x.device)
        out = x + F.embedding(pos, self.weight)
        # END EXERCISE
        return out
