"""Byte-level BPE tokenizer: encoding, decoding, special tokens, saving (chapter 02).

Ids 0..255 are the 256 byte values, so any string can be encoded and decoding gives back
exactly the input; then one id per learned merge (see bpe_train.py for how merges are
learned); then the special tokens. Encoding splits text into chunks with the same pattern as
training, turns each chunk into byte ids and applies the merges by rank: within a chunk, merge
the adjacent pair that was learned earliest, until no learned pair is left.
"""

from __future__ import annotations

from itertools import chain

import regex

from .bpe_train import (
    GPT2_PATTERN,
    chunk_counts,
    train_merges,
    train_merges_reference,
)
from .files import read_checked_json, write_checked_json

FORMAT = "tinytorch-bpe"
CACHE_SIZE = 200_000  # chunk encodings kept; text repeats its words, so most lookups hit
NEVER = 1 << 62  # the "rank" of a pair that was never learned


class _ChunkCache(dict):
    """chunk -> its ids. A miss calls `encode(chunk)` and keeps the result (up to CACHE_SIZE
    chunks): real text repeats its words, so most chunks are encoded once."""

    def __init__(self, encode):
        super().__init__()
        self.encode = encode

    def __missing__(self, chunk):
        ids = self.encode(chunk)
        if len(self) < CACHE_SIZE:
            self[chunk] = ids
        return ids


