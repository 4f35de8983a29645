"""Torch datasets over the decoded squares: augmented for training, plain for evaluation.

Training augmentation is split in two so it costs little next to the model:
  * geometry per image, as ONE Pillow affine resample of the uint8 square: random crop
    (area fraction and aspect ratio), rotation and flips composed into a single matrix;
  * colour per batch, vectorised over (B, 3, S, S) floats: brightness, contrast and
    saturation jitter, then the same normalisation as evaluation.
Measured on 2 cores (bench/speed_goals.py): torchvision v2's per-image RandomRotation +
ColorJitter on uint8 tensors cost ~27% of a fine-tuning step; this costs a few percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from headstart.config import AugmentConfig
from headstart.data.index import Sample
from headstart.data.store import Squares
from headstart.preprocess import Preprocess

_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as Pillow's convert("L")


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


def border_colour(square: np.ndarray) -> tuple[int, int, int]:
    """The per-channel median of the outermost ring of pixels of an (R, R, 3) square: what
    rotation and crops fill with, so the fill matches the image's background (white around
    product photos, black around Fashion-MNIST) instead of drawing a frame around it."""
    ring = np.concatenate([square[0], square[-1], square[1:-1, 0], square[1:-1, -1]])  # (4R - 4, 3)
    r, g, b = (int(v) for v in np.median(ring, axis=0).round())
    return r, g, b


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))  # torch's RNG: seeded by Lightning, per worker


class TrainAugment:
    """Random geometry for one square and random colour for a batch, then normalisation.

    Example:
        >>> aug = TrainAugment(preprocess, AugmentConfig())
        >>> crops = torch.stack([torch.from_numpy(aug.geometry(sq)) for sq in squares])  # (B, S, S, 3) uint8
        >>> x = aug.batch(crops)                                                          # (B, 3, S, S) float32
    """

    def __init__(self, preprocess: Preprocess, augment: AugmentConfig) -> None:
        self.size = preprocess.input_size
        self.augment = augment
        self.mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1)

    def _crop_box(self, side: int) -> tuple[float, float, float, float]:
        """(centre x, centre y, width, height) in input pixels, as RandomResizedCrop draws it,
        then shifted by up to ``translate`` of the side on each axis."""
        cx, cy, w, h = self._zoom_box(side)
        t = self.augment.translate * side
        if t:
            cx, cy = cx + round(_uniform(-t, t)), cy + round(_uniform(-t, t))  # whole pixels: no blur
        return cx, cy, w, h

    def _zoom_box(self, side: int) -> tuple[float, float, float, float]:
        lo, hi = self.augment.scale
        if (lo, hi) == (1.0, 1.0):  # no crop augmentation: evaluation's centre crop
            return side / 2, side / 2, float(self.size), float(self.size)
        for _ in range(10):
            area = side * side * _uniform(lo, hi)
            ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if w <= side and h <= side:
                return _uniform(w / 2, side - w / 2), _uniform(h / 2, side - h / 2), w, h
        w = h = side * math.sqrt(lo)
        return side / 2, side / 2, w, h

    def geometry(self, square: np.ndarray) -> np.ndarray:
        """(R, R, 3) uint8 -> (S, S, 3) uint8: crop, rotation and flips in one resample."""
        aug, s = self.augment, self.size
        cx, cy, w, h = self._crop_box(square.shape[0])
        angle = math.radians(_uniform(-aug.rotation, aug.rotation)) if aug.rotation else 0.0
        fx = -1.0 if aug.hflip and float(torch.rand(())) < 0.5 else 1.0
        fy = -1.0 if aug.vflip and float(torch.rand(())) < 0.5 else 1.0
        x0, y0 = round(cx - s / 2), round(cy - s / 2)
        inside = 0 <= x0 <= square.shape[1] - s and 0 <= y0 <= square.shape[0] - s
        if angle == 0.0 and fx == fy == 1.0 and w == h == s and inside:
            return np.array(square[y0 : y0 + s, x0 : x0 + s])  # a plain crop: no resampling, a writable copy
        # Pillow maps each output pixel (u, v) to the input: in = centre + R(angle) @ diag(sx, sy) @ (out - s/2)
        sx, sy = fx * w / s, fy * h / s
        cos, sin = math.cos(angle), math.sin(angle)
        a, b, d, e = cos * sx, -sin * sy, sin * sx, cos * sy
        matrix = (a, b, cx - (a + b) * s / 2, d, e, cy - (d + e) * s / 2)
        image = Image.fromarray(np.asarray(square)).transform(
            (s, s), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR, fillcolor=border_colour(square)
        )  # outside the square: the image's own background, e.g. black around Fashion-MNIST garments
        return np.array(image)  # writable: torch.from_numpy refuses read-only memory

    def batch(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 in channels_last memory, jittered and normalised."""
        x = crops.permute(0, 3, 1, 2).float().div_(255.0)  # NHWC memory viewed as NCHW: channels_last
        c = self.augment.color
        if c:
            n = x.shape[0]

            def factor() -> torch.Tensor:
                return 1.0 + (torch.rand(n, 1, 1, 1) * 2.0 - 1.0) * c

            grey_weights = torch.tensor(_GREY).view(1, 3, 1, 1)
            x = (x * factor()).clamp_(0.0, 1.0)  # brightness
            mean = (x * grey_weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (mean + factor() * (x - mean)).clamp_(0.0, 1.0)  # contrast
            grey = (x * grey_weights).sum(1, keepdim=True)
            x = (grey + factor() * (x - grey)).clamp_(0.0, 1.0)  # saturation
        return x.sub_(self.mean).div_(self.std)

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """DataLoader ``collate_fn``: stack the uint8 crops, then colour and normalise the batch."""
        crops = torch.stack([x for x, _ in items])
        return self.batch(crops), torch.stack([y for _, y in items])

    @property
    def batch_geometry(self) -> bool:
        """Whether the geometry is flips and whole-pixel shifts only, which ``geometry_batch``
        does for a whole batch at once (the small-image recipe)."""
        return self.augment.rotation == 0 and self.augment.scale == (1.0, 1.0)

    def geometry_batch(self, squares: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 squares at the input size -> flipped and shifted, filled with each
        image's border colour: ``geometry`` for a whole batch, without a Python loop."""
        aug, x = self.augment, squares
        n, s = x.shape[0], x.shape[1]
        if aug.hflip:
            x = torch.where((torch.rand(n) < 0.5).view(n, 1, 1, 1), x.flip(2), x)
        if aug.vflip:
            x = torch.where((torch.rand(n) < 0.5).view(n, 1, 1, 1), x.flip(1), x)
        t = round(aug.translate * s)
        if t:
            ring = torch.cat([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], dim=1).float()  # (B, 4S - 4, 3)
            fill = ring.quantile(0.5, dim=1).round().to(torch.uint8)  # (B, 3): border_colour per image
            padded = fill.view(n, 1, 1, 3).expand(n, s + 2 * t, s + 2 * t, 3).clone()
            padded[:, t : t + s, t : t + s] = x
            dy, dx = torch.randint(0, 2 * t + 1, (n,)), torch.randint(0, 2 * t + 1, (n,))
            steps = torch.arange(s)
            ys, xs = (dy.view(n, 1) + steps).view(n, s, 1), (dx.view(n, 1) + steps).view(n, 1, s)
            x = padded[torch.arange(n).view(n, 1, 1), ys, xs]
        return x.contiguous()


class _Batch:
    """A whole batch gathered at once by ``SquaresDataset.__getitems__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y


class SquaresDataset(Dataset):
    """Rows of the decoded images (the store's ``Squares``, or an (N, R, R, 3) array) with their targets.

    ``augment=None`` gives exactly the evaluation/prediction input (``Preprocess.normalize``);
    with an ``AugmentConfig`` items are uint8 crops and ``self.collate`` must be the
    DataLoader's ``collate_fn`` (it finishes the augmentation per batch).
    """

    def __init__(
        self,
        squares: np.ndarray | Squares,
        rows: np.ndarray,
        targets: torch.Tensor,
        preprocess: Preprocess,
        augment: AugmentConfig | None = None,
    ) -> None:
        self.squares = squares
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = targets
        self.preprocess = preprocess
        self.augmenter = TrainAugment(preprocess, augment) if augment is not None else None
        # Small images stored at the input size with at most flips and shifts to apply: whole
        # batches straight from the store, augmented as tensors. Per image, Python and Pillow
        # cost more than a small convnet's step (Fashion-MNIST, 28 px: ~5x the step time).
        view = squares.uniform() if isinstance(squares, Squares) and preprocess.input_size == squares.side else None
        batchable = self.augmenter is None or self.augmenter.batch_geometry
        self._uniform = view if batchable else None

    @property
    def collate(self) -> Callable[[Any], tuple[torch.Tensor, torch.Tensor]]:
        """The DataLoader's ``collate_fn`` (for training and evaluation loaders alike)."""
        return self._collate

    def _collate(self, items: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(items, _Batch):
            return (self.augmenter.batch(items.x) if self.augmenter is not None else items.x), items.y
        if self.augmenter is not None:
            return self.augmenter.collate(items)
        return torch.utils.data.default_collate(items)

    def __getitems__(self, indices: list[int]) -> Any:
        """A batch at once (the DataLoader asks for this when it exists): gathered from the
        store's uniform view when there is one, else item by item."""
        if self._uniform is None:
            return [self[i] for i in indices]
        index = np.asarray(indices, dtype=np.int64)
        squares = torch.from_numpy(np.ascontiguousarray(self._uniform[self.rows[index]]))  # (B, S, S, C) uint8
        if squares.shape[-1] == 1:
            squares = squares.expand(-1, -1, -1, 3)
        y = self.targets[torch.from_numpy(index)]
        if self.augmenter is not None:
            return _Batch(self.augmenter.geometry_batch(squares), y)
        # Preprocess.normalize for a batch, operation for operation (float32: identical values)
        x = squares.float().mul_(1.0 / 255.0)
        mean = torch.tensor(self.preprocess.mean, dtype=torch.float32)
        std = torch.tensor(self.preprocess.std, dtype=torch.float32)
        return _Batch(((x - mean) / std).permute(0, 3, 1, 2).contiguous(), y)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        square = self.squares[self.rows[i]]
        if self.augmenter is None:
            x = torch.from_numpy(self.preprocess.normalize(square))
        else:
            x = torch.from_numpy(self.augmenter.geometry(square))
        return x, self.targets[i]
