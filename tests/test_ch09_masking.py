"""Chapter 09: BERT's masked-LM corruption, tinytorch.data.mask_tokens.

Exact checks (padding and special tokens are never chosen; labels hold the original ids at the
chosen positions and -100 elsewhere; unchosen positions are unchanged; random replacements are
ordinary tokens) and statistical ones over a large batch: 15% chosen, and of those 80% [MASK],
10% another token, 10% kept. With n chosen positions the standard error of a proportion p is
sqrt(p (1 - p) / n); the tolerances below are over 6 standard errors, so a correct procedure
fails about once in a billion runs, while a wrong split (e.g. 10% or 20% chosen) fails always.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinytorch.data import mask_tokens

pytestmark = [pytest.mark.ch09, pytest.mark.exercise("mask_tokens")]

PAD, CLS, SEP, MASK, V = 0, 1, 2, 3, 1000
SPECIAL = (CLS, SEP)


def corpus(B=400, T=128, seed=None):
    """Rows [CLS] tokens [SEP] [PAD]...: ordinary ids 4..V-1, random lengths."""
    rng = np.random.default_rng(seed)
    ids = np.full((B, T), PAD, dtype=np.int64)
    for b in range(B):
        n = int(rng.integers(3, T + 1))
        ids[b, :n] = rng.integers(4, V, n)
        ids[b, 0], ids[b, n - 1] = CLS, SEP
    return ids


def run(ids, p=0.15, seed=None):
    return mask_tokens(ids, mask_token_id=MASK, vocab_size=V, special_ids=SPECIAL, pad_id=PAD,
                       mlm_probability=p, rng=np.random.default_rng(seed))  # fmt: skip


def test_labels_and_never_special_or_pad():
    ids = corpus()
    before = ids.copy()
    inputs, labels = run(ids)
    np.testing.assert_array_equal(ids, before)  # the input is not modified
    assert inputs.shape == labels.shape == ids.shape
    assert inputs.dtype == labels.dtype == np.int64
    chosen = labels != -100
    special = np.isin(ids, (PAD, CLS, SEP))
    assert not (chosen & special).any()  # padding, [CLS] and [SEP] are never chosen
    np.testing.assert_array_equal(labels[chosen], ids[chosen])  # the original token
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])  # the rest untouched
    # a chosen position becomes [MASK] or an ordinary token, never [PAD]/[CLS]/[SEP]
    assert not np.isin(inputs[chosen], (PAD, CLS, SEP)).any()
    changed = chosen & (inputs != ids)
    assert ((inputs[changed] == MASK) | (inputs[changed] >= 4)).all()


def test_proportions_15_80_10_10():
    ids = corpus(B=800)
    inputs, labels = run(ids)
    maskable = ~np.isin(ids, (PAD, CLS, SEP))
    chosen = labels != -100
    n, m = int(chosen.sum()), int(maskable.sum())
    assert abs(n / m - 0.15) < 6 * np.sqrt(0.15 * 0.85 / m)
    masked = (inputs[chosen] == MASK).mean()
    kept = (inputs[chosen] == ids[chosen]).mean()
    replaced = 1 - masked - kept  # a random draw equal to the original (1 in 996) counts as kept
    se = 6 * np.sqrt(0.1 * 0.9 / n)
    assert abs(masked - 0.8) < 6 * np.sqrt(0.8 * 0.2 / n)
    assert abs(kept - (0.1 + 0.1 / 996)) < se
    assert abs(replaced - 0.1 * 995 / 996) < se


def test_random_replacements_cover_the_vocabulary():
    ids = corpus(B=800)
    inputs, labels = run(ids, p=1.0)  # every ordinary position chosen
    chosen = labels != -100
    repl = inputs[chosen & (inputs != MASK) & (inputs != ids)]
    assert repl.min() >= 4 and repl.max() < V
    assert len(np.unique(repl)) > 0.8 * (V - 4)  # drawn over the whole ordinary vocabulary


def test_seeded_and_probability_zero():
    ids = corpus(B=20)
    a, b = run(ids, seed=7), run(ids, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    inputs, labels = run(ids, p=0.0)
    np.testing.assert_array_equal(inputs, ids)
    assert (labels == -100).all()
    with pytest.raises(ValueError, match="mlm_probability"):
        run(ids, p=1.5)
    with pytest.raises(TypeError, match="integer"):
        run(ids.astype(np.float32))
