"""Metrics from probabilities and true labels, as plain data (numpy only).

This module turns a finished model's predictions into the full report: accuracy, balanced
accuracy, per-class precision/recall/F1 with support, and the confusion matrix.

One definition of each metric, used everywhere (metrics.json here, ``val_f1``/``val_acc``
in epochs.csv through ``headstart.engine.epoch_metrics``, the report's table):

- the decision: multiclass argmax; binary P(classes[1]) >= threshold; multilabel p >= threshold
- per class: precision tp/(tp+fp), recall tp/(tp+fn), F1 their harmonic mean; 0 when undefined
- macro average (balanced accuracy = macro recall, macro F1, macro precision): the mean over
  the classes present in the targets (support > 0). A class absent from a split counts
  neither as 0 nor as 1, even when the model predicts it; binary averages both classes.
- accuracy: correct decisions / decisions (multilabel: over all (image, class) pairs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Metrics:
    task: str
    classes: list[str]
    count: int
    accuracy: float  # multilabel: per-label accuracy over all (image, class) pairs
    balanced_accuracy: float  # mean recall over classes that have support
    macro_f1: float
    per_class: list[ClassScores]
    # multiclass/binary: (K, K) rows = true class, columns = predicted class.
    # multilabel: per class [[tn, fp], [fn, tp]].
    confusion: list[list[int]] | list[list[list[int]]]
    threshold: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def macro(self, score: str) -> float:
        """The macro average of a per-class score ("precision", "recall" or "f1")."""
        values = np.array([getattr(c, score) for c in self.per_class], dtype=np.float64)
        return macro_average(values, np.array([c.support for c in self.per_class]))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def class_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (precision, recall, F1) from true positive, false positive, false negative counts."""
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1


def macro_average(values: np.ndarray, support: np.ndarray) -> float:
    """Mean of per-class ``values`` over the classes with ``support`` > 0; 0.0 when none has.

    Example:
        >>> macro_average(np.array([1.0, 0.0, 0.5]), np.array([3, 0, 1]))
        0.75
    """
    has = support > 0
    return float(values[has].mean()) if has.any() else 0.0


def predict_labels(probs: np.ndarray, task: str, threshold: float) -> np.ndarray:
    """multiclass: argmax; binary: P(classes[1]) >= threshold; multilabel: (N, K) booleans."""
    if task == "multiclass":
        return probs.argmax(1)
    if task == "binary":
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs >= threshold


def compute_metrics(probs: np.ndarray, labels: list[tuple[int, ...]], classes: list[str], task: str, threshold: float = 0.5) -> Metrics:
    """Example:
    >>> m = compute_metrics(np.array([[.9, .1], [.2, .8]]), [(0,), (0,)], ["a", "b"], "multiclass")
    >>> m.accuracy, m.confusion
    (0.5, [[1, 1], [0, 0]])
    """
    k = len(classes)
    pred = predict_labels(probs, task, threshold)
    if task == "multilabel":
        truth = np.zeros((len(labels), k), dtype=bool)
        for row, ls in enumerate(labels):
            truth[row, list(ls)] = True
        tp = (pred & truth).sum(0)
        fp = (pred & ~truth).sum(0)
        fn = (~pred & truth).sum(0)
        tn = (~pred & ~truth).sum(0)
        confusion: Any = [[[int(tn[c]), int(fp[c])], [int(fn[c]), int(tp[c])]] for c in range(k)]
        accuracy = float((pred == truth).mean()) if len(labels) else 0.0
        extra = {"subset_accuracy": float((pred == truth).all(1).mean()) if len(labels) else 0.0}
    else:
        truth_idx = np.array([ls[0] for ls in labels], dtype=np.int64)
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (truth_idx, pred), 1)
        tp = np.diag(matrix)
        fp = matrix.sum(0) - tp
        fn = matrix.sum(1) - tp
        confusion = matrix.tolist()
        accuracy = float(tp.sum() / max(1, matrix.sum()))
        extra = {}
    precision, recall, f1 = class_scores(tp, fp, fn)
    support = tp + fn
    per_class = [ClassScores(classes[c], float(precision[c]), float(recall[c]), float(f1[c]), int(support[c])) for c in range(k)]
    return Metrics(
        task=task,
        classes=list(classes),
        count=len(labels),
        accuracy=accuracy,
        balanced_accuracy=macro_average(recall, support),
        macro_f1=macro_average(f1, support),
        per_class=per_class,
        confusion=confusion,
        threshold=None if task == "multiclass" else threshold,
        extra=extra,
    )
