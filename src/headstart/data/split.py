"""Stratified train/validation split with a fixed seed, saved to the run folder.

The split file (``split.csv``: split, path, labels) makes evaluation reproducible and lets
``--resume`` and ``evaluate`` use the very same images without re-deriving anything.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter, defaultdict
from pathlib import Path

from headstart.data.index import DataIndex, Sample
from headstart.errors import ArtifactError
from headstart.files import atomic_write


def stratified_split(samples: list[Sample], val_fraction: float, seed: int) -> dict[str, list[Sample]]:
    """Split per class (multi-label: per rarest label) so each class keeps its proportion.

    A class with one image stays in training; a class with 2+ images gets at least one
    validation image.
    """
    frequency = Counter(i for s in samples for i in s.labels)
    groups: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        key = min(sample.labels, key=lambda i: (frequency[i], i)) if sample.labels else -1
        groups[key].append(sample)
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for key in sorted(groups):
        items = sorted(groups[key], key=lambda s: s.path)
        rng.shuffle(items)
        n_val = 0 if len(items) < 2 else max(1, round(len(items) * val_fraction))
        n_val = min(n_val, len(items) - 1)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return {"train": train, "val": val}


def write_split(path: Path, index: DataIndex) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["split", "path", "labels"])
    for split, samples in index.samples.items():
        for s in samples:
            writer.writerow([split, s.path, ";".join(index.classes[i] for i in s.labels)])
    atomic_write(path, text.getvalue().encode("utf-8"))


def read_split(path: Path, classes: list[str]) -> dict[str, list[Sample]]:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the run folder is incomplete.")
    position = {c: i for i, c in enumerate(classes)}
    out: dict[str, list[Sample]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            names = [n for n in row["labels"].split(";") if n]
            try:
                labels = tuple(position[n] for n in names)
            except KeyError as exc:
                raise ArtifactError(f"{path}: label {exc} is not a class of this run.") from None
            out[row["split"]].append(Sample(row["path"], labels))
    return dict(out)
