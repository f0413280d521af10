"""Seq2SeqTransformer: the encoder-decoder Transformer of "Attention Is All You Need" for
translation (chapter 10), built on chapter 07's `nn.Transformer`.

    src (B, S) ids --src_tok_emb * sqrt(d_model) + sinusoidal positions--> encoder --> memory
    tgt_in (B, T) ids --tgt_tok_emb * sqrt(d_model) + positions--> decoder(memory) --> generator
    --> logits (B, T, tgt_vocab_size)

Masks (nn.MultiheadAttention's convention: True = may NOT attend):
- source padding (B, S): no query (encoder self-attention, decoder cross-attention) reads a
  padded source position;
- target causal (T, T): decoder position t reads positions <= t only (teacher forcing feeds
  the whole target at once, so the future must be hidden);
- target padding (B, T): nobody reads a padded target position.

Embeddings start N(0, 1/d_model) and are multiplied by sqrt(d_model), so the token vectors
have unit scale like the position table they are added to (the scale the paper's shared
embedding-softmax matrix needs). `share_embeddings=True` uses one table for both languages
(a joint vocabulary); `tie_weights=True` makes the output layer's weight the target table.

Decoding interface (shared with Seq2SeqRNN; tinytorch.models.decoding drives it):
    memory = model.encode(src)                    the encoder runs once
    cache = model.init_cache(memory)              cross-attention K/V computed here, once
    log_probs, cache = model.decode_step(memory, new_tokens (B, n), cache)
    log_probs, None = model.decode_step(memory, prefix (B, t), None)   no cache: whole prefix
    state = model.reorder(memory or cache, index)  rows index (beams, finished sentences)
The KV cache appends each step's self-attention keys and values, so a step costs one
position's work instead of the whole prefix's. Inference only (no gradients through it).
"""

from __future__ import annotations

import math

from .. import backend, ops
from ..autograd import is_grad_enabled
from ..nn import functional as F
from ..nn import init
from ..nn.attention import SinusoidalPositionalEncoding
from ..nn.layers import Embedding, Linear
from ..nn.module import Module
from ..nn.transformer import Transformer
from ..tensor import Tensor

__all__ = [
    "Seq2SeqTransformer",
    "TransformerMemory",
    "TransformerCache",
    "padding_mask",
    "decoder_masks",
    "check_ids",
]


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """(B, L) bool, True where ids == pad_id (positions nobody may attend to)."""
    # BEGIN EXERCISE ch10: decoder_masks - padding (B, L) bool: True where ids == pad_id
    mask = Tensor._wrap(ids.data == pad_id)
    # END EXERCISE
    return mask


def decoder_masks(tgt_in: Tensor, pad_id: int):
    """The decoder's self-attention masks for tgt_in (B, T), True = may not attend:
    causal (T, T), True above the diagonal (position t must not see t' > t), and
    padding (B, T), True where tgt_in == pad_id."""
    T = tgt_in.shape[1]
    xp = tgt_in.xp
    # BEGIN EXERCISE ch10: decoder_masks - causal (T, T) True above the diagonal; padding_mask
    causal = Tensor._wrap(xp.triu(xp.ones((T, T), dtype=bool), k=1))
    padding = padding_mask(tgt_in, pad_id)
    # END EXERCISE
    return causal, padding


def check_ids(ids, name: str, max_len=None) -> Tensor:
    """ids as a (B, L) integer Tensor (a nested list or an array is converted), L >= 1."""
    if not isinstance(ids, Tensor):
        from .. import creation

        ids = creation.tensor(ids, dtype="int64")
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (B, L) integer tensor of token ids, got shape "
            f"{tuple(ids.shape)} and dtype {ids.dtype}"
        )
    if max_len is not None and ids.shape[1] > max_len:
        raise ValueError(f"{name} has {ids.shape[1]} positions but max_len is {max_len}")
    return ids


def _index(xp, index):
    """index (a list, a NumPy/CuPy array or a Tensor of ints) as an array of xp."""
    index = index.data if isinstance(index, Tensor) else index
    return xp.asarray(index, dtype=xp.int64)


