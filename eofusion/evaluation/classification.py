"""Classification metrics: confusion matrix, overall and balanced accuracy, per-class P/R/F1.

Pure numpy re-implementations that agree with scikit-learn (``confusion_matrix``,
``accuracy_score``, ``balanced_accuracy_score``, ``precision_recall_fscore_support`` with
``average=None``) but never warn: undefined ratios take the ``zero_division`` value instead.

Labels may be any sortable values (ints, strings). Per-class precision/recall/F1 also accept
multi-label indicator matrices ``(n_samples, n_classes)`` as used for BigEarthNet, where every
column is scored as its own binary problem.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "PerClassScores",
    "balanced_accuracy",
    "confusion_matrix",
    "overall_accuracy",
    "precision_recall_f1",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class PerClassScores(NamedTuple):
    """Per-class scores, aligned with ``labels``.

    Attributes:
        labels: Class labels (multi-label: column indices).
        precision: tp / (tp + fp).
        recall: tp / (tp + fn).
        f1: 2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall.
        support: Number of true samples of each class.
    """

    labels: npt.NDArray[Any]
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    support: IntArray


def _as_1d_pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[npt.NDArray[Any], ...]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError("expected 1-D arrays of class labels")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape[0]} samples but y_pred has {p.shape[0]}")
    return t, p


def _divide(num: npt.NDArray[Any], den: npt.NDArray[Any], zero_division: float) -> FloatArray:
    """Element-wise ``num / den`` with ``zero_division`` where ``den == 0``, without warnings."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.full(num.shape, float(zero_division), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, labels: npt.ArrayLike | None = None) -> IntArray:
    """Confusion matrix ``C[i, j]`` = number of samples of true class i predicted as class j.

    Args:
        y_true: True labels, 1-D.
        y_pred: Predicted labels, 1-D, same length.
        labels: Classes (rows/columns) in order; default: sorted union of both label arrays.
            Samples whose true or predicted label is not listed are ignored (as scikit-learn).

    Returns:
        ``(n_classes, n_classes)`` integer matrix.
    """
    t, p = _as_1d_pair(y_true, y_pred)
    classes = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    n = classes.shape[0]
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    # Map labels to indices through a sorted copy; searchsorted is vectorised.
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    ti = np.clip(np.searchsorted(sorted_classes, t), 0, n - 1)
    pi = np.clip(np.searchsorted(sorted_classes, p), 0, n - 1)
    keep = (sorted_classes[ti] == t) & (sorted_classes[pi] == p)
    ti, pi = order[ti[keep]], order[pi[keep]]
    counts = np.bincount(ti * n + pi, minlength=n * n)
    return counts.reshape(n, n).astype(np.int64)


def overall_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Fraction of samples predicted correctly (subset accuracy for multi-label matrices).

    Args:
        y_true: True labels (1-D) or indicator matrix (2-D).
        y_pred: Predictions of the same shape.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: On empty or mismatched inputs.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("accuracy of an empty sample is undefined")
    correct = t == p
    if correct.ndim == 2:
        correct = correct.all(axis=1)  # a multi-label sample is right only if every label is
    return float(correct.mean())


def balanced_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean per-class recall over the classes present in ``y_true``.

    Classes that only occur in ``y_pred`` have no defined recall and are left out (scikit-learn
    does the same, with a warning).

    Args:
        y_true: True labels, 1-D.
        y_pred: Predicted labels, 1-D, same length.

    Returns:
        Balanced accuracy in [0, 1].

    Raises:
        ValueError: On empty or mismatched inputs.
    """
    t, p = _as_1d_pair(y_true, y_pred)
    if t.shape[0] == 0:
        raise ValueError("balanced accuracy of an empty sample is undefined")
    cm = confusion_matrix(t, p)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def precision_recall_f1(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    zero_division: float = 0.0,
) -> PerClassScores:
    """Per-class precision, recall, F1 and support.

    Args:
        y_true: True labels (1-D) or multi-label indicator matrix (2-D, 0/1 or bool).
        y_pred: Predictions of the same shape.
        labels: Classes to report, in order (multi-label: column indices); default: sorted union
            of the labels (multi-label: all columns).
        zero_division: Value of a ratio whose denominator is 0 (a class never predicted, never
            true, or neither), like scikit-learn's ``zero_division`` but never warning.

    Returns:
        The per-class scores.

    Raises:
        ValueError: On mismatched shapes.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    if t.ndim == 2:
        cols = np.arange(t.shape[1]) if labels is None else np.asarray(labels, dtype=np.int64)
        tb = t[:, cols].astype(bool)
        pb = p[:, cols].astype(bool)
        tp = (tb & pb).sum(axis=0)
        pred_sum = pb.sum(axis=0)
        true_sum = tb.sum(axis=0)
        classes: npt.NDArray[Any] = cols
    else:
        if t.ndim != 1:
            raise ValueError("expected 1-D label arrays or 2-D indicator matrices")
        observed = np.unique(np.concatenate([t, p]))
        classes = observed if labels is None else np.asarray(labels)
        # Count over every class that occurs, then select: samples whose label is not in
        # `labels` still count as errors of the listed classes (as in scikit-learn).
        everything = np.unique(np.concatenate([observed, classes]))
        cm = confusion_matrix(t, p, everything)
        idx = np.searchsorted(everything, classes)
        tp = np.diag(cm)[idx]
        pred_sum = cm.sum(axis=0)[idx]
        true_sum = cm.sum(axis=1)[idx]
    precision = _divide(tp, pred_sum, zero_division)
    recall = _divide(tp, true_sum, zero_division)
    # F1 from counts, 2tp / (2tp + fp + fn) = 2tp / (true + pred): defined whenever the class
    # occurs at all, and 0 (not zero_division) when precision and recall are both 0.
    f1 = _divide(2 * tp, true_sum + pred_sum, zero_division)
    return PerClassScores(
        labels=classes,
        precision=precision,
        recall=recall,
        f1=f1,
        support=true_sum.astype(np.int64),
    )
