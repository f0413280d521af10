"""The scores of a binary classifier from its four counts (chapter 09's sentiment report).

For a positive label (pos_label, 1 by default) over N examples:

                     predicted positive    predicted negative
    truly positive           tp                    fn
    truly negative           fp                    tn

    precision = tp / (tp + fp)     of the examples called positive, the share that are
    recall    = tp / (tp + fn)     of the positive examples, the share that were found
    F1        = 2 tp / (2 tp + fp + fn)   (their harmonic mean, defined whenever either is)

A 0/0 is 0.0 (scikit-learn's zero_division=0). `BinaryScores.matrix` is the 2 x 2 confusion
matrix in scikit-learn's layout [[tn, fp], [fn, tp]] (rows: truth, columns: prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classification import to_labels


@dataclass(frozen=True)
class BinaryScores:
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / (self.tp + self.fp + self.fn + self.tn)

    @property
    def matrix(self) -> np.ndarray:
        """[[tn, fp], [fn, tp]]: rows are the true label (negative, positive)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)


def binary_scores(y_true, y_pred, pos_label=1) -> BinaryScores:
    """Counts, precision, recall and F1 of the class `pos_label` (every other label is the
    negative class). y_true, y_pred: N labels each (lists, arrays, Tensors)."""
    t, p = to_labels(y_true, "y_true"), to_labels(y_pred, "y_pred")
    if len(t) != len(p) or len(t) == 0:
        raise ValueError(
            f"y_true and y_pred need the same, non-zero length; got {len(t)} and {len(p)}"
        )
    true_pos, pred_pos = t == pos_label, p == pos_label
    tp = int((true_pos & pred_pos).sum())
    fp = int((~true_pos & pred_pos).sum())
    fn = int((true_pos & ~pred_pos).sum())
    tn = len(t) - tp - fp - fn
    # BEGIN EXERCISE ch09: binary_f1 - precision, recall and F1 from tp, fp, fn (0.0 for 0/0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    # END EXERCISE
    return BinaryScores(tp, fp, fn, tn, precision, recall, f1)
