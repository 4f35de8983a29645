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

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from headstart import shards
from headstart.data.sources.found import Found
from headstart.data.sources.parquet import scan_parquet
from headstart.data.sources.webdataset import scan_webdataset
from headstart.errors import DataError
from headstart.preprocess import IMAGE_EXTENSIONS

Walk = Callable[[Path], Iterator[tuple[str, bool, str]]]  # data.index.walk_files

HUB_PREFIXES = ("hf://datasets/", "hf:/datasets/")  # the second: after pathlib collapsed the "//"


def detect(data: str, walk: Walk) -> Found | None:
    """The index of ``data`` when it is a parquet file, a ``.tar`` shard, a folder holding only
    such shards, or a ``hf://datasets/NAME`` name; None for a folder of images or a CSV.
    ``walk`` lists a folder's files (``data.index.walk_files``: the one folder walk)."""
    hub = next((p for p in HUB_PREFIXES if data.startswith(p)), None)
    if hub is not None:
        data = fetch_hub_dataset(data[len(hub) :])
    root = Path(data).expanduser()
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".parquet":
            return scan_parquet(root.resolve().parent, [root.resolve()])  # root: its folder, as a CSV's
        if suffix == ".tar":
            return scan_webdataset(root.resolve().parent, [root.resolve()])
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


def fetch_hub_dataset(name: str) -> str:
    """The local folder of a Hub data set's parquet files, fetched into the usual Hugging Face
    cache (``huggingface_hub.snapshot_download``); offline, a DataError that says so.

    Example:
        >>> fetch_hub_dataset("user/pets")      # doctest: +SKIP
        '/root/.cache/huggingface/hub/datasets--user--pets/snapshots/<sha>'
    """
    where = f"hf://datasets/{name}"
    if not name or name.startswith("/") or ".." in name.split("/") or name.count("/") > 1:
        raise DataError(f"{where}: a Hub data set is named USER/NAME (or NAME).")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise DataError(f"{where}: fetching a Hub data set needs huggingface_hub: pip install 'headstart[train]'.") from exc
    try:
        return snapshot_download(repo_id=name, repo_type="dataset", allow_patterns=["*.parquet", "**/*.parquet"])
    except Exception as exc:  # offline (HF_HUB_OFFLINE, no route), unknown or gated repo: one line
        raise DataError(
            f"{where}: fetching a Hub data set needs the network and it failed ({type(exc).__name__}); "
            f"download it elsewhere (huggingface-cli download --repo-type dataset {name} --local-dir DIR) and pass DIR."
        ) from exc


def is_shard(path: str | Path) -> bool:
    return os.fspath(path).lower().endswith((".parquet", ".tar"))


def image_addresses(shard: str | Path) -> Iterator[str]:
    """The address of every image in one parquet or tar shard, labelled or not, in order
    (parquet: the row count from the footer; tar: its regular image members).

    Example:
        >>> next(image_addresses("train-00000-of-00001.parquet"))   # doctest: +SKIP
        '/abs/train-00000-of-00001.parquet#row=0'
    """
    shard = os.path.abspath(shard)
    try:
        if shard.lower().endswith(".parquet"):
            with shards.parquet_file(shard) as handle:
                total = handle.metadata.num_rows
            width = max(1, len(str(max(0, total - 1))))
            yield from (f"{shard}#row={row:0{width}d}" for row in range(total))
        else:
            yield from (f"{shard}#{name}" for name in shards.tar_members(shard) if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
    except shards.ShardError as exc:
        raise DataError(str(exc)) from exc
    except Exception as exc:  # pyarrow's ArrowInvalid and kin
        raise DataError(f"{shard} is not a readable parquet or tar shard ({type(exc).__name__}: {exc}).") from exc


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
