"""95 % intervals for accuracies: one proportion (Wilson) and the paired difference of two
classifiers scored on the same images (Newcombe's hybrid score interval).

An accuracy on n test images is a binomial proportion; Wilson's score interval keeps its
coverage near 95 % down to small n and near 0 or 1, where the normal (Wald) interval does
not. Two runs scored on the *same* images are correlated: the difference of their
accuracies depends only on the images where exactly one is right (the discordant pairs,
McNemar's b and c), so its interval is far narrower than two separate intervals suggest.
Newcombe (1998, "Improved confidence intervals for the difference between binomial
proportions based on paired data", method 10) combines the two Wilson intervals with the
pairs' correlation.

Example:
    >>> wilson(81, 263).low, wilson(81, 263).high
    (0.2553, 0.3662)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % interval (all three rounded to 4 decimals)."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}]"


def _wilson_bounds(successes: int, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """The proportion ``successes / n`` with Wilson's score interval.

    Example:
        >>> str(wilson(870, 1000))
        '0.8700 [0.8477, 0.8894]'
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson({successes}, {n}): need n > 0 and 0 <= successes <= n.")
    low, high = _wilson_bounds(successes, n, z)
    return Interval(round(successes / n, 4), round(low, 4), round(high, 4))


@dataclass(frozen=True)
class PairedCounts:
    """McNemar's table of two classifiers A and B on the same n images."""

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


def paired_difference(counts: PairedCounts, z: float = Z95) -> Interval:
    """Accuracy of A minus accuracy of B on the same images, with Newcombe's interval
    (method 10: Wilson bounds of each accuracy, combined through the pairs' phi correlation).

    Example:
        >>> str(paired_difference(PairedCounts(both=800, only_a=60, only_b=30, neither=110)))
        '0.0300 [0.0115, 0.0488]'
    """
    n = counts.n
    if n <= 0:
        raise ValueError("paired_difference: no images.")
    a, b, c, d = counts.both, counts.only_a, counts.only_b, counts.neither
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = _wilson_bounds(a + b, n, z)
    l2, u2 = _wilson_bounds(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(margins) if margins else 0.0
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    theta = p1 - p2
    return Interval(round(theta, 4), round(max(-1.0, theta - below), 4), round(min(1.0, theta + above), 4))
