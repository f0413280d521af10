"""Learning byte-level BPE merges: a fast incremental trainer and the straightforward one.

Text is first split into chunks with GPT-2's pre-tokenization pattern (words with their
leading space, numbers, punctuation runs, whitespace), so merges never cross a chunk boundary,
and each distinct chunk is stored once with its count. A chunk is a list of token ids, at
first its UTF-8 bytes (ids 0..255). Training repeats: find the most frequent adjacent pair
(a, b), counted over all chunks weighted by their counts, and replace it everywhere by a new
id 256, 257, ...

Tie-breaking rule (both trainers use it, so they learn the same merges): among the pairs with
the highest count, the smallest pair (a, b) in tuple order wins, i.e. lowest a, then lowest b.
It depends only on the counts, not on the order the chunks were seen in.

Cost: with N ids over all distinct chunks and M merges, the straightforward trainer recounts
everything before each merge, O(M * N). The incremental trainer counts once, then after each
merge touches only the chunks that contain the merged pair; frequent pairs live in few short
chunks late in training, so most merges are cheap.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

import regex

# GPT-2's pattern (openai/gpt-2 encoder.py): contractions, letters, numbers, other symbols,
# each optionally with one leading space; then whitespace runs (`\s+(?!\S)` leaves the last
# space of a run to start the next word, so " the" stays one chunk).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right
    (so [a, a, a] with pair (a, a) becomes [new, a])."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    # BEGIN EXERCISE ch02: merge_pair - build `out`: each pair becomes new_id, left to right
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    # END EXERCISE
    return out


def chunk_counts(text: str, pattern: str = GPT2_PATTERN, special_tokens=()) -> Counter:
    """Each distinct pre-tokenized chunk (as UTF-8 bytes) with the number of times it occurs.

    Special tokens are cut out first, and the text on each side is split on its own, so no
    chunk (and hence no merge) spans a special token."""
    # BEGIN EXERCISE ch02: chunk_counts - cut out specials, split by pattern, count chunks as bytes
    pieces = [text]
    if special_tokens:
        alts = sorted(special_tokens, key=len, reverse=True)
        pieces = regex.split("|".join(regex.escape(s) for s in alts), text)
    compiled = regex.compile(pattern)
    counts: Counter = Counter()
    for piece in pieces:
        counts.update(compiled.findall(piece))
    return Counter({chunk.encode("utf-8"): n for chunk, n in counts.items()})
    # END EXERCISE


def train_merges(counts: Counter, num_merges: int) -> list[tuple[int, int]]:
    """The fast trainer: pair counts are kept up to date incrementally.

    `counts` maps each distinct chunk (bytes) to its frequency; returns up to `num_merges`
    pairs, merge i creating id 256 + i (fewer if every chunk becomes a single token).

    We count pairs once and remember which chunks contain each pair. After a merge only those
    chunks are revisited: their old pairs are subtracted, the merge applied, their new pairs
    added, and only the counts that changed are updated. A heap of (-count, pair) yields the
    best pair with the tie-breaking rule for free (equal counts: smallest pair first).
    Updating a count pushes a fresh entry; entries whose count is no longer current are
    skipped when popped ("lazy deletion").
    """
    words = [list(chunk) for chunk in counts]
    freqs = list(counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of its chunks
    # BEGIN EXERCISE ch02: pair_index - pair_counts weighted by freqs; where: pair -> chunk indices
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
            if negc < 0 and pair_counts.get(p, 0) == -negc:
                best = p
                break
        if best is None:  # nothing left to merge: every chunk is a single token
            break
        new_id = 256 + i
        merges.append(best)
        delta: dict[tuple[int, int], int] = defaultdict(int)  # net change of each pair's count
        for wi in where.pop(best):
            w, f = words[wi], freqs[wi]
            merged = merge_pair(w, best, new_id)
            if len(merged) == len(w):  # an old entry: this chunk lost the pair earlier
                continue
            for p in zip(w, w[1:]):
                delta[p] -= f
            for p in zip(merged, merged[1:]):
                delta[p] += f
                if new_id in p:  # other pairs of the chunk were already there, indexed
                    where[p].add(wi)
            words[wi] = merged
        for p, d in delta.items():
            if d == 0:
                continue
            c = pair_counts.get(p, 0) + d
            if c > 0:
                pair_counts[p] = c
                heapq.heappush(heap, (-c, p))
            else:  # the pair is gone everywhere (the merged pair always ends here)
                pair_counts.pop(p, None)
                where.pop(p, None)
    return merges


def train_merges_reference(counts: Counter, num_merges: int) -> list[tuple[int, int]]:
    """The straightforward trainer: recount every pair of every chunk before each merge.

    Same input, output and tie-breaking rule as `train_merges`; it is the specification the
    fast trainer is tested against, and the baseline of benchmarks/tokenizer.py.
    """
    words = [list(chunk) for chunk in counts]
    freqs = list(counts.values())
    merges = []
    for i in range(num_merges):
        # BEGIN EXERCISE ch02: most_frequent_pair - count, pick (ties: smallest pair), merge
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        for w, f in zip(words, freqs):
            for p in zip(w, w[1:]):
                pair_counts[p] += f
        if not pair_counts:
            break
        best = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        words = [merge_pair(w, best, 256 + i) for w in words]
        # END EXERCISE
    return merges
