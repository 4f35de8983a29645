"""Uncertainty of a measured proportion: the 95 % Wilson score interval.

Accuracy on n held-out images is a proportion; its interval says how far the true accuracy
may be from the measured one. Wilson's interval (not the normal approximation p +- 1.96
sqrt(p(1-p)/n)) stays inside [0, 1] and keeps its coverage for small n and for p near 0 or
1, where a few held-out images are the common case.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile: a two-sided 95 % interval


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (lower, upper) for ``successes`` out of ``n``.

    Example:
        >>> [round(v, 3) for v in wilson(90, 100)]
        [0.826, 0.945]
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must be within 0..n={n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 the bound is exactly 0 or 1; the float arithmetic lands a hair inside.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return (lower, upper)
