"""Chapter 09's data: SST-2 for fine-tuning, unlabelled text for pretraining, a tokenizer.

Every file comes from the course's data registry (tinytorch.data.dataset_path):

- fine-tuning: GLUE's SST-2 train split (`glue-sst2-train`: 67,349 labelled phrases of the
  train sentences) and the sentence-level train split (`sst2-train`: 6,920 sentences, Kim
  2014's split); evaluation on the sentence-level dev split (`sst2-dev`: 872 sentences);
- pretraining (labels never read): WikiText-2's valid split, the SST-2 train sentences, the
  GLUE phrases, and the 3,000 UCI review sentences (Kotzias et al. 2015). The dev sentences
  are never part of it.

The SST files are lowercased and tokenized (`wo n't`, `-lrb-` for a parenthesis); the other
texts are brought to the same form by `words()`, so one vocabulary serves all of them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tinytorch.data import dataset_path
from tinytorch.text import BPETokenizer, pad_batch
from tinytorch.text.files import read_checked_json, write_checked_json

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in the word vocabulary
_BRACKETS = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}
# SST's tokenization (Penn Treebank style): clitics split off, each punctuation mark on its own
# (a run of the same mark, -- or ..., stays one token)
_WORD = re.compile(r"n't|'s|'re|'ve|'m|'ll|'d|\w+(?:[-.]\w+)*|([^\w\s])\1*")


def words(text: str) -> list[str]:
    """Lowercased SST-style tokens of raw or tokenized text: "Don't stop!" -> ["do", "n't",
    "stop", "!"]; an SST line gives its own tokens back (-lrb- as "(")."""
    text = text.lower().replace("n't", " n't")
    for code, bracket in _BRACKETS.items():
        text = text.replace(code, bracket)
    return [m.group() for m in _WORD.finditer(text)]


def sst_words(line: str) -> list[str]:
    """Tokens of an already tokenized SST line (only the bracket codes are undone)."""
    return [_BRACKETS.get(w, w) for w in line.split()]


# ---- labelled sets ----------------------------------------------------------------------------
def sst_sentences(split: str) -> tuple[list[list[str]], list[int]]:
    """SST-2 at sentence level: split "train" (6,920) or "dev" (872) -> (token lists, labels).
    Each line of stsa.binary.* is `LABEL SENTENCE` (0 negative, 1 positive)."""
    texts, labels = [], []
    path = dataset_path({"train": "sst2-train", "dev": "sst2-dev"}[split])
    for line in path.read_text(encoding="utf-8").splitlines():
        label, sentence = line.split(" ", 1)
        texts.append(sst_words(sentence))
        labels.append(int(label))
    return texts, labels


def glue_phrases() -> tuple[list[list[str]], list[int]]:
    """GLUE's SST-2 train split: 67,349 phrases with labels (header, then PHRASE<TAB>LABEL)."""
    texts, labels = [], []
    lines = dataset_path("glue-sst2-train").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        phrase, label = line.rsplit("\t", 1)
        texts.append(sst_words(phrase))
        labels.append(int(label))
    return texts, labels


def uci_sentences() -> list[list[str]]:
    """The 3,000 UCI review sentences (Amazon, IMDb, Yelp), without their labels."""
    out = []
    for name in ("sentiment-amazon", "sentiment-imdb", "sentiment-yelp"):
        text = dataset_path(name).read_text(encoding="utf-8", errors="replace")
        out += [words(line.rsplit("\t", 1)[0]) for line in text.splitlines() if line.strip()]
    return out


def wikitext_sentences(max_len: int) -> list[list[str]]:
    """WikiText-2 valid as token lists of at most max_len: each paragraph's sentences packed
    greedily (headings dropped), so most sequences are full."""
    out = []
    text = dataset_path("wikitext2-valid").read_text(encoding="utf-8")
    for code, char in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", ".")):  # WikiText's joiners
        text = text.replace(code, char)
    for para in text.splitlines():
        para = para.strip()
        if not para or para.startswith("="):
            continue
        chunk: list[str] = []
        for sentence in re.split(r"(?<= \.) ", para):
            toks = words(sentence)[:max_len]
            if chunk and len(chunk) + len(toks) > max_len:
                out.append(chunk)
                chunk = []
            chunk = chunk + toks
        if chunk:
            out.append(chunk)
    return out


