"""Chapter 10: the encoder-decoder models (Seq2SeqTransformer, Seq2SeqRNN) and their batches.

Oracles: a PyTorch twin of Seq2SeqTransformer (torch.nn.Transformer with the same embeddings,
positions and masks, weights copied) for logits and gradients in float64; PyTorch's
bidirectional GRU over packed sequences for the RNN encoder; NumPy formulas for the RNN
attention; finite differences (gradcheck) for the RNN pieces. Padding must not change the
results at real positions, and a decoding step (with or without the cache) must equal the
teacher-forced forward pass at every position.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.data import make_teacher_forcing_batch
from tinytorch.gradcheck import gradcheck
from tinytorch.models import Seq2SeqRNN, Seq2SeqTransformer, beam_search, greedy_decode
from tinytorch.models.seq2seq import decoder_masks, padding_mask, seq2seq_loss
from tinytorch.nn import functional as F

pytestmark = [pytest.mark.ch10, pytest.mark.filterwarnings("ignore::UserWarning")]

PAD, BOS, EOS = 0, 1, 2
V_SRC, V_TGT = 11, 13


def _ids(rng, lengths, vocab, width=None):
    """(B, width) ids >= 3 (no pad/bos/eos), right-padded with PAD to each row's length."""
    width = width or max(lengths)
    out = np.full((len(lengths), width), PAD, dtype=np.int64)
    for i, n in enumerate(lengths):
        out[i, :n] = rng.integers(3, vocab, n)
    return out


def _transformer(**kw):
    """A small float64 model (built in float64: its position table is exact, not rounded)."""
    args = dict(d_model=16, nhead=2, dim_feedforward=24, dropout=0.0, max_len=12)
    args.update(kw)
    src_vocab = V_TGT if kw.get("share_embeddings") else V_SRC
    return Seq2SeqTransformer(src_vocab, V_TGT, dtype=np.float64, **args)


def _rnn(attention, dtype=np.float64):
    return Seq2SeqRNN(V_SRC, V_TGT, emb_dim=6, hidden_size=8, attention=attention, dropout=0.0).to(
        dtype
    )


# ---- the Transformer against a PyTorch twin ----------------------------------------------------
class TorchSeq2Seq(torch.nn.Module):
    """The same model written with torch.nn: embeddings * sqrt(d) + sinusoidal positions,
    nn.Transformer (batch_first) with padding and causal masks, a Linear generator."""

    def __init__(self, ours: Seq2SeqTransformer, share: bool, tie: bool, norm_first: bool):
        super().__init__()
        d, t = ours.d_model, ours.transformer
        n_enc, n_dec = len(t.encoder.layers), len(t.decoder.layers)
        ff = t.encoder.layers[0].linear1.out_features
        td = torch.float64
        self.src_tok_emb = torch.nn.Embedding(ours.src_vocab_size, d, padding_idx=PAD, dtype=td)
        self.tgt_tok_emb = (
            self.src_tok_emb
            if share
            else torch.nn.Embedding(ours.tgt_vocab_size, d, padding_idx=PAD, dtype=td)
        )
        self.transformer = torch.nn.Transformer(
            d, ours.nhead, n_enc, n_dec, ff, dropout=0.0, batch_first=True,
            norm_first=norm_first, dtype=td,
        )  # fmt: skip
        self.generator = torch.nn.Linear(d, ours.tgt_vocab_size, dtype=td)
        if tie:
            self.generator.weight = self.tgt_tok_emb.weight
        pos = torch.arange(ours.max_len, dtype=td)[:, None]
        i = torch.arange(0, d, 2, dtype=td)
        pe = torch.zeros(ours.max_len, d, dtype=td)
        pe[:, 0::2] = torch.sin(pos / 10000 ** (i / d))
        pe[:, 1::2] = torch.cos(pos / 10000 ** (i / d))
        self.register_buffer("pe", pe, persistent=False)
        self.d = d

    def forward(self, src, tgt):
        T = tgt.shape[1]
        x = self.src_tok_emb(src) * math.sqrt(self.d) + self.pe[: src.shape[1]]
        y = self.tgt_tok_emb(tgt) * math.sqrt(self.d) + self.pe[:T]
        out = self.transformer(
            x,
            y,
            tgt_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1),
            src_key_padding_mask=src == PAD,
            tgt_key_padding_mask=tgt == PAD,
            memory_key_padding_mask=src == PAD,
        )
        return self.generator(out)


