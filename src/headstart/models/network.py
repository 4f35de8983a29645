"""The network: a headless backbone (pooled features) followed by a head."""

from __future__ import annotations

import difflib
from typing import Any, cast

import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import group_parameters
from torch import nn

from headstart.config import ModelConfig
from headstart.errors import ConfigError
from headstart.models.convnet import VARIANTS, create_convnet
from headstart.models.heads import build_head
from headstart.models.hub import hub_model, repo_id
from headstart.models.weights import load_into, pretrained_backbone, read_state_dict


class Network(nn.Module):
    """(B, 3, S, S) -> backbone -> (B, F) features -> head -> (B, K) logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def base_groups(self) -> list[list[nn.Parameter]]:
        """The backbone's parameters in stages, input side first (timm's coarse groups)."""
        matcher = getattr(self.backbone, "group_matcher", None)
        named = dict(self.backbone.named_parameters())
        if matcher is None:
            return [list(named.values())]
        groups = group_parameters(self.backbone, matcher(coarse=True))
        return [[named[name] for name in groups[k]] for k in sorted(groups)]


def check_arch(arch: str) -> None:
    if arch in VARIANTS or timm.is_model(arch):
        return
    if arch.startswith("hf-hub:"):  # a model on the Hugging Face Hub (timm's own prefix), fetched when built
        repo_id(arch)
        return
    known = list(VARIANTS) + timm.list_models()
    close = difflib.get_close_matches(arch, known, n=3)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ConfigError(f"Unknown architecture '{arch}': not a timm model nor one of {list(VARIANTS)}.{hint}")


def create_backbone(config: ModelConfig, load_weights: bool = True) -> nn.Module:
    """A headless backbone by name: headstart's convnets, else any timm architecture.

    Example:
        >>> create_backbone(ModelConfig(arch="resnet18", pretrained=False)).num_features
        512
    """
    check_arch(config.arch)
    if config.arch in VARIANTS:
        backbone = create_convnet(config.arch)
        if config.pretrained and load_weights:
            if config.weights is None:
                raise ConfigError(
                    f"'{config.arch}' has no pretrained weights; add --no-pretrained to train it from scratch, or --weights PATH."
                )
            load_into(backbone, read_state_dict(config.weights), config.weights)
        return backbone
    if config.pretrained and load_weights:
        return pretrained_backbone(config.arch, config.weights)
    if config.arch.startswith("hf-hub:"):
        return hub_model(config.arch, pretrained=False)
    return timm.create_model(config.arch, pretrained=False, num_classes=0)


def data_config(backbone: nn.Module) -> dict:
    """The backbone's preprocessing (input size, mean/std, interpolation, crop)."""
    if not hasattr(backbone, "default_cfg") and hasattr(backbone, "pretrained_cfg"):
        return dict(cast("dict[str, Any]", backbone.pretrained_cfg))  # nn.Module attributes type as Tensor | Module
    return resolve_model_data_config(backbone)


def build_network(config: ModelConfig, num_outputs: int, load_weights: bool = True) -> Network:
    backbone = create_backbone(config, load_weights)
    head = build_head(config.head, cast(int, backbone.num_features), num_outputs, config.hidden, config.dropout)
    return Network(backbone, head)


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Logits -> per-class probabilities: softmax for multiclass, else sigmoid.

    Binary models have one logit; the returned (B, 2) holds P(classes[0]), P(classes[1]).
    """
    if task == "multiclass":
        return logits.softmax(-1)
    p = logits.sigmoid()
    return torch.cat([1 - p, p], dim=-1) if task == "binary" else p


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in NHWC memory order, which conv kernels run faster on;
    feature batches (B, F) pass through unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
