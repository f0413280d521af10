"""Chapter 10's data: the eng-fra-100k registry entry, normalization, the split by English
sentence (nothing of a held-out sentence in training, every translation a reference), the
joint BPE and the length-bucketed batches (tinytorch/data/translation.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import to_numpy

import tinytorch as tt
from tinytorch import data
from tinytorch.data import datasets as ds_mod
from tinytorch.data import translation as D

pytestmark = pytest.mark.ch10


def test_eng_fra_100k_is_registered_and_checked():
    p = data.dataset_path("eng-fra-100k", download=False)
    assert p.name == "eng-fra-100k.txt"
    assert data.sha256_of(p) == ds_mod.REGISTRY["eng-fra-100k"].sha256


def test_eng_fra_100k_not_found_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYTORCH_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("TINYTORCH_DATA_URL", raising=False)
    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path / "cache"))
    tried = []
    monkeypatch.setattr(ds_mod, "_download", lambda *a, **k: tried.append(a))
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.dataset_path("eng-fra-100k")  # download allowed, but there is no address
    assert tried == []  # the canonical zip is not this file: never fetched
    msg = str(err.value)
    for part in ("eng-fra/eng-fra-100k.txt", "TINYTORCH_DATA_DIR", "shared/data", "cannot be"):
        assert part in msg, msg
    assert str(tmp_path / "cache") in msg


def test_normalize_unifies_spaces_and_apostrophes():
    assert D.normalize("  C\u2019est\u202fvrai\u00a0! ") == "C'est vrai !"
    assert D.normalize("a\u2009\u200bb") == "a b"
    assert D.normalize("e\u0301te\u0301") == "été"  # NFC: one code point per letter


def _synthetic(rng, n_en=60, short=20):
    """Pair lines like the file's: each English sentence on 1-3 consecutive lines."""
    pairs, line = [], 0
    for k in range(n_en):
        for j in range(int(rng.integers(1, 4))):
            line += 1
            pairs.append((line, f"en {k}", f"fr {k}.{j}"))
    return pairs


def _check_split(pairs, s, short):
    lines = {}
    for line, en, _ in pairs:
        lines.setdefault(en, []).append(line)
    train_en = {en for en, _ in s.train}
    for groups in (s.valid, s.test, s.test_short):
        for en, refs in groups:
            assert en not in train_en  # all translations of a held-out sentence are held out
            assert sorted(refs) == sorted({fr for _, e, fr in pairs if e == en})
    for en, _ in s.valid + s.test:
        assert min(lines[en]) > short
    for en, _ in s.test_short:
        assert max(lines[en]) <= short
    held = [en for en, _ in s.valid + s.test + s.test_short]
    assert len(held) == len(set(held))  # no sentence in two splits
    kept = {(en, fr) for _, en, fr in pairs if en not in set(held)}
    assert set(s.train) == kept and len(s.train) == len(kept)