@pytest.mark.parametrize(
    "norm_first, share, tie", [(True, False, False), (False, False, True), (True, True, True)]
)
def test_transformer_matches_torch_twin(norm_first, share, tie):
    rng = np.random.default_rng()
    ours = _transformer(norm_first=norm_first, share_embeddings=share, tie_weights=tie)
    twin = TorchSeq2Seq(ours, share, tie, norm_first)
    state = ours.state_dict()
    assert set(state) == set(twin.state_dict())
    twin.load_state_dict({k: torch.tensor(to_numpy(v)) for k, v in state.items()})
    src = _ids(rng, [5, 3, 4], V_SRC if not share else V_TGT)
    tgt = np.concatenate([np.full((3, 1), BOS), _ids(rng, [4, 2, 1], V_TGT, 4)], axis=1)
    logits = ours(tt.tensor(src), tt.tensor(tgt))
    ref = twin(torch.tensor(src), torch.tensor(tgt))
    assert_close(logits, ref)
    r = rng.standard_normal(logits.shape)
    (logits * tt.tensor(r)).sum().backward()
    (ref * torch.tensor(r)).sum().backward()
    theirs = dict(twin.named_parameters())
    mine = dict(ours.named_parameters())
    assert set(mine) == set(theirs)
    for name, p in mine.items():
        assert_close(p.grad, theirs[name].grad, msg=name)


def test_transformer_shared_and_tied_tables_are_one_parameter():
    m = _transformer(share_embeddings=True, tie_weights=True)
    assert m.src_tok_emb.weight is m.tgt_tok_emb.weight is m.generator.weight
    with pytest.raises(ValueError, match="share_embeddings"):
        Seq2SeqTransformer(5, 7, d_model=8, nhead=2, share_embeddings=True)


# ---- padding, caches, attention weights: both models ---------------------------------------------
MODELS = [
    pytest.param(lambda: _transformer(), id="transformer"),
    pytest.param(lambda: _transformer(norm_first=False), id="transformer-postnorm"),
    pytest.param(lambda: _rnn("bahdanau"), id="rnn-bahdanau"),
    pytest.param(lambda: _rnn("luong"), id="rnn-luong"),
]


@pytest.mark.parametrize("make", MODELS)
def test_padded_rows_equal_unpadded(make):
    rng = np.random.default_rng()
    model = make()
    src_len, tgt_len = [6, 2, 4], [3, 5, 1]
    src = _ids(rng, src_len, V_SRC)
    tgt = _ids(rng, tgt_len, V_TGT)
    tgt[:, 0] = BOS
    logits = model(tt.tensor(src), tt.tensor(tgt))
    for i in range(3):
        alone = model(
            tt.tensor(src[i : i + 1, : src_len[i]]), tt.tensor(tgt[i : i + 1, : tgt_len[i]])
        )
        assert_close(logits[i : i + 1, : tgt_len[i]], alone, msg=f"row {i}")


@pytest.mark.parametrize("make", MODELS)
def test_decode_step_equals_forward_at_every_step(make):
    rng = np.random.default_rng()
    model = make()
    model.eval()
    src = _ids(rng, [5, 2, 4], V_SRC)
    tgt = _ids(rng, [6, 6, 6], V_TGT)
    tgt[:, 0] = BOS
    with tt.no_grad():
        full = F.log_softmax(model(tt.tensor(src), tt.tensor(tgt)), -1)
        memory = model.encode(tt.tensor(src))
        cache = model.init_cache(memory)
        for t in range(tgt.shape[1]):
            step, cache = model.decode_step(memory, tt.tensor(tgt[:, t : t + 1]), cache)
            assert_close(step, full[:, t], msg=f"cached step {t}")
            again, none = model.decode_step(memory, tt.tensor(tgt[:, : t + 1]), None)
            assert none is None
            assert_close(again, full[:, t], msg=f"uncached step {t}")
        # several new tokens at once through the cache
        cache = model.init_cache(memory)
        _, cache = model.decode_step(memory, tt.tensor(tgt[:, :2]), cache)
        step, _ = model.decode_step(memory, tt.tensor(tgt[:, 2:5]), cache)
        assert_close(step, full[:, 4])


