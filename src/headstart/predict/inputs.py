"""What to predict: files, folders and CSVs with a ``path`` column, read one at a time.

The one input walker for ``headstart predict``, ``Classifier.predict`` and
``Classifier.predict_to_csv``: a folder is walked lazily in the sorted order indexing uses
(``headstart.data.index.walk_files``), so memory stays constant however many files it holds.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from headstart import shards
from headstart.data.index import walk_files
from headstart.data.sources import image_addresses, is_shard
from headstart.errors import DataError


def _csv_paths(path: Path) -> Iterator[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        column = next((f for f in reader.fieldnames or [] if f.strip().lower() == "path"), None)
        if column is None:
            raise DataError(f"CSV {path} has no 'path' column; list the images to predict under a 'path' header.")
        for row in reader:
            p = (row.get(column) or "").strip()
            if p:
                yield p if os.path.isabs(p) else str(path.parent / p)


def iter_sources(inputs: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Files as given; folders: their images, recursively, sorted (a folder with no images but
    parquet or ``.tar`` shards: the images inside them); ``.csv``: its ``path`` column
    (relative paths are relative to the CSV's folder); a shard or an address
    (``shard.tar#key.jpg``): its images.

    Example:
        >>> list(iter_sources(["photos/", "more.csv", "one.jpg"]))   # doctest: +SKIP
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir() and not any(image for _, image, _ in walk_files(path)):  # stops at the first image
            yield from (a for p, _, problem in walk_files(path) if is_shard(p) and not problem for a in image_addresses(p))
        elif path.is_dir():
            yield from (p for p, image, _ in walk_files(path) if image)  # a special file: its row says why it is not read
        elif path.is_file() and path.suffix.lower() == ".csv":
            yield from _csv_paths(path)
        elif path.is_file() and is_shard(path):  # parquet / WebDataset: every image inside, by address
            yield from image_addresses(path)
        elif shards.is_address(item):
            yield os.fspath(item)
        elif path.is_file() or path.is_symlink() or path.exists():
            yield str(path)  # not a regular file (a FIFO, a link to /dev/zero): its row says so; it is never read
        else:
            raise DataError(f"{path} does not exist; give image files, folders of images, or a CSV with a 'path' column.")


def shard_of(sources: Iterable[str], shard: tuple[int, int]) -> Iterator[str]:
    """Every n-th source from the k-th, for ``shard=(k, n)``."""
    k, n = shard
    return itertools.islice(sources, k, None, n)
