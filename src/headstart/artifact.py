"""The artifact a user keeps: ``model.safetensors`` + ``headstart.json`` in the run folder.

No Lightning, no pickle: the JSON describes the model (architecture, head, task, classes,
threshold, preprocessing, training options, versions, metrics) and the weights are
safetensors. ``headstart.json`` is written last, so a folder without it is incomplete.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from headstart.checks import check_classes_task, check_model, check_preprocess
from headstart.config import ModelConfig
from headstart.errors import ArtifactError, ConfigError
from headstart.files import atomic_target, atomic_write
from headstart.models import Network, build_network
from headstart.preprocess import Preprocess

FORMAT = "headstart-model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
DESCRIPTION = "headstart.json"
MAX_DESCRIPTION_BYTES = 16 << 20


@dataclass
class Artifact:
    network: Network
    model: ModelConfig
    classes: list[str]
    task: str
    preprocess: Preprocess
    meta: dict[str, Any]  # the whole headstart.json

    @property
    def threshold(self) -> float:
        return self.model.threshold


def versions() -> dict[str, str]:
    import lightning
    import timm
    import torch

    from headstart import __version__

    return {
        "headstart": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }


def save_artifact(run_dir: Path, artifact: Artifact) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DESCRIPTION).unlink(missing_ok=True)  # incomplete until the JSON is back
    state = {k: v.detach().cpu().contiguous() for k, v in artifact.network.state_dict().items()}
    with atomic_target(run_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    meta = {
        **artifact.meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": artifact.model.to_dict(),
        "classes": artifact.classes,
        "task": artifact.task,
        "preprocess": artifact.preprocess.to_dict(),
    }
    atomic_write(run_dir / DESCRIPTION, json.dumps(meta, indent=2, ensure_ascii=False))
    artifact.meta = meta


def read_description(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / DESCRIPTION
    if not path.is_file():
        raise ArtifactError(
            f"{path} not found: {run_dir} is not a finished headstart run (train one with 'headstart train DATA --out {run_dir}')."
        )
    if path.stat().st_size > MAX_DESCRIPTION_BYTES:
        raise ArtifactError(f"{path} is over {MAX_DESCRIPTION_BYTES >> 20} MiB: not a headstart model description.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a headstart model description.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format_version {meta.get('format_version')!r}; this headstart reads {FORMAT_VERSION}.")
    check_classes_task(meta, str(path))
    check_model(meta.get("model"), str(path))
    check_preprocess(meta.get("preprocess"), str(path))
    return meta


def num_outputs(task: str, classes: list[str]) -> int:
    return 1 if task == "binary" else len(classes)


def load_artifact(run_dir: str | os.PathLike) -> Artifact:
    """Rebuild the trained network from a run folder alone (no data, no Lightning)."""
    run_dir = Path(run_dir)
    meta = read_description(run_dir)
    try:
        model = ModelConfig.from_dict(meta["model"])
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{run_dir / DESCRIPTION}: invalid model description ({exc}).") from None
    try:
        network = build_network(model, num_outputs(meta["task"], meta["classes"]), load_weights=False)
    except ConfigError as exc:  # e.g. an architecture name this timm does not know
        raise ArtifactError(f"{run_dir / DESCRIPTION}: {exc}") from None
    try:
        state = load_file(str(run_dir / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise ArtifactError(f"Cannot read {run_dir / WEIGHTS}: {exc}.") from None
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(f"{run_dir / WEIGHTS} does not match its description: {str(exc)[:300]}") from None
    network.eval()
    return Artifact(network, model, list(meta["classes"]), meta["task"], preprocess, meta)
