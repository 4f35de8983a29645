"""The pilot of a planned run: the candidate bases' features at each candidate side, on the
user's own training images, through the cross-validated probe of ``headstart.engine.pilot``.

The images are decoded once per base at its native side, as training would decode them; a
smaller side is the stored squares resized in memory. When the pilot is the whole training
split, the native side's features go through the persistent feature cache with the same
key training uses, so a run that keeps the native side computes them once.

Example:
    >>> evidence = run_pilot(spec, [Base("tf_efficientnet_lite0")], median_side=150, budget_s=None,
    ...                      device="cpu", cache=True, seed=0)                      # doctest: +SKIP
    >>> print("\\n".join(evidence.table()))                                         # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import numpy as np

from headstart.engine.pilot import CAP_RATIO, PILOT_IMAGES, Candidate, Evidence, fold_count, fold_scores, metric_for, pilot_subset, select
from headstart.engine.plan import MIN_PRETRAINED_SIZE, OVERHEAD_S, natural_size

if TYPE_CHECKING:
    import torch

    from headstart.data.index import Sample
    from headstart.preprocess import Preprocess
    from headstart.runfolder import RunSpec

SMALL_SIDE = 128  # measured besides the images' own side when theirs is smaller (64 px drawings: 0.676 / 0.696 / 0.737 at 64 / 128 / 224)


# Below this budget the pilot (a feature pass per side) would eat the training it plans.
MIN_PILOT_BUDGET_S = 90.0


@dataclass(frozen=True)
class Base:
    """A candidate base: a timm name and, optionally, its weights file."""

    arch: str
    weights: str | None = None


def candidate_sides(median_side: int, native: int) -> tuple[int, ...]:
    """The sides worth measuring: the images' own (the smallest planned side covering their
    median, at least MIN_PRETRAINED_SIZE), 128 when that is smaller, and the base's native
    side; none above the native side. Few on purpose: each side costs a feature pass, and
    the native side's pass is reused by training when it is kept.

    Example:
        >>> candidate_sides(150, 224), candidate_sides(28, 224), candidate_sides(500, 260), candidate_sides(20, 32)
        ((160, 224), (64, 128, 224), (224, 260), (32,))
    """
    own = max(MIN_PRETRAINED_SIZE, natural_size(median_side))
    sides = {own, native} | ({SMALL_SIDE} if own < SMALL_SIDE else set())
    return tuple(sorted(s for s in sides if MIN_PRETRAINED_SIZE <= s <= native)) or (native,)


class Resized:
    """Stored squares resized to ``side`` batch by batch: ``view[rows]`` -> (B, side, side, 3) uint8."""

    def __init__(self, squares: object, side: int) -> None:
        self.squares, self.side = squares, side

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(self.squares[rows]))  # type: ignore[index]  # (B, R, R, 3)
        x = batch.permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(self.side, self.side), mode="bilinear", antialias=True, align_corners=False)
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def side_preprocess(top: Preprocess, side: int) -> Preprocess:
    """``top``'s preprocessing at another input side, with the same crop fraction."""
    crop = top.input_size / top.resize_size
    return replace(top, input_size=side, resize_size=max(side, math.floor(side / crop)))


def side_features(backbone: torch.nn.Module, squares: object, rows: np.ndarray, top: Preprocess, side: int, cache: bool) -> np.ndarray:
    """(len(rows), F) features of the evaluation view at ``side``; the native side through the cache."""
    from headstart.engine.features import cached_features, extract_features

    if side == top.input_size:
        return cached_features(backbone, squares, rows, top, cache).numpy()  # type: ignore[arg-type]  # Squares
    pre = side_preprocess(top, side)
    return extract_features(backbone, cast("np.ndarray", Resized(squares, pre.resize_size)), rows, pre).numpy()


def _targets(samples: Sequence[Sample], num_classes: int, task: str) -> np.ndarray:
    """(N,) class indices (binary too), or (N, K) 0/1 rows for multi-label."""
    if task != "multilabel":
        return np.array([s.labels[0] for s in samples], dtype=np.int64)
    hot = np.zeros((len(samples), num_classes), dtype=np.float32)
    for row, sample in enumerate(samples):
        hot[row, list(sample.labels)] = 1.0
    return hot


def _strata(targets: np.ndarray) -> np.ndarray:
    return targets if targets.ndim == 1 else np.argmax(targets, axis=1)


def _counts(targets: np.ndarray, num_classes: int) -> list[int]:
    if targets.ndim == 2:
        return [int(c) for c in targets.sum(0)]
    return [int(c) for c in np.bincount(targets, minlength=num_classes)]


