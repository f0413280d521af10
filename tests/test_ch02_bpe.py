"""Chapter 02: byte-level BPE - training against the straightforward trainer, encoding,
special tokens, round trips, and the tokenizer file."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytorch.text import (
    BPETokenizer,
    chunk_counts,
    merge_pair,
    train_merges,
    train_merges_reference,
)

pytestmark = pytest.mark.ch02

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)  # no lone surrogates


@pytest.mark.exercise("encode_by_rank")
def test_worked_example():
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
    # step 2 is a tie, (256, 97) vs (97, 98), both twice: the smaller pair (97, 98) wins
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


@pytest.mark.exercise("chunk_counts")
def test_chunk_counts_distinct_chunks_as_bytes_with_their_counts():
    text = "the cat, the  cat<|x|>cat!! 猫"
    # GPT-2's pattern: words keep one leading space, a run of two spaces leaves its last
    # space to the next word, and without special tokens "<|x|>" is just punctuation
    assert chunk_counts(text) == {
        b"the": 1, b" cat": 2, b",": 1, b" the": 1, b" ": 1, b"<|": 1, b"x": 1, b"|>": 1,
        b"cat": 1, b"!!": 1, " 猫".encode(): 1,
    }  # fmt: skip
    # a special token is cut out first: no chunk spans it and it is never counted
    assert chunk_counts(text, special_tokens=["<|x|>"]) == {
        b"the": 1, b" cat": 2, b",": 1, b" the": 1, b" ": 1, b"cat": 1, b"!!": 1,
        " 猫".encode(): 1,
    }  # fmt: skip
    assert chunk_counts("") == {}


@pytest.mark.exercise("most_frequent_pair")
def test_reference_trainer_picks_the_most_frequent_pair_smallest_on_ties():
    # the worked example: "aa" x4 first, then a tie (256, 97) vs (97, 98) -> the smaller
    assert train_merges_reference(chunk_counts("aaabdaaabac"), 3) == [
        (97, 97),
        (97, 98),
        (256, 257),
    ]
    # counts are weighted by how often a chunk occurs: "cd" 3 times beats "ab" twice
    assert train_merges_reference({b"ab": 2, b"cd": 3}, 1) == [(99, 100)]
    # all counts equal: the smallest pair (a, b) in tuple order
    assert train_merges_reference({b"zy": 1, b"xw": 1, b"xv": 1}, 1) == [(120, 118)]
    # nothing left to merge: fewer merges than asked
    assert train_merges_reference({b"ab": 5}, 3) == [(97, 98)]


@pytest.mark.exercise("merge_pair")
def test_merge_pair_left_to_right():
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]
    assert merge_pair([1, 2], (2, 1), 9) == [1, 2]
    assert merge_pair([], (1, 2), 9) == []


def _corpus(rng, n=3000):
    words = "the then there these a an and ant über naïve 猫 cat cats it's 42 4242 !! ?".split()
    letters = list(string.ascii_lowercase + "  \n")
    return " ".join(rng.choice(words, size=n)) + "\n" + "".join(rng.choice(letters, size=n))


@pytest.mark.exercise("pair_index")
@pytest.mark.parametrize("num_merges", [1, 50, 300])
def test_fast_trainer_equals_reference(num_merges):
    counts = chunk_counts(_corpus(np.random.default_rng()))
    fast, ref = train_merges(counts, num_merges), train_merges_reference(counts, num_merges)
    assert fast == ref
    assert len(fast) == num_merges


# Tiny alphabets give many ties and overlapping pairs (aaa), the hard cases for the
# incremental counts and the tie-breaking rule.
@pytest.mark.exercise("pair_index")
@SETTINGS
@given(st.text("ab c\n", max_size=80), st.integers(1, 40))
def test_fast_trainer_equals_reference_on_small_texts(text, num_merges):
    counts = chunk_counts(text)
    assert train_merges(counts, num_merges) == train_merges_reference(counts, num_merges)


@pytest.mark.exercise("most_frequent_pair")
def test_training_stops_when_nothing_is_left_to_merge():
    tok = BPETokenizer.train("ab ab", vocab_size=1000)
    assert len(tok.merges) == 2 and tok.vocab_size == 258
    assert tok.encode("ab ab") == [256, 257]  # "ab", " ab"
    ref = BPETokenizer.train("ab ab", vocab_size=1000, reference=True)
    assert ref.merges == tok.merges


@pytest.mark.exercise("chunk_counts")
def test_merges_never_cross_chunks_or_special_tokens():
    tok = BPETokenizer.train("xy<|sep|>zw " * 50, vocab_size=300, special_tokens=["<|sep|>"])
    learned = {tok.vocab[256 + i] for i in range(len(tok.merges))}
    assert b"yz" not in learned and b"y<" not in learned and b">z" not in learned
    assert all(b" " not in t[1:] for t in learned)  # a space only ever leads a chunk
    assert tok.special_tokens == {"<|sep|>": 256 + len(tok.merges)}


_TOK = {}


def _trained():
    if "t" not in _TOK:
        _TOK["t"] = BPETokenizer.train(
            _corpus(np.random.default_rng(0)), 400, special_tokens=["<|endoftext|>"]
        )
    return _TOK["t"]


@pytest.mark.exercise("decode_bytes")
@SETTINGS
@given(TEXT)
def test_trained_bpe_round_trip(s):
    tok = _trained()
    ids = tok.encode(s, disallowed_special=())
    assert tok.decode(ids) == s
    assert all(0 <= i < tok.vocab_size for i in ids)


def encode_by_definition(tok, text):
    """Encoding as the chapter defines it: per chunk, from bytes, merge every occurrence of
    the lowest-rank learned pair until none is left (no cache, no shortcut)."""
    out = []
    for chunk in regex.findall(tok.pattern, text):
        ids = list(chunk.encode("utf-8"))
        while True:
            ranked = [p for p in zip(ids, ids[1:]) if p in tok.ranks]
            if not ranked:
                break
            best = min(ranked, key=lambda p: tok.ranks[p][0])
            ids = merge_pair(ids, best, tok.ranks[best][1])
        out += ids
    return out


@pytest.mark.exercise("encode_by_rank")
@SETTINGS
@given(st.one_of(TEXT, st.sampled_from(["the there these", " naïve 4242 cats", "aaaa ab"])))
def test_encode_applies_merges_by_rank(s):
    tok = _trained()
    assert tok.encode(s, disallowed_special=()) == encode_by_definition(tok, s)


# Tokenizers trained on tiny texts have odd merges (runs like "aaaa", merges of merges):
# the fast encoder (leftmost pair first, whole-chunk shortcut) must still match the definition.
@pytest.mark.exercise("encode_by_rank")
@SETTINGS
@given(st.text("ab c", max_size=40), st.text("ab c", max_size=40), st.integers(1, 30))
def test_encode_matches_definition_for_any_trained_tokenizer(train_text, s, vocab_extra):
    tok = BPETokenizer.train(train_text, vocab_size=256 + vocab_extra)
    assert tok.encode(train_text) == encode_by_definition(tok, train_text)
    assert tok.encode(s) == encode_by_definition(tok, s)


def test_special_tokens_like_tiktoken():
    tok = _trained()
    eot = tok.special_tokens["<|endoftext|>"]
    assert eot == 399 == tok.vocab_size - 1
    ids = tok.encode("the cat<|endoftext|>the", allowed_special="all")
    assert ids.count(eot) == 1 and tok.decode(ids) == "the cat<|endoftext|>the"
    assert tok.encode("a<|endoftext|>", allowed_special={"<|endoftext|>"})[-1] == eot
    plain = tok.encode("x<|endoftext|>", disallowed_special=())
    assert eot not in plain and tok.decode(plain) == "x<|endoftext|>"
    with pytest.raises(
        ValueError, match=r"disallowed special token '<\|endoftext\|>' at position 1"
    ):
        tok.encode("x<|endoftext|>")
    with pytest.raises(ValueError, match="unknown special token"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="smaller than the 256 byte tokens"):
        BPETokenizer.train("abc", vocab_size=256, special_tokens=["<s>"])


def test_save_load_round_trip_and_atomicity(tmp_path):
    tok = _trained()
    path = tmp_path / "tok.json"
    tok.save(path)
    back = BPETokenizer.load(path)
    s = _corpus(np.random.default_rng(), 200) + "<|endoftext|>"
    assert back.encode(s, allowed_special="all") == tok.encode(s, allowed_special="all")
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    tok.save(path)  # overwriting goes through a temp file too
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left


def _rewrite(path, payload):
    """Write a changed payload with a valid checksum (so the content checks are reached)."""
    from tinytorch.text.files import write_checked_json

    payload = {k: v for k, v in payload.items() if k != "sha256"}
    write_checked_json(path, payload)


def test_corrupted_and_truncated_files_are_clear_errors(tmp_path):
    path = tmp_path / "tok.json"
    _trained().save(path)
    raw = path.read_text()
    path.write_text(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        BPETokenizer.load(path)
    path.write_bytes(b"\xff\xfe" + raw.encode())
    with pytest.raises(ValueError, match="corrupted"):
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
    # well-formed files whose content is impossible
    good = json.loads(raw)
    cases = [
        ({"version": 99}, "version 99 is not supported"),
        ({"merges": [[1, 2], [300, 1]]}, "merge 1 is"),
        ({"merges": [[1, 2], [1, 2]]}, "distinct pairs"),
        ({"special_tokens": {"<|endoftext|>": 5}}, "special_tokens"),
        ({"pattern": "(unclosed"}, "not a valid regular expression"),
    ]
    for change, message in cases:
        _rewrite(path, {**good, **change})
        with pytest.raises(ValueError, match=message):
            BPETokenizer.load(path)


@pytest.mark.exercise("decode_bytes")
def test_decode_out_of_range_ids():
    tok = _trained()
    with pytest.raises(IndexError, match="token id 400 at position 2 is out of range"):
        tok.decode([1, 2, 400])
    with pytest.raises(IndexError, match="token id -1"):
        tok.decode(np.array([-1]))


def test_trainer_learns_the_same_merges_as_the_tokenizers_package():
    """An independent implementation: HuggingFace `tokenizers` (Rust) with the same GPT-2
    pre-tokenization learns the same 768 merges on tinyshakespeare. Only their order among
    pairs with equal counts differs: it applies the same "smallest pair" rule, but to its own
    byte numbering (it sorts "Ġ", its stand-in for a space, after the letters)."""
    tk = pytest.importorskip("tokenizers")
    from tinytorch.data import dataset_path
    from tinytorch.text import bytes_to_unicode

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    hf = tk.Tokenizer(tk.models.BPE())
    hf.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = tk.pre_tokenizers.ByteLevel.alphabet()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=1024, show_progress=False, initial_alphabet=alphabet
    )
    hf.train_from_iterator([text], trainer=trainer)
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    merges = json.loads(hf.to_str())["model"]["merges"]  # ["a", "b"] (older versions: "a b")
    merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
    theirs = {tuple(bytes(to_byte[c] for c in part) for part in m) for m in merges}
    tok = BPETokenizer.train(text, vocab_size=1024)
    ours = {(tok.vocab[a], tok.vocab[b]) for a, b in tok.merges}
    assert len(ours) == len(theirs) == 768
    assert ours == theirs, (
        f"only ours: {sorted(ours - theirs)[:5]}, only theirs: {sorted(theirs - ours)[:5]}"
    )
