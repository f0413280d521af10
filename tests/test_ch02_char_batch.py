"""Chapter 02: the character tokenizer, and batches (truncation, padding, attention masks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytorch.text import CharTokenizer, encode_batch, pad_batch

pytestmark = pytest.mark.ch02

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.exercise("char_tokenizer")
@SETTINGS
@given(st.text(min_size=1), st.text())
def test_char_round_trip(s, other):
    tok = CharTokenizer.from_text(s)
    ids = tok.encode(s)
    assert tok.decode(ids) == s and len(ids) == len(s)
    assert tok.vocab_size == len(set(s)) and all(0 <= i < tok.vocab_size for i in ids)
    unk = CharTokenizer.from_text(s + other, unk_token="<unk>")
    assert unk.decode(unk.encode(s + other)) == s + other


@pytest.mark.exercise("char_tokenizer")
def test_char_unknown_and_unk(tmp_path):
    tok = CharTokenizer.from_text("hello")
    with pytest.raises(ValueError, match=r"character 'z' \(U\+007A\) at position 2"):
        tok.encode("hez")
    unk = CharTokenizer.from_text("hello", unk_token="<unk>")
    ids = unk.encode("hez")
    assert ids[2] == unk.unk_id == unk.vocab_size - 1 == 4
    assert unk.decode(ids) == "he<unk>"
    unk.save(tmp_path / "c.json")
    back = CharTokenizer.load(tmp_path / "c.json")
    assert back.encode("hez") == ids and back.chars == unk.chars
    with pytest.raises(IndexError, match="token id 99 at position 0 is out of range"):
        tok.decode([99])


def test_char_file_errors(tmp_path):
    path = tmp_path / "c.json"
    CharTokenizer.from_text("hello").save(path)
    raw = path.read_text()
    path.write_text(raw[:-5])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        CharTokenizer.load(path)
    path.write_text(raw.replace('"e"', '"x"'))
    with pytest.raises(ValueError, match="checksum"):
        CharTokenizer.load(path)


def _batch(rng):
    """A mixed-length batch (including an empty sequence) of random ids 1..99."""
    lengths = [0, *rng.integers(1, 12, size=int(rng.integers(2, 6)))]
    rng.shuffle(lengths)
    return [list(rng.integers(1, 100, size=n)) for n in lengths]


@pytest.mark.exercise("pad_batch")
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_longest_shapes_sides_masks(side):
    seqs = _batch(np.random.default_rng())
    out = pad_batch(seqs, padding="longest", padding_side=side, pad_id=-1)
    ids, mask = out["input_ids"], out["attention_mask"]
    T = max(len(s) for s in seqs)
    assert ids.shape == mask.shape == (len(seqs), T)
    assert ids.dtype == mask.dtype == np.int64
    for row, m, s in zip(ids, mask, seqs):
        n = len(s)
        real = row[:n] if side == "right" else row[T - n :]
        pad = row[n:] if side == "right" else row[: T - n]
        assert real.tolist() == s and (pad == -1).all()
        expected = [1] * n + [0] * (T - n)
        assert m.tolist() == (expected if side == "right" else expected[::-1])
    assert (ids[mask == 0] == -1).all() and (ids[mask == 1] > 0).all()


@pytest.mark.exercise("pad_batch")
@pytest.mark.parametrize("trunc_side", ["right", "left"])
@pytest.mark.parametrize("pad_side", ["right", "left"])
def test_truncation_and_max_length_padding(trunc_side, pad_side):
    seqs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    out = pad_batch(
        seqs,
        max_length=3,
        truncation=True,
        padding="max_length",
        truncation_side=trunc_side,
        padding_side=pad_side,
    )
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (4, 3)
    assert ids[3].tolist() == ([5, 6, 7] if trunc_side == "right" else [7, 8, 9])
    assert ids[0].tolist() == [1, 2, 3] and mask.sum(1).tolist() == [3, 1, 0, 3]
    assert ids[1].tolist() == ([4, 0, 0] if pad_side == "right" else [0, 0, 4])
    wide = pad_batch(seqs, max_length=8, padding="max_length")
    assert wide["input_ids"].shape == (4, 8) and wide["attention_mask"].sum() == 9
    longest = pad_batch(seqs, max_length=4, truncation=True)  # "longest" capped by max_length
    assert longest["input_ids"].shape == (4, 4)


def test_batch_errors():
    seqs = [[1, 2, 3], [5, 6, 7, 8, 9]]
    with pytest.raises(ValueError, match="sequence 1 has 5 tokens, more than max_length=3"):
        pad_batch(seqs, max_length=3, padding="max_length")
    with pytest.raises(ValueError, match="padding_side"):
        pad_batch(seqs, padding_side="middle")
    with pytest.raises(ValueError, match="need max_length"):
        pad_batch(seqs, truncation=True)


def test_encode_batch_with_char_tokenizer():
    tok = CharTokenizer.from_text("abcdef ")
    out = encode_batch(tok, ["abc", "a", "fedcba"], max_length=4, truncation=True, pad_id=6)
    assert out["input_ids"].tolist() == [
        tok.encode("abc") + [6],
        tok.encode("a") + [6, 6, 6],
        tok.encode("fedc"),
    ]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
