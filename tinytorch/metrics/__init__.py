"""tinytorch.metrics: evaluation scores with scikit-learn's and sacrebleu's names and rules.

    accuracy, precision_score, recall_score, f1_score, precision_recall_fscore_support,
    confusion_matrix                          classification (classification.py)
    binary_scores, BinaryScores               tp/fp/fn/tn, precision, recall, F1 of one class
    perplexity                                language models: exp(mean cross-entropy)
    corpus_bleu, tokenize_13a, ngram_counts   translation (bleu.py)

Inputs may be Python lists, NumPy arrays, tinytorch Tensors or torch tensors. The tests check
every function against scikit-learn and sacrebleu (tests/test_ch08_metrics.py).
"""

from __future__ import annotations

import math

from .binary import BinaryScores, binary_scores  # noqa: F401
from .bleu import (  # noqa: F401
    BLEUScore,
    bleu_from_counts,
    corpus_bleu,
    ngram_counts,
    tokenize_13a,
)
from .classification import (  # noqa: F401
    UndefinedMetricWarning,
    accuracy,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)


def perplexity(mean_cross_entropy) -> float:
    """exp(mean cross-entropy in nats per token): the number of equally likely tokens the
    model is, on average, choosing between (65 for a uniform guess over 65 characters).

    Takes a float, a 0-d array or a one-element Tensor, e.g. the `loss` of F.cross_entropy.
    """
    value = mean_cross_entropy
    if hasattr(value, "item"):
        value = value.item()
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"perplexity needs a mean cross-entropy >= 0 (in nats), got {mean_cross_entropy!r}"
        )
    return math.exp(value) if value < 709.0 else math.inf  # exp overflows float64 past ~709.78
