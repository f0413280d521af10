"""Classification metrics with scikit-learn's names, arguments and edge-case rules.

All take labels as Python lists, NumPy arrays, tinytorch Tensors or torch tensors (any
hashable, sortable label values: ints, strings, bools), y_true and y_pred of the same length N.

Per label c, over the N samples:

    tp_c = #(true == c and pred == c)     pred_c = #(pred == c)     true_c = #(true == c)
    precision_c = tp_c / pred_c    recall_c = tp_c / true_c    F1_c = 2 tp_c / (true_c + pred_c)

(F1_c is the harmonic mean of precision_c and recall_c, written without them so it is defined
whenever either is.) A 0/0 takes the value `zero_division` ("warn": 0.0 with a warning, or 0.0,
1.0, nan). `average` turns the per-label scores into one number:

- "binary": the score of `pos_label` only (two labels at most);
- "macro": the plain mean over labels (rare classes count as much as common ones);
- "weighted": the mean weighted by true_c (the support);
- "micro": sum tp, pred and true over labels first, then divide (for single-label problems
  micro precision = recall = F1 = accuracy);
- None: the per-label array.

`labels` fixes the label set (a label with no samples at all still gets a score, from
zero_division); by default it is the sorted union of the labels in y_true and y_pred.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from ..tensor import Tensor

AVERAGES = ("binary", "micro", "macro", "weighted", None)


class UndefinedMetricWarning(UserWarning):
    """A score was 0/0 and zero_division="warn" set it to 0.0 (as scikit-learn warns)."""


def to_numpy(x) -> np.ndarray:
    """A NumPy array from a list / NumPy array / tinytorch Tensor (any device) / torch tensor."""
    if isinstance(x, Tensor):
        return backend.to_device(x.data, "cpu")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_labels(x, name: str = "y") -> np.ndarray:
    """A 1-D NumPy array of labels (see to_numpy for what x may be)."""
    arr = to_numpy(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {arr.shape}")
    return arr


def _pair(y_true, y_pred):
    t, p = to_labels(y_true, "y_true"), to_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred have different lengths: {len(t)} and {len(p)} samples")
    if len(t) == 0:
        raise ValueError("y_true and y_pred are empty: a metric needs at least one sample")
    return t, p


def accuracy(y_true, y_pred, normalize: bool = True):
    """Fraction (or number, normalize=False) of samples with y_pred == y_true.

    y_pred may also be scores of shape (N, C) (logits or probabilities): its argmax over C is
    the prediction.
    """
    scores = to_numpy(y_pred)
    if scores.ndim == 2:
        y_pred = scores.argmax(axis=1)
    t, p = _pair(y_true, y_pred)
    correct = int((t == p).sum())
    return correct / len(t) if normalize else correct


def _label_set(t, p, labels):
    present = np.unique(np.concatenate([t, p]))
    if labels is None:
        return present, present
    return to_labels(labels, "labels"), present


def confusion_matrix(y_true, y_pred, labels=None, normalize=None) -> np.ndarray:
    """C[i, j] = number of samples of true label labels[i] predicted as labels[j].

    normalize="true" divides each row by its sum (recall on the diagonal), "pred" each
    column (precision on the diagonal), "all" the whole matrix; empty rows/columns give 0.
    """
    t, p = _pair(y_true, y_pred)
    labels, _ = _label_set(t, p, labels)
    index = {lab.item() if hasattr(lab, "item") else lab: i for i, lab in enumerate(labels)}
    n = len(labels)
    cm = np.zeros((n, n), dtype=np.int64)
    for a, b in zip(t.tolist(), p.tolist()):  # samples with a label outside `labels` are skipped
        i, j = index.get(a), index.get(b)
        if i is not None and j is not None:
            cm[i, j] += 1
    if normalize is None:
        return cm
    if normalize not in ("true", "pred", "all"):
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    with np.errstate(all="ignore"):
        if normalize == "true":
            out = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            out = cm / cm.sum(axis=0, keepdims=True)
        else:
            out = cm / cm.sum()
    return np.nan_to_num(out)


def _divide(num, den, zero_division, what: str, warn: bool):
    """num / den elementwise; where den == 0 the result is zero_division's value."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    mask = den == 0
    out = num / np.where(mask, 1.0, den)
    if mask.any():
        if zero_division == "warn":
            out[mask] = 0.0
            if warn:
                warnings.warn(
                    f"{what} is ill-defined (0/0) for {int(mask.sum())} label(s) and set to "
                    "0.0; pass zero_division to choose the value",
                    UndefinedMetricWarning,
                    stacklevel=4,
                )
        else:
            out[mask] = zero_division
    return out


