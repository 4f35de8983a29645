"""headstart's convnets in timm's registry, under their own names.

Importing this module (``import headstart.models`` does) makes
``timm.create_model("convnet_res", num_classes=10)`` build headstart's ``convnet_res`` with
a classifier, and lets timm's loader read a timm export of a convnet run
(``timm.create_model("local-dir:RUN/export/timm", pretrained=True)``). The entry points
go through timm's ``build_model_with_cfg`` like timm's own models, so ``pretrained=True``
loads weights the way it does for them (a local folder or the Hub; there is no download
of ImageNet weights: these convnets train from scratch).

Example:
    >>> import timm, headstart.models
    >>> timm.create_model("convnet_tiny", num_classes=3)(torch.zeros(1, 3, 28, 28)).shape
    torch.Size([1, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch  # noqa: F401  (the example above)
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from headstart.errors import ConfigError
from headstart.models.convnet import VARIANTS, ConvNet, build_convnet

# timm's default pretrained configs: preprocessing only, no weights to download.
default_cfgs = generate_default_cfgs(
    {
        name: {
            "num_classes": 0,
            "input_size": (3, 128, 128),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "first_conv": "stages.0.0.0",
            "classifier": "classifier",
            "license": "apache-2.0",
        }
        for name in VARIANTS
    }
)


def _constructor(name: str) -> Callable[..., ConvNet]:
    def build(num_classes: int = 0, in_chans: int = 3, **unused: Any) -> ConvNet:
        if in_chans != 3:
            raise ConfigError(f"{name} takes 3 input channels, not in_chans={in_chans}.")
        return build_convnet(VARIANTS[name], num_classes=num_classes)

    return build


def _entry(name: str) -> Callable[..., ConvNet]:
    def entry(pretrained: bool = False, **kwargs: Any) -> ConvNet:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("drop_rate", "drop_path_rate")}  # no dropout layers here
        return build_model_with_cfg(_constructor(name), name, pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"headstart's {name} ({VARIANTS[name]})."
    return entry


for _name in VARIANTS:
    globals()[_name] = register_model(_entry(_name))
