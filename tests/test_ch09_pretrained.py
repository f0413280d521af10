"""Chapter 09: pretrained weights - GPT-2 folders, the GPT classifier, renaming, the hub.

Tiny random GPT-2 models are built with `transformers` (weights perturbed so that biases and
LayerNorms are not at their initial values), saved with `save_pretrained` and loaded with
`GPT.from_pretrained` / `GPTForSequenceClassification.from_pretrained`: logits, greedy
continuations and gradients must agree with transformers'. The hub is never contacted:
`hf_hub_download` is replaced by fakes. float32 compares at rtol 1e-4 / atol 1e-5 (a deep
composition), float64 at the suite's 1e-7.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import torch
import transformers
from helpers import assert_close

import tinytorch as tt
from tinytorch.generate import generate
from tinytorch.models import GPT, BertModel, GPTForSequenceClassification
from tinytorch.models import pretrained as P
from tinytorch.models.gpt_classifier import last_token_index

pytestmark = pytest.mark.ch09

TINY = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=16)
TINY_IDS = dict(bos_token_id=1, eos_token_id=2)
F32 = dict(rtol=1e-4, atol=1e-5)


def hf_gpt2(cls=transformers.GPT2LMHeadModel, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**{**TINY, **TINY_IDS, **overrides}, attn_implementation="eager")
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def saved(tmp_path, model, name="hf"):
    model.save_pretrained(tmp_path / name)
    return tmp_path / name


def _t(x, device="cpu"):
    return tt.tensor(x, dtype="int64", device=device)


def ids_batch(B=3, T=10, seed=1):
    return np.random.default_rng(seed).integers(3, 99, (B, T))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpt2_logits_match_transformers(tmp_path, dtype, device):
    ref = hf_gpt2()
    model = GPT.from_pretrained(saved(tmp_path, ref)).to(device)
    assert model.config.block_size == 16 and model.config.vocab_size == 99
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    ids = ids_batch()
    if dtype == "float64":
        ref, model = ref.double(), model.double()
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits
    logits, _ = model(_t(ids, device))
    assert_close(logits.detach(), want, **(F32 if dtype == "float32" else {}))


def test_gpt2_base_model_folder_loads(tmp_path):
    """A GPT2Model folder (the hub's "gpt2": no "transformer." prefix, no lm_head) loads too."""
    from safetensors.numpy import load_file, save_file

    lm = hf_gpt2()
    folder = saved(tmp_path, lm.transformer, "base")
    state = load_file(folder / "model.safetensors")
    assert "wte.weight" in state
    # the hub's file also holds each layer's causal mask buffers: not weights, dropped
    causal = np.tril(np.ones((1, 1, 16, 16), dtype=bool))
    for i in range(2):
        state[f"h.{i}.attn.bias"] = causal
        state[f"h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    save_file(state, folder / "model.safetensors")
    model = GPT.from_pretrained(folder).double()
    lm = lm.double()
    ids = ids_batch()
    with torch.no_grad():
        want = lm(torch.tensor(ids)).logits
    assert_close(model(_t(ids))[0].detach(), want)


def test_gpt2_gradients_match(tmp_path):
    ref = hf_gpt2()
    model = GPT.from_pretrained(saved(tmp_path, ref)).double()
    ref = ref.double()
    ids = ids_batch()
    targets = ids_batch(seed=2)
    ref(torch.tensor(ids), labels=None).logits.log_softmax(-1).gather(
        -1, torch.tensor(targets)[..., None]
    ).mean().neg().backward()
    model(_t(ids), _t(targets))[1].backward()
    theirs = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        g = theirs[name].grad.numpy()
        if name.endswith(P.CONV1D_WEIGHTS):
            g = g.T  # Conv1D keeps (in, out)
        assert_close(p.grad, g, rtol=1e-6, atol=1e-10, msg=name)


def test_gpt2_greedy_continuation_matches_transformers(tmp_path):
    """What the manual check with the real GPT-2 does, on a tiny random one."""
    ref = hf_gpt2()
    model = GPT.from_pretrained(saved(tmp_path, ref))
    prompt = ids_batch(B=1, T=4)
    ours = generate(model, _t(prompt), 8, do_sample=False).numpy()
    with torch.no_grad():
        theirs = ref.generate(
            torch.tensor(prompt), max_new_tokens=8, do_sample=False, eos_token_id=None,
            pad_token_id=0,
        )  # fmt: skip
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_gpt2_overrides_and_bad_folders(tmp_path):
    folder = saved(tmp_path, hf_gpt2())
    assert GPT.from_pretrained(folder, dropout=0.2).config.dropout == 0.2
    with pytest.raises(TypeError, match="unknown override"):
        GPT.from_pretrained(folder, n_embed=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        GPT.from_pretrained(tmp_path / "empty")
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8,
    ))  # fmt: skip
    with pytest.raises(ValueError, match="GPT-2 folder"):
        GPT.from_pretrained(saved(tmp_path, bert, "bert"))


# ---- the GPT classifier -----------------------------------------------------------------------
def right_padded(pad=0):
    ids = ids_batch(B=3, T=8)
    mask = np.ones_like(ids)
    for b, n in ((1, 5), (2, 2)):
        ids[b, n:], mask[b, n:] = pad, 0
    return ids, mask


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpt_classifier_matches_transformers(tmp_path, dtype, device):
    ref = hf_gpt2(transformers.GPT2ForSequenceClassification, num_labels=3, pad_token_id=0)
    folder = saved(tmp_path, ref)
    model = GPTForSequenceClassification.from_pretrained(folder, num_labels=3).to(device)
    assert model.pad_token_id == 0 and model.num_labels == 3
    ids, mask = right_padded()
    labels = np.array([0, 2, 1])
    if dtype == "float64":
        ref, model = ref.double(), model.double()
    with torch.no_grad():
        out = ref(torch.tensor(ids), labels=torch.tensor(labels))
    logits, loss = model(_t(ids, device), labels=_t(labels, device))
    tol = F32 if dtype == "float32" else {}
    assert_close(logits.detach(), out.logits, **tol)
    assert_close(loss.detach(), out.loss, **tol)
    by_mask = model(_t(ids, device), _t(mask, device)).detach()  # the mask's way
    assert_close(by_mask, out.logits, **tol)


def test_gpt_classifier_padded_rows_equal_unpadded():
    tt.manual_seed(0)
    from tinytorch.models import GPTConfig

    model = GPTForSequenceClassification(GPTConfig(block_size=16, vocab_size=99, n_layer=2,
                                                   n_head=4, n_embd=32), num_labels=2)  # fmt: skip
    model = model.double().eval()
    ids, mask = right_padded()
    logits = model(_t(ids), _t(mask)).detach().numpy()
    for b in range(3):
        n = int(mask[b].sum())
        alone = model(_t(ids[b : b + 1, :n])).detach().numpy()
        assert_close(logits[b], alone[0], msg=f"row {b}")


def test_gpt_classifier_gradients_match(tmp_path):
    ref = hf_gpt2(transformers.GPT2ForSequenceClassification, num_labels=2, pad_token_id=0)
    model = GPTForSequenceClassification.from_pretrained(saved(tmp_path, ref)).double()
    ref = ref.double()
    ids, mask = right_padded()
    labels = np.array([1, 0, 1])
    ref(torch.tensor(ids), labels=torch.tensor(labels)).loss.backward()
    model(_t(ids), _t(mask), labels=_t(labels))[1].backward()
    theirs = dict(ref.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    assert "score.weight" in names
    for name, p in model.named_parameters():
        g = theirs[name].grad.numpy()
        g = g.T if name.endswith(P.CONV1D_WEIGHTS) else g
        assert_close(p.grad, g, rtol=1e-6, atol=1e-10, msg=name)


def test_gpt_classifier_from_language_model_folder(tmp_path):
    """Fine-tuning's start: GPT-2's body, a new score head; lm_head is dropped."""
    lm = hf_gpt2()
    model = GPTForSequenceClassification.from_pretrained(
        saved(tmp_path, lm), num_labels=2, pad_token_id=0
    )
    want = lm.transformer.h[1].mlp.c_fc.weight.detach().numpy().T
    np.testing.assert_array_equal(model.transformer.h[1].mlp.c_fc.weight.detach().numpy(), want)
    assert model.score.weight.shape == (2, 32)
    # its hidden states are the language model's (same body), read at the last real token
    ids, mask = right_padded()
    h = model.hidden_states(_t(ids)).detach().numpy()
    with torch.no_grad():
        want_h = lm.transformer(torch.tensor(ids)).last_hidden_state.numpy()
    assert_close(h, want_h, **F32)


def test_last_token_index():
    ids = np.array([[5, 6, 7], [5, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(last_token_index(ids, pad_token_id=0), [2, 0, 0])
    mask = (ids != 0).astype(np.int64)
    np.testing.assert_array_equal(last_token_index(ids, mask), [2, 0, 0])
    with pytest.raises(ValueError, match="right-padded"):
        last_token_index(ids, np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]]))


# ---- renaming ---------------------------------------------------------------------------------
@pytest.mark.exercise("rename_state_dict")
def test_rename_old_bert_names_and_prefixes():
    keys = ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias", "pooler.dense.weight"]
    a, b, c = np.ones(2), np.zeros(2), np.eye(2)
    # a checkpoint with heads ("bert." prefix) and TensorFlow-era gamma/beta, into a base model
    old = {"bert.embeddings.LayerNorm.gamma": a, "bert.embeddings.LayerNorm.beta": b,
           "bert.pooler.dense.weight": c, "cls.predictions.bias": b}  # fmt: skip
    out = P.rename_state_dict(old, keys, "bert.")
    assert set(out) == set(keys) | {"cls.predictions.bias"}  # a foreign head keeps its name
    assert out["embeddings.LayerNorm.weight"] is a and out["pooler.dense.weight"] is c
    # a base model's checkpoint into a model with heads: the prefix is added
    heads = ["bert." + k for k in keys] + ["classifier.weight"]
    out = P.rename_state_dict({"pooler.dense.weight": c}, heads, "bert.")
    assert list(out) == ["bert.pooler.dense.weight"]


@pytest.mark.exercise("rename_state_dict")
def test_rename_transposes_conv1d_weights():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 12)), rng.normal(size=12)  # Conv1D: (in, out)
    proj = rng.normal(size=(4, 4))
    keys = ["transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
            "transformer.h.0.attn.c_proj.weight", "transformer.wte.weight"]  # fmt: skip
    state = {"h.0.attn.c_attn.weight": w, "h.0.attn.c_attn.bias": b,
             "h.0.attn.c_proj.weight": proj, "wte.weight": proj}  # fmt: skip
    out = P.rename_state_dict(state, keys, "transformer.", P.CONV1D_WEIGHTS)
    assert set(out) == set(keys)
    np.testing.assert_array_equal(out["transformer.h.0.attn.c_attn.weight"], w.T)
    np.testing.assert_array_equal(out["transformer.h.0.attn.c_proj.weight"], proj.T)
    np.testing.assert_array_equal(out["transformer.h.0.attn.c_attn.bias"], b)
    np.testing.assert_array_equal(out["transformer.wte.weight"], proj)  # not a Conv1D


