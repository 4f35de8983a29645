"""Which given labels are unlikely: ranked by self-confidence, suggested by confident learning.

Written from the description in Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels" (JAIR 2021), not from any implementation:

* Ranking: self-confidence, the out-of-fold probability of the given label (lowest first):
  score = 1 - self-confidence.
* Cut-off (multi-class): fitted on the data itself (label_issues/calibrate.py): the
  out-of-fold logits temperature-scaled, each image's probability that its label is wrong
  under random label noise, and the longest list whose expected precision reaches a
  target. The fixed cut-off it replaces, self-confidence under FLOOR (5 %), flagged at
  precision 0.74 / recall 0.87 on Fashion-MNIST with 5 % flipped labels at 20k images, but
  0.54-0.57 / 0.88-0.94 at 3k (bench/label_issues.py). Confident learning's own cut-off, the
  off-diagonal of the confident joint, was measured and not kept: at 20k it flagged 1,876
  images at precision 0.40 / recall 0.75, because natural confusions (shirt, T-shirt,
  pullover, coat) land off the diagonal as often as flips.
* Suggested label: the confident label, the most probable class whose probability reaches
  its per-class threshold t_j (the mean out-of-fold probability of class j over the images
  labelled j: a hard class gets a low bar, an easy one a high bar); when no other class
  reaches its bar, the most probable other class.

Multi-label data is K binary problems, one per label (present / absent), each with the
same rule: a given label with out-of-fold probability under 5 % is "spurious", an absent
label with probability over 95 % is "missing".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headstart.label_issues.calibrate import TARGET_PRECISION, Cutoff, fit_cutoff, softmax, wrong_posterior

FLOOR = 0.05  # flag a given label whose out-of-fold probability is under this (see above)


@dataclass(frozen=True)
class Flag:
    """One flagged (image, label) pair, as row numbers and probabilities."""

    row: int  # the image's row in the probabilities
    given: int  # multi-class: the given class; multi-label: the label concerned
    suggested: int  # multi-class: the confident class; multi-label: the same label
    issue: str  # "mislabelled" | "missing" | "spurious"
    p_given: float  # out-of-fold probability that the given labelling is right
    p_suggested: float  # ... that the suggested one is
    p_wrong: float | None = None  # multi-class: the probability that the given label is wrong (calibrate.py)

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


def flag_multiclass(probs: np.ndarray, labels: np.ndarray, floor: float = FLOOR) -> list[Flag]:
    """Images whose given label has out-of-fold probability under ``floor``, lowest first
    (the fixed cut-off; ``flag_calibrated`` fits one to the data).

    Example:
        >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.97, 0.03]])
        >>> [(f.row, f.suggested) for f in flag_multiclass(p, np.array([0, 0, 1, 1]))]
        [(3, 0)]
    """
    labels = np.asarray(labels)
    return _flags(probs, labels, np.flatnonzero(probs[np.arange(len(labels)), labels] < floor), None)


def flag_calibrated(logits: np.ndarray, labels: np.ndarray, target: float = TARGET_PRECISION) -> tuple[list[Flag], Cutoff]:
    """Images listed by the cut-off fitted to these (N, K) out-of-fold logits, lowest
    calibrated self-confidence first, with the cut-off (expected precision included).

    Example:
        >>> z = np.array([[4.0, -4.0]] * 20 + [[-4.0, 4.0]] * 20 + [[4.0, -4.0]])
        >>> flags, cutoff = flag_calibrated(z, np.array([0] * 20 + [1] * 21))
        >>> [f.row for f in flags], cutoff.expected_precision > 0.5
        ([40], True)
    """
    labels = np.asarray(labels, dtype=np.int64)
    cutoff = fit_cutoff(logits, labels, target)
    probs = softmax(np.asarray(logits, dtype=np.float64) / cutoff.temperature)
    p_given = probs[np.arange(len(labels)), labels]
    wrong = wrong_posterior(p_given, probs.shape[1], cutoff.noise_rate)
    return _flags(probs, labels, np.flatnonzero(p_given < cutoff.p_given_below), wrong), cutoff


def _flags(probs: np.ndarray, labels: np.ndarray, flagged: np.ndarray, wrong: np.ndarray | None) -> list[Flag]:
    rows = np.arange(len(labels))
    confident = confident_labels(probs, class_thresholds(probs, labels))
    others = probs.copy()
    others[rows, labels] = -1.0
    suggested = np.where((confident >= 0) & (confident != labels), confident, others.argmax(1))
    p_given = probs[rows, labels]
    flags = [
        Flag(
            int(r),
            int(labels[r]),
            int(suggested[r]),
            "mislabelled",
            float(p_given[r]),
            float(probs[r, suggested[r]]),
            None if wrong is None else float(wrong[r]),
        )
        for r in flagged
    ]
    return sorted(flags, key=lambda f: (f.p_given, f.row))


def flag_multilabel(probs: np.ndarray, indicators: np.ndarray, floor: float = FLOOR) -> list[Flag]:
    """Per-label issues of (N, K) sigmoid probabilities against (N, K) 0/1 given labels:
    a given state (present / absent) with out-of-fold probability under ``floor``."""
    flags: list[Flag] = []
    for j in range(probs.shape[1]):
        given = indicators[:, j].astype(np.int64)
        p_given = np.where(given == 1, probs[:, j], 1.0 - probs[:, j])
        for r in np.flatnonzero(p_given < floor):
            flags.append(Flag(int(r), j, j, "missing" if given[r] == 0 else "spurious", float(p_given[r]), float(1.0 - p_given[r])))
    return sorted(flags, key=lambda f: (f.p_given, f.row, f.given))
