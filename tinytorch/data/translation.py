"""Parallel text for translation (chapter 10): pairs split by source sentence, a joint BPE,
and length-bucketed teacher-forcing batches.

eng-fra-100k.txt (see the course data README) holds 97,009 lines `ENGLISH<TAB>FRENCH`, sorted
roughly by length; one English sentence often has several French translations on consecutive
lines ("Run!" -> "Cours !", "Courez !"). So the unit of splitting is the English sentence: all
its translations go to the same side, and at test time they are all references for BLEU.
Splitting by line instead would put "Cours !" in training and "Courez !" in the test set, and
the model would be tested on sentences it has seen.

    pairs = read_pairs(dataset_path("eng-fra-100k"))
    splits = split_by_sentence(pairs, n_valid=500, n_test=1000, n_test_short=500, seed=0)
    splits.train            [(english, french), ...]    every translation of the rest
    splits.test             [(english, [french, ...])]  drawn from lines 20,001-100,000
    splits.test_short       [(english, [french, ...])]  drawn from the first 20,000 lines
    tok = train_joint_bpe(splits.train, vocab_size=4000)   one BPE for both languages
    src, tgt = encode_pairs(tok, splits.train, max_len=64)
    batches = PairBatches(src, tgt, max_tokens=3000, **special_ids(tok))
    src, tgt_in, tgt_out = batches()                        the next batch (Tensors)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from ..text import BPETokenizer
from .seq2seq import make_teacher_forcing_batch

SHORT_LINES = 20_000  # the file's first 20,000 lines: the shortest, easiest sentences

# French typography puts a (narrow) no-break space before ? ! : ; and inside « »; the file mixes
# U+00A0, U+202F, U+2009 and plain spaces, and curly and straight apostrophes. One spelling of
# each keeps the tokenizer from learning two tokens for the same thing, and BLEU from counting
# "l’homme" and "l'homme" as different words.
_SPACES = re.compile(r"[\u00a0\u2009\u202f\s]+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u200b": None})


def normalize(text: str) -> str:
    """NFC, one kind of space and apostrophe, no zero-width characters, single spaces."""
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    return _SPACES.sub(" ", text).strip()


def read_pairs(path) -> list[tuple[int, str, str]]:
    """(line number from 1, English, French) for every line of a tab-separated pair file."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise ValueError(f"{path}:{i}: expected ENGLISH<TAB>FRENCH, got {line!r}")
            pairs.append((i, normalize(parts[0]), normalize(parts[1])))
    return pairs


@dataclass
class Splits:
    """train/valid pairs to learn from; valid/test/test_short groups to score BLEU on."""

    train: list  # [(english, french)]: one pair per translation
    valid: list  # [(english, [french, ...])]: every translation of the sentence
    test: list  # same, English sentences first seen after line SHORT_LINES
    test_short: list  # same, English sentences seen only in the first SHORT_LINES lines

    def summary(self) -> str:
        def n(groups):
            return f"{len(groups):,} sentences ({sum(len(r) for _, r in groups):,} references)"

        return (
            f"train {len(self.train):,} pairs; valid {n(self.valid)}; test (lines > "
            f"{SHORT_LINES:,}) {n(self.test)}; test_short (first {SHORT_LINES:,}) "
            f"{n(self.test_short)}"
        )


def group_by_english(pairs) -> dict[str, tuple[list[int], list[str]]]:
    """english -> (its line numbers, its French translations), in order of first line."""
    groups: dict[str, tuple[list[int], list[str]]] = {}
    for line, en, fr in pairs:
        lines, frs = groups.setdefault(en, ([], []))
        lines.append(line)
        if fr not in frs:  # the same translation twice would count twice in training
            frs.append(fr)
    return groups


def split_by_sentence(
    pairs, n_valid: int, n_test: int, n_test_short: int, seed: int = 0, short_lines=SHORT_LINES
) -> Splits:
    """Hold out whole English sentences: n_valid and n_test drawn from those whose every line
    is after `short_lines`, n_test_short from those whose every line is within it (a sentence
    with lines on both sides is never held out); everything else is training data."""
    groups = group_by_english(pairs)
    late = [en for en, (lines, _) in groups.items() if min(lines) > short_lines]
    early = [en for en, (lines, _) in groups.items() if max(lines) <= short_lines]
    if n_valid + n_test > len(late) or n_test_short > len(early):
        raise ValueError(
            f"cannot hold out {n_valid} + {n_test} of {len(late)} late and {n_test_short} of "
            f"{len(early)} early English sentences"
        )
    rng = np.random.default_rng(seed)
    late_pick = rng.permutation(len(late))[: n_valid + n_test]
    early_pick = rng.permutation(len(early))[:n_test_short]
    valid = [late[i] for i in sorted(late_pick[:n_valid])]
    test = [late[i] for i in sorted(late_pick[n_valid:])]
    test_short = [early[i] for i in sorted(early_pick)]
    held = set(valid) | set(test) | set(test_short)
    train = [(en, fr) for en, (_, frs) in groups.items() if en not in held for fr in frs]
    return Splits(
        train=train,
        valid=[(en, groups[en][1]) for en in valid],
        test=[(en, groups[en][1]) for en in test],
        test_short=[(en, groups[en][1]) for en in test_short],
    )


PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_joint_bpe(pairs, vocab_size: int) -> BPETokenizer:
    """One byte-level BPE (chapter 02) learned on both sides of `pairs` [(source, target)],
    one sentence a line, with three special tokens last: <pad>, <s> (begin), </s> (end)."""
    text = "\n".join(s for pair in pairs for s in pair)
    return BPETokenizer.train(text, vocab_size, special_tokens=[PAD, BOS, EOS])


def special_ids(tok: BPETokenizer) -> dict:
    """{"pad_id", "bos_id", "eos_id"} of a tokenizer from train_joint_bpe."""
    sp = tok.special_tokens
    return dict(pad_id=sp[PAD], bos_id=sp[BOS], eos_id=sp[EOS])


def encode_pairs(tok: BPETokenizer, pairs, max_len: int):
    """(sources, targets) as id lists, leaving out the pairs that a model with max_len
    positions cannot hold (source > max_len tokens, or target + BOS > max_len)."""
    src, tgt = [], []
    for s, t in pairs:
        a, b = tok.encode(s), tok.encode(t)
        if len(a) <= max_len and len(b) < max_len:
            src.append(a)
            tgt.append(b)
    return src, tgt


def length_buckets(src_lens, tgt_lens, max_tokens: int, rng) -> list[np.ndarray]:
    """Indices of the examples cut into batches of similar length, in a random order.

    Sorting by length (with a little noise, so batches differ between epochs) means little
    padding: a batch of 7-token sentences costs 7 positions each, not the longest sentence's
    20. Each batch holds as many examples as fit in max_tokens (counting its padded length)."""
    src_lens, tgt_lens = np.asarray(src_lens), np.asarray(tgt_lens)
    noise = rng.uniform(0, 1, len(src_lens))
    order = np.lexsort((noise, src_lens, tgt_lens))  # by target length, then source length
    batches, start = [], 0
    while start < len(order):
        longest, end = 0, start
        while end < len(order):
            i = order[end]
            longest = max(longest, src_lens[i], tgt_lens[i])
            if (end - start + 1) * longest > max_tokens and end > start:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    return [batches[i] for i in rng.permutation(len(batches))]


class PairBatches:
    """Endless teacher-forcing batches (src, tgt_in, tgt_out), bucketed by length and
    reshuffled every epoch; a call returns the next one (tinytorch.train's batch function).

    src and tgt are lists of id lists (without BOS/EOS); each batch comes from
    tinytorch.data.make_teacher_forcing_batch: src (B, S) padded with pad_id, tgt_in (B, T) =
    BOS + target, tgt_out (B, T) = target + EOS padded with -100 (ignored by the loss).
    """

    def __init__(self, src, tgt, *, bos_id, eos_id, pad_id, max_tokens, seed=0):
        self.src, self.tgt = src, tgt
        self.ids = dict(bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
        self.max_tokens = max_tokens
        self.rng = np.random.default_rng(seed)
        self.epoch, self._queue = 0, []

    def _buckets(self, rng):
        lens = ([len(s) for s in self.src], [len(t) + 1 for t in self.tgt])
        return length_buckets(*lens, self.max_tokens, rng)

    def __call__(self):
        if not self._queue:
            self.epoch += 1
            self._queue = self._buckets(self.rng)[::-1]
        return self.batch(self._queue.pop())

    def batch(self, idx):
        return make_teacher_forcing_batch([(self.src[i], self.tgt[i]) for i in idx], **self.ids)

    def batches_per_epoch(self) -> int:
        return len(self._buckets(np.random.default_rng(0)))

    def fixed(self, n: int, seed: int = 0) -> list:
        """n batches drawn once (validation: the same batches at every evaluation)."""
        return [self.batch(idx) for idx in self._buckets(np.random.default_rng(seed))[:n]]


def decode_corpus(
    model,
    sources,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    beam_size: int = 4,
    batch_size: int = 200,
    max_len: int = 64,
    use_cache: bool = True,
    length_penalty: float = 0.6,
    max_new_tokens: int | None = None,
) -> list:
    """Translate many sentences (id lists) with greedy_decode (beam_size 1) or beam_search,
    in batches of similar length, and return the output id lists in the input order.

    Sorting by length keeps padding small. Each batch may generate up to max_new_tokens
    tokens, by default 2 x its longest source + 10 (targets run longer than sources), capped
    at max_len - 1 (the model's positions after BOS)."""
    from ..models.decoding import beam_search, greedy_decode
    from ..tensor import Tensor

    order = np.argsort([len(s) for s in sources], kind="stable")
    out: list = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        src = np.full((len(idx), max(len(sources[i]) for i in idx)), pad_id, dtype=np.int64)
        for r, i in enumerate(idx):
            src[r, : len(sources[i])] = sources[i]
        kw = dict(
            bos_id=bos_id,
            eos_id=eos_id,
            max_len=min(max_new_tokens or 2 * src.shape[1] + 10, max_len - 1),
            use_cache=use_cache,
        )
        src_t = Tensor._wrap(src)
        if beam_size == 1:
            hyps = greedy_decode(model, src_t, **kw)
        else:
            hyps = beam_search(
                model, src_t, beam_size=beam_size, length_penalty=length_penalty, **kw
            )
        for i, h in zip(idx, hyps):
            out[i] = h
    return out
