"""Parity for a quantized export: does it decide as the fp32 model does, provably?

Probabilities of an int8 model differ from fp32 by about 1e-2, so the fp32 check
(``parity.py``, rtol 1e-3) cannot apply. Instead both models predict every validation and
test image of the run; when those are fewer than ``MIN_IMAGES``, training images not used for
calibration (then calibration ones) top them up. The measure is the share of images with the
same decision (top-1 for multiclass, the thresholded label set for multi-label) and its
Wilson 95 % lower bound; the export is refused when that bound is below ``min_agreement``
(default ``MIN_AGREEMENT`` = 0.98: at most 2 % of decisions may change, with 95 % confidence).
The accuracy of both models on the validation split is measured and printed beside it; it
cannot drop by more than the disagreement rate.

Example:
    >>> round(wilson_lower(199, 200), 3)   # 99.5 % agreement on 200 images: at least 97.2 %
    0.972
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.export.quantize import Images, load_images, per_class_sample, split_rows
from headstart.intervals import wilson
from headstart.metrics import predict_labels
from headstart.preprocess import Preprocess

MIN_AGREEMENT = 0.98
MIN_IMAGES = 500


def wilson_lower(agree: int, n: int) -> float:
    """The Wilson 95 % lower bound of ``agree / n`` (``headstart.intervals.wilson``); 0 when n is 0.

    Example:
        >>> round(wilson_lower(30, 30), 3)
        0.886
    """
    return wilson(agree, n).low if n else 0.0


@dataclass(frozen=True)
class AgreementReport:
    """How often int8 decides as fp32 does, and both accuracies on the validation split."""

    images: int  # images both models predicted
    held_out: int  # of which validation/test images (the rest: training images)
    agree: int
    lower_bound: float  # Wilson 95 %
    min_agreement: float
    val_images: int
    fp32_accuracy: float | None  # on the validation split; None when it has no images left
    int8_accuracy: float | None
    calibration_images: int

    @property
    def rate(self) -> float:
        return self.agree / self.images if self.images else 0.0

    @property
    def ok(self) -> bool:
        return self.lower_bound >= self.min_agreement

    def summary(self) -> str:
        acc = ""
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            acc = f"; val accuracy fp32 {self.fp32_accuracy:.2%}, int8 {self.int8_accuracy:.2%} ({self.val_images} images)"
        return (
            f"int8 agreement with fp32 {self.agree}/{self.images} = {self.rate:.2%} (95% lower bound {self.lower_bound:.2%}, "
            f"needed >= {self.min_agreement:.0%}; {self.held_out} held-out + {self.images - self.held_out} training images, "
            f"{self.calibration_images} calibration images){acc}"
        )


def agreement_images(
    run_dir: Path, classes: list[str], preprocess: Preprocess, calibration: Images, minimum: int = MIN_IMAGES
) -> tuple[Images, int, int]:
    """(images to compare on, how many are validation images (first), how many held-out in all)."""
    val = split_rows(run_dir, classes, "val")
    test = split_rows(run_dir, classes, "test")
    held = load_images([r for r in val + test if Path(r[0]).is_file()], preprocess)
    val_count = sum(1 for p in held.paths if p in {r[0] for r in val})
    missing = minimum - len(held.arrays)
    if missing <= 0:
        return held, val_count, len(held.arrays)
    used = set(calibration.paths)
    fresh = per_class_sample(
        [r for r in split_rows(run_dir, classes, "train") if r[0] not in used and Path(r[0]).is_file()], missing, seed=1
    )
    extra = load_images(fresh, preprocess)
    parts = [held, extra]
    if len(extra.arrays) < missing:  # a small run: calibration images compare too (they set ranges, not labels)
        n = missing - len(extra.arrays)
        parts.append(Images(calibration.arrays[:n], calibration.paths[:n], calibration.labels[:n], 0))
    arrays = np.concatenate([p.arrays for p in parts])
    paths = tuple(q for p in parts for q in p.paths)
    return Images(arrays, paths, tuple(label for p in parts for label in p.labels), held.listed), val_count, len(held.arrays)


def _decisions(run: Callable[[np.ndarray], np.ndarray], arrays: np.ndarray, task: str, threshold: float, batch: int = 32) -> np.ndarray:
    probs = np.concatenate([run(arrays[i : i + batch]) for i in range(0, len(arrays), batch)])
    return predict_labels(probs, task, threshold)


def _correct(decided: np.ndarray, labels: tuple[tuple[int, ...], ...], task: str, k: int) -> np.ndarray:
    if task == "multilabel":
        truth = np.zeros((len(labels), k), bool)
        for row, ls in enumerate(labels):
            truth[row, list(ls)] = True
        return (decided == truth).all(1)
    return decided == np.asarray([ls[0] for ls in labels])


def measure(
    fp32: Callable[[np.ndarray], np.ndarray],
    int8: Callable[[np.ndarray], np.ndarray],
    images: Images,
    val_count: int,
    held_out: int,
    task: str,
    threshold: float,
    classes: int,
    calibration_images: int,
    min_agreement: float = MIN_AGREEMENT,
) -> AgreementReport:
    """Run both models on ``images`` (validation images first) and compare their decisions."""
    a = _decisions(fp32, images.arrays, task, threshold)
    b = _decisions(int8, images.arrays, task, threshold)
    same = (a == b) if a.ndim == 1 else (a == b).all(1)
    agree, n = int(same.sum()), len(same)
    accuracies: list[float | None] = [None, None]
    if val_count:
        labels = images.labels[:val_count]
        accuracies = [float(_correct(d[:val_count], labels, task, classes).mean()) for d in (a, b)]
    return AgreementReport(
        n, held_out, agree, wilson_lower(agree, n), min_agreement, val_count, accuracies[0], accuracies[1], calibration_images
    )