class TransformerMemory:
    """What the decoder needs from the encoder: memory (B, S, E) and src_padding (B, S) bool
    (True at padded source positions)."""

    def __init__(self, memory: Tensor, src_padding: Tensor):
        self.memory, self.src_padding = memory, src_padding

    def __len__(self):
        return self.memory.shape[0]

    def index_select(self, index) -> TransformerMemory:
        i = _index(self.memory.xp, index)
        return TransformerMemory(self.memory[i], Tensor._wrap(self.src_padding.data[i]))


class TransformerCache:
    """Per decoder layer: self-attention keys/values so far, self_k[l] / self_v[l]
    (B, heads, pos, head_dim), grown by each step; cross-attention keys/values cross_k[l] /
    cross_v[l] (B, heads, S, head_dim), computed once from the memory. Raw arrays."""

    def __init__(self, self_k, self_v, cross_k, cross_v, pos: int = 0):
        self.self_k, self.self_v = self_k, self_v
        self.cross_k, self.cross_v = cross_k, cross_v
        self.pos = pos

    def index_select(self, index) -> TransformerCache:
        xp = backend.xp_of(self.cross_k[0])
        i = _index(xp, index)

        def pick(arrays):
            return [a[i] for a in arrays]

        return TransformerCache(
            pick(self.self_k), pick(self.self_v), pick(self.cross_k), pick(self.cross_v), self.pos
        )


