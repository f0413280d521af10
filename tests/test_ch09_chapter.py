"""Chapter 09's own pieces (chapters/09_finetuning/): the data files and tokenizers, the
bucketed batches, the sparse masked-LM loss, the BiLSTM baseline against PyTorch, and
main.py --predict without a trained model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.data import REGISTRY, dataset_path, sha256_of
from tinytorch.models import BertConfig, BertForMaskedLM

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "09_finetuning"
sys.path.insert(0, str(CHAPTER))  # the chapter's helpers are plain modules next to main.py

import data  # noqa: E402
from baselines import BiLSTMClassifier  # noqa: E402
from recipes import mlm_batch, sparse_mlm_loss  # noqa: E402

pytestmark = pytest.mark.ch09


def test_glue_sst2_is_registered_with_its_checksum():
    entry = REGISTRY["glue-sst2-train"]
    assert entry.repo == "eyalbd2/Reproducing-AutoPrompt"
    assert entry.commit == "53e9e221b58e5ed882a56c9d8be838b895351165"
    assert entry.path == "glue_data/SST-2/train_full.tsv"
    path = dataset_path("glue-sst2-train", download=False)
    assert sha256_of(path) == entry.sha256


def test_sst_files_parse_to_the_documented_sizes():
    phrases, labels = data.glue_phrases()
    assert len(phrases) == 67349 and set(labels) == {0, 1}
    dev, dev_labels = data.sst_sentences("dev")
    assert len(dev) == 872 and sum(dev_labels) == 444  # 428 negative, 444 positive
    assert all("-lrb-" not in t and "-rrb-" not in t for t in dev)


def test_words_follow_sst_tokenization():
    assert data.words("Don't stop -- it's GREAT (really)!") == [
        "do",
        "n't",
        "stop",
        "--",
        "it",
        "'s",
        "great",
        "(",
        "really",
        ")",
        "!",
    ]
    assert data.sst_words("a -lrb- b -rrb- c") == ["a", "(", "b", ")", "c"]


def test_word_tokenizer_encodes_saves_and_loads(tmp_path):
    tok = data.WordTokenizer.train([["a", "b", "a"], ["c", "a", "b"]], min_count=2)
    assert tok.itos[:5] == list(data.SPECIALS) and tok.vocab_size == 7
    ids = tok.encode(["a", "zebra", "b", "a"], max_len=4)
    assert ids == [tok.cls_id, tok.stoi["a"], tok.unk_id, tok.sep_id]  # cut to fit max_len
    tok.save(tmp_path / "t.json")
    again = data.load_tokenizer(tmp_path / "t.json")
    assert isinstance(again, data.WordTokenizer) and again.itos == tok.itos


def test_bpe_tokenizer_has_the_same_interface(tmp_path):
    texts = [["the", "film", "is", "great"], ["the", "films", "were", "bad"]] * 20
    tok = data.BPEWords.train(texts, vocab_size=300)
    ids = tok.encode(["the", "film"], max_len=16)
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert tok.bpe.decode(ids[1:-1]) == "the film"
    tok.save(tmp_path / "b.json")
    assert data.load_tokenizer(tmp_path / "b.json").encode(["the", "film"], 16) == ids


def test_bucket_batches_cover_every_example_once():
    rng = np.random.default_rng()
    lengths = rng.integers(1, 40, 1003)
    for shuffle in (True, False):
        batches = data.bucket_batches(lengths, 32, rng, shuffle=shuffle, pool=4)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1003))
        assert max(map(len, batches)) <= 32
    # sorted pools: a batch's lengths are close (less padding than a random batch)
    spread = np.mean([np.ptp(lengths[b]) for b in data.bucket_batches(lengths, 32, rng, pool=8)])
    assert spread < 10


def test_sparse_mlm_loss_equals_the_full_masked_lm_loss():
    cfg = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForMaskedLM(cfg)
    tok = data.WordTokenizer(list(data.SPECIALS) + [f"w{i}" for i in range(35)])
    rng = np.random.default_rng()
    seqs = [[2, *rng.integers(5, 40, n), 3] for n in (9, 4, 7)]
    inputs, mask, labels = mlm_batch(seqs, tok, 40, np.random.default_rng(0))
    labels[0, 1] = inputs[0, 1]  # at least one position to predict
    full = model(tt.tensor(inputs), mask, labels=labels)[1]
    sparse = sparse_mlm_loss(model, (inputs, mask, labels))
    assert_close(sparse, full, rtol=1e-5)
    sparse.backward()
    g_sparse = to_numpy(model.bert.embeddings.word_embeddings.weight.grad).copy()
    model.zero_grad()
    model(tt.tensor(inputs), mask, labels=labels)[1].backward()
    assert_close(g_sparse, model.bert.embeddings.word_embeddings.weight.grad, rtol=1e-4, atol=1e-6)


def test_mlm_batch_never_masks_padding_or_specials():
    tok = data.WordTokenizer(list(data.SPECIALS) + [f"w{i}" for i in range(50)])
    seqs = [[2, *range(5, 5 + n), 3] for n in (3, 20, 11)]
    inputs, mask, labels = mlm_batch(seqs, tok, 55, np.random.default_rng())
    ids = data.collate(seqs, tok.pad_id)[0]
    assert (labels[mask == 0] == -100).all() and (inputs[mask == 0] == tok.pad_id).all()
    specials = np.isin(ids, [tok.cls_id, tok.sep_id])
    assert (labels[specials] == -100).all() and (inputs[specials] == ids[specials]).all()


def test_bilstm_classifier_matches_torch_and_ignores_padding_in_the_max():
    tt.manual_seed(0)
    model = BiLSTMClassifier(30, embed=8, hidden=6, dropout=0.0).eval()
    emb = torch.nn.Embedding(30, 8, padding_idx=0)
    lstm = torch.nn.LSTM(8, 6, batch_first=True, bidirectional=True)
    head = torch.nn.Linear(12, 2)
    state = {k: torch.tensor(to_numpy(v)) for k, v in model.state_dict().items()}
    emb.load_state_dict({"weight": state["embedding.weight"]})
    lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    head.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("classifier.")})
    ids = np.random.randint(5, 30, (3, 7))
    ids[1, 4:] = 0
    mask = (ids != 0).astype(np.int64)
    out, _ = lstm(emb(torch.tensor(ids)))
    out = out.masked_fill(torch.tensor(mask == 0)[..., None], -1e4)
    expected = head(out.max(dim=1).values)
    assert_close(model(tt.tensor(ids), mask), expected, rtol=1e-5, atol=1e-6)


def test_predict_without_a_model_says_to_run_main_first(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    (tmp_path / "in.txt").write_text("a fine film .\n")
    proc = subprocess.run(
        [sys.executable, str(CHAPTER / "main.py"), "--predict", str(tmp_path / "in.txt")]
        + ["--out", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "no trained model" in proc.stderr and "first" in proc.stderr


def test_mean_pool_classifier_ignores_padding_and_round_trips(tmp_path):
    from pooling import BertMeanPoolClassifier

    cfg = BertConfig(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=12,
    )
    model = BertMeanPoolClassifier(cfg, num_labels=2).eval()
    ids = np.random.randint(5, 30, (1, 6))
    padded = np.concatenate([ids, np.zeros((1, 3), np.int64)], axis=1)
    mask = (padded != 0).astype(np.int64)
    alone = model(tt.tensor(ids))
    assert_close(model(tt.tensor(padded), mask), alone, rtol=1e-5, atol=1e-6)
    hidden, _ = model.bert(tt.tensor(ids))
    expected = model.classifier(hidden.mean(dim=1))
    assert_close(alone, expected, rtol=1e-5, atol=1e-6)
    model.save_pretrained(tmp_path / "m")
    again = BertMeanPoolClassifier.from_pretrained(tmp_path / "m")
    assert_close(again(tt.tensor(ids)), alone, rtol=1e-6, atol=1e-7)
