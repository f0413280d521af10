"""Chapter 09: tinytorch's BERT against transformers' (the test oracle).

Tiny random models are built with `transformers`, their weights perturbed (its initialization
leaves biases at 0 and LayerNorms at identity, which would hide mistakes), saved with
`save_pretrained` (config.json + model.safetensors) and loaded with tinytorch's
`from_pretrained`. Hidden states, pooled outputs, logits, losses and every parameter's
gradient must agree. No network.

Tolerances: a 2-layer encoder is a deep composition (LayerNorm with eps 1e-12 divides by small
standard deviations), so float32 compares at rtol 1e-4 / atol 1e-5; float64 at 1e-7 / 1e-9
(tests/helpers.py) for forwards, 1e-6 relative for gradients summed over many paths.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.gradcheck import gradcheck
from tinytorch.kernels import attention as fused_attention
from tinytorch.models import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from tinytorch.models.bert import BertEmbeddings, BertPooler, padding_attention_mask

pytestmark = pytest.mark.ch09

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)
F32 = dict(rtol=1e-4, atol=1e-5)  # deep composition in float32 (see the module docstring)


def hf_model(cls, seed=0, **overrides):
    """A transformers model with random weights everywhere (biases, LayerNorms included)."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**{**TINY, **overrides}, attn_implementation="eager")
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def saved(tmp_path, model, name="hf"):
    folder = tmp_path / name
    model.save_pretrained(folder)
    return folder


