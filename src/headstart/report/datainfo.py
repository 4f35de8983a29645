"""What the report says about the data: counts, image sizes and modes, a fingerprint."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from headstart import shards
from headstart.data.index import Sample
from headstart.preprocess import open_image

# Reading every header of a 100k-image folder takes minutes on a slow disk; a fixed-stride
# sample of this many files describes sizes and modes just as well.
HEADER_SAMPLE = 2000


def class_counts(samples: dict[str, list[Sample]], k: int) -> dict[str, np.ndarray]:
    """split -> (K,) images per class (multi-label: images carrying each label)."""
    return {split: np.bincount([i for s in items for i in s.labels], minlength=k) for split, items in samples.items()}


@dataclass
class ImageStats:
    """Width, height, mode and format of (a sample of) the files, read from headers only."""

    examined: int
    total: int
    widths: np.ndarray
    heights: np.ndarray
    modes: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    unreadable: int = 0

    def summary(self, input_size: int) -> list[tuple[str, str]]:
        if not len(self.widths):
            return [("images examined", f"{self.examined} (no readable header)")]
        short = np.minimum(self.widths, self.heights)
        aspect = self.widths / np.maximum(self.heights, 1)
        sampled = f" (every {self.total // self.examined}th of {self.total:,})" if self.examined < self.total else ""
        rows = [
            ("images examined", f"{self.examined:,}{sampled}"),
            ("width (min / median / max)", _spread(self.widths)),
            ("height (min / median / max)", _spread(self.heights)),
            ("aspect ratio w/h (min / median / max)", f"{aspect.min():.2f} / {np.median(aspect):.2f} / {aspect.max():.2f}"),
            (f"shorter side below the {input_size} px input (upscaled)", f"{int((short < input_size).sum()):,}"),
            ("modes", ", ".join(f"{m} {n:,}" for m, n in self.modes.most_common())),
            ("formats", ", ".join(f"{f} {n:,}" for f, n in self.formats.most_common())),
        ]
        bomb = Image.MAX_IMAGE_PIXELS
        if bomb and (self.widths * self.heights > bomb).any():
            rows.append(
                (
                    f"larger than {bomb / 1e6:.0f} Mpx (Pillow's decompression-bomb limit)",
                    f"{int((self.widths * self.heights > bomb).sum()):,}",
                )
            )
        if self.unreadable:
            rows.append(("headers that could not be read", f"{self.unreadable:,}"))
        return rows


def _spread(values: np.ndarray) -> str:
    return f"{int(values.min()):,} / {int(np.median(values)):,} / {int(values.max()):,} px"


def image_stats(paths: list[str], limit: int = HEADER_SAMPLE) -> ImageStats:
    """Open each file lazily (header only, no pixel decoding)."""
    step = max(1, -(-len(paths) // limit))
    chosen = paths[::step]
    widths, heights, modes, formats, bad = [], [], Counter[str](), Counter[str](), 0
    for path in chosen:
        try:
            with warnings.catch_warnings():  # huge images are counted in the summary, not warned about
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = open_image(path)  # regular files, pinned decoders
            with im:
                widths.append(im.width)
                heights.append(im.height)
                modes[im.mode] += 1
                formats[im.format or "?"] += 1
        except Exception:  # the skipped-files table says why; here it only counts
            bad += 1
    return ImageStats(len(chosen), len(paths), np.array(widths), np.array(heights), modes, formats, bad)


def fingerprint(samples: dict[str, list[Sample]], classes: list[str], root: str | None) -> str:
    """sha256 over every (split, path relative to the data root, file size, labels), sorted.

    The same files with the same labels and split give the same fingerprint on any
    machine; renaming, resizing, relabelling or re-splitting any file changes it.
    """
    digest = hashlib.sha256()
    lines = []
    for split, items in samples.items():
        for s in items:
            rel = os.path.relpath(s.path, root) if root else s.path
            try:
                size = os.stat(shards.shard_file(s.path)).st_size  # an image inside a shard: the shard's
            except OSError:
                size = -1
            lines.append(f"{split}\t{Path(rel).as_posix()}\t{size}\t{';'.join(classes[i] for i in s.labels)}\n")
    for line in sorted(lines):
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]
