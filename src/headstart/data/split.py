"""Stratified train/validation split with a fixed seed, saved to the run folder.

The split file (``split.csv``: split, path, labels) makes evaluation reproducible and lets
``--resume`` and ``evaluate`` use the very same images without re-deriving anything.

``labels`` holds the image's class names joined by ';'. A row whose names could not be
told apart that way (a class folder called ``cat;dog``, or a name starting with ``[``) holds
them as a JSON list instead (``["cat;dog"]``); files written before, which never hold
such a list, read as they always did.
"""

from __future__ import annotations

import csv
import io
import json
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


def labels_cell(names: list[str]) -> str:
    """The ``labels`` cell for ``names``: ';'-joined, or a JSON list when a name holds a ';'
    or starts with '[' (a JSON list is told apart by its first character).

    Example:
        >>> labels_cell(["cat", "dog"]), labels_cell(["cat;dog"])
        ('cat;dog', '["cat;dog"]')
    """
    if any(";" in n or n.startswith("[") for n in names):
        return json.dumps(names, ensure_ascii=False)
    return ";".join(names)


def label_names(text: str) -> list[str]:
    """``labels_cell`` read back (and the ';'-joined cells every release wrote)."""
    if text.startswith("["):
        try:
            names = json.loads(text)
        except ValueError:
            names = None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    return [n for n in text.split(";") if n]


def write_split(path: Path, index: DataIndex) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["split", "path", "labels"])
    for split, samples in index.samples.items():
        for s in samples:
            writer.writerow([split, s.path, labels_cell([index.classes[i] for i in s.labels])])
    atomic_write(path, text.getvalue().encode("utf-8"))


def read_split(path: Path, classes: list[str]) -> dict[str, list[Sample]]:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the run folder is incomplete.")
    position = {c: i for i, c in enumerate(classes)}
    out: dict[str, list[Sample]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            names = label_names(row["labels"])
            try:
                labels = tuple(position[n] for n in names)
            except KeyError as exc:
                raise ArtifactError(f"{path}: label {exc} is not a class of this run.") from None
            out[row["split"]].append(Sample(row["path"], labels))
    return dict(out)