@pytest.mark.parametrize("make", MODELS)
def test_reorder_picks_rows_of_memory_and_cache(make):
    rng = np.random.default_rng()
    model = make()
    model.eval()
    src = _ids(rng, [5, 2, 4], V_SRC)
    tgt = np.concatenate([np.full((3, 1), BOS), _ids(rng, [3, 3, 3], V_TGT)], axis=1)
    index = np.array([2, 0, 0, 1])
    with tt.no_grad():
        memory = model.encode(tt.tensor(src))
        cache = model.init_cache(memory)
        _, cache = model.decode_step(memory, tt.tensor(tgt[:, :2]), cache)
        memory2, cache2 = model.reorder(memory, index), model.reorder(cache, index)
        got, _ = model.decode_step(memory2, tt.tensor(tgt[index, 2:3]), cache2)
        want, _ = model.decode_step(memory, tt.tensor(tgt[:, 2:3]), cache)
    assert_close(got, want[index])


@pytest.mark.parametrize("make", MODELS)
def test_cross_attention_weights(make):
    rng = np.random.default_rng()
    model = make()
    src_len = [5, 2, 4]
    src = _ids(rng, src_len, V_SRC)
    tgt = np.concatenate([np.full((3, 1), BOS), _ids(rng, [3, 3, 3], V_TGT)], axis=1)
    logits, _ = model(tt.tensor(src), tt.tensor(tgt), return_attention=True)
    assert_close(logits, model(tt.tensor(src), tt.tensor(tgt)))
    w = to_numpy(model.cross_attention(tt.tensor(src), tt.tensor(tgt)))
    assert w.shape[0] == 3 and w.shape[2:] == (4, 5)
    assert w.shape[1] == (2 if isinstance(model, Seq2SeqTransformer) else 1)
    assert_close(w.sum(-1), np.ones(w.shape[:-1]))
    for i, n in enumerate(src_len):
        assert (w[i, :, :, n:] == 0).all()


def test_transformer_cross_attention_matches_torch_weights():
    rng = np.random.default_rng()
    ours = _transformer(num_decoder_layers=1)
    src = _ids(rng, [5, 3], V_SRC)
    tgt = np.concatenate([np.full((2, 1), BOS), _ids(rng, [2, 2], V_TGT)], axis=1)
    w = ours.cross_attention(tt.tensor(src), tt.tensor(tgt))
    # the same attention by hand: the decoder layer's query after its self-attention block
    lyr = ours.transformer.decoder.layers[0]
    memory = ours.encode(tt.tensor(src))
    causal, pad = decoder_masks(tt.tensor(tgt), PAD)
    x = ours._embed(ours.tgt_tok_emb, tt.tensor(tgt))
    x = lyr._residual(x, lambda y: lyr._sa_block(y, causal, pad, False), lyr.norm1)
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True, dtype=torch.float64)
    mha.load_state_dict(
        {k: torch.tensor(to_numpy(v)) for k, v in lyr.multihead_attn.state_dict().items()}
    )
    q = torch.tensor(to_numpy(lyr.norm2(x)))
    m = torch.tensor(to_numpy(memory.memory))
    _, ref = mha(q, m, m, key_padding_mask=torch.tensor(src == PAD), average_attn_weights=False)
    assert_close(w, ref)


# ---- exercise: decoder_masks --------------------------------------------------------------------
@pytest.mark.exercise("decoder_masks")
def test_decoder_masks_values():
    tgt = tt.tensor(np.array([[1, 5, 6, 0], [1, 7, 0, 0]]))
    causal, pad = decoder_masks(tgt, PAD)
    assert causal.dtype == np.bool_ and pad.dtype == np.bool_
    np.testing.assert_array_equal(to_numpy(causal), np.triu(np.ones((4, 4), bool), 1))
    np.testing.assert_array_equal(to_numpy(pad), to_numpy(tgt) == PAD)
    np.testing.assert_array_equal(to_numpy(padding_mask(tgt, 5)), to_numpy(tgt) == 5)


