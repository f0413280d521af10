"""Chapter 10: BLEU's n-gram counting (the `ngram_counts` exercise) against hand counts and
sacrebleu's own extractor, and multi-reference corpus BLEU on translation-like sentences."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

from tinytorch import metrics
from tinytorch.metrics.bleu import ngram_counts

pytestmark = pytest.mark.ch10

WORDS = "le chat la souris a mangé est sur tapis ?".split()


@pytest.mark.exercise("ngram_counts")
def test_ngram_counts_by_hand():
    got = ngram_counts(["the", "the", "cat"], 2)
    assert got == Counter({("the",): 2, ("cat",): 1, ("the", "the"): 1, ("the", "cat"): 1})
    assert all(isinstance(k, tuple) for k in got)
    # overlapping n-grams each count: "a a a a" has three ("a", "a") and two ("a", "a", "a")
    got = ngram_counts(["a"] * 4, 4)
    assert got == Counter({("a",): 4, ("a", "a"): 3, ("a", "a", "a"): 2, ("a",) * 4: 1})
    assert ngram_counts([], 4) == Counter()
    assert ngram_counts(["x", "y"], 4) == Counter({("x",): 1, ("y",): 1, ("x", "y"): 1})
    assert ngram_counts(["x", "y", "z"], 1) == Counter({("x",): 1, ("y",): 1, ("z",): 1})


@pytest.mark.exercise("ngram_counts")
def test_ngram_counts_match_sacrebleu_on_random_sentences():
    rng = np.random.default_rng()
    for _ in range(200):
        tokens = list(rng.choice(WORDS, int(rng.integers(0, 15))))
        max_n = int(rng.integers(1, 6))
        theirs, length = extract_all_word_ngrams(" ".join(tokens), 1, max_n)
        got = ngram_counts(tokens, max_n)
        assert got == theirs, (tokens, max_n)
        # L - n + 1 n-grams of each order n
        for n in range(1, max_n + 1):
            assert sum(c for g, c in got.items() if len(g) == n) == max(0, length - n + 1)


@pytest.mark.exercise("ngram_counts")
def test_multi_reference_bleu_matches_sacrebleu():
    """Chapter 10 scores each translation against every reference of its English sentence."""
    rng = np.random.default_rng()
    for _ in range(20):
        n = int(rng.integers(1, 30))
        hyps = [" ".join(rng.choice(WORDS, int(rng.integers(1, 10)))) for _ in range(n)]
        refs = [
            [
                " ".join(rng.choice(WORDS, int(rng.integers(1, 10))))
                for _ in range(rng.integers(1, 5))
            ]
            for _ in range(n)
        ]
        width = max(map(len, refs))
        streams = [[r[j] if j < len(r) else None for r in refs] for j in range(width)]
        for smooth in ("none", "exp"):  # ours defaults to none, sacrebleu's BLEU() to exp
            theirs = BLEU(tokenize="13a", smooth_method=smooth).corpus_score(hyps, streams)
            ours = metrics.corpus_bleu(hyps, refs, smooth=smooth)
            np.testing.assert_allclose(ours.score, theirs.score, rtol=1e-12, atol=1e-12)
            assert (ours.hyp_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
