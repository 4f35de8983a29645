"""The description an exported model carries: classes, task, threshold, preprocessing.

Written by ``headstart.export`` and read here, by the torch-free runtime (``runtime.py``).
Stored as one JSON string (ONNX ``metadata_props["headstart"]``, TorchScript extra file
``headstart.json``) and read back with strict type checks: a description is data, never
code, and one with unexpected types is refused before anything uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headstart.errors import ArtifactError
from headstart.json_checks import check_classes_task, check_preprocess, is_number
from headstart.preprocess import Preprocess

if TYPE_CHECKING:
    from headstart.runfolder import ArtifactMeta, Headline

KEY = "headstart"
FORMAT = "headstart-export"
FORMAT_VERSION = 1


def headline_metrics(metrics: Mapping[str, Headline]) -> dict[str, dict[str, float]]:
    """{split: {accuracy, balanced_accuracy, macro_f1}} from a run's metrics."""
    return {str(split): m.to_dict() for split, m in metrics.items()}


def build(meta: ArtifactMeta, fmt: str, input_name: str, output_name: str) -> dict[str, Any]:
    """The exported description from a run's ``headstart.json``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "export_format": fmt,
        "classes": list(meta.classes),
        "task": meta.task,
        "threshold": float(meta.threshold),
        "preprocess": meta.preprocess.to_dict(),
        "arch": meta.model.arch,
        "input": {"name": input_name, "layout": "NCHW", "dtype": "float32"},
        "output": {"name": output_name, "kind": "probabilities"},
        "versions": dict(meta.versions),
        "metrics": headline_metrics(meta.metrics),
    }


@dataclass(frozen=True)
class ExportDescription:
    """An exported model's description, checked. Fields this release does not know are kept
    in ``extra`` (the run folder's policy, ``headstart.runfolder``)."""

    classes: tuple[str, ...]
    task: str
    threshold: float
    preprocess: Preprocess
    input_name: str
    output_name: str
    arch: str | None = None
    export_format: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


_KNOWN = {"format", "format_version", "export_format", "classes", "task", "threshold", "preprocess", "arch", "input", "output"}
_KNOWN |= {"versions", "metrics"}


def parse(text: str | None, where: str) -> ExportDescription:
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
    if not is_number(threshold) or not 0 < threshold < 1:
        raise ArtifactError(f"{where}: 'threshold' must be a number in (0, 1), got {threshold!r}.")
    preprocess = check_preprocess(meta.get("preprocess"), where)
    io = meta.get("input"), meta.get("output")
    if not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in io):
        raise ArtifactError(f"{where}: 'input' and 'output' must be objects with a 'name'.")
    versions, metrics, arch = meta.get("versions", {}), meta.get("metrics", {}), meta.get("arch")
    return ExportDescription(
        classes=tuple(meta["classes"]),
        task=meta["task"],
        threshold=float(threshold),
        preprocess=preprocess,
        input_name=meta["input"]["name"],
        output_name=meta["output"]["name"],
        arch=arch if isinstance(arch, str) else None,
        export_format=meta.get("export_format") if isinstance(meta.get("export_format"), str) else None,
        versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
        metrics=_numbers(metrics),
        extra={k: v for k, v in meta.items() if k not in _KNOWN},
    )


def _numbers(metrics: object) -> dict[str, dict[str, float]]:
    """{split: {name: number}}, whatever else a description holds there left out."""
    if not isinstance(metrics, dict):
        return {}
    return {str(split): {str(k): float(v) for k, v in m.items() if is_number(v)} for split, m in metrics.items() if isinstance(m, dict)}
