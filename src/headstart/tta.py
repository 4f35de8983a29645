"""Test-time augmentation: average the probabilities of a few views of each image.

Every view starts from the same decoded square the plain path uses (see
``headstart.preprocess``), so TTA changes nothing but the views:

    hflip   the centre crop, mirrored left-right          (1 extra view)
    vflip   the centre crop, mirrored top-bottom          (1 extra view)
    crops   the four corner crops of ``input_size`` from the stored square (4 extra views;
            they differ from the centre only when ``resize_size > input_size``)

The original centre crop is always the first view. Probabilities, not logits, are
averaged, so softmax and sigmoid outputs stay calibrated in the usual sense.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from headstart.errors import ConfigError
from headstart.preprocess import Preprocess

VIEWS: tuple[str, ...] = ("hflip", "vflip", "crops")
DEFAULT_VIEWS: tuple[str, ...] = ("hflip",)


def tta_views(tta: bool | str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise a user's TTA choice: False/None -> (), True -> ("hflip",), names checked.

    Example:
        >>> tta_views(True), tta_views("hflip,crops"), tta_views(False)
        (('hflip',), ('hflip', 'crops'), ())
    """
    if tta is None or tta is False:
        return ()
    if tta is True:
        return DEFAULT_VIEWS
    names = [n.strip() for n in (tta.split(",") if isinstance(tta, str) else tta) if n.strip()]
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise ConfigError(f"Unknown TTA view {unknown[0]!r}; choose from {', '.join(VIEWS)} (comma-separated).")
    return tuple(dict.fromkeys(names))  # keep order, drop repeats


def view_count(views: tuple[str, ...]) -> int:
    """How many forward passes a batch costs with these views (the original included)."""
    return 1 + sum(4 if v == "crops" else 1 for v in views)


def iter_views(squares: np.ndarray, preprocess: Preprocess, views: tuple[str, ...]) -> Iterator[np.ndarray]:
    """(B, R, R, 3) uint8 stored squares -> model inputs (B, 3, S, S), one array per view."""
    centre = preprocess.normalize(squares)
    yield centre
    for view in views:
        if view == "hflip":
            yield np.ascontiguousarray(centre[..., ::-1])
        elif view == "vflip":
            yield np.ascontiguousarray(centre[..., ::-1, :])
        elif view == "crops":
            s, r = preprocess.input_size, squares.shape[-2]
            for top, left in ((0, 0), (0, r - s), (r - s, 0), (r - s, r - s)):
                crop = np.ascontiguousarray(squares[..., top : top + s, left : left + s, :])
                yield preprocess.normalize(crop)
