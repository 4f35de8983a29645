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

from headstart.errors import ArtifactError


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

    @classmethod
    def from_dict(cls, value: object, where: str) -> Metrics:
        """``to_dict``'s inverse, checked field by field (metrics.json is a file, read as data).
        ``per_class``, ``confusion``, ``threshold`` and ``extra`` may be absent; fields this
        release does not know are left out.

        Example:
            >>> m = compute_metrics(np.array([[.9, .1]]), [(0,)], ["a", "b"], "multiclass")
            >>> Metrics.from_dict(m.to_dict(), "metrics.json") == m
            True
        """
        if not isinstance(value, dict):
            raise ArtifactError(f"{where}: a split's metrics must be an object, got {type(value).__name__}.")
        task, classes, count = value.get("task"), value.get("classes"), value.get("count")
        if not isinstance(task, str) or not _texts(classes) or not _integer(count):
            raise ArtifactError(f"{where}: a split's metrics need task (text), classes (a list of text) and count (an integer).")
        headline = [value.get(name) for name in ("accuracy", "balanced_accuracy", "macro_f1")]
        if not all(_number(v) for v in headline):
            raise ArtifactError(f"{where}: a split's metrics need numbers accuracy, balanced_accuracy and macro_f1.")
        accuracy, balanced, macro_f1 = (float(v) for v in headline)  # type: ignore[arg-type]  # checked just above
        threshold, extra = value.get("threshold"), value.get("extra", {})
        if not (threshold is None or _number(threshold)) or not (isinstance(extra, dict) and all(_number(v) for v in extra.values())):
            raise ArtifactError(f"{where}: 'threshold' must be a number or null and 'extra' an object of numbers.")
        return cls(
            task=task,
            classes=list(classes),  # type: ignore[arg-type]  # _texts proved it a list of str
            count=int(count),  # type: ignore[arg-type]  # _integer proved it an int
            accuracy=accuracy,
            balanced_accuracy=balanced,
            macro_f1=macro_f1,
            per_class=_per_class(value.get("per_class", []), where),
            confusion=_confusion(value.get("confusion", []), where),
            threshold=None if threshold is None else float(threshold),
            extra={str(k): float(v) for k, v in extra.items()},
        )

    def macro(self, score: str) -> float:
        """The macro average of a per-class score ("precision", "recall" or "f1")."""
        values = np.array([getattr(c, score) for c in self.per_class], dtype=np.float64)
        return macro_average(values, np.array([c.support for c in self.per_class]))


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _integer(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _texts(x: object) -> bool:
    return isinstance(x, list) and all(isinstance(v, str) for v in x)


def _per_class(value: object, where: str) -> list[ClassScores]:
    rows = value if isinstance(value, list) else None
    scores = ("precision", "recall", "f1")
    if rows is None or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) and _integer(r.get("support")) and all(_number(r.get(k)) for k in scores)
        for r in rows
    ):
        raise ArtifactError(f"{where}: 'per_class' must be a list of {{name, precision, recall, f1, support}} objects.")
    return [ClassScores(r["name"], float(r["precision"]), float(r["recall"]), float(r["f1"]), int(r["support"])) for r in rows]


def _confusion(value: object, where: str) -> Any:
    """A (K, K) matrix or K (2, 2) matrices of counts, as lists."""

    def counts(x: object, depth: int) -> bool:
        return _integer(x) if depth == 0 else isinstance(x, list) and all(counts(v, depth - 1) for v in x)

    if not (counts(value, 2) or counts(value, 3)):
        raise ArtifactError(f"{where}: 'confusion' must be a matrix of counts (lists of integers).")
    return value


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
