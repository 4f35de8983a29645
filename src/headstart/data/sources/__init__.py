"""Data sources beyond folders and CSVs: parquet (the Hugging Face Hub's layout) and
WebDataset tar shards, indexed without unpacking and streamed (one row group or one member
in memory at a time). Each image is named by an address (``headstart.shards``) kept in
``Sample.path``; ``detect`` is the hook ``data.index.scan`` calls.

Example:
    >>> found = detect("shards/", walk_files)      # doctest: +SKIP
    >>> found.layout
    'webdataset'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from headstart.data.sources.found import Found
from headstart.data.sources.parquet import scan_parquet
from headstart.data.sources.webdataset import scan_webdataset
from headstart.errors import DataError

Walk = Callable[[Path], Iterator[tuple[str, bool, str]]]  # data.index.walk_files

HUB_PREFIX = "hf://datasets/"


def detect(data: str, walk: Walk) -> Found | None:
    """The index of ``data`` when it is a parquet file, a ``.tar`` shard, a folder holding only
    such shards, or a ``hf://datasets/NAME`` name; None for a folder of images or a CSV.
    ``walk`` lists a folder's files (``data.index.walk_files``: the one folder walk)."""
    if data.startswith(HUB_PREFIX):
        raise DataError(
            f"{data}: fetching a Hub data set needs the network, which headstart does not use; download it first "
            f"(huggingface-cli download --repo-type dataset {data[len(HUB_PREFIX) :]} --local-dir DIR) and pass DIR."
        )
    root = Path(data).expanduser()
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".parquet":
            return scan_parquet(root.resolve(), [root.resolve()])
        if suffix == ".tar":
            return scan_webdataset(root.resolve(), [root.resolve()])
        return None
    if not root.is_dir():
        return None
    root = root.resolve()
    parquet, tars, images = _shards_below(root, walk)
    if images or not (parquet or tars):
        return None  # a folder of images (shards next to images are ignored, as other files)
    if parquet and tars:
        raise DataError(f"{root} holds both parquet and .tar shards; pass a folder with one kind.")
    return scan_parquet(root, parquet) if parquet else scan_webdataset(root, tars)


def _shards_below(root: Path, walk: Walk) -> tuple[list[Path], list[Path], bool]:
    """(parquet files, tar files, whether any image file exists) below ``root``, sorted."""
    parquet: list[Path] = []
    tars: list[Path] = []
    for path, image, problem in walk(root):
        if image:
            return [], [], True
        if problem:
            continue
        lower = path.lower()
        if lower.endswith(".parquet"):
            parquet.append(Path(path))
        elif lower.endswith(".tar"):
            tars.append(Path(path))
    return parquet, tars, False
