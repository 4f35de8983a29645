"""Torch datasets over the decoded squares: augmented for training, plain for evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from headstart.config import AugmentConfig
from headstart.data.index import Sample
from headstart.preprocess import Preprocess


def encode_targets(samples: list[Sample], num_classes: int, task: str) -> torch.Tensor:
    """multiclass: (N,) int64 indices; binary: (N, 1) float; multilabel: (N, C) multi-hot."""
    if task == "multiclass":
        return torch.tensor([s.labels[0] for s in samples], dtype=torch.long)
    if task == "binary":
        return torch.tensor([[float(s.labels[0])] for s in samples])
    hot = torch.zeros(len(samples), num_classes)
    for row, sample in enumerate(samples):
        hot[row, list(sample.labels)] = 1.0
    return hot


def train_transform(preprocess: Preprocess, augment: AugmentConfig) -> v2.Compose:
    """Augmentations on a uint8 (3, R, R) square, ending in the same normalisation as eval."""
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(preprocess.input_size, scale=augment.scale, antialias=True)
        if augment.scale != (1.0, 1.0)
        else v2.CenterCrop(preprocess.input_size)
    ]
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.vflip:
        steps.append(v2.RandomVerticalFlip())
    if augment.rotation:
        steps.append(v2.RandomRotation(augment.rotation, fill=255))  # white, like composited alpha
    if augment.color:
        c = augment.color
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(preprocess.mean, preprocess.std)]
    return v2.Compose(steps)


class SquaresDataset(Dataset):
    """Rows of a decoded (N, R, R, 3) array with their targets.

    ``augment=None`` gives exactly the evaluation/prediction input (``Preprocess.normalize``).
    """

    def __init__(
        self,
        squares: np.ndarray,
        rows: np.ndarray,
        targets: torch.Tensor,
        preprocess: Preprocess,
        augment: AugmentConfig | None = None,
    ) -> None:
        self.squares = squares
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = targets
        self.preprocess = preprocess
        self.transform = train_transform(preprocess, augment) if augment is not None else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        square = self.squares[self.rows[i]]
        if self.transform is None:
            x = torch.from_numpy(self.preprocess.normalize(square))
        else:
            x = self.transform(torch.from_numpy(np.array(square)).permute(2, 0, 1))
        return x, self.targets[i]