def pretraining_texts(max_len: int, phrases=None) -> list[list[str]]:
    """The unlabelled pretraining corpus: WikiText-2 valid, the UCI sentences, the SST-2 train
    sentences and (when given) the GLUE phrases of 4 words or more, as token lists."""
    texts = wikitext_sentences(max_len) + uci_sentences() + sst_sentences("train")[0]
    if phrases is not None:
        texts += [p for p in phrases if len(p) >= 4]
    return [t[:max_len] for t in texts if len(t) >= 3]


# ---- tokenizers -------------------------------------------------------------------------------
class WordTokenizer:
    """One id per word seen at least min_count times in the training text, [UNK] for the rest.

    Ids 0..4 are SPECIALS ([PAD], [UNK], [CLS], [SEP], [MASK]); `encode` adds [CLS] ... [SEP].
    """

    FORMAT = "tinytorch-word-vocab"

    def __init__(self, itos: list[str]):
        if tuple(itos[: len(SPECIALS)]) != SPECIALS or len(set(itos)) != len(itos):
            raise ValueError(f"a vocabulary starts with {SPECIALS} and has no duplicates")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(itos)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(5)

    @classmethod
    def train(cls, texts, min_count: int = 2) -> WordTokenizer:
        counts = Counter(w for t in texts for w in t)
        return cls(list(SPECIALS) + [w for w, n in counts.most_common() if n >= min_count])

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str], max_len: int) -> list[int]:
        """[CLS] + ids of tokens (cut so the whole fits in max_len) + [SEP]."""
        ids = [self.stoi.get(w, self.unk_id) for w in tokens[: max_len - 2]]
        return [self.cls_id, *ids, self.sep_id]

    def save(self, path) -> None:
        write_checked_json(path, {"format": self.FORMAT, "version": 1, "itos": self.itos})

    @classmethod
    def load(cls, path) -> WordTokenizer:
        return cls(read_checked_json(path, cls.FORMAT)["itos"])


class BPEWords:
    """Chapter 02's byte-level BPE over the same token lists (words joined by spaces), with the
    same special tokens and `encode` as WordTokenizer, so the two are interchangeable."""

    def __init__(self, bpe: BPETokenizer):
        self.bpe = bpe
        ids = [bpe.special_tokens[s] for s in SPECIALS]
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids

    @classmethod
    def train(cls, texts, vocab_size: int = 8192) -> BPEWords:
        text = "\n".join(" ".join(t) for t in texts)
        return cls(BPETokenizer.train(text, vocab_size, special_tokens=list(SPECIALS)))

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size

    def encode(self, tokens: list[str], max_len: int) -> list[int]:
        ids = self.bpe.encode_ordinary(" ".join(tokens))[: max_len - 2]
        return [self.cls_id, *ids, self.sep_id]

    def save(self, path) -> None:
        self.bpe.save(path)

    @classmethod
    def load(cls, path) -> BPEWords:
        return cls(BPETokenizer.load(path))


def load_tokenizer(path):
    """The tokenizer saved by main.py (a word vocabulary or a BPE file, told apart by format)."""
    try:
        return WordTokenizer.load(path)
    except ValueError:
        return BPEWords.load(path)


@dataclass
class Encoded:
    """A labelled set as token ids: ids[i] a list of ints, labels[i] 0 or 1."""

    ids: list
    labels: list

    def __len__(self) -> int:
        return len(self.ids)


def encode_set(tokenizer, texts, labels, max_len: int) -> Encoded:
    return Encoded([tokenizer.encode(t, max_len) for t in texts], list(labels))


# ---- batches ----------------------------------------------------------------------------------
def bucket_batches(lengths, batch_size: int, rng, shuffle: bool = True, pool: int = 50):
    """Index batches of similar lengths (less padding): shuffle, cut into pools of
    `pool` batches, sort each pool by length, cut it into batches, shuffle the batches.
    Without shuffle: in order of length, for evaluation."""
    idx = np.arange(len(lengths))
    lengths = np.asarray(lengths)
    if not shuffle:
        idx = idx[np.argsort(lengths, kind="stable")]
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    idx = rng.permutation(idx)
    batches = []
    for start in range(0, len(idx), batch_size * pool):
        part = idx[start : start + batch_size * pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(seqs, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (B, T) input_ids and attention_mask (1 on tokens, 0 on padding), int64."""
    batch = pad_batch(seqs, pad_id=pad_id)
    return batch["input_ids"], batch["attention_mask"]
