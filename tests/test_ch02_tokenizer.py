"""Chapter 02: tokenizers against tiktoken, a reference trainer, and round trips."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytorch.data import dataset_path
from tinytorch.text import (
    GPT2_PATTERN,
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    chunk_counts,
    encode_batch,
    pad_batch,
    train_merges,
    train_merges_reference,
)

pytestmark = pytest.mark.ch02

tiktoken = pytest.importorskip("tiktoken")

# Unicode text without lone surrogates (not encodable as UTF-8 by anyone), biased toward the
# hard cases: emoji, CJK, combining marks, whitespace runs, control characters, apostrophes.
HARD = st.sampled_from(
    [
        "😀",
        "👍🏽",
        "中文",
        "日本語",
        "e\u0301",
        "\u0301",
        "  ",
        "\n\n",
        "\t",
        "\x00",
        "\x1b",
        "'s",
        "'ll",
        " 123",
        "...",
        "\r\n",
        "  \n ",
        "ﬁ",
        "ǅ",
    ]
)
TEXT = st.lists(
    st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), HARD), max_size=12
).map("".join)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer.from_files(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ranks = data_gym_to_mergeable_bpe_ranks(
        str(dataset_path("gpt2-vocab")), str(dataset_path("gpt2-encoder"))
    )
    return tiktoken.Encoding(
        "gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )


@pytest.mark.parametrize("name", ["tinyshakespeare", "wikitext2-valid"])
def test_gpt2_equals_tiktoken_on_whole_corpora(gpt2, tiktoken_gpt2, name):
    text = dataset_path(name).read_text(encoding="utf-8")
    ours, theirs = gpt2.encode_ordinary(text), tiktoken_gpt2.encode_ordinary(text)
    if ours != theirs:
        i = next(k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        pytest.fail(f"first difference at token {i}: {ours[i : i + 5]} vs {theirs[i : i + 5]}")
    assert len(ours) == len(theirs)
    assert gpt2.decode(ours) == text


@SETTINGS
@given(TEXT)
def test_gpt2_equals_tiktoken_on_unicode(gpt2, tiktoken_gpt2, s):
    assert gpt2.encode_ordinary(s) == tiktoken_gpt2.encode_ordinary(s)
    assert gpt2.decode(gpt2.encode_ordinary(s)) == s


def test_gpt2_endoftext_like_tiktoken(gpt2, tiktoken_gpt2):
    s = "Hello<|endoftext|> world"
    assert gpt2.encode(s, allowed_special="all") == tiktoken_gpt2.encode(s, allowed_special="all")
    assert gpt2.encode(s, allowed_special="all")[1] == 50256 == gpt2.eot_token
    assert gpt2.encode(s, disallowed_special=()) == tiktoken_gpt2.encode(s, disallowed_special=())
    with pytest.raises(ValueError, match=r"disallowed special token '<\|endoftext\|>'"):
        gpt2.encode(s)


def test_worked_example():
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def _corpus(seed, n=3000):
    rng = np.random.default_rng(seed)
    words = [
        "the",
        "then",
        "there",
        "these",
        "a",
        "an",
        "and",
        "ant",
        "über",
        "naïve",
        "猫",
        "cat",
        "cats",
        "it's",
        "42",
        "4242",
        "!!",
        "?",
    ]
    return (
        " ".join(rng.choice(words, size=n))
        + "\n"
        + "".join(rng.choice(list(string.ascii_lowercase + "  \n"), size=n))
    )


@pytest.mark.parametrize("num_merges", [1, 50, 300])
def test_fast_trainer_equals_reference(num_merges):
    counts = chunk_counts(_corpus(np.random.default_rng().integers(1 << 30)))
    fast, ref = train_merges(counts, num_merges), train_merges_reference(counts, num_merges)
    assert fast == ref
    assert len(fast) == num_merges


def test_training_stops_when_nothing_is_left_to_merge():
    tok = BPETokenizer.train("ab ab", vocab_size=1000)
    assert tok.encode("ab ab") == [tok.encode("ab")[0], tok.encode(" ab")[0]]


@SETTINGS
@given(TEXT)
def test_trained_bpe_round_trip(s):
    tok = _trained()
    assert tok.decode(tok.encode(s, disallowed_special=())) == s


_TOK = {}


def _trained():
    if "t" not in _TOK:
        _TOK["t"] = BPETokenizer.train(_corpus(0), 400, special_tokens=["<|endoftext|>"])
    return _TOK["t"]


def test_special_tokens_like_tiktoken():
    tok = _trained()
    eot = tok.special_tokens["<|endoftext|>"]
    assert eot == 399
    ids = tok.encode("the cat<|endoftext|>the", allowed_special="all")
    assert eot in ids and tok.decode(ids) == "the cat<|endoftext|>the"
    plain = tok.encode("x<|endoftext|>", disallowed_special=())
    assert eot not in plain
    with pytest.raises(ValueError, match="disallowed special token"):
        tok.encode("x<|endoftext|>")
    with pytest.raises(ValueError, match="unknown special token"):
        tok.encode("x", allowed_special={"<|nope|>"})


def test_save_load_round_trip_and_atomicity(tmp_path):
    tok = _trained()
    path = tmp_path / "tok.json"
    tok.save(path)
    back = BPETokenizer.load(path)
    s = _corpus(1, 200)
    assert back.encode(s) == tok.encode(s)
    assert back.special_tokens == tok.special_tokens
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left


def test_corrupted_and_truncated_files_are_clear_errors(tmp_path):
    path = tmp_path / "tok.json"
    _trained().save(path)
    raw = path.read_text()
    path.write_text(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        BPETokenizer.load(path)
    payload = json.loads(raw)
    payload["merges"][3] = [1, 2]  # content changed, checksum not updated
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="checksum"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a tinytorch-bpe file"):
        BPETokenizer.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BPETokenizer.load(tmp_path / "missing.json")


def test_decode_out_of_range_ids(gpt2):
    with pytest.raises(IndexError, match="token id 50257 at position 1 is out of range"):
        gpt2.decode([0, 50257])
    with pytest.raises(IndexError, match="token id -1"):
        _trained().decode([-1])


@SETTINGS
@given(st.text(min_size=1))
def test_char_round_trip(s):
    s = s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    tok = CharTokenizer.from_text(s)
    assert tok.decode(tok.encode(s)) == s


def test_char_unknown_and_unk(tmp_path):
    tok = CharTokenizer.from_text("hello")
    with pytest.raises(ValueError, match=r"character 'z' \(U\+007A\) at position 2"):
        tok.encode("hez")
    unk = CharTokenizer.from_text("hello", unk_token="<unk>")
    ids = unk.encode("hez")
    assert ids[2] == unk.unk_id == unk.vocab_size - 1
    assert unk.decode(ids) == "he<unk>"
    unk.save(tmp_path / "c.json")
    assert CharTokenizer.load(tmp_path / "c.json").encode("hez") == ids
    with pytest.raises(IndexError, match="out of range"):
        tok.decode([99])


def test_padding_truncation_masks():
    seqs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    out = pad_batch(seqs, padding="longest", pad_id=-1)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (4, 5) and ids.dtype == np.int64
    assert ids[1].tolist() == [4, -1, -1, -1, -1] and mask[1].tolist() == [1, 0, 0, 0, 0]
    assert mask[2].sum() == 0 and mask.sum(1).tolist() == [3, 1, 0, 5]
    left = pad_batch(seqs, padding="longest", padding_side="left", pad_id=0)
    assert left["input_ids"][0].tolist() == [0, 0, 1, 2, 3]
    assert left["attention_mask"][0].tolist() == [0, 0, 1, 1, 1]
    cut = pad_batch(seqs, max_length=3, truncation=True, padding="max_length")
    assert cut["input_ids"].shape == (4, 3) and cut["input_ids"][3].tolist() == [5, 6, 7]
    cut_left = pad_batch(seqs, max_length=3, truncation=True, truncation_side="left")
    assert cut_left["input_ids"][3].tolist() == [7, 8, 9]
    wide = pad_batch(seqs, max_length=8, padding="max_length")
    assert wide["input_ids"].shape == (4, 8) and wide["attention_mask"][3].sum() == 5
    with pytest.raises(ValueError, match="sequence 3 has 5 tokens"):
        pad_batch(seqs, max_length=3, padding="max_length")
    with pytest.raises(ValueError, match="padding_side"):
        pad_batch(seqs, padding_side="middle")


def test_encode_batch_with_gpt2(gpt2):
    out = encode_batch(gpt2, ["Hello world", "Hi"], padding="longest", pad_id=50256)
    assert out["input_ids"].tolist() == [[15496, 995], [17250, 50256]]
    assert out["attention_mask"].tolist() == [[1, 1], [1, 0]]
