"""Strict type checks for descriptions read from user files (headstart.json, ONNX metadata).

A description is data: before any of it reaches a constructor, every field must have the
expected JSON type and range. Anything else is an ArtifactError naming the field.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from headstart.config import TASKS
from headstart.errors import ArtifactError
from headstart.preprocess import Preprocess

MAX_CLASSES = 100_000

# ModelConfig fields as stored in headstart.json, and the JSON types each may have.
_MODEL_FIELDS: dict[str, tuple[type, ...]] = {
    "arch": (str,),
    "pretrained": (bool,),
    "weights": (str, type(None)),
    "head": (str,),
    "hidden": (list,),
    "dropout": (int, float),
    "task": (str, type(None)),
    "threshold": (int, float),
}


def is_number(x: object) -> TypeGuard[int | float]:
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
        if not isinstance(v, list) or len(v) != 3 or not all(is_number(x) for x in v):
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


def check_model(value: object, where: str) -> None:
    """The 'model' object of headstart.json: known keys, JSON types as ModelConfig expects."""
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: 'model' must be an object, got {type(value).__name__}.")
    for key, v in value.items():
        types = _MODEL_FIELDS.get(key)
        if types is None:
            raise ArtifactError(f"{where}: unknown model field {key!r}.")
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise ArtifactError(f"{where}: model.{key} has type {type(v).__name__}, expected {'/'.join(t.__name__ for t in types)}.")
    if not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= 1 << 20 for h in value.get("hidden", [])):
        raise ArtifactError(f"{where}: model.hidden must be a list of positive integers.")
    if "arch" not in value or not 0 < len(value["arch"]) <= 200:
        raise ArtifactError(f"{where}: model.arch must be a non-empty name.")