@pytest.mark.exercise("rename_state_dict")
def test_old_style_bert_checkpoint_loads(tmp_path):
    """bert-base-uncased's file: "bert." prefixes, gamma/beta, the pretraining heads."""
    from safetensors.numpy import save_file

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=20,
                                  attn_implementation="eager")  # fmt: skip
    ref = transformers.BertForPreTraining(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ref.save_pretrained(tmp_path / "m")
    state = {}
    for k, v in ref.state_dict().items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        )
        state[k] = v.detach().numpy().copy()
    save_file(state, tmp_path / "m" / "model.safetensors")
    model = BertModel.from_pretrained(tmp_path / "m").double()
    ref = ref.double()
    ids = np.random.default_rng(0).integers(0, 50, (2, 6))
    with torch.no_grad():
        want = ref.bert(torch.tensor(ids))
    seq, pooled = model(_t(ids))
    assert_close(seq.detach(), want.last_hidden_state)
    assert_close(pooled.detach(), want.pooler_output)


def test_unexpected_and_missing_keys_are_errors(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = saved(tmp_path, hf_gpt2())
    state = load_file(folder / "model.safetensors")
    save_file({**state, "transformer.h.0.attn.c_atn.weight": np.zeros(2, np.float32)},
              folder / "model.safetensors")  # fmt: skip
    with pytest.raises(RuntimeError, match="unexpected.*c_atn"):
        GPT.from_pretrained(folder)
    del state["transformer.ln_f.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(RuntimeError, match="missing.*ln_f.weight"):
        GPT.from_pretrained(folder)


# ---- finding the files: the cache and the hub (faked) ---------------------------------------
def test_name_from_the_tinytorch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path / "cache"))
    saved(tmp_path / "cache" / "pretrained", hf_gpt2(), "tiny-gpt2")
    assert P.resolve("tiny-gpt2") == tmp_path / "cache" / "pretrained" / "tiny-gpt2"
    assert GPT.from_pretrained("tiny-gpt2").config.n_layer == 2


