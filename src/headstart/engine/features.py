"""Frozen-phase features: while the base is frozen its output per image never changes, so
compute it once and train the head on the cached (N, F) tensor at memory speed."""

from __future__ import annotations

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from headstart.models import Network
from headstart.models.network import to_channels_last
from headstart.preprocess import Preprocess


def extract_features(
    backbone: nn.Module, squares: np.ndarray, rows: np.ndarray, preprocess: Preprocess, batch_size: int = 64, show: bool = False
) -> torch.Tensor:
    """(len(rows), F) pooled features of the evaluation view of each stored square."""
    was_training = backbone.training
    backbone.eval().to(memory_format=torch.channels_last)
    device = next(backbone.parameters()).device
    out: list[torch.Tensor] = []
    with torch.inference_mode(), Progress(transient=True, disable=not show) as progress:
        task = progress.add_task("Computing frozen-base features", total=len(rows))
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            x = to_channels_last(torch.from_numpy(preprocess.normalize(squares[chunk])).to(device))
            out.append(backbone(x).float().cpu())
            progress.advance(task, len(chunk))
    backbone.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def head_only(network: Network) -> Network:
    """A network over features: identity base, the same (shared) head parameters."""
    return Network(nn.Identity(), network.head)
