"""The parity check every export must pass before it is kept.

The exported model and the eager network see the same inputs: up to 32 held-out images
of the run (``RUN/split.csv`` val/test rows that still exist), topped up with generated
images when fewer are left. Each must give the same top-1 class and probabilities within
``rtol=1e-3, atol=1e-5`` of the eager model, at batch sizes 1, 7 and 32 (a dynamic batch
axis that only works at the traced size, or batch-dependent numerics, fail here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from headstart import shards
from headstart.preprocess import Preprocess

BATCH_SIZES = (1, 7, 32)
COUNT = 32
RTOL, ATOL = 1e-3, 1e-5


@dataclass
class ParityReport:
    images: int
    held_out: int
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    top1_mismatches: int
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        generated = self.images - self.held_out
        return (
            f"parity on {self.images} images ({self.held_out} held-out, {generated} generated) at batch sizes "
            f"{', '.join(map(str, self.batch_sizes))}: max |dp| {self.max_abs_diff:.2e}, "
            f"top-1 mismatches {self.top1_mismatches}"
        )


def held_out_paths(run_dir: Path, classes: list[str]) -> list[str]:
    """Validation/test images of the run that still exist (never training images)."""
    from headstart.data.split import read_split
    from headstart.errors import ArtifactError

    try:
        splits = read_split(run_dir / "split.csv", classes)
    except (ArtifactError, KeyError, OSError):
        return []
    paths = [s.path for name in ("test", "val") for s in splits.get(name, [])]
    return [p for p in paths if Path(shards.shard_file(p)).is_file()]  # an image inside a shard: its shard


def generated_images(n: int, seed: int = 0) -> list[Image.Image]:
    """Varied synthetic images (sizes, aspect ratios, smooth + noisy content)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(24, 300)), int(rng.integers(24, 300))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(0, 255, 3) * np.stack([xx, yy, 1 - xx], -1)
        pixels = base + rng.normal(0, rng.uniform(2, 60), (h, w, 3))
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"))
    return out


def parity_inputs(run_dir: Path, classes: list[str], preprocess: Preprocess) -> tuple[np.ndarray, int]:
    """(COUNT, 3, S, S) float32 inputs and how many of them are held-out images."""
    arrays: list[np.ndarray] = []
    for path in held_out_paths(run_dir, classes):
        if len(arrays) == COUNT:
            break
        try:
            arrays.append(preprocess(path))
        except Exception:  # an unreadable file was skipped in training too
            continue
    held_out = len(arrays)
    arrays += [preprocess(img) for img in generated_images(COUNT - held_out)]
    return np.stack(arrays).astype(np.float32), held_out


def check(
    reference: Callable[[np.ndarray], np.ndarray],
    exported: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    held_out: int,
) -> ParityReport:
    """Compare ``exported`` with ``reference`` on ``inputs`` at every batch size."""
    want = np.concatenate([reference(inputs[i : i + 8]) for i in range(0, len(inputs), 8)])
    failures: list[str] = []
    worst, mismatches = 0.0, 0
    for bs in BATCH_SIZES:
        parts = [exported(inputs[i : i + bs]) for i in range(0, len(inputs), bs)]
        got = np.concatenate(parts)
        if got.shape != want.shape:
            failures.append(f"batch {bs}: output shape {got.shape} != {want.shape}")
            continue
        diff = np.abs(got - want)
        worst = max(worst, float(diff.max()))
        bad_top1 = int((got.argmax(1) != want.argmax(1)).sum())
        mismatches += bad_top1
        if bad_top1:
            failures.append(f"batch {bs}: top-1 differs on {bad_top1} of {len(inputs)} images")
        close = np.isclose(got, want, rtol=RTOL, atol=ATOL)
        if not close.all():
            failures.append(f"batch {bs}: {int((~close).sum())} probabilities outside rtol {RTOL}/atol {ATOL} (max |dp| {diff.max():.2e})")
    return ParityReport(len(inputs), held_out, BATCH_SIZES, worst, mismatches, failures)
