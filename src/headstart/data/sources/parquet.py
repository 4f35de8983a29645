"""Parquet files as the Hugging Face Hub ships image data sets: an image column (bytes or
``{bytes, path}`` structs) and a label column (class names, or ``ClassLabel`` integers whose
names are in the schema's ``huggingface`` metadata; a list of either: multi-label).

Indexing reads only the label column, one row group at a time; the images stay in the file
until the store decodes them through their addresses (``headstart.shards``).

Example:
    >>> found = scan_parquet(Path("cifar"), sorted(Path("cifar").rglob("*.parquet")))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headstart import shards
from headstart.data.sources.found import Found, group_by_split
from headstart.errors import DataError

LABEL_COLUMNS = ("label", "labels", "fine_label", "coarse_label")


def scan_parquet(root: Path, files: list[Path]) -> Found:
    """The labelled rows of ``files`` (parquet), grouped by the splits their names give."""
    rows: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    skipped: list[tuple[str, str]] = []
    multilabel = False
    for split, group in group_by_split(files, root).items():
        for file in group:
            found, unread, multi = _scan_file(file)
            rows.setdefault(split, []).extend(found)
            skipped += unread
            multilabel |= multi
    return Found(root, "parquet", multilabel, rows, skipped)


def _open(file: Path) -> Any:
    try:
        return shards.parquet_file(str(file))
    except shards.ShardError as exc:
        raise DataError(str(exc)) from exc
    except Exception as exc:  # pyarrow's ArrowInvalid and kin: not a parquet file
        raise DataError(f"{file} is not a readable parquet file ({type(exc).__name__}: {exc}).") from exc


def _label_column(file: Path, schema: Any, features: dict[str, Any]) -> str:
    for name, feature in features.items():
        inner = feature.get("feature", {}) if isinstance(feature, dict) else {}
        if isinstance(feature, dict) and "ClassLabel" in (feature.get("_type"), inner.get("_type")) and name in schema.names:
            return name
    for name in LABEL_COLUMNS:
        if name in schema.names:
            return name
    raise DataError(f"{file} has columns {schema.names}; headstart reads the labels from a 'label' (or 'labels') column.")


def _class_names(feature: Any) -> list[str] | None:
    if not isinstance(feature, dict):
        return None
    names = feature.get("names") or (feature.get("feature") or {}).get("names")
    return [str(n) for n in names] if isinstance(names, list) else None


def _scan_file(file: Path) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, str]], bool]:
    with _open(file) as handle:
        schema = handle.schema_arrow
        if shards.image_column(schema) is None:
            raise DataError(f"{file} has columns {schema.names} but none holds images (binary or {{bytes, path}} structs).")
        features = shards.hub_features(schema)
        column = _label_column(file, schema, features)
        names = _class_names(features.get(column))
        total = handle.metadata.num_rows
        width = max(1, len(str(max(0, total - 1))))  # zero-padded: addresses sort in row order
        found: list[tuple[str, tuple[str, ...]]] = []
        skipped: list[tuple[str, str]] = []
        multilabel = False
        row = 0
        for group in range(handle.metadata.num_row_groups):
            for value in handle.read_row_group(group, columns=[column]).column(0).to_pylist():
                address = f"{file}#row={row:0{width}d}"
                row += 1
                multilabel |= isinstance(value, list)
                labels = _labels(value, names)
                if labels is None:
                    skipped.append((address, f"label {value!r} is not a class"))
                elif labels or multilabel:
                    found.append((address, labels))
                else:
                    skipped.append((address, "no label"))
    return found, skipped, multilabel


def _labels(value: Any, names: list[str] | None) -> tuple[str, ...] | None:
    """Label names of one cell: () for none (None, or the Hub's -1), None for an unknown class."""
    if isinstance(value, list):
        parts = [_labels(v, names) for v in value]
        if any(p is None for p in parts):
            return None
        return tuple(sorted({n for p in parts if p for n in p}))
    if value is None or (isinstance(value, int) and value < 0):
        return ()
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if isinstance(value, int):
        if names is None:
            return (str(value),)
        return (names[value],) if value < len(names) else None
    return (value.strip(),) if value.strip() else ()
