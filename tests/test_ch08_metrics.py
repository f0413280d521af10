"""Chapter 08: tinytorch.metrics against scikit-learn and sacrebleu, on fresh random inputs and
on the edge cases (absent classes, one class only, empty hypotheses, no matching n-gram)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

import tinytorch as tt
from tinytorch import metrics
from tinytorch.metrics import UndefinedMetricWarning

pytestmark = pytest.mark.ch08

ZERO_DIVISION = ["warn", 0.0, 1.0, np.nan]


def _equal(a, b, msg=""):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-12, err_msg=msg)


def _sk(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _ours(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return fn(*args, **kw)


def _draw(rng, n_classes, n):
    """Labels from a skewed distribution, so that small classes go missing now and then."""
    p = rng.dirichlet(np.full(n_classes, 0.5))
    return rng.choice(n_classes, n, p=p), rng.choice(n_classes, n, p=p)


# ---- classification ---------------------------------------------------------------------
def _equal_scores(y_true, y_pred, **kw):
    """precision_score, recall_score and f1_score equal scikit-learn's with the options kw."""
    for ours, theirs in (
        (metrics.precision_score, skm.precision_score),
        (metrics.recall_score, skm.recall_score),
        (metrics.f1_score, skm.f1_score),
    ):
        _equal(
            _ours(ours, y_true, y_pred, **kw),
            _sk(theirs, y_true, y_pred, **kw),
            f"{ours.__name__} {kw} {y_true} {y_pred}",
        )


@pytest.mark.exercise("f1_score")
@pytest.mark.parametrize("average", ["micro", "macro", "weighted", None])
def test_prf_multiclass_match_sklearn_on_random_labels(average):
    rng = np.random.default_rng()
    for trial in range(15):  # scikit-learn takes ~1 ms a call: few draws, many settings
        y_true, y_pred = _draw(rng, int(rng.integers(1, 7)), int(rng.integers(1, 40)))
        labels = None if trial % 3 else np.arange(7)  # absent classes: scored by zero_division
        for zd in ZERO_DIVISION:
            _equal_scores(y_true, y_pred, labels=labels, average=average, zero_division=zd)
        p, r, f, s = _ours(metrics.precision_recall_fscore_support, y_true, y_pred, labels=labels)
        sp, sr, sf, ss = _sk(skm.precision_recall_fscore_support, y_true, y_pred, labels=labels)
        for a, b in ((p, sp), (r, sr), (f, sf), (s, ss)):
            _equal(a, b)


@pytest.mark.exercise("f1_score")
def test_binary_average_matches_sklearn_including_one_class_only():
    rng = np.random.default_rng()
    cases = [_draw(rng, 2, int(rng.integers(1, 30))) for _ in range(10)]
    cases += [([0, 0, 0], [0, 0, 0]), ([1, 1], [1, 1]), ([0, 0, 1], [0, 0, 0]), ([1], [0])]
    for y_true, y_pred in cases:
        for pos_label in (0, 1):
            present = set(np.concatenate([y_true, y_pred]).tolist())
            if pos_label not in present and len(present) == 2:
                continue
            for zd in ZERO_DIVISION:
                _equal_scores(y_true, y_pred, pos_label=pos_label, zero_division=zd)


def test_string_labels_and_tensor_inputs():
    y_true = ["spam", "ham", "spam", "spam", "ham"]
    y_pred = ["spam", "spam", "ham", "spam", "ham"]
    _equal(
        metrics.f1_score(y_true, y_pred, pos_label="spam"),
        skm.f1_score(y_true, y_pred, pos_label="spam"),
    )
    rng = np.random.default_rng()
    t, p = _draw(rng, 4, 50)
    expected = skm.f1_score(t, p, average="macro", zero_division=0)
    for make in (tt.tensor, torch.tensor, list):
        _equal(metrics.f1_score(make(t), make(p), average="macro", zero_division=0), expected)


