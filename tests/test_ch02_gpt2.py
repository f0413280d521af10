"""Chapter 02: GPT2Tokenizer gives tiktoken's "gpt2" ids token for token.

tiktoken is built offline from the same encoder.json and vocab.bpe (tiktoken's own loader
converts them, independently of our bytes_to_unicode), then compared on two whole corpora and
on Hypothesis-generated Unicode.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytorch.data import dataset_path
from tinytorch.text import GPT2Tokenizer, encode_batch, tiktoken_encoding

pytestmark = pytest.mark.ch02

pytest.importorskip("tiktoken")

# Unicode text without lone surrogates (no UTF-8 encoding exists for them, for anyone),
# biased toward the hard cases: emoji (with skin-tone modifiers and ZWJ), CJK, combining
# marks, whitespace runs of every kind, control characters, contractions, digits.
HARD = st.sampled_from(
    [
        "😀",
        "👍🏽",
        "👩\u200d💻",
        "中文",
        "日本語",
        "한국어",
        "e\u0301",
        "\u0301",
        "\u0301\u0302",
        "  ",
        "   ",
        "\n\n",
        "\t",
        "\u00a0",
        "\u3000",
        "\x00",
        "\x1b",
        "\x7f",
        "'s",
        "'ll",
        "'S",
        " 123",
        "٣",
        "...",
        "\r\n",
        "  \n ",
        "ﬁ",
        "ǅ",
        "<|endoftext|>",
    ]
)
TEXT = st.lists(
    st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), HARD), max_size=12
).map("".join)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer.from_data_dir()


@pytest.fixture(scope="module")
def tik():
    return tiktoken_encoding(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))


@pytest.mark.parametrize("name", ["tinyshakespeare", "wikitext2-valid"])
def test_gpt2_equals_tiktoken_on_whole_corpora(gpt2, tik, name):
    text = dataset_path(name).read_text(encoding="utf-8")
    ours, theirs = gpt2.encode_ordinary(text), tik.encode_ordinary(text)
    if ours != theirs:
        i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        if i is None:
            pytest.fail(f"{name}: {len(ours)} tokens, tiktoken gives {len(theirs)}")
        pytest.fail(
            f"{name}: first difference at token {i}: {ours[i : i + 5]} vs {theirs[i : i + 5]}"
        )
    assert gpt2.decode(ours) == text


@SETTINGS
@given(TEXT)
def test_gpt2_equals_tiktoken_on_unicode(gpt2, tik, s):
    ids = gpt2.encode_ordinary(s)
    assert ids == tik.encode_ordinary(s)
    assert gpt2.decode(ids) == s
    assert gpt2.encode(s, allowed_special="all") == tik.encode(s, allowed_special="all")


def test_gpt2_endoftext_like_tiktoken(gpt2, tik):
    s = "Hello<|endoftext|> world"
    ids = gpt2.encode(s, allowed_special="all")
    assert ids == tik.encode(s, allowed_special="all")
    assert ids[1] == 50256 == gpt2.eot_token and gpt2.vocab_size == tik.n_vocab == 50257
    assert gpt2.decode(ids) == s
    assert gpt2.encode(s, disallowed_special=()) == tik.encode(s, disallowed_special=())
    assert 50256 not in gpt2.encode(s, disallowed_special=())
    with pytest.raises(ValueError, match=r"disallowed special token '<\|endoftext\|>'"):
        gpt2.encode(s)
    with pytest.raises(ValueError):  # tiktoken refuses it by default too
        tik.encode(s)


def test_gpt2_decode_out_of_range_ids(gpt2):
    with pytest.raises(IndexError, match="token id 50257 at position 1 is out of range"):
        gpt2.decode([0, 50257])
    with pytest.raises(IndexError, match="token id -3 at position 0"):
        gpt2.decode([-3])


def test_gpt2_decode_split_character_like_tiktoken(gpt2, tik):
    ids = gpt2.encode("😀")
    assert len(ids) > 1  # one emoji, several byte-level tokens
    assert gpt2.decode(ids[:1]) == tik.decode(ids[:1]) == "\ufffd"


def test_gpt2_file_errors(tmp_path):
    enc, voc = dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab")
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        GPT2Tokenizer.from_files(tmp_path / "missing.json", voc)
    bad = tmp_path / "encoder.json"
    bad.write_text(enc.read_text(encoding="utf-8")[:1000])
    with pytest.raises(ValueError, match="not a valid GPT-2 encoder.json"):
        GPT2Tokenizer.from_files(bad, voc)
    lines = voc.read_text(encoding="utf-8").split("\n")
    broken = tmp_path / "vocab.bpe"
    broken.write_text("\n".join(lines[:5] + ["Ġt"] + lines[6:]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.bpe:6: expected two tokens"):
        GPT2Tokenizer.from_files(enc, broken)
    broken.write_text("\n".join(lines[1:]), encoding="utf-8")
    with pytest.raises(ValueError, match="#version"):
        GPT2Tokenizer.from_files(enc, broken)
    with pytest.raises(NotImplementedError, match="encoder.json and vocab.bpe"):
        GPT2Tokenizer.from_files(enc, voc).save(tmp_path / "x.json")


def test_encode_batch_with_gpt2(gpt2, tik):
    texts = ["Hello world", "Hi", "A longer sentence than the others."]
    out = encode_batch(gpt2, texts, max_length=4, truncation=True, pad_id=gpt2.eot_token)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (3, 4)
    assert ids[0].tolist() == tik.encode(texts[0]) + [50256, 50256]
    assert ids[1].tolist() == tik.encode(texts[1]) + [50256] * 3
    assert ids[2].tolist() == tik.encode(texts[2])[:4]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
