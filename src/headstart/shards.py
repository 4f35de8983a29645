"""Images that live inside a shard: their addresses and the one reader of their bytes.

An image inside a parquet file or a WebDataset tar is named by an *address*, a string kept
in ``Sample.path`` like any file path, so split.csv, skipped.csv, the report, label-issue
pages and the doctor show and read it unchanged:

    /data/train-00000-of-00004.parquet#row=0012     row 12 of that file (zero-padded per
                                                   file, so addresses sort in row order)
    /data/shard-000003.tar#cat_0007.jpg            that member of the tar

``read_bytes`` returns an image's bytes from its address; ``preprocess.open_image`` calls it
for an address (a real file of that name wins), so decoders stay pinned: a tar member by
its extension first, a parquet row with no extension gets the whole pinned list.

Memory: a parquet read holds one row group's image column (the last few are kept, per
process, so reading in row order decodes each row group once); a tar read seeks to the
member through an index of member offsets built once per shard (headers only).

Example:
    >>> split_address("/d/train-00000-of-00001.parquet#row=07")
    ('/d/train-00000-of-00001.parquet', 'row=07')
    >>> split_address("/d/cat.png") is None
    True
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import threading
from collections import OrderedDict
from typing import Any

from headstart.files import MAX_FILE_BYTES, open_regular

ADDRESS = re.compile(r"^(?P<shard>.+\.(?:parquet|tar))#(?P<member>[^#]+)$", re.IGNORECASE)
PARQUET_ROW = re.compile(r"^row=(\d{1,12})$")
# A shard may be far larger than one image file; its members are still capped per image.
MAX_SHARD_BYTES = 1 << 44
_KEPT_ROW_GROUPS = 2  # per process: (image bytes of) the last row groups read
_KEPT_TAR_INDEXES = 16


class ShardError(OSError):
    """An address whose shard, row or member cannot be read (an OSError: callers that skip
    unreadable files skip it the same way)."""


def split_address(path: str | os.PathLike) -> tuple[str, str] | None:
    """(shard file, member) for an address, or None for a plain path."""
    match = ADDRESS.match(os.fspath(path))
    return (match["shard"], match["member"]) if match else None


def is_address(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an address inside a shard and not a file of that name."""
    return split_address(path) is not None and not os.path.lexists(path)


def shard_file(path: str | os.PathLike) -> str:
    """The file that holds ``path``: the shard of an address, else the path itself."""
    parts = split_address(path) if is_address(path) else None
    return parts[0] if parts else os.fspath(path)


def member_name(path: str | os.PathLike) -> str | None:
    """The part that names an image for its decoder (a tar member's name; None: unknown)."""
    parts = split_address(path)
    return parts[1] if parts and not PARQUET_ROW.match(parts[1]) else None


def read_bytes(path: str | os.PathLike) -> bytes:
    """The encoded bytes of the image at ``path`` (an address or a regular file).

    Example:
        >>> data = read_bytes("/d/train-00000-of-00001.parquet#row=07")   # doctest: +SKIP
    """
    parts = split_address(path) if is_address(path) else None
    if parts is None:
        with open_regular(path) as handle:
            return handle.read()
    shard, member = parts
    row = PARQUET_ROW.match(member)
    if shard.lower().endswith(".parquet"):
        if row is None:
            raise ShardError(f"{os.fspath(path)}: a parquet address names a row as #row=N")
        return _parquet_row(shard, int(row[1]))
    return _tar_member(shard, member)


# ---- parquet ---------------------------------------------------------------------------------

_lock = threading.Lock()
_row_groups: OrderedDict[tuple[str, int, int, int], list[bytes | None]] = OrderedDict()
_tar_indexes: OrderedDict[tuple[str, int, int], dict[str, tuple[int, int]]] = OrderedDict()


def _identity(shard: str) -> tuple[str, int, int]:
    st = os.stat(shard)
    return shard, st.st_size, st.st_mtime_ns  # a rewritten shard is read afresh


