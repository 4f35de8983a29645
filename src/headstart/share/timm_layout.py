"""A run's model in the layout timm's own loader reads: ``config.json`` + ``model.safetensors``.

    timm.create_model("local-dir:RUN/export/timm", pretrained=True)   # any timm >= 1.0.16
    timm.create_model("hf-hub:USER/REPO", pretrained=True)            # after headstart push

The folder (written by ``headstart export RUN --format timm``) holds exactly:
  * ``model.safetensors``: the whole classifier with plain timm keys (the backbone's own and
    its ``get_classifier()`` layer); the only weights file, because timm's
    ``load_state_dict_from_path`` picks ``model.safetensors`` first and otherwise the first
    ``*.safetensors``/``*.pth``/``*.bin`` it globs, so a second weights file would be a trap;
  * ``config.json``: timm's schema (``architecture``, ``num_classes``, ``num_features``,
    ``label_names``, ``pretrained_cfg`` with the input size, crop, mean/std and
    interpolation the run was trained and evaluated with; no source keys such as ``url``
    or ``hf_hub_id``, so timm loads this folder's weights and nothing else);
  * ``headstart_meta.json``: the run's ``headstart.json`` (``headstart.runfolder.ArtifactMeta``:
    task, threshold, exact preprocessing, metrics, data counts, versions), absolute paths
    reduced to their last part; headstart reads it back through the same typed schema;
  * ``README.md``: the model card (``headstart.share.card``).

What timm cannot express is said, not guessed: a bottleneck or MLP head (timm's classifier
is one linear layer) is refused with a one-line reason. A binary model (one logit z) is
written as two logits [0, z]: softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)], exactly
headstart's probabilities. headstart's ``convnet_*`` are registered with timm when
``headstart.models`` is imported (``headstart.models.timm_entry``), under the same names.
Every export passes the parity check through timm's loader itself before it is kept.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from headstart.artifact import Artifact
from headstart.errors import ArtifactError, ExportError
from headstart.files import atomic_write
from headstart.runfolder import ArtifactMeta, read_meta_file

WEIGHTS, CONFIG, META, CARD = "model.safetensors", "config.json", "headstart_meta.json", "README.md"
FILES = (WEIGHTS, CONFIG, META, CARD)
MAX_JSON_BYTES = 16 << 20  # config.json and headstart_meta.json are a few KB; anything huge is not ours
# pretrained_cfg keys that point timm at other weights or describe another checkpoint.
_SOURCE_KEYS = ("url", "hf_hub_id", "hf_hub_filename", "file", "state_dict", "source", "tag", "architecture", "license")
_OTHER_CHECKPOINT = ("test_input_size", "test_crop_pct", "test_pool_size", "label_offset", "label_names", "label_descriptions")


def timm_classifier(artifact: Artifact) -> nn.Module:
    """The run's network as one timm model: a copy of its backbone with timm's classifier
    set to the head's linear layer (binary: two logits [0, z]).

    Example:
        >>> timm_classifier(load_artifact("runs/pets")).get_classifier().out_features   # doctest: +SKIP
        3
    """
    net = artifact.network
    linears = [m for m in net.head.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or artifact.model.head != "linear":
        raise ExportError(
            f"timm's classifier is one linear layer and this run has a {artifact.model.head} head ({len(linears)} linear layers): "
            "export it as ONNX (--format onnx), or train with --head linear for a timm export."
        )
    if not hasattr(net.backbone, "reset_classifier"):
        raise ExportError(f"{artifact.model.arch} has no timm classifier (reset_classifier): export it as ONNX (--format onnx).")
    weight, bias = linears[0].weight.detach().float(), linears[0].bias.detach().float()
    if artifact.task == "binary":  # one logit z -> [0, z]: softmax equals headstart's sigmoid pair
        weight, bias = torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias), bias])
    model: Any = copy.deepcopy(net.backbone).float().cpu().eval()
    model.reset_classifier(weight.shape[0])
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.weight.shape != weight.shape:
        raise ExportError(
            f"{artifact.model.arch}'s timm classifier is not a linear layer fitting {tuple(weight.shape)}: export it as ONNX."
        )
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    return model.eval()


def crop_pct(input_size: int, resize_size: int) -> float:
    """The crop fraction for which timm resizes to exactly ``resize_size``
    (timm: ``floor(input_size / crop_pct)``; a plain ratio can land one pixel short).

    Example:
        >>> crop_pct(224, 256)
        0.875
    """
    pct = input_size / resize_size
    while math.floor(input_size / pct) < resize_size:
        pct = math.nextafter(pct, 0.0)
    return pct


def timm_config(artifact: Artifact, model: nn.Module) -> dict[str, Any]:
    """config.json in timm's schema, preprocessing as trained."""
    base = dict(getattr(model, "pretrained_cfg", {}) or {})
    arch = str(base.get("architecture") or artifact.model.arch)
    p = artifact.preprocess
    cfg = {k: v for k, v in base.items() if k not in _SOURCE_KEYS + _OTHER_CHECKPOINT and v is not None}
    if tuple(cfg.get("input_size", (3, 0, 0)))[1:] != (p.input_size, p.input_size):
        cfg["pool_size"] = None  # the default's pooled feature-map size belongs to the default input
    classes = int(getattr(model, "num_classes", len(artifact.classes)))
    cfg.update(
        input_size=[3, p.input_size, p.input_size],
        crop_pct=crop_pct(p.input_size, p.resize_size),
        crop_mode="center",
        mean=list(p.mean),
        std=list(p.std),
        interpolation=p.interpolation,
        num_classes=classes,
        custom_load=False,
    )
    config: dict[str, Any] = {
        "architecture": arch,
        "num_classes": classes,
        "num_features": int(getattr(model, "num_features", 0)),
        "label_names": list(artifact.classes),
    }
    args = {k: v for k, v in (getattr(model, "pretrained_model_args", None) or {}).items() if _jsonable(v)}
    if args:
        config["model_args"] = args
    config["pretrained_cfg"] = cfg
    return config


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def scrub(value: Any) -> Any:
    """``value`` with every absolute path reduced to its last part (what is shared must not
    say where the user's files are).

    Example:
        >>> scrub({"data": "/home/ann/pets", "n": 3})
        {'data': 'pets', 'n': 3}
    """
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str) and _ABSOLUTE.match(value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return value


def shared_meta(artifact: Artifact) -> ArtifactMeta:
    """headstart_meta.json: the run's ArtifactMeta with every absolute path reduced, read back
    through the same schema (what cannot be loaded again is refused here, before it is shared)."""
    return ArtifactMeta.parse(scrub(artifact.meta.to_dict()), META)


def write_folder(artifact: Artifact, folder: Path, card: str) -> nn.Module:
    """Write the four files into ``folder`` (which must be new or empty); return the timm model."""
    model = timm_classifier(artifact)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})  # "pt": what the Hub's tools expect
    atomic_write(folder / CONFIG, json.dumps(timm_config(artifact, model), indent=2))
    atomic_write(folder / META, json.dumps(shared_meta(artifact).to_dict(), indent=2, ensure_ascii=False))
    atomic_write(folder / CARD, card)
    return model


def timm_runner(folder: Path, task: str):
    """A function running ``folder`` through timm's own loader: (B, 3, S, S) -> probabilities."""
    import timm

    import headstart.models  # noqa: F401  (convnet_* in timm's registry)

    model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.from_numpy(batch))
            return (logits.sigmoid() if task == "multilabel" else logits.softmax(-1)).numpy()

    return run


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished ``tmp`` at ``out``; an older timm export there is replaced, anything else refused."""
    if out.exists():
        extra = sorted(p.name for p in out.iterdir() if p.name not in FILES) if out.is_dir() else [out.name]
        if extra:
            raise ExportError(f"{out} holds other files ({', '.join(extra[:3])}); give --out a new or empty folder for the timm export.")
        shutil.rmtree(out)
    os.replace(tmp, out)


def check_folder(folder: Path) -> ArtifactMeta:
    """headstart_meta.json of a timm-layout folder, checked field by field (headstart.runfolder),
    after checking the layout is whole."""
    missing = [name for name in (WEIGHTS, CONFIG, META) if not (folder / name).is_file()]
    if missing:
        raise ArtifactError(f"{folder} is not a headstart timm export: {', '.join(missing)} missing.")
    return read_meta_file(folder / META)
