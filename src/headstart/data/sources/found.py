"""What a shard scan finds, before ``data.index`` turns it into a DataIndex."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# The Hub's split names in file or folder names: train-00000-of-00004.parquet, data/test-*,
# default/validation/0000.parquet; headstart's names on the right.
_SPLIT = re.compile(r"^(train|validation|valid|val|test)(?:[-_.]|$)", re.IGNORECASE)
_SPLITS = {"train": "train", "validation": "val", "valid": "val", "val": "val", "test": "test"}


@dataclass
class Found:
    """Labelled images inside shards: split -> [(address, label names)]."""

    root: Path
    layout: str  # "parquet" | "webdataset"
    multilabel: bool
    rows: dict[str, list[tuple[str, tuple[str, ...]]]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (address or shard, reason)
    notes: list[str] = field(default_factory=list)


def split_of(shard: Path, root: Path) -> str:
    """The split a shard belongs to by its name or a folder's below ``root`` ("all": none).

    Example:
        >>> split_of(Path("/d/data/validation-00000-of-00001.parquet"), Path("/d"))
        'val'
    """
    names = [shard.name, *(p.name for p in shard.relative_to(root).parents if p.name)] if shard != root else [shard.name]
    for name in names:
        match = _SPLIT.match(name)
        if match:
            return _SPLITS[match[1].lower()]
    return "all"


def group_by_split(shards: list[Path], root: Path) -> dict[str, list[Path]]:
    """{split: shards}; every shard must name a split, or none may (then all are "all")."""
    from headstart.errors import DataError

    groups: dict[str, list[Path]] = {}
    for shard in shards:
        groups.setdefault(split_of(shard, root), []).append(shard)
    if "all" in groups and len(groups) > 1:
        raise DataError(
            f"{groups['all'][0]} names no split (train-*, validation-*, test-*) while other shards in {root} do; "
            "rename it or pass a folder with one kind."
        )
    if len(groups) > 1 and "train" not in groups:
        raise DataError(f"{root} has shards for {sorted(groups)} but none for train (train-*.parquet / train-*.tar).")
    return groups if len(groups) > 1 else {"all": shards}
