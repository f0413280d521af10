"""Byte-level BPE: training, encoding, decoding, special tokens, saving (chapter 02).

Text is first split into chunks with GPT-2's pre-tokenization pattern (words with their
leading space, numbers, punctuation runs, whitespace), so merges never cross a word boundary.
Each chunk is UTF-8 bytes; the base vocabulary is the 256 byte values, so any string can be
encoded and decoding gives back exactly the input.

Training repeatedly merges the most frequent adjacent pair of tokens into a new token.
Tie-breaking rule (both trainers here use it): among pairs with the highest count, the pair
(a, b) with the smallest (a, b) in tuple order wins. Encoding applies the learned merges by
rank: within a chunk, merge the adjacent pair that was learned earliest, until none applies.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import regex

# GPT-2's pattern (openai/gpt-2 encoder.py): contractions, letters, numbers, other symbols,
# each optionally with one leading space; then whitespace runs.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
FORMAT = "tinytorch-bpe"


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` (left to right) by `new_id`."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def chunk_counts(text: str, pattern: str = GPT2_PATTERN) -> Counter:
    """Each distinct pre-tokenized chunk (as bytes) with the number of times it occurs."""
    return Counter(m.encode("utf-8") for m in regex.findall(pattern, text))


def train_merges(counts: Counter, num_merges: int) -> list[tuple[int, int]]:
    """The fast trainer: pair counts are kept up to date incrementally.

    Every distinct chunk is a word (a list of token ids) with its frequency. We count pairs
    once; after a merge only the words that contained the merged pair are revisited: their old
    pairs are subtracted, the merge is applied, their new pairs added. A heap of (-count,
    pair) finds the best pair; entries whose count has since changed are skipped when popped
    (a fresh entry was pushed when the count changed).
    """
    words = [list(chunk) for chunk in counts]
    freqs = list(counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    # BEGIN EXERCISE ch02: count every adjacent pair, weighted by the chunk's frequency
    for wi, w in enumerate(words):
        f = freqs[wi]
        for p in zip(w, w[1:]):
            pair_counts[p] += f
            where[p].add(wi)
    # END EXERCISE
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    for i in range(num_merges):
        best = None
        while heap:
            negc, p = heapq.heappop(heap)
            if pair_counts.get(p, 0) == -negc and negc < 0:
                best = p
                break
        if best is None:  # nothing left to merge: every chunk is a single token
            break
        new_id = 256 + i
        merges.append(best)
        changed = set()
        for wi in where.pop(best):
            w, f = words[wi], freqs[wi]
            if len(w) < 2:
                continue
            for p in zip(w, w[1:]):
                pair_counts[p] -= f
                changed.add(p)
            w = merge_pair(w, best, new_id)
            words[wi] = w
            for p in zip(w, w[1:]):
                pair_counts[p] += f
                where[p].add(wi)
                changed.add(p)
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_counts[p]
                where.pop(p, None)
    return merges


def train_merges_reference(counts: Counter, num_merges: int) -> list[tuple[int, int]]:
    """The straightforward trainer: recount every pair of every chunk before each merge.

    Same input (distinct chunks with frequencies) and the same tie-breaking rule as
    `train_merges`; kept as the specification the fast trainer is tested against.
    """
    words = [list(chunk) for chunk in counts]
    freqs = list(counts.values())
    merges = []
    for i in range(num_merges):
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        for w, f in zip(words, freqs):
            for p in zip(w, w[1:]):
                pair_counts[p] += f
        if not pair_counts:
            break
        best = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        words = [merge_pair(w, best, 256 + i) for w in words]
    return merges


class BPETokenizer:
    """A byte-level BPE tokenizer: ids 0..255 are bytes, then one id per merge, then the
    special tokens.

        tok = BPETokenizer.train(text, vocab_size=1024, special_tokens=["<|endoftext|>"])
        ids = tok.encode("Hello there", allowed_special="all")
        tok.decode(ids) == "Hello there"
        tok.save("shakespeare.bpe.json"); BPETokenizer.load("shakespeare.bpe.json")
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
        # pair -> (rank, new id); for a trained tokenizer the new id is 256 + rank
        ids = merge_ids if merge_ids is not None else [256 + i for i in range(len(self.merges))]
        self.ranks = {p: (r, new) for r, (p, new) in enumerate(zip(self.merges, ids))}
        if vocab is None:
            vocab = {i: bytes([i]) for i in range(256)}
            for (a, b), (_, new) in self.ranks.items():
                vocab[new] = vocab[a] + vocab[b]
        self.vocab: dict[int, bytes] = vocab
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self.inverse_special = {v: k for k, v in self.special_tokens.items()}
        self._special_re = None
        if self.special_tokens:
            alts = sorted(self.special_tokens, key=len, reverse=True)
            self._special_re = regex.compile("|".join(regex.escape(s) for s in alts))
        self._cache: dict[str, list[int]] = {}

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
        """Learn vocab_size - 256 - len(special_tokens) merges from `text`."""
        special_tokens = list(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the 256 byte tokens plus "
                f"{len(special_tokens)} special tokens"
            )
        if special_tokens:  # special tokens never take part in merges
            text = "".join(regex.split("|".join(regex.escape(s) for s in special_tokens), text))
        counts = chunk_counts(text, pattern)
        merges = (train_merges_reference if reference else train_merges)(counts, num_merges)
        n = 256 + len(merges)
        special = {s: n + i for i, s in enumerate(special_tokens)}
        return cls(merges, special, pattern)

    # ---- encoding ----------------------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is not None:
            return ids
        base, ranks = self.base, self.ranks
        ids = [base[b] for b in chunk.encode("utf-8")]
        # BEGIN EXERCISE ch02: apply merges by rank - the earliest-learned pair first
        while len(ids) > 1:
            best, best_rank = None, None
            for p in zip(ids, ids[1:]):
                r = ranks.get(p)
                if r is not None and (best_rank is None or r[0] < best_rank):
                    best, best_rank = p, r[0]
            if best is None:
                break
            ids = merge_pair(ids, best, ranks[best][1])
        # END EXERCISE
        if len(self._cache) < 200_000:
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode treating special-token text as ordinary text."""
        out = []
        enc = self._encode_chunk
        for chunk in self._regex.findall(text):
            out.extend(enc(chunk))
        return out

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

    def decode(self, ids, errors: str = "replace") -> str:
        """The text of `ids`; bytes that do not form valid UTF-8 (a split character) become
        U+FFFD, as tiktoken does."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    @property
    def vocab_size(self) -> int:
        ids = list(self.vocab) + list(self.special_tokens.values())
        return max(ids) + 1 if ids else 0

    def __len__(self) -> int:
        return self.vocab_size

    # ---- saving and loading ------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "pattern": self.pattern,
            "merges": [list(m) for m in self.merges],
            "special_tokens": self.special_tokens,
        }

    def save(self, path) -> None:
        """Write the tokenizer to one JSON file, atomically, with a checksum of its content."""
        payload = self._payload()
        body = json.dumps(payload, sort_keys=True, ensure_ascii=True)
        payload["sha256"] = hashlib.sha256(body.encode()).hexdigest()
        atomic_write_text(path, json.dumps(payload, ensure_ascii=True))

    @classmethod
    def load(cls, path) -> BPETokenizer:
        payload = read_checked_json(path, FORMAT)
        merges = payload.get("merges")
        if not isinstance(merges, list):
            raise ValueError(f"{path}: 'merges' is missing or not a list")
        for i, m in enumerate(merges):
            if (
                not isinstance(m, list)
                or len(m) != 2
                or not all(isinstance(x, int) and 0 <= x < 256 + i for x in m)
            ):
                raise ValueError(
                    f"{path}: merge {i} is {m!r}; expected two token ids below {256 + i}"
                )
        special = payload.get("special_tokens", {})
        if not isinstance(special, dict) or not all(isinstance(v, int) for v in special.values()):
            raise ValueError(f"{path}: 'special_tokens' must map strings to ids")
        return cls(merges, special, payload.get("pattern", GPT2_PATTERN))


def atomic_write_text(path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checked_json(path, fmt: str) -> dict:
    """Load a tokenizer file and check its format tag and checksum, with clear errors."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
        payload = json.loads(raw)
    except FileNotFoundError:
        raise FileNotFoundError(f"tokenizer file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"tokenizer file {path} is truncated or corrupted (not valid JSON: {e})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a {fmt} file (format: {got!r})")
    digest = payload.pop("sha256", None)
    body = json.dumps(payload, sort_keys=True, ensure_ascii=True)
    if digest != hashlib.sha256(body.encode()).hexdigest():
        raise ValueError(
            f"tokenizer file {path} is corrupted: its checksum does not match its content"
        )
    return payload