def _fake_hub(tmp_path, files: dict):
    """A hub cache laid out as huggingface_hub's: snapshots/<rev>/<file> -> blobs/<hash>."""
    blobs, snap = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for name, data in files.items():
        if name.endswith(".safetensors"):
            h = hashlib.sha256(data).hexdigest()
        else:
            h = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (blobs / h).write_bytes(data)
        (snap / name).symlink_to(blobs / h)
    return snap


def test_hub_download_is_checked(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path / "cache"))
    folder = saved(tmp_path, hf_gpt2())
    files = {f: (folder / f).read_bytes() for f in P.FILES}
    snap = _fake_hub(tmp_path, files)
    asked = []

    def fake_download(repo_id, filename, **kw):
        asked.append((repo_id, filename))
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = GPT.from_pretrained("gpt2")
    assert asked == [("openai-community/gpt2", "config.json"),
                     ("openai-community/gpt2", "model.safetensors")]  # fmt: skip
    assert model.config.n_embd == 32
    blob = (snap / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-4] + b"\0\0\0\0")  # damaged after the download
    with pytest.raises(OSError, match="damaged"):
        GPT.from_pretrained("gpt2")


def test_offline_error_says_what_to_put_where(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise OSError("no connection")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    where = str(tmp_path / "cache" / "pretrained" / "bert-base-uncased")
    with pytest.raises(FileNotFoundError) as e:
        BertModel.from_pretrained("bert-base-uncased")
    msg = str(e.value)
    assert "config.json" in msg and "model.safetensors" in msg and where in msg
    assert "huggingface.co/google-bert/bert-base-uncased" in msg and "no connection" in msg
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(FileNotFoundError, match=r"huggingface_hub is not installed.*model.safe"):
        GPT.from_pretrained("gpt2")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        GPT.from_pretrained(str(tmp_path / "no" / "such" / "folder"))


def test_manual_check_script_on_a_local_folder(tmp_path, capsys):
    """`python -m tinytorch.models.pretrained --check FOLDER "prompt"` on a tiny random
    GPT-2 with GPT-2's vocabulary size (the real check downloads "gpt2")."""
    ref = hf_gpt2(vocab_size=50257, n_embd=8, n_head=2, n_layer=1, n_positions=32)
    folder = saved(tmp_path, ref)
    assert P.main(["--check", str(folder), "Hello, world", "--tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert "tinytorch:" in out and "same greedy continuation" in out


@pytest.mark.parametrize("exact_gelu", [False, True])
def test_gpt_save_pretrained_loads_in_transformers(tmp_path, exact_gelu):
    """GPT-2 folders out: chapter 07's GPT (exact GELU, "gelu") and a GPT-2 ("gelu_new")."""
    from tinytorch.models import GPTConfig

    tt.manual_seed(0)
    if exact_gelu:
        model = GPT(GPTConfig(block_size=16, vocab_size=99, n_layer=2, n_head=4, n_embd=32))
    else:
        model = GPT.from_pretrained(saved(tmp_path, hf_gpt2()))
    model.save_pretrained(tmp_path / "out")
    ref = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path / "out", attn_implementation="eager"
    ).eval()
    assert ref.config.activation_function == ("gelu" if exact_gelu else "gelu_new")
    ids = ids_batch()
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits
    model.eval()
    assert_close(model(_t(ids))[0].detach(), want, **F32)
    back = GPT.from_pretrained(tmp_path / "out")
    assert_close(back(_t(ids))[0].detach(), model(_t(ids))[0].detach())


def test_gpt_classifier_save_pretrained_loads_in_transformers(tmp_path):
    ref = hf_gpt2(transformers.GPT2ForSequenceClassification, num_labels=3, pad_token_id=0)
    model = GPTForSequenceClassification.from_pretrained(saved(tmp_path, ref), num_labels=3)
    model.save_pretrained(tmp_path / "out")
    again = transformers.GPT2ForSequenceClassification.from_pretrained(
        tmp_path / "out", attn_implementation="eager"
    ).eval()
    ids, _ = right_padded()
    with torch.no_grad():
        a, b = ref(torch.tensor(ids)).logits, again(torch.tensor(ids)).logits
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same weights, bit for bit
