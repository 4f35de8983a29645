"""``train DATA --exclude label_issues.csv``: train without the files a person marked."""

from __future__ import annotations

import os
from dataclasses import replace

from headstart.data.index import DataIndex
from headstart.label_issues.table import excluded_paths


def apply_exclude(index: DataIndex, listing: str | os.PathLike) -> tuple[DataIndex, list[str]]:
    """``index`` without the files ``listing`` excludes (paths relative to the data's root, or
    absolute), and the lines to print: how many were excluded, and which listed files are
    not in the data (one line).

    Example:
        >>> index, lines = apply_exclude(scan("pets/"), "doctor-pets/label_issues.csv")   # doctest: +SKIP
    """
    chosen, rule = excluded_paths(listing, index.root)
    present = {s.path for s in index.all_samples}
    samples = {split: [s for s in items if s.path not in chosen] for split, items in index.samples.items()}
    dropped = sum(len(v) for v in index.samples.values()) - sum(len(v) for v in samples.values())
    lines = [f"Excluded {dropped} images listed in {listing} ({rule})."]
    missing = sorted(chosen - present)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        lines.append(f"{len(missing)} files listed in {listing} are not in {index.root}: {shown}")
    return replace(index, samples=samples), lines
