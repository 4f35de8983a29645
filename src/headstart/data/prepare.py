"""Decode a split's files once and map every sample to its row of the decoded array."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.data.index import Sample, Skipped
from headstart.data.store import DecodedImages, decode_all
from headstart.files import atomic_write
from headstart.preprocess import Preprocess


@dataclass
class Prepared:
    """Decoded images and their split into rows of the decoded array."""

    images: DecodedImages
    rows: dict[str, np.ndarray]  # split -> rows of images.array
    samples: dict[str, list[Sample]]  # split -> samples (readable ones only)
    skipped: list[Skipped]


def prepare(samples: dict[str, list[Sample]], preprocess: Preprocess, cache: bool, skipped: list[Skipped]) -> Prepared:
    """Decode every image once; unreadable ones are dropped from every split and listed."""
    paths = sorted({s.path for split in samples.values() for s in split})
    images = decode_all(paths, preprocess, cache=cache)
    row_of = {p: i for i, p in enumerate(paths)}
    bad = {paths[i]: reason for i, reason in images.failed.items()}
    skipped = skipped + [Skipped(p, r) for p, r in sorted(bad.items())]
    kept = {split: [s for s in items if s.path not in bad] for split, items in samples.items()}
    rows = {split: np.array([row_of[s.path] for s in items], dtype=np.int64) for split, items in kept.items()}
    return Prepared(images, rows, kept, skipped)


def write_skipped(path: Path, skipped: list[Skipped]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "reason"])
    writer.writerows((s.path, s.reason) for s in skipped)
    atomic_write(path, text.getvalue().encode("utf-8"))
