"""What each phase trains on: cached frozen-base features (phase 1) or decoded images.

``PhaseLoaders(phase)`` gives ``(train loader, val loader, on_features)``, the contract of
``headstart.engine.fit.two_phase_fit``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset, WeightedRandomSampler

from headstart.config import TrainConfig
from headstart.data.datasets import SquaresDataset, encode_targets
from headstart.data.prepare import Prepared
from headstart.engine.balance import sample_weights
from headstart.engine.frozen import FEATURES, FrozenFeatures  # noqa: F401  # FEATURES: the old home of the name
from headstart.machine import cpu_count
from headstart.preprocess import Preprocess


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a loader worker must not spawn its own thread pool


class PhaseLoaders:
    """phase -> (train loader, val loader, on_features) for ``two_phase_fit``."""

    def __init__(
        self,
        config: TrainConfig,
        prepared: Prepared,
        preprocess: Preprocess,
        features: FrozenFeatures,
        task: str,
        num_classes: int,
        shared: Path | None = None,
        rank: int = 0,
    ) -> None:
        self.config, self.prepared, self.preprocess, self.features = config, prepared, preprocess, features
        self.task, self.k, self.shared, self.rank = task, num_classes, shared, rank
        self.y_train = encode_targets(prepared.samples["train"], num_classes, task)
        self.y_val = encode_targets(prepared.samples["val"], num_classes, task)
        self.generator = torch.Generator().manual_seed(config.seed)

    def workers(self) -> int:
        # With 2 cores a worker process competes with the model's threads (measured: sys
        # time as high as user time), so small machines load in the main process.
        if self.config.num_workers is not None:
            return self.config.num_workers
        return 0 if cpu_count() <= 2 else min(6, cpu_count() - 1)

    def __call__(self, phase: int) -> tuple[DataLoader, DataLoader, bool]:
        if phase == 1 and self.config.feature_cache:
            f_train, f_val = self.features.phase1(self.shared, self.rank)
            views = len(f_train) // max(1, len(self.y_train))  # the targets repeat once per view
            y_views = self.y_train.repeat(views, *[1] * (self.y_train.dim() - 1))
            return (*self._make(TensorDataset(f_train, y_views), TensorDataset(f_val, self.y_val), 0), True)
        squares, rows = self.prepared.images.array, self.prepared.rows
        train_ds = SquaresDataset(squares, rows["train"], self.y_train, self.preprocess, self.config.augment)
        val_ds = SquaresDataset(squares, rows["val"], self.y_val, self.preprocess, None)
        return (*self._make(train_ds, val_ds, self.workers()), False)

    def _make(self, train_ds: Dataset, val_ds: Dataset, workers: int) -> tuple[DataLoader, DataLoader]:
        cfg, train_s = self.config, self.prepared.samples["train"]
        n = len(train_ds)  # type: ignore[arg-type]  # torch's Dataset declares no __len__; ours have one
        views = n // max(1, len(train_s))  # phase 1 on K feature views: K rows per image
        weights = sample_weights(train_s, self.k).repeat(views)
        # torch's stub asks for Sequence[float]; the sampler takes a tensor (torch.as_tensor)
        sampler = WeightedRandomSampler(weights, len(weights), generator=self.generator) if cfg.oversample else None  # type: ignore[arg-type]
        pin = torch.cuda.is_available()
        init = _one_thread if workers else None
        train = DataLoader(
            train_ds,
            batch_size=cfg.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=self.generator,
            drop_last=n % cfg.batch_size == 1,  # a batch of one breaks batch norm
            collate_fn=getattr(train_ds, "collate", None),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            worker_init_fn=init,
        )
        val = DataLoader(
            val_ds,
            batch_size=cfg.batch_size * 2,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            worker_init_fn=init,
            collate_fn=getattr(val_ds, "collate", None),
        )
        return train, val
