"""The artifact a user keeps: ``model.safetensors`` + ``headstart.json`` in the run folder.

No Lightning, no pickle: the description (``headstart.runfolder.ArtifactMeta``: model,
task, classes, threshold, preprocessing, training options, versions, metrics) is typed
JSON and the weights are safetensors. ``headstart.json`` is written last, so a folder
without it is incomplete.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from headstart.config import ModelConfig
from headstart.errors import ArtifactError, ConfigError
from headstart.files import atomic_target
from headstart.models import Network, build_network
from headstart.preprocess import Preprocess
from headstart.runfolder import DESCRIPTION, MODEL_FORMAT, ArtifactMeta, read_meta, write_meta

FORMAT = MODEL_FORMAT
WEIGHTS = "model.safetensors"
__all__ = ["DESCRIPTION", "WEIGHTS", "Artifact", "load_artifact", "save_artifact", "num_outputs", "versions"]


@dataclass(frozen=True)
class Artifact:
    """The trained network and its description."""

    network: Network
    meta: ArtifactMeta

    @property
    def model(self) -> ModelConfig:
        return self.meta.model

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def preprocess(self) -> Preprocess:
        return self.meta.preprocess

    @property
    def threshold(self) -> float:
        return self.meta.model.threshold


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
    write_meta(run_dir, artifact.meta)


def num_outputs(task: str, classes: list[str] | tuple[str, ...]) -> int:
    return 1 if task == "binary" else len(classes)


def load_artifact(run_dir: str | os.PathLike) -> Artifact:
    """Rebuild the trained network from a run folder alone (no data, no Lightning)."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    try:
        network = build_network(meta.model, num_outputs(meta.task, meta.classes), load_weights=False)
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
    return Artifact(network, meta)
