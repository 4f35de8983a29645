"""The demo's data and summary, and the interval every headline accuracy carries."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from headstart.demo import data_folder, one_per_class, summary
from headstart.intervals import accuracy_interval, wilson


def _images() -> dict[str, list[Path]]:
    root = data_folder()
    return {d.name: sorted(d.glob("*.png")) for d in sorted(root.iterdir()) if d.is_dir()}


def test_the_bundled_sample_is_big_enough_to_quote_and_small_enough_to_ship():
    images = _images()
    counts = {c: len(files) for c, files in images.items()}
    assert len(counts) >= 5 and min(counts.values()) >= 200, counts
    assert sum(counts.values()) >= 1500  # the default 20 % validation split then holds >= 300
    size = sum(f.stat().st_size for files in images.values() for f in files)
    assert size < 15e6, f"{size / 1e6:.1f} MB of package data"
    assert (data_folder() / "LICENSE.md").is_file()


def test_every_demo_image_is_at_the_bundled_base_native_side():
    """224 x 224 each, so the demo trains at full size whatever rule the planner uses for sides."""
    sides = set()
    for files in _images().values():
        for f in files[::25]:
            with Image.open(f) as image:
                sides.add(image.size)
    assert sides == {(224, 224)}


def test_no_file_name_is_in_two_classes():
    seen: dict[str, str] = {}
    for cls, files in _images().items():
        for f in files:
            assert f.name not in seen, f"{f.name} in {seen.get(f.name)} and {cls}"
            seen[f.name] = cls


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(7, 10, 0.3968, 0.8922), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (32, 50, 0.5014, 0.7586)],
)
def test_wilson_matches_published_values(successes, trials, low, high):
    interval = wilson(successes, trials)
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)
    assert interval.low <= interval.estimate <= interval.high


def test_the_interval_narrows_with_more_images():
    small, large = accuracy_interval(0.7, 50), accuracy_interval(0.7, 5000)
    assert large.high - large.low < (small.high - small.low) / 5


@pytest.mark.parametrize(("successes", "trials", "confidence"), [(11, 10, 0.95), (1, 0, 0.95), (-1, 10, 0.95), (5, 10, 1.0)])
def test_wilson_refuses_impossible_counts(successes, trials, confidence):
    with pytest.raises(ValueError, match="wilson|confidence"):
        wilson(successes, trials, confidence)


def test_the_summary_quotes_the_interval_and_names_the_report():
    lines = summary(0.714, 318, Path("runs/demo/report.html"))
    assert "95% interval 0.662-0.761, 318 images" in lines[0]
    assert lines[1].startswith("next: open runs/demo/report.html")
    opened = summary(0.714, 318, Path("runs/demo/report.html"), opened=True)
    assert "open in your browser" in opened[1]
    assert "no browser" in summary(0.714, 318, Path("runs/demo/report.html"), opened=False)[1]
    assert not any("report" in line for line in summary(0.714, 318, None))


def test_one_held_out_image_per_class_in_class_order():
    assert one_per_class([("b1", 1), ("a1", 0), ("b2", 1)], ["a", "b"]) == ["a1", "b1"]
