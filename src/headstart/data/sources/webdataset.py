"""WebDataset tar shards: ``{key}.{jpg,png,webp,...}`` with ``{key}.cls`` (an integer or a
class name) or ``{key}.json`` (``{"label": ...}``, a list of names for multi-label).

Each tar is read once, as a stream (stdlib ``tarfile``, mode ``r|``): only regular members
with safe names (relative, no ``..``), label members of at most 64 KiB; image bytes are
skipped, never held, and read later by address (``headstart.shards``).

Example:
    >>> found = scan_webdataset(Path("shards"), sorted(Path("shards").glob("*.tar")))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

from headstart import shards
from headstart.data.sources.found import Found, group_by_split
from headstart.errors import DataError
from headstart.files import open_regular
from headstart.preprocess import IMAGE_EXTENSIONS

LABEL_BYTES = 64 << 10


def scan_webdataset(root: Path, files: list[Path]) -> Found:
    """The labelled images of the tar ``files``, grouped by the splits their names give."""
    rows: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    skipped: list[tuple[str, str]] = []
    multilabel = False
    for split, group in group_by_split(files, root).items():
        for file in group:
            found, unread, multi = _scan_tar(file)
            rows.setdefault(split, []).extend(found)
            skipped += unread
            multilabel |= multi
    return Found(root, "webdataset", multilabel, rows, skipped)


def _split_name(name: str) -> tuple[str, str]:
    """(key, extension) the WebDataset way: the key ends at the first dot of the last part."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (f".{ext.lower()}" if dot else "")


def _scan_tar(file: Path) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, str]], bool]:
    images: dict[str, str] = {}  # key -> image member name
    labels: dict[str, Any] = {}  # key -> label value
    skipped: list[tuple[str, str]] = []
    try:
        with open_regular(file, shards.MAX_SHARD_BYTES) as handle, tarfile.open(fileobj=handle, mode="r|") as stream:
            for info in stream:
                if not shards.safe_member(info.name):
                    skipped.append((f"{file}#{info.name.replace('#', '%23')}", "unsafe member name (absolute, '..' or '#'): not read"))
                elif info.isreg():
                    _take(stream, info, file, images, labels, skipped)
                stream.members = []  # type: ignore[attr-defined]  # headers not kept: memory stays one member's
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{file} is not a readable tar ({exc}).") from exc
    return _pair(file, images, labels, skipped)


def _take(stream: tarfile.TarFile, info: tarfile.TarInfo, file: Path, images: dict, labels: dict, skipped: list) -> None:
    key, ext = _split_name(info.name)
    if os.path.splitext(info.name)[1].lower() in IMAGE_EXTENSIONS:  # {key}.jpg, {key}.v1.png
        images.setdefault(key, info.name)
    elif ext in (".cls", ".json"):
        if info.size > LABEL_BYTES:
            skipped.append((f"{file}#{info.name}", f"label member over {LABEL_BYTES:,} bytes: not read"))
            return
        member = stream.extractfile(info)
        text = member.read().decode("utf-8", "replace") if member else ""
        labels[key] = text.strip() if ext == ".cls" else _json_label(text)


def _json_label(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value.get("label", value.get("labels")) if isinstance(value, dict) else None


def _pair(file: Path, images: dict[str, str], labels: dict[str, Any], skipped: list) -> tuple[list, list, bool]:
    found: list[tuple[str, tuple[str, ...]]] = []
    multilabel = False
    for key, name in images.items():
        value = labels.get(key)
        multilabel |= isinstance(value, list)
        names = _names(value)
        if names is None:
            skipped.append((f"{file}#{name}", "no .cls or .json label (or an unreadable one)"))
        else:
            found.append((f"{file}#{name}", names))
    return found, skipped, multilabel


def _names(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list):
        parts = [str(v).strip() for v in value if isinstance(v, (str, int)) and not isinstance(v, bool)]
        return tuple(sorted({p for p in parts if p}))
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return (str(value).strip(),)
    return None
