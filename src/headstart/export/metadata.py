"""The description an exported model carries: classes, task, threshold, preprocessing.

Stored as one JSON string (ONNX ``metadata_props["headstart"]``, TorchScript extra file
``headstart.json``) and read back with strict type checks: a description is data, never
code, and one with unexpected types is refused before anything uses it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from headstart.errors import ArtifactError
from headstart.preprocess import Preprocess

KEY = "headstart"
FORMAT = "headstart-export"
FORMAT_VERSION = 1
TASKS = ("multiclass", "binary", "multilabel")
MAX_CLASSES = 100_000


def build(meta: dict[str, Any], fmt: str, input_name: str, output_name: str) -> dict[str, Any]:
    """The exported description from a run's ``headstart.json``."""
    model = meta["model"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "export_format": fmt,
        "classes": list(meta["classes"]),
        "task": meta["task"],
        "threshold": float(model.get("threshold", 0.5)),
        "preprocess": meta["preprocess"],
        "arch": model["arch"],
        "input": {"name": input_name, "layout": "NCHW", "dtype": "float32"},
        "output": {"name": output_name, "kind": "probabilities"},
        "versions": meta.get("versions", {}),
        "metrics": {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))} if isinstance(meta.get("metrics"), dict) else {},
    }


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_preprocess(value: object, where: str) -> Preprocess:
    """A preprocessing description with exactly the expected keys and types."""
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: 'preprocess' must be an object, got {type(value).__name__}.")
    expected = {"input_size", "resize_size", "mean", "std", "interpolation"}
    if set(value) != expected:
        raise ArtifactError(f"{where}: 'preprocess' keys {sorted(value)} are not {sorted(expected)}.")
    for key in ("input_size", "resize_size"):
        v = value[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 8192:
            raise ArtifactError(f"{where}: preprocess.{key} must be an integer in [1, 8192], got {v!r}.")
    for key in ("mean", "std"):
        v = value[key]
        if not isinstance(v, list) or len(v) != 3 or not all(_is_number(x) for x in v):
            raise ArtifactError(f"{where}: preprocess.{key} must be a list of 3 numbers, got {v!r}.")
    if any(x == 0 for x in value["std"]):
        raise ArtifactError(f"{where}: preprocess.std must not contain 0.")
    if not isinstance(value["interpolation"], str):
        raise ArtifactError(f"{where}: preprocess.interpolation must be a string.")
    try:
        return Preprocess.from_dict(value)
    except ValueError as exc:
        raise ArtifactError(f"{where}: invalid preprocessing ({exc}).") from None


def check_classes_task(meta: dict[str, Any], where: str) -> None:
    classes, task = meta.get("classes"), meta.get("task")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES or not all(isinstance(c, str) for c in classes):
        raise ArtifactError(f"{where}: 'classes' must be a list of at least two names.")
    if len(set(classes)) != len(classes):
        raise ArtifactError(f"{where}: 'classes' has duplicate names.")
    if task not in TASKS:
        raise ArtifactError(f"{where}: unknown task {task!r}; expected one of {list(TASKS)}.")


def parse(text: str | None, where: str) -> dict[str, Any]:
    """Read and check an exported description; ArtifactError when it is missing or wrong."""
    if text is None:
        raise ArtifactError(f"{where} has no headstart description: export it with 'headstart export RUN'.")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{where}: the headstart description is not valid JSON ({str(exc)[:100]}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{where}: not a headstart export description.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{where}: format_version {meta.get('format_version')!r}; this headstart reads {FORMAT_VERSION}.")
    check_classes_task(meta, where)
    threshold = meta.get("threshold")
    if not _is_number(threshold) or not 0 < threshold < 1:
        raise ArtifactError(f"{where}: 'threshold' must be a number in (0, 1), got {threshold!r}.")
    check_preprocess(meta.get("preprocess"), where)
    io = meta.get("input"), meta.get("output")
    if not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in io):
        raise ArtifactError(f"{where}: 'input' and 'output' must be objects with a 'name'.")
    return meta
