"""Small convnets from reusable blocks, for training from scratch on small images.

Selectable by name like any timm model (``convnet_tiny``, ``convnet_small``, ``convnet_res``);
each exposes the contract the rest of headstart uses: ``num_features``, ``pretrained_cfg``
and ``group_matcher`` (one group per stage, so ``--unfreeze N`` means the same thing).

The blocks, to design your own:
  * ``ConvBlock(cin, cout)``: 3x3 conv -> batch norm -> ReLU.
  * ``ResidualBlock(c)``: two ConvBlocks with an identity shortcut, x + f(x).
  * ``Stage(cin, cout, depth)``: ``depth`` ConvBlocks, then 2x2 max-pooling.
  * ``ResStage(cin, cout, depth)``: one ConvBlock, 2x2 max-pooling, then ``depth``
    ResidualBlocks at the pooled size (the ResNet-9 pattern: the residual convolutions
    run at a quarter of the pixels, so depth is cheap).
  * ``ConvNet(stages, num_features, input_size)``: stages, then global average pooling.

Measured on 2 CPU cores, Fashion-MNIST 60k/10k at its native 28 px (bench/results/recipe-sweep.jsonl, from the retired bench/recipe_sweep.py):
``convnet_res`` trains at ~1,800 img/s (batch 256, channels-last; ``convnet_small``: ~230)
and reaches 0.928 test accuracy after 8 epochs (SGD-Nesterov, one-cycle, label smoothing
0.1, flip + 2 px shifts), ~270 s on a quiet machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Variant:
    """A named convnet: stage widths, blocks per stage, and plain or residual stages."""

    widths: tuple[int, ...]
    depth: int
    residual: bool = False


VARIANTS: dict[str, Variant] = {
    "convnet_tiny": Variant((16, 32, 64), 1),
    "convnet_small": Variant((32, 64, 128, 256), 2),
    # ResNet-9-like, from-scratch training on small images: 28 px -> 14 -> 7 -> 3, a residual
    # block after each pooling. 2 CPU cores train "convnet_res" at ~1,800 img/s at 28 px
    # (channels-last, batch 256) and the wide one at ~450 img/s.
    "convnet_res": Variant((32, 64, 128), 1, residual=True),
    "convnet_res_wide": Variant((64, 128, 256), 1, residual=True),
}


class ConvBlock(nn.Sequential):
    """3x3 conv -> batch norm -> ReLU; the unit every stage repeats. (B, cin, H, W) -> (B, cout, H, W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """x + ConvBlock(ConvBlock(x)): shape-preserving, (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBlock(channels, channels), ConvBlock(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stage(nn.Sequential):
    """``depth`` ConvBlocks, then 2x2 max-pooling: (B, cin, H, W) -> (B, cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int, depth: int) -> None:
        blocks = [ConvBlock(cin if i == 0 else cout, cout) for i in range(depth)]
        super().__init__(*blocks, nn.MaxPool2d(2))


class ResStage(nn.Sequential):
    """ConvBlock, 2x2 max-pooling, ``depth`` ResidualBlocks: (B, cin, H, W) -> (B, cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int, depth: int) -> None:
        super().__init__(ConvBlock(cin, cout), nn.MaxPool2d(2), *[ResidualBlock(cout) for _ in range(depth)])


class ConvNet(nn.Module):
    """Stages, global average pooling, then a linear classifier when ``num_classes`` > 0:
    (B, 3, H, W) -> (B, num_features), or (B, num_classes) logits.

    headstart builds it headless (``num_classes=0``: the classifier is the identity and has
    no parameters, so saved backbones keep their names); timm builds it with a classifier
    (``headstart.models.timm_entry`` registers the variants), like any timm model.

    Example:
        >>> net = ConvNet([Stage(3, 16, 1), ResStage(16, 32, 1)], num_features=32)
        >>> net(torch.zeros(2, 3, 28, 28)).shape
        torch.Size([2, 32])
    """

    def __init__(self, stages: Sequence[nn.Module], num_features: int, input_size: int = 128, num_classes: int = 0) -> None:
        super().__init__()
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = num_features
        self.num_classes = num_classes
        self.classifier: nn.Module = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = {
            "input_size": (3, input_size, input_size),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "first_conv": "stages.0.0.0",
            "classifier": "classifier",
        }

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"blocks": r"^stages\.(\d+)"}

    # timm's contract, so tools that need the last feature map (Grad-CAM) treat it alike.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H / 2**stages, W / 2**stages)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # (B, C, h, w) -> (B, C) or (B, K)
        pooled = self.pool(x)
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C) or (B, K)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new (untrained) classifier for ``num_classes``; 0 makes the network headless."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def build_convnet(variant: Variant, input_size: int = 128, num_classes: int = 0) -> ConvNet:
    """A ConvNet from a Variant: 3 input channels, one stage per width."""
    chans = (3, *variant.widths)
    kind = ResStage if variant.residual else Stage
    stages = [kind(chans[i], chans[i + 1], variant.depth) for i in range(len(variant.widths))]
    return ConvNet(stages, variant.widths[-1], input_size, num_classes)


def create_convnet(name: str) -> ConvNet:
    """One of the named VARIANTS.

    Example:
        >>> create_convnet("convnet_res").num_features
        128
    """
    return build_convnet(VARIANTS[name])