@pytest.mark.exercise("decoder_masks")
def test_decoder_masks_hide_the_future():
    """Changing a later target token never changes the logits of earlier positions."""
    rng = np.random.default_rng()
    model = _transformer()
    src = _ids(rng, [4, 4], V_SRC)
    tgt = np.concatenate([np.full((2, 1), BOS), _ids(rng, [4, 4], V_TGT)], axis=1)
    other = tgt.copy()
    other[:, 3:] = rng.integers(3, V_TGT, (2, 2))
    a = model(tt.tensor(src), tt.tensor(tgt))
    b = model(tt.tensor(src), tt.tensor(other))
    assert_close(a[:, :3], b[:, :3])
    assert not np.allclose(to_numpy(a[:, 3:]), to_numpy(b[:, 3:]))


# ---- exercise: teacher_forcing ------------------------------------------------------------------
@pytest.mark.exercise("teacher_forcing")
def test_teacher_forcing_batch():
    pairs = [([5, 6, 7], [8, 9]), ([4], [3, 3, 3]), ([4, 4], [])]
    src, tgt_in, tgt_out = make_teacher_forcing_batch(pairs, BOS, EOS, PAD)
    np.testing.assert_array_equal(to_numpy(src), [[5, 6, 7], [4, 0, 0], [4, 4, 0]])
    np.testing.assert_array_equal(to_numpy(tgt_in), [[1, 8, 9, 0], [1, 3, 3, 3], [1, 0, 0, 0]])
    np.testing.assert_array_equal(
        to_numpy(tgt_out), [[8, 9, 2, -100], [3, 3, 3, 2], [2, -100, -100, -100]]
    )
    assert all(t.dtype == np.int64 for t in (src, tgt_in, tgt_out))
    _, _, out = make_teacher_forcing_batch(pairs, BOS, EOS, PAD, ignore_index=PAD)
    assert to_numpy(out)[0, 3] == PAD


@pytest.mark.exercise("teacher_forcing")
def test_teacher_forcing_loss_ignores_padding():
    """The batch's loss with label smoothing equals the mean over each sentence's real tokens."""
    rng = np.random.default_rng()
    model = _transformer()
    pairs = [(list(rng.integers(3, V_SRC, n)), list(rng.integers(3, V_TGT, m))) for n, m in
             [(4, 2), (2, 5), (3, 3)]]  # fmt: skip
    src, tgt_in, tgt_out = make_teacher_forcing_batch(pairs, BOS, EOS, PAD)
    loss = seq2seq_loss(model, (src, tgt_in, tgt_out), label_smoothing=0.1)
    total, count = 0.0, 0
    for s, t in pairs:
        one = model(tt.tensor([s]), tt.tensor([[BOS, *t]]))
        y = tt.tensor(np.array([*t, EOS]))
        total += float(F.cross_entropy(one[0], y, label_smoothing=0.1, reduction="sum").item())
        count += len(t) + 1
    assert_close(loss, np.array(total / count))