def test_split_by_sentence_keeps_every_translation_together():
    rng = np.random.default_rng()
    pairs = _synthetic(rng)
    short = pairs[len(pairs) // 3][0]
    s = D.split_by_sentence(pairs, 5, 8, 4, seed=int(rng.integers(1 << 30)), short_lines=short)
    assert (len(s.valid), len(s.test), len(s.test_short)) == (5, 8, 4)
    _check_split(pairs, s, short)
    with pytest.raises(ValueError, match="cannot hold out"):
        D.split_by_sentence(pairs, 5, 1000, 4, short_lines=short)


def test_split_of_the_real_file():
    pairs = D.read_pairs(data.dataset_path("eng-fra-100k", download=False))
    assert len(pairs) == 97_009 and pairs[0][1:] == ("Go.", "Va !")
    s = D.split_by_sentence(pairs, 50, 200, 100, seed=0)
    _check_split(pairs, s, D.SHORT_LINES)
    assert sum(len(r) for _, r in s.test) > len(s.test)  # some sentences have several refs
    again = D.split_by_sentence(pairs, 50, 200, 100, seed=0)
    assert again.test == s.test and again.train == s.train  # the seed fixes the split


def test_length_buckets_cover_each_example_once_within_the_budget():
    rng = np.random.default_rng()
    n = int(rng.integers(1, 300))
    src, tgt = rng.integers(1, 20, n), rng.integers(1, 25, n)
    max_tokens = int(rng.integers(25, 200))
    batches = D.length_buckets(src, tgt, max_tokens, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    for b in batches:
        longest = max(src[b].max(), tgt[b].max())
        assert len(b) == 1 or len(b) * longest <= max_tokens


def test_pair_batches_cover_an_epoch_with_framed_targets():
    rng = np.random.default_rng()
    src = [list(rng.integers(3, 50, int(rng.integers(1, 9)))) for _ in range(40)]
    tgt = [list(rng.integers(3, 50, int(rng.integers(1, 9)))) for _ in range(40)]
    pb = D.PairBatches(src, tgt, bos_id=1, eos_id=2, pad_id=0, max_tokens=40, seed=0)
    seen = []
    for _ in range(pb.batches_per_epoch()):
        s, t_in, t_out = (to_numpy(x) for x in pb())
        assert s.dtype == np.int64 and s.shape[0] == t_in.shape[0] and t_in.shape == t_out.shape
        assert s.shape[0] * max(s.shape[1], t_in.shape[1]) <= 40 or s.shape[0] == 1
        for row_s, row_in, row_out in zip(s, t_in, t_out):
            n = int((row_out != -100).sum())
            body = row_in[1:n].tolist()
            assert row_in[0] == 1 and row_out[n - 1] == 2 and row_out[: n - 1].tolist() == body
            i = next(i for i in range(40) if tgt[i] == body and src[i] == row_s[row_s > 0].tolist())
            seen.append(i)
    assert sorted(seen) == list(range(40))  # one epoch: every pair once
    assert pb.epoch == 1
    fixed = pb.fixed(3)
    assert len(fixed) == 3 and all(len(b) == 3 for b in fixed)


def test_joint_bpe_special_ids_and_encoding():
    pairs = [("I am cold.", "J'ai froid."), ("Tom is here.", "Tom est ici.")] * 20
    tok = D.train_joint_bpe(pairs, 300)
    ids = D.special_ids(tok)
    V = tok.vocab_size  # at most 300: a small text may run out of pairs to merge
    assert V <= 300 and sorted(ids.values()) == [V - 3, V - 2, V - 1]
    assert [ids["pad_id"], ids["bos_id"], ids["eos_id"]] == [V - 3, V - 2, V - 1]
    assert tok.decode(tok.encode("Tom a froid.")) == "Tom a froid."  # bytes: any text
    long = ("word " * 80, "mot")
    src, tgt = D.encode_pairs(tok, [*pairs[:2], long], max_len=20)
    assert len(src) == 2 and tok.decode(tgt[1]) == "Tom est ici."  # the long pair is left out
    assert all(len(t) < 20 and len(s) <= 20 for s, t in zip(src, tgt))


def test_decode_corpus_keeps_the_order_and_equals_one_by_one():
    from tinytorch.models.seq2seq import Seq2SeqTransformer, beam_search, greedy_decode

    rng = np.random.default_rng()
    tt.manual_seed(int(rng.integers(1 << 30)))
    model = Seq2SeqTransformer(20, 20, d_model=16, nhead=2, num_encoder_layers=1,
                               num_decoder_layers=1, dim_feedforward=32, dropout=0.0,
                               pad_id=0, max_len=32, dtype=tt.float64)  # fmt: skip
    sources = [list(rng.integers(3, 20, int(rng.integers(1, 8)))) for _ in range(11)]
    kw = dict(bos_id=1, eos_id=2)
    for beam in (1, 3):
        got = D.decode_corpus(model, sources, pad_id=0, beam_size=beam, batch_size=4, max_len=32,
                              max_new_tokens=12, **kw)  # fmt: skip
        for s, g in zip(sources, got):
            if beam == 1:
                alone = greedy_decode(model, tt.tensor([s]), max_len=12, **kw)[0]
            else:
                alone = beam_search(model, tt.tensor([s]), beam_size=3, max_len=12, **kw)[0]
            assert g == alone
