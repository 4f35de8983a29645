"""Class imbalance: loss weights and oversampling weights from the training labels."""

from __future__ import annotations

import numpy as np
import torch

from headstart.data.index import Sample


def loss_weights(samples: list[Sample], k: int, task: str) -> torch.Tensor:
    """'balanced': multiclass n/(k * n_c); binary and multi-label: positive weight neg/pos."""
    counts = np.bincount([i for s in samples for i in s.labels], minlength=k).astype(np.float64)
    n = len(samples)
    if task == "multiclass":
        return torch.tensor(n / (k * np.maximum(counts, 1)), dtype=torch.float32)
    if task == "binary":
        return torch.tensor([(n - counts[1]) / max(counts[1], 1)], dtype=torch.float32)
    return torch.tensor((n - counts) / np.maximum(counts, 1), dtype=torch.float32)


def sample_weights(samples: list[Sample], k: int) -> torch.Tensor:
    """Oversampling weights: each image weighs 1 / (count of its rarest class)."""
    counts = np.bincount([i for s in samples for i in s.labels], minlength=k)
    return torch.tensor([1.0 / min((counts[i] for i in s.labels), default=len(samples)) for s in samples], dtype=torch.double)