def hub_features(schema: Any) -> dict[str, Any]:
    """The Hugging Face ``features`` stored in a parquet schema's metadata ({} when absent)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
        features = info.get("info", {}).get("features", {})
        return features if isinstance(features, dict) else {}
    except (ValueError, AttributeError):
        return {}


def image_column(schema: Any) -> str | None:
    """The column that holds the images: the Hub's ``Image`` feature, else the first column of
    binary values or of ``{bytes, path}`` structs."""
    import pyarrow as pa

    features = hub_features(schema)
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "Image" and name in schema.names:
            return name
    for field in schema:
        kind = field.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return field.name
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            return field.name
    return None


def parquet_file(shard: str) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` of a regular file (a clear error without pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ShardError(f"{shard}: reading parquet needs pyarrow: pip install 'headstart[parquet]'") from exc
    return pq.ParquetFile(open_regular(shard, MAX_SHARD_BYTES))


def _image_bytes(values: list[Any]) -> list[bytes | None]:
    return [v.get("bytes") if isinstance(v, dict) else v for v in values]


def _parquet_row(shard: str, row: int) -> bytes:
    ident = _identity(shard)
    with _lock:
        for (name, size, mtime, first), images in _row_groups.items():
            if (name, size, mtime) == ident and first <= row < first + len(images):
                _row_groups.move_to_end((name, size, mtime, first))
                return _checked(shard, row, images[row - first])
    with parquet_file(shard) as handle:
        column = image_column(handle.schema_arrow)
        if column is None:
            raise ShardError(f"{shard}: no image column (binary or {{bytes, path}} structs)")
        first = 0
        for group in range(handle.metadata.num_row_groups):
            count = handle.metadata.row_group(group).num_rows
            if row < first + count:
                images = _image_bytes(handle.read_row_group(group, columns=[column]).column(0).to_pylist())
                break
            first += count
        else:
            raise ShardError(f"{shard}#row={row}: the file has {first} rows")
    with _lock:
        _row_groups[(ident[0], ident[1], ident[2], first)] = images
        while len(_row_groups) > _KEPT_ROW_GROUPS:
            _row_groups.popitem(last=False)
    return _checked(shard, row, images[row - first])


def _checked(shard: str, row: int, data: bytes | None) -> bytes:
    if not data:
        raise ShardError(f"{shard}#row={row}: the image cell is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ShardError(f"{shard}#row={row}: {len(data):,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for one image")
    return data


# ---- tar (WebDataset) ----------------------------------------------------------------------


def safe_member(name: str) -> bool:
    """Whether a tar member name may be read: relative, no '..', no NUL, no '#'."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "\0" not in name and "#" not in name


def tar_members(shard: str) -> dict[str, tuple[int, int]]:
    """{member name: (data offset, size)} of a tar's regular, safely named members (headers
    only are read: the data is seeked over)."""
    ident = _identity(shard)
    with _lock:
        if ident in _tar_indexes:
            _tar_indexes.move_to_end(ident)
            return _tar_indexes[ident]
    found: dict[str, tuple[int, int]] = {}
    try:
        with open_regular(shard, MAX_SHARD_BYTES) as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
            for info in archive:
                if info.isreg() and safe_member(info.name):
                    found[info.name] = (info.offset_data, info.size)
                archive.members = []  # type: ignore[attr-defined]  # headers not kept: memory stays one member's
    except tarfile.TarError as exc:
        raise ShardError(f"{shard}: not a readable tar ({exc})") from exc
    with _lock:
        _tar_indexes[ident] = found
        while len(_tar_indexes) > _KEPT_TAR_INDEXES:
            _tar_indexes.popitem(last=False)
    return found


def _tar_member(shard: str, member: str) -> bytes:
    where = tar_members(shard).get(member)
    if where is None:
        raise ShardError(f"{shard}#{member}: no such regular member in the tar")
    offset, size = where
    if size > MAX_FILE_BYTES:
        raise ShardError(f"{shard}#{member}: {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for one image")
    with open_regular(shard, MAX_SHARD_BYTES) as handle:
        handle.seek(offset)
        return handle.read(size)
