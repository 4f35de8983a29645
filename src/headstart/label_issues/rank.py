"""Which given labels are unlikely: confident learning on out-of-fold probabilities.

Written from the description in Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels" (JAIR 2021), not from any implementation:

* Per-class threshold t_j: the mean out-of-fold probability of class j over the images
  labelled j (the class's average self-confidence). A class the head finds hard gets a
  low bar, an easy one a high bar, so no single global cut-off favours easy classes.
* An image "confidently belongs" to every class j whose probability reaches t_j; its
  confident label is the most probable of those. When that is not its given label, the
  image lands off the diagonal of the confident joint: it is flagged.
* Flagged images are ranked by self-confidence, the out-of-fold probability of the given
  label (lowest first): score = 1 - self-confidence.

Multi-label data is K binary problems, one per label (present / absent), each with the
same rule: an absent label confidently present is "missing", a given label confidently
absent is "spurious".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Flag:
    """One flagged (image, label) pair, as row numbers and probabilities."""

    row: int  # the image's row in the probabilities
    given: int  # multi-class: the given class; multi-label: the label concerned
    suggested: int  # multi-class: the confident class; multi-label: the same label
    issue: str  # "mislabelled" | "missing" | "spurious"
    p_given: float  # out-of-fold probability that the given labelling is right
    p_suggested: float  # ... that the suggested one is

    @property
    def score(self) -> float:
        return 1.0 - self.p_given


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K,) mean self-confidence of each class; a class without images gets 1 (never reached
    by another class's image unless certain)."""
    k = probs.shape[1]
    t = np.ones(k, dtype=np.float64)
    for j in range(k):
        mine = labels == j
        if mine.any():
            t[j] = float(probs[mine, j].mean())
    return t


def confident_labels(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N,) the most probable class among those reaching their threshold; -1 when none does."""
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -np.inf)
    best = masked.argmax(1)
    return np.where(above.any(1), best, -1)


def flag_multiclass(probs: np.ndarray, labels: np.ndarray) -> list[Flag]:
    """Images off the confident joint's diagonal, lowest self-confidence first.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.95, 0.05]])
        >>> [f.row for f in flag_multiclass(p, np.array([0, 0, 1, 1]))]
        [3]
    """
    labels = np.asarray(labels)
    confident = confident_labels(probs, class_thresholds(probs, labels))
    rows = np.flatnonzero((confident >= 0) & (confident != labels))
    flags = [Flag(int(r), int(labels[r]), int(confident[r]), "mislabelled", float(probs[r, labels[r]]), float(probs[r, confident[r]]))
             for r in rows]
    return sorted(flags, key=lambda f: (f.p_given, f.row))


def flag_multilabel(probs: np.ndarray, indicators: np.ndarray) -> list[Flag]:
    """Per-label issues of (N, K) sigmoid probabilities against (N, K) 0/1 given labels."""
    flags: list[Flag] = []
    for j in range(probs.shape[1]):
        given = indicators[:, j].astype(np.int64)
        two = np.stack([1.0 - probs[:, j], probs[:, j]], axis=1)  # (N, 2): absent, present
        confident = confident_labels(two, class_thresholds(two, given))
        for r in np.flatnonzero((confident >= 0) & (confident != given)):
            issue = "missing" if given[r] == 0 else "spurious"
            flags.append(Flag(int(r), j, j, issue, float(two[r, given[r]]), float(two[r, confident[r]])))
    return sorted(flags, key=lambda f: (f.p_given, f.row, f.given))
