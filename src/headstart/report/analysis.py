"""The numbers behind the report's results section (numpy only, no plotting).

Conventions: ``probs`` is (N, K) per-class probabilities as the Predictor returns them
(binary: P(classes[0]), P(classes[1])); ``truth`` is (N, K) booleans, one True per row
unless multi-label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headstart.metrics import predict_labels


def truth_matrix(labels: list[tuple[int, ...]], k: int) -> np.ndarray:
    out = np.zeros((len(labels), k), dtype=bool)
    for row, ls in enumerate(labels):
        out[row, list(ls)] = True
    return out


@dataclass
class Calibration:
    """Reliability bins: mean confidence, accuracy and count per equal-width bin."""

    edges: np.ndarray  # (B + 1,)
    confidence: np.ndarray  # (B,) NaN where empty
    accuracy: np.ndarray  # (B,) NaN where empty
    count: np.ndarray  # (B,)
    ece: float  # sum over bins of count/N * |accuracy - confidence|
    what: str  # which probability was binned, in words


def calibration(probs: np.ndarray, truth: np.ndarray, task: str, bins: int | None = None) -> Calibration:
    """Top-label calibration (multiclass, binary) or per-label (multi-label).

    Example:
        >>> c = calibration(np.array([[.9, .1], [.6, .4]]), np.array([[1, 0], [0, 1]], bool), "multiclass", 10)
        >>> round(c.ece, 3)
        0.35
    """
    if task == "multilabel":
        conf, correct = probs.ravel(), truth.ravel().astype(np.float64)
        what = "each label's probability vs how often the label is present"
    else:
        pred = probs.argmax(1)
        conf = probs[np.arange(len(probs)), pred]
        correct = truth[np.arange(len(probs)), pred].astype(np.float64)
        what = "confidence of the predicted class vs how often it is right"
    bins = bins or (10 if len(conf) < 500 else 15)  # fewer, fuller bins on small splits
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    has = count > 0
    ece = float((count[has] / max(1, len(conf)) * np.abs(accuracy[has] - mean_conf[has])).sum())
    return Calibration(edges, mean_conf, accuracy, count, ece, what)


@dataclass
class Curve:
    """Precision-recall and ROC curves of one score against one binary truth."""

    name: str
    precision: np.ndarray
    recall: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    average_precision: float
    roc_auc: float  # NaN when the truth has one value only
    positives: int
    at_threshold: tuple[float, float, float]  # (precision, recall, fpr) at the decision threshold


def curve(name: str, score: np.ndarray, positive: np.ndarray, threshold: float) -> Curve:
    """PR and ROC by sorting the scores once (ties handled as one step, as scikit-learn does)."""
    order = np.argsort(-score, kind="stable")
    s, y = score[order], positive[order].astype(np.float64)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    p, n = float(y.sum()), float(len(y) - y.sum())
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    recall = tp / p if p else np.zeros_like(tp)
    fpr = fp / n if n else np.zeros_like(fp)
    tpr = recall
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if p else float("nan")
    auc = float(np.trapezoid(np.r_[0.0, tpr], np.r_[0.0, fpr])) if p and n else float("nan")
    decided = score >= threshold
    tp_t = float((decided & positive).sum())
    fp_t = float((decided & ~positive).sum())
    at = (tp_t / (tp_t + fp_t) if tp_t + fp_t else 1.0, tp_t / p if p else 0.0, fp_t / n if n else 0.0)
    return Curve(name, np.r_[1.0, precision], np.r_[0.0, recall], np.r_[0.0, fpr], np.r_[0.0, tpr], ap, auc, int(p), at)


def score_columns(probs: np.ndarray, truth: np.ndarray, classes: list[str], task: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, score, positive) per curve: binary -> the positive class; multi-label -> each label."""
    if task == "binary":
        return [(classes[1], probs[:, 1], truth[:, 1])]
    return [(c, probs[:, i], truth[:, i]) for i, c in enumerate(classes)]


def threshold_table(probs: np.ndarray, truth: np.ndarray, task: str, used: float) -> list[dict[str, float]]:
    """Precision, recall and F1 (binary: positive class; multi-label: micro over labels)
    at a grid of thresholds and at the one in use, so a user sees what moving it does."""
    score = probs[:, 1:2] if task == "binary" else probs
    positive = truth[:, 1:2] if task == "binary" else truth
    rows = []
    for t in sorted({*np.round(np.arange(0.1, 0.95, 0.1), 2).tolist(), round(used, 4)}):
        decided = score >= t
        tp = float((decided & positive).sum())
        fp = float((decided & ~positive).sum())
        fn = float((~decided & positive).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"threshold": t, "precision": precision, "recall": recall, "f1": f1, "used": abs(t - used) < 1e-9})
    return rows


@dataclass
class Pair:
    true: str
    predicted: str
    count: int
    share: float  # of the true class's images


def confused_pairs(matrix: np.ndarray, classes: list[str], limit: int = 10) -> list[Pair]:
    """The largest off-diagonal cells of a (K, K) confusion matrix, biggest first."""
    m = np.asarray(matrix, dtype=np.int64).copy()
    np.fill_diagonal(m, 0)
    rows = m.sum(1) + np.diag(np.asarray(matrix))
    flat = np.argsort(-m, axis=None, kind="stable")[:limit]
    out = []
    for idx in flat:
        i, j = divmod(int(idx), m.shape[1])
        if m[i, j] == 0:
            break
        out.append(Pair(classes[i], classes[j], int(m[i, j]), float(m[i, j] / max(1, rows[i]))))
    return out


@dataclass
class Mistake:
    """One wrong decision: for multi-label, one (image, label) pair."""

    index: int  # row in the split
    true: list[str]
    predicted: list[str]
    probability: float  # the probability behind the wrong decision
    p_true: float | None  # multiclass/binary: the probability given to the true class
    cam_class: int  # the class whose evidence Grad-CAM shows
    note: str = ""


def confident_mistakes(probs: np.ndarray, truth: np.ndarray, classes: list[str], task: str, threshold: float, limit: int) -> list[Mistake]:
    """The most confidently wrong decisions, most confident first."""
    out: list[Mistake] = []
    true_names = [[classes[c] for c in np.flatnonzero(row)] for row in truth]
    if task != "multilabel":
        pred = predict_labels(probs, task, threshold)
        truth_idx = truth.argmax(1)
        wrong: np.ndarray = np.flatnonzero(pred != truth_idx)
        conf = probs[wrong, pred[wrong]]
        for i in wrong[np.argsort(-conf, kind="stable")][:limit]:
            out.append(
                Mistake(int(i), true_names[i], [classes[pred[i]]], float(probs[i, pred[i]]), float(probs[i, truth_idx[i]]), int(pred[i]))
            )
        return out
    decided = probs >= threshold
    wrong = np.argwhere(decided != truth)  # (M, 2): image, label
    if not len(wrong):
        return out
    # how far the probability sits on the wrong side: p for a false positive, 1 - p for a miss
    far = np.where(decided[wrong[:, 0], wrong[:, 1]], probs[wrong[:, 0], wrong[:, 1]], 1 - probs[wrong[:, 0], wrong[:, 1]])
    for i, c in wrong[np.argsort(-far, kind="stable")][:limit]:
        fp = bool(decided[i, c])
        p = float(probs[i, c])
        note = f"false positive: '{classes[c]}' predicted, not a label" if fp else f"missed: '{classes[c]}' is a label"
        out.append(Mistake(int(i), true_names[i], [classes[j] for j in np.flatnonzero(decided[i])], p, None, int(c), note))
    return out