def _average(scores, weights):
    """scikit-learn's _nanaverage: nan scores are left out; zero total weight -> plain mean."""
    keep = ~np.isnan(scores)
    if scores.size == 0 or not keep.any():
        return float("nan")
    if weights is None or weights[keep].sum() == 0:
        return float(scores[keep].mean())
    return float(np.average(scores[keep], weights=weights[keep]))


def precision_recall_fscore_support(
    y_true,
    y_pred,
    *,
    labels=None,
    pos_label=1,
    average=None,
    zero_division="warn",
    warn_for=("precision", "recall", "f-score"),
):
    """(precision, recall, f1, support): arrays per label with average=None (support =
    true_c), else three floats and None. See the module docstring for the rules."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    ok = zero_division == "warn" or (
        isinstance(zero_division, int | float)
        and (zero_division in (0, 1) or zero_division != zero_division)
    )
    if not ok:
        raise ValueError(f"zero_division must be 'warn', 0, 1 or nan, got {zero_division!r}")
    t, p = _pair(y_true, y_pred)
    labels, present = _label_set(t, p, labels)
    if average == "binary":
        if len(present) > 2:
            raise ValueError(
                f"average='binary' needs two labels at most, but y_true and y_pred hold "
                f"{len(present)}: {present.tolist()}; choose average='macro', 'micro' or "
                "'weighted'"
            )
        if pos_label not in present.tolist() and len(present) >= 2:
            raise ValueError(
                f"pos_label={pos_label!r} is not a valid label: it should be one of "
                f"{present.tolist()}"
            )
        labels = np.asarray([pos_label])
    # BEGIN EXERCISE ch08: f1_score - tp, pred, true per label (micro: summed); P, R, F1 by _divide
    tp = np.array([np.sum((t == c) & (p == c)) for c in labels], dtype=np.int64)
    pred = np.array([np.sum(p == c) for c in labels], dtype=np.int64)
    true = np.array([np.sum(t == c) for c in labels], dtype=np.int64)
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    precision = _divide(tp, pred, zero_division, "Precision", "precision" in warn_for)
    recall = _divide(tp, true, zero_division, "Recall", "recall" in warn_for)
    f1 = _divide(2 * tp, true + pred, zero_division, "F-score", "f-score" in warn_for)
    # END EXERCISE
    if average is None:
        return precision, recall, f1, true
    weights = true if average == "weighted" else None
    return _average(precision, weights), _average(recall, weights), _average(f1, weights), None


def _one_score(which: str, y_true, y_pred, labels, pos_label, average, zero_division):
    """One of precision_recall_fscore_support's scores ("precision", "recall" or "f-score"),
    warning about an undefined value of that score only (as scikit-learn's wrappers do)."""
    index = ("precision", "recall", "f-score").index(which)
    return precision_recall_fscore_support(
        y_true,
        y_pred,
        labels=labels,
        pos_label=pos_label,
        average=average,
        zero_division=zero_division,
        warn_for=(which,),
    )[index]


def precision_score(
    y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"
):
    """tp / (tp + fp): of the samples predicted as a label, the fraction that truly are."""
    return _one_score("precision", y_true, y_pred, labels, pos_label, average, zero_division)


def recall_score(
    y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"
):
    """tp / (tp + fn): of the samples of a label, the fraction predicted as it."""
    return _one_score("recall", y_true, y_pred, labels, pos_label, average, zero_division)


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    """The harmonic mean of precision and recall, 2 tp / (2 tp + fp + fn)."""
    return _one_score("f-score", y_true, y_pred, labels, pos_label, average, zero_division)
