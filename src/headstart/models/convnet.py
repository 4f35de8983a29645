"""A small convnet from reusable blocks, for training from scratch on small images.

Selectable by name like any timm model (``convnet_tiny``, ``convnet_small``); it exposes the
same contract the rest of headstart uses: ``num_features``, ``pretrained_cfg`` and
``group_matcher`` (one group per stage, so ``--unfreeze N`` means the same thing).
"""

from __future__ import annotations

from torch import nn

# Stage widths per variant: each stage = ConvBlock x depth, then 2x2 max-pooling.
VARIANTS: dict[str, tuple[tuple[int, ...], int]] = {
    "convnet_tiny": ((16, 32, 64), 1),
    "convnet_small": ((32, 64, 128, 256), 2),
}


class ConvBlock(nn.Sequential):
    """3x3 conv -> batch norm -> ReLU; the unit every stage repeats."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int, depth: int) -> None:
        blocks = [ConvBlock(cin if i == 0 else cout, cout) for i in range(depth)]
        super().__init__(*blocks, nn.MaxPool2d(2))


class ConvNet(nn.Module):
    """Stages of ConvBlocks, then global average pooling: (B, 3, H, W) -> (B, num_features)."""

    def __init__(self, widths: tuple[int, ...], depth: int, input_size: int = 128) -> None:
        super().__init__()
        chans = (3, *widths)
        self.stages = nn.Sequential(*[Stage(chans[i], chans[i + 1], depth) for i in range(len(widths))])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = widths[-1]
        self.pretrained_cfg = {
            "input_size": (3, input_size, input_size),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
        }

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"blocks": r"^stages\.(\d+)"}

    # timm's contract, so tools that need the last feature map (Grad-CAM) treat it alike.
    def forward_features(self, x):  # (B, 3, H, W) -> (B, C, H / 2**stages, W / 2**stages)
        return self.stages(x)

    def forward_head(self, x, pre_logits: bool = False):  # (B, C, h, w) -> (B, C)
        return self.pool(x)

    def forward(self, x):  # (B, 3, H, W) -> (B, C)
        return self.forward_head(self.forward_features(x))


def create_convnet(name: str) -> ConvNet:
    widths, depth = VARIANTS[name]
    return ConvNet(widths, depth)
