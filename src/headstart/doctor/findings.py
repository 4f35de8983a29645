"""From indexed files and what was read from them to findings, each one line plus details."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from headstart import shards
from headstart.data.index import DataIndex
from headstart.doctor.inspect import FileFacts, extension_format
from headstart.doctor.similar import exact_groups, near_groups
from headstart.files import file_digest

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Entry:
    """One labelled file of the index: where it is, its split, its class names."""

    path: str
    split: str  # train / val / test, or "all" when the data has no splits
    labels: tuple[str, ...]


@dataclass
class Finding:
    check: str  # stable identifier, e.g. "leakage", "unreadable"
    severity: str  # error | warning | info
    message: str  # one line for the summary
    items: list | dict = field(default_factory=list)  # paths, groups of {path, split, labels}, or counts by name


def entries_of(index: DataIndex) -> list[Entry]:
    return [Entry(s.path, split, tuple(index.classes[i] for i in s.labels)) for split, samples in index.samples.items() for s in samples]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- checks that need only the index (cheap: run by `train` too) ---------------------------
def class_name_clashes(classes: list[str]) -> list[Finding]:
    """Class names equal up to case, spaces, '_' and '-': almost always one class split in two."""
    by_key: dict[str, list[str]] = defaultdict(list)
    for name in classes:
        by_key[re.sub(r"[\s_\-]+", "", name.casefold())].append(name)
    clashes = [names for names in by_key.values() if len(names) > 1]
    spaced = [n for n in classes if n != n.strip()]
    found = []
    if clashes:
        shown = "; ".join(" / ".join(repr(n) for n in names) for names in clashes[:5])
        found.append(
            Finding(
                "class_names",
                "warning",
                f"class names that differ only by case or spacing ({shown}): merge the folders if they are one class.",
                [{"names": names} for names in clashes],
            )
        )
    if spaced:
        found.append(
            Finding("class_name_spaces", "info", f"class names with leading/trailing spaces: {spaced[:5]}", [{"name": n} for n in spaced])
        )
    return found


def imbalance(index: DataIndex, warn_ratio: float = 10.0, note_ratio: float = 3.0) -> list[Finding]:
    """Largest / smallest class count in the training data (train split, or all)."""
    split = "train" if "train" in index.samples else None
    counts = index.class_counts(split)
    sizes = {c: counts.get(c, 0) for c in index.classes}
    if len(sizes) < 2:
        return []
    small, large = min(sizes, key=sizes.get), max(sizes, key=sizes.get)  # type: ignore[arg-type]
    ratio = sizes[large] / max(1, sizes[small])
    if ratio < note_ratio:
        return []
    severity = "warning" if ratio >= warn_ratio else "info"
    return [
        Finding(
            "imbalance",
            severity,
            f"class imbalance {ratio:.1f}:1 ('{large}' {sizes[large]} vs '{small}' {sizes[small]} images"
            f"{' in train' if split else ''}); consider --class-weights balanced or --oversample.",
            [{"class": c, "count": n} for c, n in sorted(sizes.items(), key=lambda kv: kv[1])],
        )
    ]


def _describe(entries: list[Entry], group: list[int]) -> list[dict]:
    return [{"path": entries[i].path, "split": entries[i].split, "labels": list(entries[i].labels)} for i in group]


def classify_groups(entries: list[Entry], groups: list[list[int]], kind: str, within_severity: str) -> list[Finding]:
    """Split groups of same-looking files into label conflicts, split leakage, same class."""
    conflict, leak, within = [], [], []
    for group in groups:
        labels = {entries[i].labels for i in group}
        splits = {entries[i].split for i in group}
        if len(labels) > 1:
            conflict.append(_describe(entries, group))
        if len(splits) > 1:
            leak.append(_describe(entries, group))
        if len(labels) == 1 and len(splits) == 1:
            within.append(_describe(entries, group))
    word = "Identical" if kind == "exact" else "Near-identical"
    prefix = "" if kind == "exact" else "near_"
    found = []
    if conflict:
        found.append(
            Finding(
                f"{prefix}label_conflict",
                "error",
                f"{word} images with different labels ({_plural(len(conflict), 'group')}): fix or remove them.",
                conflict,
            )
        )
    if leak:
        found.append(
            Finding(
                f"{prefix}leakage",
                "error",
                f"{word} images in more than one of train/val/test ({_plural(len(leak), 'group')}): "
                "validation scores are inflated; keep each in one split.",
                leak,
            )
        )
    if within:
        extra = sum(len(g) - 1 for g in within)
        found.append(
            Finding(
                f"{prefix}duplicates",
                within_severity,
                f"{extra} extra {'copy' if extra == 1 else 'copies'} of {word.lower()} images within a class ({_plural(len(within), 'group')}); "
                "a random validation split would see some of them in training.",
                within,
            )
        )
    return found


def _parquet_row(path: str) -> bool:
    """An image in a parquet row has no name, so no extension to disagree with its content."""
    return shards.is_address(path) and shards.member_name(path) is None


def quick_duplicates(entries: list[Entry]) -> list[Finding]:
    """Identical files across classes or splits, hashing only files whose sizes collide
    across them (one stat per file, a read only for the few candidates)."""
    sizes: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        try:
            sizes[os.stat(e.path).st_size].append(i)
        except OSError:
            continue
    candidates = [g for g in sizes.values() if len({(entries[i].split, entries[i].labels) for i in g}) > 1]
    groups = []
    for group in candidates:
        digests = []
        for i in group:
            try:
                digests.append(file_digest(entries[i].path))  # in chunks, regular files only
            except OSError:
                digests.append(f"unreadable-{i}")
        groups += [[group[j] for j in g] for g in exact_groups(digests)]
    return [f for f in classify_groups(entries, groups, "exact", "info") if f.check != "duplicates"]


def quick_checks(index: DataIndex) -> list[Finding]:
    """The checks `train` runs before decoding: class names, imbalance, duplicates across
    classes/splits. They never fail a run."""
    return class_name_clashes(index.classes) + imbalance(index) + quick_duplicates(entries_of(index))


# -- checks on the facts read from every file ---------------------------------------------
def file_checks(facts: dict[str, FileFacts], min_side: int, max_pixels: int) -> list[Finding]:
    found = []
    bad = [{"path": f.path, "reason": f.error} for f in facts.values() if f.error]
    if bad:
        found.append(Finding("unreadable", "warning", f"{_plural(len(bad), 'file')} that cannot be decoded (training skips them).", bad))
    wrong = [
        {"path": f.path, "content": f.sniffed, "extension": os.path.splitext(f.path)[1]}
        for f in facts.values()
        if not f.error and f.sniffed not in ("unknown", extension_format(f.path)) and not _parquet_row(f.path)
    ]
    if wrong:
        found.append(
            Finding(
                "wrong_extension",
                "warning",
                f"{_plural(len(wrong), 'file')} whose content is another format than the extension says "
                f"(e.g. {wrong[0]['path']} is {wrong[0]['content']}); rename them so other tools read them.",
                wrong,
            )
        )
    tiny = [
        {"path": f.path, "size": [f.width, f.height]}
        for f in facts.values()
        if not f.error and not f.bomb and min(f.width, f.height) < min_side
    ]
    if tiny:
        found.append(Finding("tiny", "warning", f"{_plural(len(tiny), 'image')} smaller than {min_side} px on a side.", tiny))
    huge = [{"path": f.path, "pixels": f.pixels} for f in facts.values() if f.bomb]
    if huge:
        found.append(
            Finding(
                "huge",
                "warning",
                f"{_plural(len(huge), 'image')} above {max_pixels / 1e6:.0f} megapixels (decompression-bomb sized, not decoded); "
                "Pillow refuses the largest: shrink them.",
                huge,
            )
        )
    modes = Counter(f.mode for f in facts.values() if not f.error and f.mode)
    if len(modes) > 1:
        shown = ", ".join(f"{m} {n}" for m, n in modes.most_common())
        found.append(Finding("mode_mix", "info", f"mixed colour modes ({shown}); all are converted to RGB for training.", dict(modes)))
    return found


def duplicate_checks(entries: list[Entry], facts: dict[str, FileFacts], near_threshold: int) -> list[Finding]:
    readable = [i for i, e in enumerate(entries) if facts[e.path].sha]
    exact = [[readable[j] for j in g] for g in exact_groups([facts[entries[i].path].sha for i in readable])]
    found = classify_groups(entries, exact, "exact", "warning")
    if near_threshold < 0:
        return found
    hashed = [i for i in readable if facts[entries[i].path].dhash]
    hashes = np.array([np.frombuffer(bytes.fromhex(facts[entries[i].path].dhash), np.uint8) for i in hashed], dtype=np.uint8)
    near = [[hashed[j] for j in g] for g in near_groups(hashes, near_threshold)]
    # groups made only of byte-identical copies were reported above
    near = [g for g in near if len({facts[entries[i].path].sha for i in g}) > 1]
    return found + classify_groups(entries, near, "near", "info")