def test_zero_division_warns_only_when_left_to_warn():
    with pytest.warns(UndefinedMetricWarning, match="ill-defined"):
        assert metrics.precision_score([1, 1, 0], [0, 0, 0]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.precision_score([1, 1, 0], [0, 0, 0], zero_division=1.0) == 1.0


def test_classification_errors_are_clear():
    with pytest.raises(ValueError, match="average='binary' needs two labels at most"):
        metrics.f1_score([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="pos_label=2 is not a valid label"):
        metrics.f1_score([0, 1], [1, 1], pos_label=2)
    with pytest.raises(ValueError, match="different lengths: 3 and 2"):
        metrics.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="average must be one of"):
        metrics.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="empty"):
        metrics.recall_score([], [])


def test_accuracy_and_confusion_matrix_match_sklearn():
    rng = np.random.default_rng()
    for trial in range(30):
        y_true, y_pred = _draw(rng, int(rng.integers(1, 6)), int(rng.integers(1, 40)))
        assert metrics.accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
        assert metrics.accuracy(y_true, y_pred, normalize=False) == skm.accuracy_score(
            y_true, y_pred, normalize=False
        )
        labels = None if trial % 2 else rng.permutation(6)  # order given, absent classes too
        for normalize in (None, "true", "pred", "all"):
            ours = metrics.confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
            theirs = _sk(skm.confusion_matrix, y_true, y_pred, labels=labels, normalize=normalize)
            _equal(ours, theirs, f"{normalize} {labels}")
            assert ours.shape == theirs.shape


def test_accuracy_from_scores_takes_the_argmax():
    rng = np.random.default_rng()
    logits = rng.standard_normal((20, 5))
    y = rng.integers(0, 5, 20)
    expected = np.mean(logits.argmax(1) == y)
    assert metrics.accuracy(y, logits) == expected
    assert metrics.accuracy(tt.tensor(y), tt.tensor(logits, requires_grad=True)) == expected


def test_perplexity_is_exp_of_the_mean_cross_entropy():
    rng = np.random.default_rng()
    logits, y = rng.standard_normal((30, 7)), rng.integers(0, 7, 30)
    loss = tt.nn.functional.cross_entropy(tt.tensor(logits), tt.tensor(y))
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(y))
    _equal(metrics.perplexity(loss), math.exp(ref.item()))
    uniform = tt.nn.functional.cross_entropy(tt.zeros(4, 65, dtype=tt.float64), tt.tensor([1] * 4))
    assert abs(metrics.perplexity(uniform) - 65) < 1e-9  # guessing among 65 symbols
    assert metrics.perplexity(0.0) == 1.0 and metrics.perplexity(1e6) == math.inf
    with pytest.raises(ValueError, match=">= 0"):
        metrics.perplexity(-0.5)


# ---- BLEU -------------------------------------------------------------------------------
WORDS = "the cat a dog sat on mat ran".split()


def _sacre(hyps, refs, smooth="none", max_n=4, tokenize="none", lowercase=False):
    """sacrebleu with our reference layout: refs[i] = list of references of hyps[i]."""
    width = max(len(r) for r in refs)
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(width)]
    bleu = BLEU(
        tokenize=tokenize,
        smooth_method=smooth,
        max_ngram_order=max_n,
        force=True,
        lowercase=lowercase,
    )
    return bleu.corpus_score(hyps, streams)


def _sentence(rng, lo=0, hi=12):
    return " ".join(rng.choice(WORDS, int(rng.integers(lo, hi))))


def _corpus(rng):
    n = int(rng.integers(1, 8))
    hyps = [_sentence(rng) for _ in range(n)]
    refs = [[_sentence(rng, 1) for _ in range(int(rng.integers(1, 4)))] for _ in range(n)]
    return hyps, refs


def _check_bleu(ours, theirs, msg):
    assert ours.hyp_len == theirs.sys_len and ours.ref_len == theirs.ref_len, msg
    _equal(ours.bp, theirs.bp, msg)
    _equal(ours.precisions, theirs.precisions, msg)
    np.testing.assert_allclose(ours.score, theirs.score, rtol=1e-12, atol=1e-12, err_msg=msg)


