"""Tiny generated images for the tests: classes told apart by colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}


def image(colour: tuple[int, int, int], seed: int, size: int = 28) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float64)
    noise = rng.normal(0, 18, (size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def class_folders(root: Path, classes=("red", "green", "blue"), per_class: int = 10, nested: bool = True) -> Path:
    """root/<class>/[sub/]<i>.png, half of each class one folder deeper."""
    for c in classes:
        for i in range(per_class):
            folder = root / c / ("deeper" if nested and i % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            image(COLOURS[c], seed=hash((c, i)) % 2**32).save(folder / f"{c}_{i}.png")
    return root


def split_folders(root: Path, classes=("red", "green", "blue"), per_class=(8, 3, 3)) -> Path:
    for split, n in zip(("train", "val", "test"), per_class):
        # create the class folders in reverse order: matching must be by name
        for c in reversed(classes):
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image(COLOURS[c], seed=hash((split, c, i)) % 2**32).save(folder / f"{i}.png")
    return root
