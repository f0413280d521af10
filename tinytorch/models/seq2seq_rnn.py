"""Seq2SeqRNN: a GRU encoder-decoder with attention (chapter 10), the model of Bahdanau et
al. (2015) and Luong et al. (2015), as in PyTorch's translation tutorial.

Encoder: a bidirectional GRU over the source embeddings. Each direction is its own
nn.GRU (`encoder_fwd`, `encoder_bwd`); the backward one reads every row's real tokens
reversed (its padding stays at the end), so padding never leaks into the states of real
positions. Its outputs (B, S, 2H) are both directions side by side; the decoder starts from
h_0 = tanh(bridge([forward's last state, backward's last state])).

Decoder: a GRU over the target embeddings that attends over the encoder outputs at each step.
With attention="bahdanau" (additive) the previous state h_{t-1} asks, and the context joins the
GRU's input; with "luong" (multiplicative, "general") the new state h_t asks after the step:

    bahdanau: e_ts = v^T tanh(W_q h_{t-1} + W_k o_s);  h_t = GRU([emb(y_t), c_t], h_{t-1})
    luong:    h_t = GRU(emb(y_t), h_{t-1});             e_ts = h_t^T W_k o_s
    both:     a_t = softmax_s(e_ts) (0 at padded s);  c_t = sum_s a_ts o_s
              logits_t = generator(dropout(tanh(combine([h_t, c_t]))))

Luong's decoder runs over the whole target in one fused GRU call and attends for all
positions at once (fast); Bahdanau's must alternate attention and one GRU step per position.
Decoding interface as Seq2SeqTransformer's (see seq2seq.py); the cache is the hidden state.
"""

from __future__ import annotations

import math

from .. import ops
from ..nn import functional as F
from ..nn.layers import Dropout, Embedding, Linear
from ..nn.module import Module
from ..nn.rnn import GRU
from ..tensor import Tensor
from .seq2seq_transformer import _index, check_ids, padding_mask

__all__ = ["Seq2SeqRNN", "RNNMemory", "RNNCache"]


class RNNMemory:
    """The encoder's results: outputs (B, S, 2H), keys (B, S, H) (W_k applied once),
    src_padding (B, S) bool (True at padding) and the decoder's first state h0 (B, H)."""

    def __init__(self, outputs, keys, src_padding, h0):
        self.outputs, self.keys, self.src_padding, self.h0 = outputs, keys, src_padding, h0

    def index_select(self, index) -> RNNMemory:
        i = _index(self.outputs.xp, index)
        return RNNMemory(
            self.outputs[i], self.keys[i], Tensor._wrap(self.src_padding.data[i]), self.h0[i]
        )


class RNNCache:
    """The decoder's hidden state h (B, H) after the tokens fed so far."""

    def __init__(self, h: Tensor):
        self.h = h

    def index_select(self, index) -> RNNCache:
        return RNNCache(self.h[_index(self.h.xp, index)])