def batch(B=3, T=9, vocab=99, seed=1, pad_from=(None, 5, 2)):
    """ids (B, T), attention mask (1 = token) with rows padded from the given positions, and
    token type ids (segment B starting mid-row)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    for b, start in enumerate(pad_from[:B]):
        if start is not None:
            mask[b, start:] = 0
            ids[b, start:] = 0  # the [PAD] id
    types = (np.arange(T)[None, :] >= T // 2).astype(np.int64).repeat(B, 0)
    return ids, mask, types


def _t(x, device="cpu"):
    return tt.tensor(x, dtype="int64", device=device)


def _pt(x):
    return torch.tensor(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bert_model_matches_transformers(tmp_path, dtype, device):
    ref = hf_model(transformers.BertModel)
    model = BertModel.from_pretrained(saved(tmp_path, ref)).to(device)
    ids, mask, types = batch()
    if dtype == "float64":
        ref, model = ref.double(), model.double()
    with torch.no_grad():
        out = ref(_pt(ids), attention_mask=_pt(mask), token_type_ids=_pt(types))
    seq, pooled = model(_t(ids, device), _t(mask, device), _t(types, device))
    assert seq.device == device
    tol = F32 if dtype == "float32" else {}
    assert_close(seq.detach(), out.last_hidden_state, **tol, msg="sequence_output")
    assert_close(pooled.detach(), out.pooler_output, **tol, msg="pooled_output")


def test_bert_without_mask_or_types_matches_transformers(tmp_path):
    ref = hf_model(transformers.BertModel).double()
    model = BertModel.from_pretrained(saved(tmp_path, ref.float())).double()
    ref = ref.double()
    ids, _, _ = batch(pad_from=(None, None, None))
    with torch.no_grad():
        out = ref(_pt(ids))
    seq, pooled = model(_t(ids))
    assert_close(seq.detach(), out.last_hidden_state)
    assert_close(pooled.detach(), out.pooler_output)


def test_padded_rows_equal_unpadded():
    """A padded row gives, at its real positions, what the row alone (unpadded) gives."""
    tt.manual_seed(0)
    model = BertModel(BertConfig(**TINY)).double().eval()
    ids, mask, types = batch()
    seq, pooled = model(_t(ids), _t(mask), _t(types))
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        alone, alone_pooled = model(_t(ids[b : b + 1, :n]), None, _t(types[b : b + 1, :n]))
        assert_close(seq.detach()[b, :n], alone.detach()[0], msg=f"row {b}")
        assert_close(pooled.detach()[b], alone_pooled.detach()[0], msg=f"pooled row {b}")


def test_padding_mask_takes_the_fused_kernel(tmp_path, monkeypatch):
    """Head size 32 in float32: the padding mask is a key padding mask the fused CPU kernel
    takes (and it gives transformers' result)."""
    if not fused_attention.runs_on("cpu"):
        pytest.skip("the fused attention kernel cannot be built on this machine")
    ref = hf_model(transformers.BertModel, hidden_size=64, num_attention_heads=2)
    model = BertModel.from_pretrained(saved(tmp_path, ref))
    ids, mask, types = batch()
    m = padding_attention_mask(_t(mask))
    assert m.shape == (3, 1, 1, 9) and m.dtype == np.bool_
    q = tt.randn(3, 2, 9, 32)
    assert fused_attention.supports(q, q, q, attn_mask=m)
    calls = []
    real = fused_attention.attention
    monkeypatch.setattr(
        fused_attention, "attention", lambda *a, **k: calls.append(k) or real(*a, **k)
    )
    seq, _ = model(_t(ids), _t(mask), _t(types))
    assert len(calls) == 2  # one per layer
    with torch.no_grad():
        out = ref(_pt(ids), attention_mask=_pt(mask), token_type_ids=_pt(types))
    assert_close(seq.detach(), out.last_hidden_state, **F32)


def test_padding_attention_mask():
    mask = np.array([[1, 1, 1], [1, 0, 0]])
    m = padding_attention_mask(_t(mask))
    np.testing.assert_array_equal(m.numpy()[:, 0, 0], mask.astype(bool))
    assert padding_attention_mask(_t(np.ones((2, 3), dtype=np.int64))) is None
    assert padding_attention_mask(None) is None
    with pytest.raises(ValueError, match="attention_mask must be"):
        padding_attention_mask(_t(np.ones(3, dtype=np.int64)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masked_lm_logits_and_loss(tmp_path, dtype):
    ref = hf_model(transformers.BertForMaskedLM)
    model = BertForMaskedLM.from_pretrained(saved(tmp_path, ref))
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    ids, mask, types = batch()
    labels = np.full_like(ids, -100)
    labels[:, 1:3] = ids[:, 1:3]
    if dtype == "float64":
        ref, model = ref.double(), model.double()
    with torch.no_grad():
        out = ref(_pt(ids), _pt(mask), _pt(types), labels=_pt(labels))
    logits, loss = model(_t(ids), _t(mask), _t(types), labels=_t(labels))
    tol = F32 if dtype == "float32" else {}
    assert_close(logits.detach(), out.logits, **tol)
    assert_close(loss.detach(), out.loss, **tol)
    assert_close(model(_t(ids), _t(mask), _t(types)).detach(), out.logits, **tol)
    fast = model.masked_lm_loss(_t(ids), _t(labels), _t(mask), _t(types))
    assert_close(fast.detach(), out.loss, **tol)


@pytest.mark.parametrize("num_labels", [2, 3])
def test_sequence_classification_logits_and_loss(tmp_path, num_labels):
    ref = hf_model(transformers.BertForSequenceClassification, num_labels=num_labels).double()
    model = BertForSequenceClassification.from_pretrained(saved(tmp_path, ref.float()))
    model, ref = model.double(), ref.double()
    assert model.num_labels == num_labels  # read from config.json's id2label
    ids, mask, types = batch()
    labels = np.arange(3) % num_labels
    with torch.no_grad():
        out = ref(_pt(ids), _pt(mask), _pt(types), labels=_pt(labels))
    logits, loss = model(_t(ids), _t(mask), _t(types), labels=_t(labels))
    assert logits.shape == (3, num_labels)
    assert_close(logits.detach(), out.logits)
    assert_close(loss.detach(), out.loss)


def _grads_match(model, ref, rtol=1e-6, atol=1e-10):
    theirs = dict(ref.named_parameters())
    names = list(dict(model.named_parameters()))
    assert set(names) <= set(theirs), set(names) - set(theirs)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert_close(p.grad, theirs[name].grad, rtol=rtol, atol=atol, msg=name)
    return names


def test_masked_lm_gradients_match(tmp_path, device):
    ref = hf_model(transformers.BertForMaskedLM)
    model = BertForMaskedLM.from_pretrained(saved(tmp_path, ref)).double().to(device)
    ref = ref.double()
    ids, mask, types = batch()
    labels = np.where(np.random.default_rng(2).random(ids.shape) < 0.3, ids, -100)
    ref(_pt(ids), _pt(mask), _pt(types), labels=_pt(labels)).loss.backward()
    args = (_t(x, device) for x in (ids, mask, types))
    model(*args, labels=_t(labels, device))[1].backward()
    names = _grads_match(model, ref)
    model.zero_grad()
    model.masked_lm_loss(*(_t(x, device) for x in (ids, labels, mask, types))).backward()
    _grads_match(model, ref)  # the same loss, the same gradients
    # the tied matrix gathers both uses: the embedding lookup and the output layer
    assert "bert.embeddings.word_embeddings.weight" in names


def test_sequence_classification_fused_float32_gradients(tmp_path):
    """Head size 32, float32, padding: the fused kernel's forward and backward inside the
    whole model, against transformers (float32 gradients summed over many paths: 1e-3)."""
    ref = hf_model(
        transformers.BertForSequenceClassification, hidden_size=64, num_attention_heads=2
    )
    model = BertForSequenceClassification.from_pretrained(saved(tmp_path, ref))
    ids, mask, types = batch()
    labels = np.array([0, 1, 1])
    ref(_pt(ids), _pt(mask), _pt(types), labels=_pt(labels)).loss.backward()
    model(_t(ids), _t(mask), _t(types), labels=_t(labels))[1].backward()
    _grads_match(model, ref, rtol=1e-3, atol=1e-5)


def test_sequence_classification_gradients_match(tmp_path):
    ref = hf_model(transformers.BertForSequenceClassification, num_labels=2)
    model = BertForSequenceClassification.from_pretrained(saved(tmp_path, ref)).double()
    ref = ref.double()
    ids, mask, types = batch()
    labels = np.array([0, 1, 1])
    ref(_pt(ids), _pt(mask), _pt(types), labels=_pt(labels)).loss.backward()
    model(_t(ids), _t(mask), _t(types), labels=_t(labels))[1].backward()
    assert len(_grads_match(model, ref)) == len(list(ref.parameters()))


def test_gradcheck_tiny_bert():
    """Finite differences in float64 through the whole encoder, with padding and dropout off."""
    tt.manual_seed(0)
    cfg = BertConfig(
        vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=12, max_position_embeddings=8,
    )  # fmt: skip
    model = BertForSequenceClassification(cfg, num_labels=3).double().eval()
    for p in model.parameters():  # away from BERT's tiny init, so every path matters
        p.data = p.data + np.random.default_rng(3).normal(0, 0.3, p.shape)
    ids = _t(np.array([[2, 5, 7, 1], [3, 9, 0, 0]]))
    mask = _t(np.array([[1, 1, 1, 1], [1, 1, 0, 0]]))
    layer = model.bert.encoder.layer[0]
    params = [
        layer.attention.self.query.weight,
        layer.attention.output.LayerNorm.weight,
        layer.intermediate.dense.bias,
        model.bert.embeddings.token_type_embeddings.weight,
        model.bert.pooler.dense.weight,
    ]
    assert gradcheck(lambda *ps: model(ids, mask), params)


# ---- exercises ------------------------------------------------------------------------------
@pytest.mark.exercise("segment_embeddings")
def test_segment_embeddings_sum_then_layernorm():
    tt.manual_seed(0)
    cfg = BertConfig(**TINY, hidden_dropout_prob=0.0)
    emb = BertEmbeddings(cfg).double()
    emb.LayerNorm.weight.data = np.random.default_rng(0).normal(1, 0.1, 32)
    emb.LayerNorm.bias.data = np.random.default_rng(1).normal(0, 0.1, 32)
    ids, _, types = batch()
    got = emb(_t(ids), _t(types)).detach().numpy()
    W = emb.word_embeddings.weight.data
    P = emb.position_embeddings.weight.data
    S = emb.token_type_embeddings.weight.data
    x = W[ids] + P[np.arange(ids.shape[1])] + S[types]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    want = (x - mu) / np.sqrt(var + cfg.layer_norm_eps) * emb.LayerNorm.weight.data
    assert_close(got, want + emb.LayerNorm.bias.data)
    # token_type_ids default to segment 0 everywhere
    zeros = np.zeros_like(types)
    assert_close(emb(_t(ids)).detach(), emb(_t(ids), _t(zeros)).detach())


@pytest.mark.exercise("segment_embeddings")
def test_segment_embeddings_match_transformers_and_dropout():
    ref = hf_model(transformers.BertModel).embeddings.double()
    emb = BertEmbeddings(BertConfig(**TINY)).double()
    emb.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()}, strict=False)
    emb.eval()
    ids, _, types = batch()
    with torch.no_grad():
        want = ref(input_ids=_pt(ids), token_type_ids=_pt(types))
    assert_close(emb(_t(ids), _t(types)).detach(), want)
    emb.train()  # dropout (p = 0.1) acts in training: about 10% zeros
    out = emb(_t(np.tile(ids, (20, 1))), _t(np.tile(types, (20, 1)))).detach().numpy()
    assert 0.06 < (out == 0).mean() < 0.14


@pytest.mark.exercise("pooler_head")
def test_pooler_first_token_dense_tanh():
    tt.manual_seed(0)
    pooler = BertPooler(BertConfig(**TINY)).double()
    h = tt.randn(4, 6, 32, dtype="float64")
    W, b = pooler.dense.weight.data, pooler.dense.bias.data
    assert_close(pooler(h).detach(), np.tanh(h.numpy()[:, 0] @ W.T + b))


@pytest.mark.exercise("pooler_head")
def test_classifier_reads_the_pooled_output():
    tt.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**TINY), num_labels=3).double().eval()
    ids, mask, types = batch()
    _, pooled = model.bert(_t(ids), _t(mask), _t(types))
    W, b = model.classifier.weight.data, model.classifier.bias.data
    logits = model(_t(ids), _t(mask), _t(types))
    assert logits.shape == (3, 3)
    assert_close(logits.detach(), pooled.detach().numpy() @ W.T + b)
    model.train()  # the classifier's dropout acts on the pooled output in training
    model.bert.eval()
    outs = {tuple(np.round(model(_t(ids), _t(mask)).detach().numpy().ravel(), 8)) for _ in range(4)}
    assert len(outs) > 1