def _heads(t: Tensor, h: int) -> Tensor:
    """(B, L, E) -> (B, h, L, E / h)."""
    B, L, E = t.shape
    return ops.transpose(t.reshape(B, L, h, E // h), 1, 2)


def _merge(t: Tensor) -> Tensor:
    """(B, h, L, d) -> (B, L, h * d)."""
    B, h, L, d = t.shape
    return ops.transpose(t, 1, 2).reshape(B, L, h * d)


class Seq2SeqTransformer(Module):
    """forward(src (B, S), tgt_in (B, T), return_attention=False) -> logits (B, T, tgt_vocab)
    (teacher forcing), or (logits, cross-attention (B, nhead, T, S) of the last decoder layer).

    Submodules (state_dict keys): src_tok_emb, tgt_tok_emb (the same table with
    share_embeddings), positional_encoding (a non-persistent buffer), transformer
    (nn.Transformer, batch_first), generator (Linear d_model -> tgt_vocab_size).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 256,
        nhead: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        pad_id: int = 0,
        max_len: int = 64,
        share_embeddings: bool = False,
        norm_first: bool = True,
        tie_weights: bool = False,
        device="cpu",
        dtype=None,
    ):
        super().__init__()
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"Seq2SeqTransformer: share_embeddings needs one vocabulary, got "
                f"src_vocab_size={src_vocab_size} and tgt_vocab_size={tgt_vocab_size}"
            )
        kw = dict(device=device, dtype=dtype)
        self.src_tok_emb = Embedding(src_vocab_size, d_model, padding_idx=pad_id, **kw)
        self.tgt_tok_emb = (
            self.src_tok_emb
            if share_embeddings
            else Embedding(tgt_vocab_size, d_model, padding_idx=pad_id, **kw)
        )
        for emb in {id(e): e for e in (self.src_tok_emb, self.tgt_tok_emb)}.values():
            init.normal_(emb.weight, 0.0, d_model**-0.5)
            emb.weight.data[pad_id] = 0
        self.positional_encoding = SinusoidalPositionalEncoding(
            d_model, max_len, dropout=dropout, batch_first=True, **kw
        )
        self.transformer = Transformer(
            d_model,
            nhead,
            num_encoder_layers,
            num_decoder_layers,
            dim_feedforward,
            dropout,
            batch_first=True,
            norm_first=norm_first,
            **kw,
        )
        self.generator = Linear(d_model, tgt_vocab_size, **kw)
        if tie_weights:
            self.generator.weight = self.tgt_tok_emb.weight
        self.d_model, self.nhead, self.pad_id, self.max_len = d_model, nhead, pad_id, max_len
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size

    # ---- teacher forcing ----------------------------------------------------------------
    def _embed(self, emb: Embedding, ids: Tensor, offset: int = 0) -> Tensor:
        return self.positional_encoding(emb(ids) * math.sqrt(self.d_model), offset)

    def encode(self, src) -> TransformerMemory:
        """src (B, S) ids -> TransformerMemory (memory (B, S, d_model), src_padding (B, S))."""
        src = check_ids(src, "Seq2SeqTransformer: src", self.max_len)
        src_padding = padding_mask(src, self.pad_id)
        x = self._embed(self.src_tok_emb, src)
        memory = self.transformer.encoder(x, src_key_padding_mask=src_padding)
        return TransformerMemory(memory, src_padding)

    def forward(self, src, tgt_in, return_attention: bool = False):
        src = check_ids(src, "Seq2SeqTransformer: src", self.max_len)
        memory = self.encode(src)
        tgt_in = check_ids(tgt_in, "Seq2SeqTransformer: tgt_in", self.max_len)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"Seq2SeqTransformer: src has {src.shape[0]} rows but tgt_in {tgt_in.shape[0]}"
            )
        causal, tgt_padding = decoder_masks(tgt_in, self.pad_id)
        x = self._embed(self.tgt_tok_emb, tgt_in)
        if not return_attention:
            out = self.transformer.decoder(
                x,
                memory.memory,
                tgt_mask=causal,
                tgt_key_padding_mask=tgt_padding,
                memory_key_padding_mask=memory.src_padding,
            )
            return self.generator(out)
        out, attn = self._decode_with_attention(x, memory, causal, tgt_padding)
        return self.generator(out), attn

    def _decode_with_attention(self, x, memory, causal, tgt_padding):
        """The decoder stack layer by layer, keeping the last layer's cross-attention
        weights (B, nhead, T, S); the same numbers as transformer.decoder."""
        layers = self.transformer.decoder.layers
        mem, src_padding = memory.memory, memory.src_padding
        for lyr in layers[:-1]:
            x = lyr(x, mem, tgt_mask=causal, tgt_key_padding_mask=tgt_padding,
                    memory_key_padding_mask=src_padding)  # fmt: skip
        lyr, kept = layers[-1], []

        def cross(y):
            out, w = lyr.multihead_attn(
                y, mem, mem, key_padding_mask=src_padding, average_attn_weights=False
            )
            kept.append(w)
            return lyr.dropout2(out)

        x = lyr._residual(x, lambda y: lyr._sa_block(y, causal, tgt_padding, False), lyr.norm1)
        x = lyr._residual(x, cross, lyr.norm2)
        x = lyr._residual(x, lyr._ff_block, lyr.norm3)
        norm = self.transformer.decoder.norm
        return (x if norm is None else norm(x)), kept[0]

    def cross_attention(self, src, tgt_in) -> Tensor:
        """The last decoder layer's cross-attention weights (B, nhead, T, S) (heat maps)."""
        return self.forward(src, tgt_in, return_attention=True)[1]

    # ---- decoding -------------------------------------------------------------------------
    def init_cache(self, memory: TransformerMemory) -> TransformerCache:
        """An empty KV cache for memory's rows, with every decoder layer's cross-attention keys
        and values computed once from the memory."""
        E, h = self.d_model, self.nhead
        xp = memory.memory.xp
        B = memory.memory.shape[0]
        cross_k, cross_v, self_k, self_v = [], [], [], []
        for lyr in self.transformer.decoder.layers:
            w, b = lyr.multihead_attn.in_proj_weight, lyr.multihead_attn.in_proj_bias
            bk, bv = (None, None) if b is None else (b[E : 2 * E], b[2 * E :])
            cross_k.append(_heads(F.linear(memory.memory, w[E : 2 * E], bk), h).data)
            cross_v.append(_heads(F.linear(memory.memory, w[2 * E :], bv), h).data)
            empty = xp.zeros((B, h, 0, E // h), dtype=memory.memory.dtype)
            self_k.append(empty)
            self_v.append(empty)
        return TransformerCache(self_k, self_v, cross_k, cross_v)

    def reorder(self, state, index):
        """memory or cache with its rows picked by index (int array (B',)): beams follow
        their parents, finished sentences drop out."""
        return state.index_select(index)

    def decode_step(self, memory: TransformerMemory, tokens, cache=None):
        """The next token's log-probabilities (B, tgt_vocab) after tokens.

        With a cache (from init_cache), tokens (B, n) are the new positions only (usually
        n = 1); their keys and values join the cache, which is returned. Without one
        (cache=None), tokens (B, t) is the whole prefix, run through the decoder again, and
        the returned cache is None. A decoded prefix has no padding: pad_id among tokens is
        read as a token (as the cache does), not masked as forward does."""
        dec = self.transformer.decoder
        if cache is None:
            tokens = check_ids(tokens, "Seq2SeqTransformer.decode_step: tokens", self.max_len)
            # a decoded prefix holds no padding: the causal mask alone, as the cached path
            causal, _ = decoder_masks(tokens, self.pad_id)
            out = dec(
                self._embed(self.tgt_tok_emb, tokens),
                memory.memory,
                tgt_mask=causal,
                memory_key_padding_mask=memory.src_padding,
            )
            return F.log_softmax(self.generator(out[:, -1]), -1), None
        if self.training and is_grad_enabled():
            raise RuntimeError(
                "Seq2SeqTransformer: the KV cache is for inference; use model.eval() and "
                "tinytorch.no_grad()"
            )
        tokens = check_ids(tokens, "Seq2SeqTransformer.decode_step: tokens")
        if cache.pos + tokens.shape[1] > self.max_len:
            raise ValueError(
                f"Seq2SeqTransformer.decode_step: {cache.pos} cached + {tokens.shape[1]} new "
                f"positions exceed max_len={self.max_len}"
            )
        x = self._embed(self.tgt_tok_emb, tokens, offset=cache.pos)
        for i, lyr in enumerate(dec.layers):
            x = lyr._residual(x, lambda y, i=i, a=lyr.self_attn: self._self_attn(a, y, cache, i),
                              lyr.norm1)  # fmt: skip
            x = lyr._residual(
                x,
                lambda y, i=i, a=lyr.multihead_attn: self._cross_attn(a, y, memory, cache, i),
                lyr.norm2,
            )
            x = lyr._residual(x, lyr._ff_block, lyr.norm3)
        cache.pos += tokens.shape[1]
        if dec.norm is not None:
            x = dec.norm(x)
        return F.log_softmax(self.generator(x[:, -1]), -1), cache

    def _self_attn(self, mha, y, cache: TransformerCache, i: int):
        """Self-attention of the new positions y (B, n, E) over every cached one."""
        E, h = self.d_model, self.nhead
        n, start = y.shape[1], cache.pos
        q, k, v = (
            _heads(t, h) for t in F.linear(y, mha.in_proj_weight, mha.in_proj_bias).split(E, -1)
        )
        xp = y.xp
        cache.self_k[i] = xp.concatenate([cache.self_k[i], k.data], axis=2)
        cache.self_v[i] = xp.concatenate([cache.self_v[i], v.data], axis=2)
        mask = None
        if n > 1:  # new query j sits at position start + j: it sees keys 0 .. start + j
            mask = Tensor._wrap(xp.tril(xp.ones((n, start + n), dtype=bool), k=start))
        out = F.scaled_dot_product_attention(
            q, Tensor._wrap(cache.self_k[i]), Tensor._wrap(cache.self_v[i]), attn_mask=mask
        )
        return mha.out_proj(_merge(out))

    def _cross_attn(self, mha, y, memory: TransformerMemory, cache: TransformerCache, i: int):
        """Cross-attention of y (B, n, E) over the cached memory keys/values, padding hidden."""
        E = self.d_model
        b = mha.in_proj_bias
        q = _heads(F.linear(y, mha.in_proj_weight[:E], None if b is None else b[:E]), self.nhead)
        may_attend = Tensor._wrap(~memory.src_padding.data[:, None, None, :])  # (B, 1, 1, S)
        out = F.scaled_dot_product_attention(
            q, Tensor._wrap(cache.cross_k[i]), Tensor._wrap(cache.cross_v[i]), attn_mask=may_attend
        )
        return mha.out_proj(_merge(out))

    def extra_repr(self):
        return (
            f"src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size}, "
            f"d_model={self.d_model}, nhead={self.nhead}, pad_id={self.pad_id}, "
            f"max_len={self.max_len}"
        )
