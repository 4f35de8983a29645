"""The paired accuracy difference (Newcombe's hybrid score interval); Wilson is tested in test_demo.py."""

import math

import pytest

from headstart.intervals import PairedCounts, paired_difference, wilson


def test_paired_difference_is_close_to_the_normal_interval_on_many_images():
    counts = PairedCounts(both=8000, only_a=600, only_b=300, neither=1100)
    n, b, c = counts.n, counts.only_a, counts.only_b
    se = math.sqrt((b + c) / n**2 - (b - c) ** 2 / n**3)
    interval = paired_difference(counts)
    assert interval.estimate == 0.03
    assert interval.low == pytest.approx(0.03 - 1.96 * se, abs=5e-4)
    assert interval.high == pytest.approx(0.03 + 1.96 * se, abs=5e-4)


def test_paired_difference_is_narrower_than_unpaired_intervals_and_antisymmetric():
    a_right = [True] * 90 + [False] * 10
    b_right = [True] * 85 + [False] * 15  # B is wrong on A's errors and 5 more
    ab = paired_difference(PairedCounts.of(a_right, b_right))
    ba = paired_difference(PairedCounts.of(b_right, a_right))
    assert (ab.estimate, ab.low, ab.high) == (-ba.estimate, -ba.high, -ba.low)
    assert ab.low > 0  # 5 discordant pairs all one way: a real difference ...
    assert wilson(90, 100).low < wilson(85, 100).high  # ... that separate intervals would call a tie


def test_paired_counts_need_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        PairedCounts.of([True, False], [True])
