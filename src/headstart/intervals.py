"""How sure a measured proportion is: the Wilson score interval, one home for it.

An accuracy of 0.64 on 50 images and on 5,000 are not the same claim: the first could be
0.50 or 0.76. Every figure headstart prints as a decision or a headline (the demo, the
recipe's comparisons, the model card) carries its interval from here.

Example:
    >>> from headstart.intervals import wilson
    >>> str(wilson(227, 318))
    '0.714 (95% interval 0.662-0.761, 318 images)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Interval:
    """A proportion and its interval: ``successes`` of ``trials`` at ``confidence``."""

    successes: int
    trials: int
    low: float
    high: float
    confidence: float = 0.95

    @property
    def estimate(self) -> float:
        """The measured proportion, successes / trials."""
        return self.successes / self.trials

    def __str__(self) -> str:
        return f"{self.estimate:.3f} ({self.confidence:.0%} interval {self.low:.3f}-{self.high:.3f}, {self.trials:,} images)"


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of ``successes`` out of ``trials``.

    Unlike the normal approximation (p +- z * standard error) it stays inside [0, 1] and
    keeps its coverage for small counts and for proportions near 0 or 1 (Brown, Cai and
    DasGupta, 2001), which is where accuracies on small validation sets live.

    Args:
        successes: how many were right, 0 <= successes <= trials.
        trials: how many were tried, at least 1.
        confidence: the two-sided level, strictly between 0 and 1.

    Example:
        >>> i = wilson(7, 10)
        >>> round(i.low, 4), round(i.high, 4)
        (0.3968, 0.8922)
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"wilson needs 0 <= successes <= trials and trials >= 1; got {successes} of {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1; got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, n = successes / trials, trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-17 off
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(successes, trials, low, high, confidence)


def accuracy_interval(accuracy: float, count: int, confidence: float = 0.95) -> Interval:
    """The Wilson interval of an accuracy measured on ``count`` images.

    Example:
        >>> accuracy_interval(0.64, 50).low > 0.49
        True
    """
    return wilson(round(accuracy * count), count, confidence)


@dataclass(frozen=True)
class Difference:
    """Accuracy of A minus accuracy of B on the same images, with its interval."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


@dataclass(frozen=True)
class PairedCounts:
    """McNemar's table of two classifiers A and B scored on the same n images."""

    both: int  # a: both right
    only_a: int  # b: A right, B wrong
    only_b: int  # c: B right, A wrong
    neither: int  # d

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @classmethod
    def of(cls, a_right: Sequence[bool], b_right: Sequence[bool]) -> PairedCounts:
        if len(a_right) != len(b_right):
            raise ValueError(f"paired scores need the same images: {len(a_right)} vs {len(b_right)} results.")
        pairs = list(zip(map(bool, a_right), map(bool, b_right)))
        return cls(pairs.count((True, True)), pairs.count((True, False)), pairs.count((False, True)), pairs.count((False, False)))


def paired_difference(counts: PairedCounts, confidence: float = 0.95) -> Difference:
    """Accuracy of A minus accuracy of B on the same images, with Newcombe's hybrid score
    interval (1998, paired data, method 10): each accuracy's Wilson bounds combined through
    the pairs' phi correlation. Two runs on the same images are correlated: the difference
    rests on the discordant pairs (McNemar's b and c), so its interval is far narrower than
    two separate intervals suggest.

    Example:
        >>> str(paired_difference(PairedCounts(both=800, only_a=60, only_b=30, neither=110)))
        '+0.0300 [+0.0115, +0.0488]'
    """
    n = counts.n
    if n <= 0:
        raise ValueError("paired_difference: no images.")
    a, b, c, d = counts.both, counts.only_a, counts.only_b, counts.neither
    first, second = wilson(a + b, n, confidence), wilson(a + c, n, confidence)
    p1, p2 = first.estimate, second.estimate
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(margins) if margins else 0.0
    l1, u1, l2, u2 = first.low, first.high, second.low, second.high
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    theta = p1 - p2
    return Difference(round(theta, 4), round(max(-1.0, theta - below), 4), round(min(1.0, theta + above), 4))
