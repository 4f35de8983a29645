"""A layer summary like Keras' ``model.summary()``: each layer group's output shape and parameters.

Rows follow the network's own structure: the backbone's top-level modules, with its stage
containers (``blocks``, ``stages``, ``layers``, ``features``) opened one level so each stage
is a row, then the head's layers. Shapes come from one forward pass of a (1, 3, S, S)
zero image at the run's input size, recorded by forward hooks (the batch axis is left
out). "Trainable" is what the run's last phase trained: everything when trained from
scratch or fine-tuned with ``unfreeze 0``, the last N stages and the head with
``unfreeze N``, the head alone when no fine-tuning phase ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from headstart.models.network import Network

CONTAINERS = ("blocks", "stages", "layers", "features", "stages_")
_SILENT = (nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class LayerRow:
    name: str  # e.g. "backbone.blocks.3"
    kind: str  # the module's class name
    shape: str  # output shape without the batch axis, e.g. "(40, 28, 28)"
    params: int
    trainable: int


def layer_groups(network: Network) -> list[tuple[str, nn.Module]]:
    """(name, module) for each summary row, input side first."""
    rows: list[tuple[str, nn.Module]] = []
    for name, child in network.backbone.named_children():
        inner = list(child.named_children()) if name in CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)) else []
        rows += [(f"backbone.{name}.{n}", m) for n, m in inner] or [(f"backbone.{name}", child)]
    rows += [(f"head.{name}", child) for name, child in network.head.named_children()]
    return [(n, m) for n, m in rows if not isinstance(m, _SILENT)]


def trained_last(network: Network, pretrained: bool, finetune_epochs: int, unfreeze: int) -> set[int]:
    """ids of the parameters the run's last phase trained (see the module docstring)."""
    head = {id(p) for p in network.head.parameters()}
    if pretrained and finetune_epochs == 0:
        return head
    groups = network.base_groups()
    chosen = groups if unfreeze == 0 or not pretrained else groups[-unfreeze:]
    return head | {id(p) for group in chosen for p in group}


def _shape(output: Any) -> str:
    if isinstance(output, torch.Tensor):
        return str(tuple(output.shape[1:]))
    if isinstance(output, (tuple, list)):
        return ", ".join(_shape(o) for o in output)
    return type(output).__name__


def layer_summary(network: Network, input_size: int, trainable: set[int] | None = None) -> list[LayerRow]:
    """One row per layer group for a (1, 3, input_size, input_size) input.

    Example:
        >>> from headstart.config import ModelConfig
        >>> from headstart.models import build_network
        >>> rows = layer_summary(build_network(ModelConfig("convnet_tiny", pretrained=False), 3), 32)
        >>> [(r.name, r.shape) for r in rows][-1]
        ('head.0', '(3,)')
    """
    groups = layer_groups(network)
    shapes: dict[str, str] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:  # None: the output is left as it is
            shapes.setdefault(name, _shape(output))

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in groups]
    was_training = network.training
    try:
        with torch.inference_mode():
            network.eval()(torch.zeros(1, 3, input_size, input_size, device=next(network.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        network.train(was_training)
    rows = []
    direct = list(network.backbone.parameters(recurse=False))  # e.g. a ViT's cls_token, pos_embed
    if direct:
        groups.insert(0, ("backbone (own parameters)", nn.ParameterList(direct)))
    for name, module in groups:
        params = list(module.parameters())
        live = (lambda p: id(p) in trainable) if trainable is not None else (lambda p: p.requires_grad)
        rows.append(
            LayerRow(
                name,
                type(module).__name__,
                shapes.get(name, "-"),
                sum(p.numel() for p in params),
                sum(p.numel() for p in params if live(p)),
            )
        )
    return rows
