"""Accuracy intervals: Wilson for one proportion, Newcombe's paired difference."""

import math

import pytest

from headstart.intervals import PairedCounts, paired_difference, wilson


def test_wilson_matches_the_published_value():
    # Newcombe (1998), 81 of 263: Wilson 0.2553 to 0.3662.
    interval = wilson(81, 263)
    assert (interval.low, interval.high) == (0.2553, 0.3662)


def test_wilson_stays_inside_zero_and_one_at_the_edges():
    assert wilson(0, 20).low == 0.0 and 0.1 < wilson(0, 20).high < 0.2
    assert wilson(20, 20).high == 1.0 and wilson(20, 20).low > 0.8


@pytest.mark.parametrize("bad", [(1, 0), (-1, 5), (6, 5)])
def test_wilson_refuses_impossible_counts(bad):
    with pytest.raises(ValueError):
        wilson(*bad)


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
