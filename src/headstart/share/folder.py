"""Write a run as a timm-layout folder (checked through timm's loader), and read one back.

``export_timm`` is ``headstart export RUN --format timm``; ``load_folder`` turns such a
folder (a local one, or one fetched from the Hub by ``headstart.share.hub``) into the
Artifact every headstart predictor takes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.artifact import Artifact
from headstart.errors import ArtifactError, ExportError
from headstart.export import parity
from headstart.export.exporters import reference
from headstart.export.run import ExportResult
from headstart.files import sweep_orphans
from headstart.models import Network
from headstart.share import card, timm_layout


def default_folder(run_dir: Path) -> Path:
    return run_dir / "export" / "timm"


def export_timm(artifact: Artifact, run_dir: Path, out: str | os.PathLike | None = None, repo: str = "USER/REPO") -> ExportResult:
    """Write RUN/export/timm (or ``out``): config.json, model.safetensors, headstart_meta.json,
    README.md; kept only when timm's own loader gives headstart's probabilities (parity).
    ``repo``: the Hub repository the card's loading examples name.

    Example:
        >>> export_timm(load_artifact("runs/pets"), Path("runs/pets")).path   # doctest: +SKIP
        PosixPath('runs/pets/export/timm')
    """
    folder = Path(out) if out is not None else default_folder(run_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep_orphans(folder.parent)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        facts = card.CardFacts.from_run(run_dir, timm_layout.shared_meta(artifact))
        timm_layout.write_folder(artifact, tmp, card.model_card(facts, repo))
        inputs, held_out = parity.parity_inputs(run_dir, artifact.classes, artifact.preprocess)
        report = parity.check(reference(artifact), timm_layout.timm_runner(tmp, artifact.task), inputs, held_out)
        if not report.ok:
            raise ExportError(
                f"timm export of {run_dir} failed the parity check ({'; '.join(report.failures)}); nothing was kept at {folder}."
            )
        timm_layout.replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(folder, "timm", report)


def _head(classifier: nn.Linear, task: str) -> nn.Sequential:
    """headstart's linear head from timm's classifier (binary: [l0, l1] -> one logit l1 - l0)."""
    weight, bias = classifier.weight.detach(), classifier.bias.detach()
    if task == "binary":
        weight, bias = weight[1:] - weight[:1], bias[1:] - bias[:1]
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return nn.Sequential(head)


def _checked_config(folder: Path) -> None:
    """Refuse config.json fields that would make timm build something else than was exported."""
    import json

    path = folder / timm_layout.CONFIG
    if path.stat().st_size > timm_layout.MAX_JSON_BYTES:
        raise ArtifactError(f"{path} is over {timm_layout.MAX_JSON_BYTES >> 20} MiB: not a timm config.")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{folder / timm_layout.CONFIG} is not valid JSON ({exc}).") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("architecture"), str) or not isinstance(cfg.get("pretrained_cfg"), dict):
        raise ArtifactError(f"{folder / timm_layout.CONFIG} is not a timm config (architecture, pretrained_cfg).")
    args = cfg.get("model_args") or {}
    if not isinstance(args, dict) or set(args) - {"img_size"}:
        raise ArtifactError(f"{folder / timm_layout.CONFIG}: model_args {sorted(args)} are not read by headstart (only img_size).")
    source = {k for k in ("url", "hf_hub_id", "file", "source") if k in cfg["pretrained_cfg"]}
    if source:
        raise ArtifactError(f"{folder / timm_layout.CONFIG} points timm at other weights ({', '.join(sorted(source))}); refusing it.")


def load_folder(folder: str | os.PathLike) -> Artifact:
    """An Artifact from a timm-layout folder written by headstart (its weights: model.safetensors only).

    Example:
        >>> load_folder("runs/pets/export/timm").classes   # doctest: +SKIP
        ['cat', 'dog']
    """
    import timm

    import headstart.models  # noqa: F401  (convnet_* in timm's registry)

    folder = Path(folder)
    meta = timm_layout.check_folder(folder)
    _checked_config(folder)
    task, classes = meta.task, list(meta.classes)
    try:
        model: Any = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True)
    except Exception as exc:  # unknown architecture, weights that do not fit, a corrupt safetensors header ...
        raise ArtifactError(f"timm cannot load {folder}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None
    classifier = model.get_classifier()
    want = 2 if task == "binary" else len(classes)
    if not isinstance(classifier, nn.Linear) or classifier.out_features != want:
        raise ArtifactError(f"{folder}: the classifier does not fit {len(classes)} {task} classes.")
    head = _head(classifier, task)
    model.reset_classifier(0)
    network = Network(model, head).eval()
    return Artifact(network, meta)


def load_shared(source: str | os.PathLike) -> tuple[Artifact, Path] | None:
    """``hf-hub:USER/REPO`` or a local timm-layout folder as (Artifact, local folder); None
    for anything else (a run folder, an exported file), which the caller loads its own way."""
    from headstart.share import hub

    if hub.is_hub(source):
        folder = hub.fetch(str(source))
        return load_folder(folder), folder
    folder = Path(source)
    if (folder / timm_layout.META).is_file() and not (folder / "headstart.json").is_file():
        return load_folder(folder), folder
    return None


def push(artifact: Artifact, run_dir: Path, repo: str, private: bool = False):
    """Export ``run_dir`` in timm's layout (card naming ``repo``) and upload it to the Hub.

    Example:
        >>> push(load_artifact("runs/pets"), Path("runs/pets"), "ann/pets").url   # doctest: +SKIP
        'https://huggingface.co/ann/pets'
    """
    from headstart.share import hub

    name, _ = hub.repo_id(repo)  # a bad name fails before the export
    result = export_timm(artifact, run_dir, repo=name)
    return hub.push_folder(result.path, repo, private=private, message=f"headstart push of {run_dir.resolve().name}")
