"""Cross-validated linear probes on the user's own training images: which input side (and
which base) a run should use, with the evidence.

For each candidate (base, side) the frozen base's features of a stratified, seeded pilot of
the training images (all of them up to ``PILOT_IMAGES``) go through the k-fold out-of-fold
linear probe of ``headstart.engine.oof`` (the same heads that find label issues), and
each fold's held-out images are scored with the metric that fits the task. The choice
(``select``) is the best mean score, or a cheaper candidate whose paired per-fold
difference from it is within one standard error: a smaller side is taken only when the
folds cannot tell it from the best, or when the budget (the cost cap without one) forces it.

Interface:

    folds = fold_count(labels)                               # None: too few images per class
    scores = fold_scores(features, targets, k, "multiclass", folds, metric="accuracy")
    evidence = select([Candidate("tf_efficientnet_lite0", 224, scores, 9.0), ...], limit_s=None)
    print("\\n".join(evidence.table()))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PILOT_IMAGES = 2_000  # at most this many training images are probed (stratified, seeded)
FOLDS = 5
# Without a time budget a candidate may cost at most this many times the reference probe
# (the first base at its native side): a second, bigger base is measured, not bought blindly.
CAP_RATIO = 2.0
IMBALANCE = 1.5  # largest / smallest class count above which accuracy hides the small classes


@dataclass(frozen=True)
class Candidate:
    """One measured (base, side): its per-fold scores and the run's probe cost at that side.

    ``seconds``: the frozen-base features training still has to compute at this side (its
    training and validation images, less those the pilot computed and cached), at the rate
    measured on this machine's training device: the probe's dominant cost.
    """

    arch: str
    side: int
    scores: tuple[float, ...]
    seconds: float
    weights: str | None = None
    full_seconds: float | None = None  # the same without the pilot's cached features (None: seconds)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def se(self) -> float:
        return standard_error(self.scores)


@dataclass(frozen=True)
class Row:
    """A row of the evidence table: a candidate, its gap to the best and the verdict."""

    arch: str
    side: int
    score: float
    se: float
    gap: float  # best's mean minus this one's, over paired folds (0 for the best)
    gap_se: float  # standard error of that paired difference
    seconds: float
    verdict: str  # "best", "within 1 SE", "worse", "over the budget" / "over the cost cap"
    weights: str | None = None


@dataclass(frozen=True)
class Evidence:
    """What the pilot measured and what it chose (``rows[chosen]``), stored with the plan."""

    metric: str
    folds: int
    images: int
    rows: tuple[Row, ...]
    chosen: int
    rule: str  # why rows[chosen]: "best measured", "within one SE ...", "budget forces ..."
    seconds: float = 0.0  # the pilot's own wall time
    device: str = "cpu"
    limit_s: float | None = None  # the budget or the cost cap a candidate had to fit

    @property
    def choice(self) -> Row:
        return self.rows[self.chosen]

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> list[str]:
        """The candidates as aligned text lines, the chosen one marked with '>'."""
        lines = [f"    {'side':>4}  {'base':<22} {self.metric + ' (CV)':>17}  {'gap to best':>15}  {'probe s':>7}  verdict"]
        for i, r in enumerate(self.rows):
            mark = ">" if i == self.chosen else " "
            gap = f"{r.gap:+.3f} +- {r.gap_se:.3f}" if not r.verdict.startswith("best") else ""
            score = f"{r.score:.3f} +- {r.se:.3f}"
            lines.append(f"  {mark} {r.side:>4}  {r.arch[:22]:<22} {score:>17}  {gap:>15}  {r.seconds:>7.1f}  {r.verdict}")
        return lines


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of ``values`` (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1) / math.sqrt(len(values)))


def metric_for(task: str, counts: Sequence[int]) -> str:
    """The score that fits the task: macro F1 for multi-label; balanced accuracy when the
    classes are imbalanced (largest / smallest > IMBALANCE); plain accuracy otherwise.

    Example:
        >>> metric_for("multiclass", [50, 50, 40]), metric_for("multiclass", [90, 10]), metric_for("multilabel", [3, 4])
        ('accuracy', 'balanced_accuracy', 'macro_f1')
    """
    if task == "multilabel":
        return "macro_f1"
    positive = [c for c in counts if c > 0]
    return "balanced_accuracy" if positive and max(positive) > IMBALANCE * min(positive) else "accuracy"


def fold_count(counts: Sequence[int], folds: int = FOLDS) -> int | None:
    """How many folds the smallest class allows (at most ``folds``); None below 2 images.

    Example:
        >>> fold_count([40, 3]), fold_count([40, 1])
        (3, None)
    """
    smallest = min(counts) if len(counts) else 0
    k = min(folds, smallest)
    return k if k >= 2 else None


def pilot_subset(strata: np.ndarray, limit: int = PILOT_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified, seeded subset of at most about ``limit`` images
    (every image when there are no more): one fold of the out-of-fold deal.

    Example:
        >>> len(pilot_subset(np.arange(10_000) % 10, limit=2_000))
        2000
    """
    from headstart.engine.oof import fold_of

    if len(strata) <= limit:
        return np.arange(len(strata))
    parts = math.ceil(len(strata) / limit)
    return np.flatnonzero(fold_of(np.asarray(strata), parts, seed) == 0)


