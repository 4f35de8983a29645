"""Grad-CAM (Selvaraju et al., 2017) on the backbone's last feature map.

The network runs as ``head(backbone.forward_head(backbone.forward_features(x)))`` (timm's
contract; headstart's convnets follow it too). The (B, C, h, w) feature map is computed
once without a graph; a tensor hook on it then catches d(score)/d(features) for each
target, so a backward pass costs only the pooling and the head, not the backbone
(efficientnet_lite0 on the shared, heavily loaded 2-core dev CPU: 12 full backward
passes took 16 s; the whole Grad-CAM part of a report now takes about 4 s, mostly the
one batched forward pass).

Channel weights are the gradients averaged over space; the map is
ReLU(sum_c w_c * A_c), upsampled to the input crop and scaled to [0, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from headstart.errors import HeadstartError

if TYPE_CHECKING:
    from headstart.models.network import Network


class GradCamUnsupported(HeadstartError):
    """The backbone gives no spatial feature map to explain."""


def _class_score(logits: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    """(B,) scores whose gradients explain ``targets``: their logits (binary class 0: -logit)."""
    if task == "binary":
        return torch.where(targets == 1, logits[:, 0], -logits[:, 0])
    return logits.gather(1, targets[:, None])[:, 0]


class GradCam:
    """Feature maps of a batch, computed once; ``maps(targets)`` explains one class per image.

    Example:
        >>> cam = GradCam(artifact.network, torch.from_numpy(batch), "multiclass")   # doctest: +SKIP
        >>> cam.maps([2, 0]).shape                                                 # (2, S, S)
    """

    def __init__(self, network: Network, x: torch.Tensor, task: str) -> None:
        self.backbone = cast(Any, network.backbone)  # timm's forward_features/forward_head, checked below
        self.head = network.head
        if not (hasattr(self.backbone, "forward_features") and hasattr(self.backbone, "forward_head")):
            raise GradCamUnsupported(f"{type(self.backbone).__name__} has no forward_features/forward_head.")
        self.network, self.task, self.size = network, task, tuple(x.shape[-2:])
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad():
                features = self.backbone.forward_features(x)
        finally:
            network.train(was_training)
        if features.ndim != 4:
            raise GradCamUnsupported(
                f"the backbone's features have shape {tuple(features.shape)}, not a (B, C, h, w) map; "
                "Grad-CAM needs a convolutional backbone."
            )
        self.features = features.detach().float()

    def maps(self, targets: list[int]) -> np.ndarray:
        """(B, S, S) heat maps in [0, 1]; all zero where nothing speaks for the target."""
        grads: list[torch.Tensor] = []
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.enable_grad():
                features = self.features.clone().requires_grad_(True)
                handle = features.register_hook(grads.append)  # d(score)/d(feature map), (B, C, h, w)
                try:
                    logits = self.head(self.backbone.forward_head(features))
                    chosen = torch.as_tensor(targets, device=logits.device)
                    _class_score(logits.float(), chosen, self.task).sum().backward()
                finally:
                    handle.remove()
        finally:
            self.network.train(was_training)
        weights = grads[0].mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        cam = torch.relu((weights * self.features).sum(1, keepdim=True))  # (B, 1, h, w)
        cam = nn.functional.interpolate(cam, size=self.size, mode="bilinear", align_corners=False)[:, 0]
        top = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
        return (cam / top).cpu().numpy()


def overlay(rgb: np.ndarray, cam: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """(S, S, 3) uint8 image with ``cam`` in [0, 1] as a 'jet' heat map whose opacity is the
    evidence (up to ``strength``): clear where there is none, so the image stays readable."""
    from matplotlib import colormaps

    heat = colormaps["jet"](cam)[..., :3] * 255.0
    alpha = strength * np.clip(cam, 0, 1)[..., None]
    return np.clip((1 - alpha) * rgb.astype(np.float64) + alpha * heat, 0, 255).astype(np.uint8)
