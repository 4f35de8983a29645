"""Learning-rate range test (Smith 2015, "Cyclical Learning Rates", section 3.3) on the
frozen-base phase: the head trains on cached base features while the learning rate grows
exponentially each step; the loss falls, bottoms out, then diverges. One sweep over
cached features costs well under a second for a linear head."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from headstart.config import TrainConfig
from headstart.engine.module import make_loss, make_optimizer


@dataclass(frozen=True)
class LRFinding:
    """The sweep and what it suggests. ``suggestion`` is the steepest descent of the
    smoothed loss, capped at a tenth of the loss minimum's learning rate."""

    lrs: list[float]
    losses: list[float]  # per step
    smoothed: list[float]  # exponential moving average, bias-corrected
    suggestion: float
    steepest: float  # learning rate where the smoothed loss falls fastest
    min_loss_lr: float  # learning rate at the smoothed loss minimum
    diverged: bool  # the sweep stopped early because the loss blew up

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in ("lrs", "losses", "smoothed")}


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[float, float, float]:
    """(suggestion, steepest, min_loss_lr) from a sweep; see LRFinding."""
    low = int(np.nanargmin(smoothed))
    min_lr = float(lrs[low])
    skip = max(1, len(lrs) // 10)  # the first steps: the average is still warming up
    window = slice(skip, max(low, skip + 2))
    slope = np.gradient(smoothed, np.log10(lrs))
    part = slope[window]
    steepest = float(lrs[window][int(np.nanargmin(part))]) if len(part) else min_lr / 10
    return min(steepest, min_lr / 10), steepest, min_lr


def _batches(n: int, size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of row indices in [0, n): shuffled passes, a new one whenever the
    next batch would not fit in what is left of the current pass."""
    generator = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(n, generator=generator), 0
    while True:
        if cursor + size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield order[cursor : cursor + size]
        cursor += size


def range_test(
    head: nn.Module,
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    task: str,
    config: TrainConfig,
    loss_weights: torch.Tensor | None = None,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    steps: int = 200,
    beta: float = 0.9,
    diverge: float = 4.0,
) -> LRFinding:
    """Sweep the learning rate of a copy of ``head`` (``head`` itself is untouched).

    Args:
        features: (N, F) frozen-base features of the training images; targets: their labels.
        steps: optimizer steps from ``start_lr`` to ``end_lr`` (log-spaced).
        diverge: stop once the smoothed loss exceeds this multiple of its minimum.

    Example:
        >>> finding = range_test(net.head, f, y, task="multiclass", config=TrainConfig())  # doctest: +SKIP
        >>> finding.suggestion
    """
    if not 0 < start_lr < end_lr or steps < 10:
        raise ValueError(f"need 0 < start_lr < end_lr and steps >= 10, got {start_lr}, {end_lr}, {steps}")
    model = copy.deepcopy(head).train()
    model.requires_grad_(True)
    loss_fn = make_loss(task, loss_weights)
    optimizer = make_optimizer([{"params": list(model.parameters()), "lr": start_lr, "name": "head"}], config)
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    batches = _batches(len(features), config.batch_size, config.seed)
    lrs, losses, smoothed = [], [], []
    average, best, diverged = 0.0, math.inf, False
    for step in range(steps):
        lr = start_lr * growth**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        loss = loss_fn(model(features[batch]), targets[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        average = beta * average + (1 - beta) * value
        smooth = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or (step > steps // 10 and smooth > diverge * best):
            diverged = True
            break
    finite = np.array([s if math.isfinite(s) else np.nan for s in smoothed])
    suggestion, steepest, min_lr = suggest(np.array(lrs), finite)
    return LRFinding(lrs, losses, smoothed, suggestion, steepest, min_lr, diverged)