@pytest.mark.exercise("corpus_bleu")
@pytest.mark.parametrize("smooth", ["none", "floor", "add-k", "exp"])
def test_corpus_bleu_matches_sacrebleu_on_random_corpora(smooth):
    rng = np.random.default_rng()
    for _ in range(60):
        hyps, refs = _corpus(rng)
        max_n = int(rng.choice([1, 2, 4]))
        ours = metrics.corpus_bleu(hyps, refs, smooth=smooth, max_n=max_n, tokenize="none")
        _check_bleu(ours, _sacre(hyps, refs, smooth, max_n), f"{hyps} {refs} {max_n}")


@pytest.mark.exercise("corpus_bleu")
def test_corpus_bleu_edge_cases_match_sacrebleu():
    cases = [
        (["the cat sat on the mat"], [["the cat sat on the mat"]]),  # perfect: 100
        (["", ""], [["the cat"], ["a dog"]]),  # length-0 hypotheses: BP 0, score 0
        (["", "the cat sat on the mat"], [["a dog"], ["the cat sat on a mat"]]),
        (["dog ran"], [["the cat sat"]]),  # no matching n-gram
        (["the cat"], [["the cat sat on the mat"]]),  # no 3-grams at all: 0 without smoothing
        (["the the the the"], [["the cat", "the the mat"]]),  # clipping by the best reference
        (["a b c d e"], [["a b c d e f g h", "a b c", "a b c d e f g"]]),  # closest length, tie
        (["a b c d"], [["a b c d e f", "a b"]]),  # tie between 2 and 6: the shorter
        (["the cat sat on the mat"], [[""]]),  # an empty reference
    ]
    for hyps, refs in cases:
        for smooth in ("none", "exp", "floor", "add-k"):
            ours = metrics.corpus_bleu(hyps, refs, smooth=smooth, tokenize="none")
            _check_bleu(ours, _sacre(hyps, refs, smooth), f"{hyps} {refs} {smooth}")
    assert abs(metrics.corpus_bleu(*cases[0]).score - 100.0) < 1e-9
    assert float(metrics.corpus_bleu(*cases[1])) == 0.0


def test_token_lists_equal_whitespace_strings():
    rng = np.random.default_rng()
    hyps, refs = _corpus(rng)
    as_tokens = metrics.corpus_bleu(
        [h.split() for h in hyps], [[r.split() for r in rs] for rs in refs]
    )
    assert as_tokens.score == metrics.corpus_bleu(hyps, refs, tokenize="none").score
    custom = metrics.corpus_bleu(hyps, refs, tokenize=str.split)
    assert custom.score == as_tokens.score


PUNCT = [
    "Hello,",
    "world.",
    "It's",
    "3.14",
    "1,000",
    "well-known",
    "(yes)",
    "&amp;",
    "x--y",
    "e.g.",
    '"quoted"',
    "5-3",
    "$40",
    "end!",
    "what?",
    "a/b",
    "&quot;hi&quot;",
    "naïve",
]


def test_13a_tokenizer_and_bleu_match_sacrebleu():
    rng = np.random.default_rng()
    tok = Tokenizer13a()
    for _ in range(200):
        words = rng.choice(PUNCT + WORDS, int(rng.integers(0, 10)))
        line = " ".join(words)
        assert metrics.tokenize_13a(line) == tok(line).split(), line
    for _ in range(20):
        n = int(rng.integers(1, 5))
        hyps = [" ".join(rng.choice(PUNCT + WORDS, int(rng.integers(0, 9)))) for _ in range(n)]
        refs = [[" ".join(rng.choice(PUNCT + WORDS, int(rng.integers(1, 9))))] for _ in range(n)]
        lower = bool(rng.integers(2))
        ours = metrics.corpus_bleu(hyps, refs, smooth="exp", lowercase=lower)  # 13a default
        _check_bleu(ours, _sacre(hyps, refs, "exp", tokenize="13a", lowercase=lower), str(hyps))


def test_bleu_errors_and_summary():
    with pytest.raises(ValueError, match="2 hypotheses but 1 lists of references"):
        metrics.corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="hypothesis 0 has no reference"):
        metrics.corpus_bleu(["a"], [[]])
    with pytest.raises(ValueError, match="smooth must be one of"):
        metrics.corpus_bleu(["a"], [["a"]], smooth="magic")
    text = str(metrics.corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]))
    assert text.startswith("BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000")