def fold_scores(
    features: np.ndarray, targets: np.ndarray, num_classes: int, task: str, folds: int, metric: str, seed: int = 0
) -> tuple[float, ...]:
    """The metric on each fold's held-out images, predicted by the out-of-fold linear probe.

    ``targets``: (N,) class indices (binary too), or (N, K) 0/1 indicators for multi-label.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(60, 4)); y = np.arange(60) % 2; x[:, 0] += 3 * y
        >>> min(fold_scores(x, y, 2, "multiclass", 3, "accuracy")) > 0.8
        True
    """
    from headstart.engine.oof import folds_of_targets, out_of_fold
    from headstart.metrics import compute_metrics

    multilabel = task == "multilabel"
    targets = np.asarray(targets)
    probs = out_of_fold(features, targets, num_classes, multilabel=multilabel, folds=folds, seed=seed)
    fold = folds_of_targets(targets, multilabel, folds, seed)
    classes = [str(c) for c in range(num_classes)]
    scores = []
    for f in range(folds):
        held = fold == f
        if multilabel:
            labels = [tuple(int(c) for c in np.flatnonzero(row)) for row in targets[held]]
        else:
            labels = [(int(t),) for t in targets[held]]
        metrics = compute_metrics(probs[held], labels, classes, "multilabel" if multilabel else "multiclass")
        scores.append(float(getattr(metrics, metric)))
    return tuple(scores)


def paired_gap(best: Candidate, other: Candidate) -> tuple[float, float]:
    """(mean, standard error) of best - other over the same folds."""
    diff = np.asarray(best.scores, dtype=np.float64) - np.asarray(other.scores, dtype=np.float64)
    return float(diff.mean()), standard_error(diff.tolist())


def select(
    candidates: Sequence[Candidate], limit_s: float | None = None, limit_what: str = "the budget", metric: str = "accuracy"
) -> Evidence:
    """The cheapest candidate within one paired standard error of the best that fits
    ``limit_s`` seconds (None: any); the table says which rule decided.

    Example:
        >>> big = Candidate("b", 224, (0.80, 0.82, 0.79), 10.0)
        >>> small = Candidate("b", 128, (0.79, 0.83, 0.78), 4.0)
        >>> select([big, small]).choice.side   # within noise of the best: the cheaper side
        128
    """
    if not candidates:
        raise ValueError("select needs at least one candidate")
    order = range(len(candidates))
    best = max(order, key=lambda i: (candidates[i].mean, -candidates[i].seconds, -candidates[i].side))
    fits = [i for i in order if limit_s is None or candidates[i].seconds <= limit_s]
    if not fits:
        chosen = min(order, key=lambda i: candidates[i].seconds)
        rule = f"no candidate fits {limit_what} ({limit_s:.0f} s): the cheapest; training stops at the budget"
        return _evidence(candidates, best, chosen, rule, limit_s, limit_what, metric)
    top = best if best in fits else max(fits, key=lambda i: (candidates[i].mean, -candidates[i].seconds))
    near = [i for i in fits if i == top or _within(candidates[top], candidates[i])]
    chosen = min(near, key=lambda i: (candidates[i].seconds, candidates[i].side, -candidates[i].mean))
    c, t = candidates[chosen], candidates[top]
    if top != best:
        b = candidates[best]
        rule = f"{limit_what} ({limit_s:.0f} s) forces it: the best, {b.arch} at {b.side} px, costs {b.seconds:.0f} s"
    elif chosen == top:
        rule = "the best measured"
    else:
        gap, se = paired_gap(t, c)
        rule = (
            f"within one standard error of the best ({t.side} px{_base(t, c)}: gap {gap:+.3f} +- {se:.3f}) "
            f"and {t.seconds / max(c.seconds, 1e-9):.1f}x cheaper"
        )
    return _evidence(candidates, best, chosen, rule, limit_s, limit_what, metric)


def _within(best: Candidate, other: Candidate) -> bool:
    gap, se = paired_gap(best, other)
    return gap <= se


def _base(best: Candidate, chosen: Candidate) -> str:
    return f" on {best.arch}" if best.arch != chosen.arch else ""


def _evidence(
    candidates: Sequence[Candidate], best: int, chosen: int, rule: str, limit_s: float | None, limit_what: str, metric: str
) -> Evidence:
    rows = []
    for i, c in enumerate(candidates):
        gap, se = paired_gap(candidates[best], c)
        if i == best:
            verdict = "best"
        elif limit_s is not None and c.seconds > limit_s:
            verdict = f"over {limit_what}"
        else:
            verdict = "within 1 SE" if gap <= se else "worse"
        if limit_s is not None and c.seconds > limit_s and i == best:
            verdict = f"best, over {limit_what}"
        rows.append(Row(c.arch, c.side, c.mean, c.se, gap, se, c.seconds, verdict, c.weights))
    folds = len(candidates[0].scores)
    return Evidence(metric, folds, 0, tuple(rows), chosen, rule, limit_s=limit_s)