# ---- the RNN ------------------------------------------------------------------------------------
def test_rnn_encoder_matches_torch_packed_bidirectional_gru():
    rng = np.random.default_rng()
    model = _rnn("luong")
    lengths = [5, 2, 4]
    src = _ids(rng, lengths, V_SRC)
    memory = model.encode(tt.tensor(src))
    gru = torch.nn.GRU(6, 8, batch_first=True, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, f"{name}_l0").copy_(
                torch.tensor(to_numpy(getattr(model.encoder_fwd, f"{name}_l0")))
            )
            getattr(gru, f"{name}_l0_reverse").copy_(
                torch.tensor(to_numpy(getattr(model.encoder_bwd, f"{name}_l0")))
            )
    emb = torch.tensor(to_numpy(model.src_tok_emb(tt.tensor(src))))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        emb, lengths, batch_first=True, enforce_sorted=False
    )
    out, h_n = gru(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    ours = to_numpy(memory.outputs)
    for i, n in enumerate(lengths):
        assert_close(ours[i, :n], to_numpy(out)[i, :n], msg=f"row {i}")
    bridge = torch.tanh(
        torch.nn.functional.linear(
            torch.cat([h_n[0], h_n[1]], 1),
            torch.tensor(to_numpy(model.bridge.weight)),
            torch.tensor(to_numpy(model.bridge.bias)),
        )
    )
    assert_close(memory.h0, bridge)


def _attention_reference(model, query, memory):
    """softmax over the source of the additive / general scores, NumPy, padding at -inf."""
    q, o = to_numpy(query), to_numpy(memory.outputs)
    keys = o @ to_numpy(model.attn_key.weight).T  # (B, S, H)
    if model.attention == "bahdanau":
        wq, v = to_numpy(model.attn_query.weight), to_numpy(model.attn_v.weight)[0]
        e = np.tanh((q @ wq.T)[:, :, None, :] + keys[:, None, :, :]) @ v  # (B, Tq, S)
    else:
        e = q @ keys.transpose(0, 2, 1)
    e = np.where(to_numpy(memory.src_padding)[:, None, :], -np.inf, e)
    w = np.exp(e - e.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return w @ o, w


@pytest.mark.exercise("rnn_attention")
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_rnn_attention_weights_and_context(attention):
    rng = np.random.default_rng()
    model = _rnn(attention)
    lengths = [5, 1, 3]
    memory = model.encode(tt.tensor(_ids(rng, lengths, V_SRC)))
    query = tt.tensor(rng.standard_normal((3, 4, 8)))
    context, weights = model.attend(query, memory)
    w = to_numpy(weights)
    assert w.shape == (3, 4, 5) and tuple(context.shape) == (3, 4, 16)
    assert_close(w.sum(-1), np.ones((3, 4)))
    for i, n in enumerate(lengths):
        assert (w[i, :, n:] == 0).all()
    ref_context, ref_w = _attention_reference(model, query, memory)
    assert_close(weights, ref_w)
    assert_close(context, ref_context)


@pytest.mark.exercise("rnn_attention")
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_rnn_attention_gradcheck(attention):
    rng = np.random.default_rng()
    model = _rnn(attention)
    memory = model.encode(tt.tensor(_ids(rng, [3, 2], V_SRC)))
    outputs = tt.tensor(to_numpy(memory.outputs), requires_grad=True)
    query = tt.tensor(rng.standard_normal((2, 2, 8)), requires_grad=True)

    def attend(q, o):
        memory.outputs, memory.keys = o, model.attn_key(o)
        return model.attend(q, memory)

    assert gradcheck(attend, [query, outputs])


def test_rnn_model_gradcheck_through_encoder_and_decoder():
    """Finite differences through the reversed-row gathers of the encoder and the decoder."""
    model = Seq2SeqRNN(7, 7, emb_dim=3, hidden_size=2, attention="bahdanau", dropout=0.0).double()
    src = tt.tensor(np.array([[3, 4, 5], [6, 3, 0]]))
    tgt = tt.tensor(np.array([[1, 4], [1, 5]]))
    w = model.encoder_bwd.weight_ih_l0
    e = model.src_tok_emb.weight

    def run(w_, e_):
        model.encoder_bwd.weight_ih_l0, model.src_tok_emb.weight = w_, e_
        return model(src, tgt)

    assert gradcheck(run, [w, e])


def test_rnn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bahdanau"):
        Seq2SeqRNN(5, 5, attention="dot")
    model = _rnn("luong")
    with pytest.raises(ValueError, match="only padding"):
        model.encode(tt.tensor(np.array([[3, 4], [0, 0]])))


@pytest.mark.parametrize("kind", ["transformer", "rnn"])
def test_models_and_decoding_on_device(device, kind):
    """float32 on the device against the float64 model on the CPU (logits); greedy decoding
    and beam width 1 on the device (the cache, reorder and host transfers there) agree."""
    rng = np.random.default_rng()
    ref = _transformer() if kind == "transformer" else _rnn("luong")
    ref.eval()
    model = (_transformer() if kind == "transformer" else _rnn("luong")).to(np.float32)
    model.load_state_dict({k: to_numpy(v).astype(np.float32) for k, v in ref.state_dict().items()})
    model.to(device).eval()
    src = _ids(rng, [5, 2, 4], V_SRC)
    tgt = np.concatenate([np.full((3, 1), BOS), _ids(rng, [3, 3, 3], V_TGT)], axis=1)
    got = model(tt.tensor(src, device=device), tt.tensor(tgt, device=device))
    assert got.device == device and got.dtype == np.float32
    assert_close(got, ref(tt.tensor(src), tt.tensor(tgt)), rtol=1e-4, atol=1e-5)
    out = greedy_decode(model, tt.tensor(src, device=device), bos_id=BOS, eos_id=EOS, max_len=5)
    beams = beam_search(model, tt.tensor(src, device=device), bos_id=BOS, eos_id=EOS,
                        beam_size=1, max_len=5, length_penalty=0.0)  # fmt: skip
    assert out == beams and all(len(o) <= 5 for o in out)
