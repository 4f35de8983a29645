"""Frozen-base features of a run's splits, computed once and shared: the learning-rate range
test, phase 1 on cached features and the label-issue search all read them.

Here, below both ``pipeline`` and ``label_issues``, so each imports it downwards.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from headstart.config import TrainConfig
from headstart.data.prepare import Prepared
from headstart.files import atomic_target
from headstart.models import Network
from headstart.preprocess import Preprocess

FEATURES = "features.pt"  # under RUN/checkpoints, multi-process runs only


class FrozenFeatures:
    """Frozen-base features of each split, computed once per run through the persistent
    feature cache (lr-find and phase 1 share them). View 0 is the evaluation view of each
    image; view v > 0 a random training view (seed + v)."""

    def __init__(
        self, network: Network, prepared: Prepared, preprocess: Preprocess, config: TrainConfig, cache: bool, console: Console
    ) -> None:
        self.network, self.prepared, self.preprocess = network, prepared, preprocess
        self.config, self.cache, self.console = config, cache, console
        self._memo: dict[tuple[str, int], torch.Tensor] = {}

    def get(self, split: str, view: int = 0) -> torch.Tensor:
        from headstart.engine.features import cached_features

        if (split, view) not in self._memo:
            self._memo[(split, view)] = cached_features(
                self.network.backbone,
                self.prepared.images.array,
                self.prepared.rows[split],
                self.preprocess,
                self.cache,
                show=not self.console.quiet,
                augment=self.config.augment if view else None,
                seed=self.config.seed + view,
            )
        return self._memo[(split, view)]

    def ready(self, split: str) -> torch.Tensor | None:
        """The evaluation-view features of ``split`` if already computed; never computes them."""
        return self._memo.get((split, 0))

    def phase1(self, shared: Path | None, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) features for phase 1. With several processes rank 0 computes them
        once into RUN/checkpoints/features.pt, kept for a resume until training ends; the
        other ranks wait for that file and load it."""
        from headstart.engine.ranks import wait_for_file

        path = shared / "checkpoints" / FEATURES if shared is not None else None
        if path is not None and (rank > 0 or path.exists()):
            wait_for_file(path, rank, "phase-1 features")
            saved = torch.load(path, weights_only=True)
            return saved["train"], saved["val"]
        f_train, f_val = self.get("train"), self.get("val")
        if self.config.feature_views > 1:  # random training views after the evaluation view: (K * N, F)
            f_train = torch.cat([f_train] + [self.get("train", view=v) for v in range(1, self.config.feature_views)])
        if path is not None:
            with atomic_target(path) as tmp:  # created exclusively: a planted link is never followed
                torch.save({"train": f_train, "val": f_val}, tmp)
        return f_train, f_val