def _measure_base(
    base: Base, spec: RunSpec, samples: list[Sample], whole: bool, median_side: int, device: str, cache: bool, seed: int
) -> tuple[list[Candidate], str, int]:
    """The candidates of one base: ([Candidate per side], metric, pilot images)."""
    from headstart.config import ModelConfig
    from headstart.data.prepare import prepare
    from headstart.models.network import create_backbone, data_config
    from headstart.preprocess import Preprocess

    backbone = create_backbone(ModelConfig(arch=base.arch, pretrained=True, weights=base.weights)).to(device)
    config = data_config(backbone)
    native = int(config["input_size"][-1])
    top = Preprocess.from_timm_config(config, native)
    splits = spec.splits if whole else {"train": samples}
    prepared = prepare(splits, top, cache, [])
    kept, rows = prepared.samples["train"], prepared.rows["train"]
    k = len(spec.classes)
    targets = _targets(kept, k, spec.task)
    folds = fold_count(_counts(targets, k)) or 0
    metric = metric_for(spec.task, _counts(targets, k))
    sides = candidate_sides(median_side, native)
    features = {native: side_features(backbone, prepared.images.array, rows, top, native, cache)}  # also warms the base up
    t0, pixels = time.perf_counter(), 0.0
    for side in sides[:-1]:  # smaller sides, never cached: their extraction times the base on this device
        features[side] = side_features(backbone, prepared.images.array, rows, top, side, cache)
        pixels += len(rows) * side * side
    # Cost ~ pixels, one constant fitted to all the timed sides: monotone in the side, and far
    # steadier than a rate per side on a shared machine (seconds per pixel).
    per_pixel = (time.perf_counter() - t0) / pixels if pixels else _native_seconds(backbone, prepared.images.array, rows, top)
    val_images = len(spec.splits.get("val", []))
    out = []
    for side in sides:
        # what training still has to compute: at the native side the pilot's features of every
        # training image are in the cache already (when the pilot is the whole split)
        left = val_images + (0 if side == native and whole and cache else len(spec.splits["train"]))
        scores = fold_scores(features[side], targets, k, spec.task, folds, metric, seed) if folds else ()
        full = (val_images + len(spec.splits["train"])) * side * side * per_pixel
        out.append(Candidate(base.arch, side, scores, left * side * side * per_pixel, base.weights, full))
    return out, metric, len(kept)


def _native_seconds(backbone: torch.nn.Module, squares: object, rows: np.ndarray, top: Preprocess) -> float:
    """Seconds per input pixel of the base at its native side, on a few pilot images (no cache)."""
    from headstart.engine.features import extract_features

    few = rows[:32]
    t0 = time.perf_counter()
    extract_features(backbone, cast("np.ndarray", squares), few, top)
    return (time.perf_counter() - t0) / max(1, len(few) * top.input_size**2)


def run_pilot(
    spec: RunSpec, bases: Sequence[Base], median_side: int, budget_s: float | None, device: str, cache: bool, seed: int = 0
) -> Evidence | None:
    """The measured candidates of every base and the one chosen; None when a class has
    fewer than two training images (no folds to measure on) or the budget is under
    MIN_PILOT_BUDGET_S: the plan then falls back to its rules and says so."""
    started = time.perf_counter()
    if budget_s is not None and budget_s < MIN_PILOT_BUDGET_S:
        return None
    train = list(spec.splits["train"])
    targets = _targets(train, len(spec.classes), spec.task)
    if fold_count(_counts(targets, len(spec.classes))) is None:
        return None
    subset = pilot_subset(_strata(targets), PILOT_IMAGES, seed)
    samples = [train[i] for i in subset]
    candidates: list[Candidate] = []
    metric, images = "accuracy", len(samples)
    for base in bases:
        found, metric, images = _measure_base(base, spec, samples, len(samples) == len(train), median_side, device, cache, seed)
        candidates += found
    if not all(c.scores for c in candidates):
        return None
    if budget_s is not None:
        limit, what = max(1.0, budget_s - OVERHEAD_S), "the budget"
    else:
        ref = max((c for c in candidates if c.arch == bases[0].arch), key=lambda c: c.side)
        limit = CAP_RATIO * (ref.full_seconds or ref.seconds)
        what = f"the cost cap ({CAP_RATIO:g}x the {ref.side}-px probe of {ref.arch})"
    evidence = select(candidates, limit, what, metric)
    return replace(evidence, images=images, seconds=round(time.perf_counter() - started, 2), device=device)
