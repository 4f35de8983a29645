"""Classification heads on pooled features: linear, bottleneck, MLP."""

from __future__ import annotations

from torch import nn

DEFAULT_HIDDEN = {"linear": (), "bottleneck": (256,), "mlp": (512, 256)}


def build_head(kind: str, in_features: int, out_features: int, hidden: tuple[int, ...] = (), dropout: float = 0.0) -> nn.Sequential:
    """A head mapping (B, in_features) -> (B, out_features) logits.

    linear: dropout -> Linear; bottleneck: one hidden layer (width ``hidden[0]``);
    mlp: one hidden layer per width in ``hidden``. Hidden layers are Linear -> ReLU -> dropout.

    Example:
        >>> build_head("mlp", 1280, 5, (512, 256), 0.2)[-1].out_features
        5
    """
    widths = tuple(hidden) or DEFAULT_HIDDEN[kind]
    if kind == "linear":
        widths = ()
    elif kind == "bottleneck":
        widths = widths[:1]
    layers: list[nn.Module] = []
    width = in_features
    for h in widths:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    if dropout and not widths:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