class BPETokenizer:
    """A byte-level BPE tokenizer: ids 0..255 are bytes, then one id per merge, then the
    special tokens.

        tok = BPETokenizer.train(text, vocab_size=1024, special_tokens=["<|endoftext|>"])
        ids = tok.encode("Hello there", allowed_special="all")
        tok.decode(ids) == "Hello there"
        tok.save("shakespeare.bpe.json"); BPETokenizer.load("shakespeare.bpe.json")

    merges: the learned pairs in order (their rank); special_tokens: {text: id}. `base`
    (byte value -> id), `merge_ids` (the id each merge creates) and `vocab` (id -> bytes) are
    only needed for a vocabulary numbered differently from ours, such as GPT-2's.
    """

    def __init__(
        self,
        merges=(),
        special_tokens=None,
        pattern: str = GPT2_PATTERN,
        base=None,
        vocab=None,
        merge_ids=None,
    ):
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self.merges = [tuple(m) for m in merges]
        self.base = list(range(256)) if base is None else list(base)  # byte value -> id
        n = len(self.merges)
        ids = list(merge_ids) if merge_ids is not None else [256 + i for i in range(n)]
        if len(set(self.merges)) != n or len(ids) != n or len(set(self.base)) != 256:
            raise ValueError(
                "BPETokenizer: merges must be distinct pairs, one new id per merge, and the "
                "256 bytes must have distinct ids"
            )
        # A merge may only join tokens that exist before it: bytes, or the results of earlier
        # merges. Training always gives such lists, and encoding relies on it (a pair that
        # contains a merge's new token always has a later rank than that merge).
        known = set(self.base)
        for r, ((a, b), new) in enumerate(zip(self.merges, ids)):
            if a not in known or b not in known or new in known:
                raise ValueError(
                    f"BPETokenizer: merge {r} joins ({a}, {b}) into {new}, but a merge may only "
                    "join existing tokens (bytes or earlier merges) into a new id"
                )
            known.add(new)
        self.ranks = {p: (r, new) for r, (p, new) in enumerate(zip(self.merges, ids))}
        self._rank = {p: r for r, p in enumerate(self.merges)}  # the two halves of `ranks`,
        self._merge_id = dict(zip(self.merges, ids))  # as flat dicts for the encoding loop
        if vocab is None:
            vocab = {self.base[b]: bytes([b]) for b in range(256)}
            for (a, b), new in self._merge_id.items():
                vocab[new] = vocab[a] + vocab[b]
        self.vocab: dict[int, bytes] = vocab
        self._token_id = {t: i for i, t in vocab.items()}  # bytes -> id
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self.inverse_special = {v: k for k, v in self.special_tokens.items()}
        clash = set(self.inverse_special) & set(vocab)
        if len(self.inverse_special) != len(self.special_tokens) or clash:
            raise ValueError(
                f"special token ids must be distinct and not used by the byte/merge tokens; "
                f"got {self.special_tokens}"
            )
        self._vocab_size = max([*vocab, *self.inverse_special], default=-1) + 1
        self._special_re = None
        if self.special_tokens:
            alts = sorted(self.special_tokens, key=len, reverse=True)
            self._special_re = regex.compile("|".join(regex.escape(s) for s in alts))
        self._cache = _ChunkCache(self._encode_chunk)

    # ---- training ----------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens=(),
        pattern: str = GPT2_PATTERN,
        reference: bool = False,
    ) -> BPETokenizer:
        """Learn vocab_size - 256 - len(special_tokens) merges from `text` (fewer if the text
        runs out of pairs); the special tokens get the last ids. `reference=True` uses the
        straightforward trainer (same merges, much slower)."""
        special_tokens = list(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the 256 byte tokens plus "
                f"{len(special_tokens)} special tokens"
            )
        if len(set(special_tokens)) != len(special_tokens) or "" in special_tokens:
            raise ValueError(f"special tokens must be distinct non-empty strings: {special_tokens}")
        counts = chunk_counts(text, pattern, special_tokens)  # specials never take part in merges
        merges = (train_merges_reference if reference else train_merges)(counts, num_merges)
        n = 256 + len(merges)
        special = {s: n + i for i, s in enumerate(special_tokens)}
        return cls(merges, special, pattern)

    # ---- encoding ----------------------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        """The ids of one pre-tokenized chunk (called by the cache on a miss)."""
        data = chunk.encode("utf-8")
        whole = self._token_id.get(data)
        if whole is not None:
            # The chunk is one token. For a tokenizer learned by BPE training, merging by rank
            # ends at this very token (the merges that built it replay inside the chunk), so
            # skip the loop, as tiktoken does. Most distinct words hit this.
            return [whole]
        base, rank, merge_id = self.base, self._rank, self._merge_id
        ids = [base[b] for b in data]
        # BEGIN EXERCISE ch02: encode_by_rank - merge the lowest-rank pair until none is learned
        # ranks[i] is the rank of the pair (ids[i], ids[i + 1]), NEVER if it was not learned.
        ranks = [rank.get(p, NEVER) for p in zip(ids, ids[1:])]
        while ranks:
            best = min(ranks)
            if best == NEVER:  # no learned pair left
                break
            i = ranks.index(best)  # its leftmost occurrence; the others follow in later rounds
            new = merge_id[ids[i], ids[i + 1]]
            ids[i : i + 2] = [new]
            del ranks[i]
            # only the pairs on either side of the new token changed
            if i < len(ranks):
                ranks[i] = rank.get((new, ids[i + 1]), NEVER)
            if i > 0:
                ranks[i - 1] = rank.get((ids[i - 1], new), NEVER)
        # END EXERCISE
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode treating special-token text as ordinary text."""
        # The cache maps each chunk to its ids; a hit stays inside C (dict lookup, chain).
        return list(chain.from_iterable(map(self._cache.__getitem__, self._regex.findall(text))))

    def encode(self, text: str, allowed_special=frozenset(), disallowed_special="all"):
        """Token ids of `text`, with tiktoken's rules for special tokens: a special token in
        `allowed_special` ("all" or a set) becomes its id; one in `disallowed_special` (default
        "all" the others) raises ValueError; pass disallowed_special=() to encode such text as
        ordinary text."""
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        disallowed = (
            set(self.special_tokens) - allowed
            if disallowed_special == "all"
            else set(disallowed_special)
        )
        unknown = (allowed | disallowed) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"unknown special token(s) {sorted(unknown)}; this tokenizer has "
                f"{sorted(self.special_tokens)}"
            )
        if disallowed:
            m = regex.search("|".join(regex.escape(s) for s in disallowed), text)
            if m:
                raise ValueError(
                    f"encountered disallowed special token {m.group()!r} at position {m.start()}"
                    f"; pass allowed_special={{{m.group()!r}}} to encode it as a special token, "
                    "or disallowed_special=() to encode it as ordinary text"
                )
        if not allowed or self._special_re is None:
            return self.encode_ordinary(text)
        out, start = [], 0
        for m in self._special_re.finditer(text):
            if m.group() not in allowed:
                continue
            out.extend(self.encode_ordinary(text[start : m.start()]))
            out.append(self.special_tokens[m.group()])
            start = m.end()
        out.extend(self.encode_ordinary(text[start:]))
        return out

    # ---- decoding ----------------------------------------------------------------------
    def decode_bytes(self, ids) -> bytes:
        """The bytes of `ids` concatenated (ids may be any iterable of ints, e.g. an array)."""
        # BEGIN EXERCISE ch02: decode_bytes - bytes of each id (specials too), else IndexError
        parts = []
        for pos, i in enumerate(ids):
            i = int(i)
            if i in self.vocab:
                parts.append(self.vocab[i])
            elif i in self.inverse_special:
                parts.append(self.inverse_special[i].encode("utf-8"))
            else:
                raise IndexError(
                    f"token id {i} at position {pos} is out of range: this "
                    f"tokenizer has ids 0..{self.vocab_size - 1}"
                )
        return b"".join(parts)
        # END EXERCISE

    def decode(self, ids, errors: str = "replace") -> str:
        """The text of `ids`; bytes that do not form valid UTF-8 (a split character) become
        U+FFFD, as tiktoken does."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (bytes, merges and special tokens)."""
        return self._vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    # ---- saving and loading ------------------------------------------------------------
    def save(self, path) -> None:
        """Write the tokenizer to one JSON file, atomically, with a checksum of its content."""
        if self.base != list(range(256)) or any(new != 256 + r for r, new in self.ranks.values()):
            raise ValueError(
                "save() writes trained tokenizers (ids 0..255 = bytes, merge i = id 256 + i); "
                "this one numbers its tokens differently: keep the files it was loaded from"
            )
        payload = {
            "format": FORMAT,
            "version": 1,
            "pattern": self.pattern,
            "merges": [list(m) for m in self.merges],
            "special_tokens": self.special_tokens,
        }
        write_checked_json(path, payload)

    @classmethod
    def load(cls, path) -> BPETokenizer:
        """Read a file written by `save`; a truncated, corrupted or foreign file is a
        ValueError saying what is wrong."""
        payload = read_checked_json(path, FORMAT)
        merges = payload.get("merges")
        if not isinstance(merges, list):
            raise ValueError(f"{path}: 'merges' is missing or not a list")
        for i, m in enumerate(merges):
            if (
                not isinstance(m, list)
                or len(m) != 2
                or not all(type(x) is int and 0 <= x < 256 + i for x in m)
            ):
                raise ValueError(
                    f"{path}: merge {i} is {m!r}; expected two token ids below {256 + i}"
                )
        n = 256 + len(merges)
        special = payload.get("special_tokens", {})
        if not isinstance(special, dict) or not all(
            isinstance(k, str) and k and type(v) is int and v >= n for k, v in special.items()
        ):
            raise ValueError(
                f"{path}: 'special_tokens' must map non-empty strings to ids >= {n}, "
                f"got {special!r}"
            )
        pattern = payload.get("pattern")
        try:
            regex.compile(pattern)
        except (TypeError, regex.error) as e:
            raise ValueError(f"{path}: 'pattern' is not a valid regular expression: {e}") from None
        try:
            return cls(merges, special, pattern)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