# ---- saving -------------------------------------------------------------------------------
def test_save_pretrained_loads_in_transformers(tmp_path):
    tt.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**TINY), num_labels=3).eval()
    for p in model.parameters():
        p.data = p.data + np.random.default_rng(0).normal(0, 0.05, p.shape).astype(np.float32)
    model.save_pretrained(tmp_path / "mine")
    assert sorted(f.name for f in (tmp_path / "mine").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]  # nothing left behind (temporary files are renamed into place)
    cfg = json.loads((tmp_path / "mine" / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["hidden_size"] == 32 and len(cfg["id2label"]) == 3
    ref = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "mine", attn_implementation="eager"
    ).eval()
    ids, mask, types = batch()
    with torch.no_grad():
        want = ref(_pt(ids), _pt(mask), _pt(types)).logits
    assert_close(model(_t(ids), _t(mask), _t(types)).detach(), want, **F32)
    back = BertForSequenceClassification.from_pretrained(tmp_path / "mine")
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(to_numpy(a.detach()), to_numpy(b.detach()))


def test_masked_lm_save_pretrained_round_trip(tmp_path):
    ref = hf_model(transformers.BertForMaskedLM)
    model = BertForMaskedLM.from_pretrained(saved(tmp_path, ref))
    model.save_pretrained(tmp_path / "again")
    again = transformers.BertForMaskedLM.from_pretrained(
        tmp_path / "again", attn_implementation="eager"
    ).eval()
    ids, mask, types = batch()
    with torch.no_grad():
        a = ref(_pt(ids), _pt(mask), _pt(types)).logits
        b = again(_pt(ids), _pt(mask), _pt(types)).logits
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same weights, bit for bit


def test_config_from_dict_ignores_unknown_keys():
    d = {**TINY, "architectures": ["BertModel"], "model_type": "bert", "id2label": {}}
    cfg = BertConfig.from_dict(d)
    assert cfg.hidden_size == 32 and cfg.hidden_act == "gelu" and cfg.layer_norm_eps == 1e-12
    assert BertConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig(hidden_act="swish2")


def test_classifier_from_masked_lm_checkpoint(tmp_path):
    """Fine-tuning's start: the encoder from a masked-LM checkpoint, a new pooler and
    classifier; the MLM head is dropped."""
    ref = hf_model(transformers.BertForMaskedLM)
    folder = saved(tmp_path, ref)
    model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    want = ref.bert.encoder.layer[1].output.dense.weight.detach().numpy()
    np.testing.assert_array_equal(
        model.bert.encoder.layer[1].output.dense.weight.detach().numpy(), want
    )
    assert not model.training  # eval mode, as transformers' from_pretrained
    tuned = BertForSequenceClassification.from_pretrained(folder, hidden_dropout_prob=0.3)
    assert tuned.dropout.p == 0.3
    with pytest.raises(TypeError, match="unknown override"):
        BertForSequenceClassification.from_pretrained(folder, hiden_size=3)
    assert BertModel.from_pretrained(folder, add_pooling_layer=False).pooler is None