class Seq2SeqRNN(Module):
    """forward(src (B, S), tgt_in (B, T), return_attention=False) -> logits (B, T, tgt_vocab)
    (teacher forcing), or (logits, attention weights (B, T, S)).

    hidden_size H is each encoder direction's and the decoder's state size; emb_dim the
    embeddings' size. Dropout applies to the embeddings and before the output layer.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        emb_dim: int = 256,
        hidden_size: int = 256,
        attention: str = "bahdanau",
        dropout: float = 0.1,
        pad_id: int = 0,
        device="cpu",
        dtype=None,
    ):
        super().__init__()
        if attention not in ("bahdanau", "luong"):
            raise ValueError(
                f"Seq2SeqRNN: attention must be 'bahdanau' or 'luong', got {attention!r}"
            )
        H, kw = hidden_size, dict(device=device, dtype=dtype)
        self.src_tok_emb = Embedding(src_vocab_size, emb_dim, padding_idx=pad_id, **kw)
        self.tgt_tok_emb = Embedding(tgt_vocab_size, emb_dim, padding_idx=pad_id, **kw)
        self.dropout = Dropout(dropout)
        self.encoder_fwd = GRU(emb_dim, H, batch_first=True, **kw)
        self.encoder_bwd = GRU(emb_dim, H, batch_first=True, **kw)
        self.bridge = Linear(2 * H, H, **kw)
        self.attn_key = Linear(2 * H, H, bias=False, **kw)  # W_k, applied once per source
        if attention == "bahdanau":
            self.attn_query = Linear(H, H, bias=False, **kw)  # W_q
            self.attn_v = Linear(H, 1, bias=False, **kw)  # v
        dec_in = emb_dim + 2 * H if attention == "bahdanau" else emb_dim
        self.decoder = GRU(dec_in, H, batch_first=True, **kw)
        self.combine = Linear(3 * H, H, **kw)
        self.generator = Linear(H, tgt_vocab_size, **kw)
        self.attention, self.hidden_size, self.pad_id = attention, H, pad_id
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size

    # ---- encoder ----------------------------------------------------------------------------
    def encode(self, src) -> RNNMemory:
        """src (B, S) ids -> RNNMemory. Every row needs at least one token that is not pad."""
        src = check_ids(src, "Seq2SeqRNN: src")
        pad = padding_mask(src, self.pad_id)
        lengths = (~pad.data).sum(axis=1)
        if (lengths == 0).any():
            raise ValueError("Seq2SeqRNN: a source row holds only padding")
        B, S = src.shape
        x = self.dropout(self.src_tok_emb(src))  # (B, S, emb)
        xp = x.xp
        t = xp.arange(S)[None, :]
        # reverse each row's real part, keep its padding at the end: rev is its own inverse
        rev = xp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
        rows = xp.arange(B)[:, None]
        fwd, _ = self.encoder_fwd(x)
        bwd = self.encoder_bwd(x[rows, rev])[0][rows, rev]  # back in source order
        outputs = ops.cat([fwd, bwd], dim=2)  # (B, S, 2H)
        last = ops.cat([fwd[xp.arange(B), lengths - 1], bwd[:, 0]], dim=1)  # (B, 2H)
        h0 = ops.tanh(self.bridge(last))
        return RNNMemory(outputs, self.attn_key(outputs), pad, h0)

    # ---- attention --------------------------------------------------------------------------
    def attend(self, query, memory: RNNMemory):
        """query (B, Tq, H) (decoder states) -> context (B, Tq, 2H), weights (B, Tq, S): the
        attention weights sum to 1 over the source and are 0 at its padded positions."""
        keys, values = memory.keys, memory.outputs  # (B, S, H), (B, S, 2H)
        blocked = Tensor._wrap(memory.src_padding.data[:, None, :])  # (B, 1, S)
        # BEGIN EXERCISE ch10: rnn_attention - scores, -inf at padding, softmax, context
        if self.attention == "bahdanau":  # v^T tanh(W_q q + W_k o_s), for every (t, s)
            q = ops.unsqueeze(self.attn_query(query), 2)  # (B, Tq, 1, H)
            scores = self.attn_v(ops.tanh(q + ops.unsqueeze(keys, 1))).squeeze(-1)
        else:  # q^T W_k o_s
            scores = ops.matmul(query, ops.transpose(keys, 1, 2))  # (B, Tq, S)
        scores = ops.masked_fill(scores, blocked, -math.inf)
        weights = ops.softmax(scores, -1)
        context = ops.matmul(weights, values)  # (B, Tq, 2H)
        # END EXERCISE
        return context, weights

    # ---- decoder ----------------------------------------------------------------------------
    def _decode(self, memory: RNNMemory, tokens: Tensor, h: Tensor):
        """tokens (B, T) from state h (B, H) -> logits (B, T, V), last state, weights (B, T, S)."""
        emb = self.dropout(self.tgt_tok_emb(tokens))  # (B, T, emb)
        if self.attention == "luong":
            states, _ = self.decoder(emb, ops.unsqueeze(h, 0))  # (B, T, H), one fused call
            context, weights = self.attend(states, memory)
        else:  # the context of step t depends on h_{t-1}: one step at a time
            outs, ctxs, ws = [], [], []
            for t in range(tokens.shape[1]):
                c, w = self.attend(ops.unsqueeze(h, 1), memory)  # (B, 1, 2H), (B, 1, S)
                step_in = ops.cat([emb[:, t : t + 1], c], dim=2)
                out, _ = self.decoder(step_in, ops.unsqueeze(h, 0))
                h = out[:, 0]
                outs.append(out)
                ctxs.append(c)
                ws.append(w)
            states, context, weights = (ops.cat(z, dim=1) for z in (outs, ctxs, ws))
        attentional = ops.tanh(self.combine(ops.cat([states, context], dim=2)))
        return self.generator(self.dropout(attentional)), states[:, -1], weights

    def forward(self, src, tgt_in, return_attention: bool = False):
        src = check_ids(src, "Seq2SeqRNN: src")
        memory = self.encode(src)
        tgt_in = check_ids(tgt_in, "Seq2SeqRNN: tgt_in")
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"Seq2SeqRNN: src has {src.shape[0]} rows but tgt_in {tgt_in.shape[0]}"
            )
        logits, _, weights = self._decode(memory, tgt_in, memory.h0)
        return (logits, weights) if return_attention else logits

    def cross_attention(self, src, tgt_in) -> Tensor:
        """Attention weights (B, 1, T, S) (one "head", shaped as the Transformer's)."""
        return ops.unsqueeze(self.forward(src, tgt_in, return_attention=True)[1], 1)

    # ---- decoding -------------------------------------------------------------------------
    def init_cache(self, memory: RNNMemory) -> RNNCache:
        return RNNCache(memory.h0)

    def reorder(self, state, index):
        """memory or cache with its rows picked by index (int array)."""
        return state.index_select(index)

    def decode_step(self, memory: RNNMemory, tokens, cache=None):
        """Log-probabilities (B, V) of the token after `tokens`. With a cache, tokens (B, n)
        are the new tokens, read from the cached state; without (None), the whole prefix is
        read again from h0 and the returned cache is None."""
        tokens = check_ids(tokens, "Seq2SeqRNN.decode_step: tokens")
        h = memory.h0 if cache is None else cache.h
        logits, h, _ = self._decode(memory, tokens, h)
        log_probs = F.log_softmax(logits[:, -1], -1)
        return log_probs, (None if cache is None else RNNCache(h))

    def extra_repr(self):
        return (
            f"src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size}, "
            f"hidden_size={self.hidden_size}, attention={self.attention!r}, pad_id={self.pad_id}"
        )
