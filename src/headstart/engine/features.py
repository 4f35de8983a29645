"""Frozen-phase features: while the base is frozen its output per image never changes, so
compute it once and train the head on the cached (N, F) tensor at memory speed.

With the cache on, the features also persist across runs under ``<cache>/features/``,
keyed by the base's weights, the preprocessing and the very pixels of every square, so a
second ``train`` on the same data (another head, learning rate, epochs...) skips the base.
The folder and its entries follow the cache's policy (``headstart.cache``: the user's
alone, 0700 / 0600, anything else refused with one line); temporary files are created
exclusively.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from headstart.allocator import keep_freed_memory
from headstart.config import AugmentConfig
from headstart.files import create_temporary, sweep_orphans
from headstart.models import Network
from headstart.models.network import to_channels_last
from headstart.preprocess import Preprocess
from headstart.progress import track

if TYPE_CHECKING:
    from headstart.data.store import Squares

FEATURES_VERSION = 2  # 2: keyed by the compact stored rows and the whole preprocessing


def extract_features(
    backbone: nn.Module,
    squares: np.ndarray | Squares,
    rows: np.ndarray,
    preprocess: Preprocess,
    batch_size: int = 64,
    show: bool = False,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """(len(rows), F) pooled features of the evaluation view of each stored square, or of
    one random training view each (``augment``, drawn from ``seed``, same every call).

    Memory is one batch of model inputs at a time: ``squares`` may be the compact store
    (``Squares``), whose rows are expanded to full squares per batch here.
    """
    keep_freed_memory()  # batched forwards without mmap churn: see allocator.py and bench/feature_alloc.py
    augmenter = None
    if augment is not None:
        from headstart.data.datasets import TrainAugment

        augmenter = TrainAugment(preprocess, augment)
    was_training = backbone.training
    backbone.eval().to(memory_format=torch.channels_last)
    device = next(backbone.parameters()).device
    out: list[torch.Tensor] = []
    # The views are drawn from a private seed, batch by batch in row order, so they are the
    # same every call; the caller's random state is left as it was.
    what = f"Computing frozen-base features of {len(rows)} images"
    with torch.random.fork_rng(devices=[]), torch.inference_mode(), track(len(rows), what, show=show) as advance:
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = squares[chunk]  # (B, R, R, 3) uint8
            if augmenter is not None:
                x = augmenter.batch(torch.stack([torch.from_numpy(augmenter.geometry(sq)) for sq in batch]))
            else:
                x = torch.from_numpy(preprocess.normalize(batch))
            x = to_channels_last(x.to(device))
            out.append(backbone(x).float().cpu())
            advance(len(chunk))
    backbone.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def head_only(network: Network) -> Network:
    """A network over features: identity base, the same (shared) head parameters."""
    return Network(nn.Identity(), network.head)


def _features_key(
    backbone: nn.Module, squares: np.ndarray | Squares, rows: np.ndarray, preprocess: Preprocess, augment: AugmentConfig | None, seed: int
) -> str:
    digest = hashlib.sha256()
    spec = [FEATURES_VERSION, type(backbone).__name__, preprocess.to_dict()]
    if augment is not None:
        spec += [augment.to_dict(), seed]
    digest.update(json.dumps(spec).encode())
    for name, tensor in backbone.state_dict().items():  # the weights themselves, not a name for them
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    stored = getattr(squares, "stored", None)  # the compact store: hash what is stored, not its expansion
    for row in rows:
        pixels = np.ascontiguousarray(stored(int(row)) if stored is not None else squares[row])
        digest.update(str(pixels.shape).encode())
        digest.update(pixels.data)
    return digest.hexdigest()[:32]


def cached_features(
    backbone: nn.Module,
    squares: np.ndarray | Squares,
    rows: np.ndarray,
    preprocess: Preprocess,
    cache: bool = True,
    show: bool = False,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """``extract_features``, read from / written to the on-disk feature cache when ``cache``.

    Example:
        >>> f = cached_features(network.backbone, images.array, rows["train"], preprocess)  # doctest: +SKIP
        >>> f.shape                                                                          # (len(rows), F)
    """
    from headstart.cache import GO_ON, UnsafeCache, cache_folder

    if not cache or len(rows) == 0:
        return extract_features(backbone, squares, rows, preprocess, show=show, augment=augment, seed=seed)
    try:
        folder = cache_folder("features")
    except (UnsafeCache, OSError) as exc:
        why = exc if isinstance(exc, UnsafeCache) else f"cannot write the feature cache ({exc.strerror})"
        print(f"headstart: {why}; {GO_ON}.", file=sys.stderr)
        return extract_features(backbone, squares, rows, preprocess, show=show, augment=augment, seed=seed)
    key = _features_key(backbone, squares, rows, preprocess, augment, seed)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    found = _read_features(npy, meta, len(rows))
    if found is not None:
        return found
    features = extract_features(backbone, squares, rows, preprocess, show=show, augment=augment, seed=seed)
    _write_features(folder, npy, meta, features.numpy())
    return features


def _read_features(npy: Path, meta: Path, count: int) -> torch.Tensor | None:
    """The cached (count, F) features if present, the user's own and intact; else None (told why)."""
    from headstart.cache import UnsafeCache, check_entry

    if not (npy.exists() or meta.exists() or npy.is_symlink() or meta.is_symlink()):
        return None
    try:
        check_entry(npy)
        check_entry(meta)
        array = np.load(npy)
        if json.loads(meta.read_text())["crc32"] == zlib.crc32(array) and array.shape[0] == count:
            return torch.from_numpy(array)
        problem = "damaged"
    except UnsafeCache as exc:
        print(f"headstart: {exc}; recomputing it.", file=sys.stderr)
        return None
    except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:  # truncated, half-written or unreadable
        problem = f"damaged ({type(exc).__name__})"
    print(f"headstart: feature cache entry {npy} is {problem}; recomputing it.", file=sys.stderr)
    return None


def _write_features(folder: Path, npy: Path, meta: Path, array: np.ndarray) -> None:
    """Keep ``array`` as the entry (temporary files 0600, created exclusively, renamed into place)."""
    made: list[Path] = []
    try:
        sweep_orphans(folder)  # temporary files of runs killed while writing
        tmp, fd = create_temporary(npy, 0o600)
        made.append(tmp)
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        meta_tmp, meta_fd = create_temporary(meta, 0o600)
        made.append(meta_tmp)
        with os.fdopen(meta_fd, "w", encoding="utf-8") as text:
            text.write(json.dumps({"version": FEATURES_VERSION, "shape": list(array.shape), "crc32": zlib.crc32(array.data)}))
        os.replace(tmp, npy)  # the data first: a reader trusts nothing without its matching metadata
        os.replace(meta_tmp, meta)
    except OSError as exc:
        for leftover in made:
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, FileNotFoundError):  # the folder was made above: removed since, by a `cache clear`
            print("headstart: the frozen-base features were not kept in the cache (it was cleared meanwhile).", file=sys.stderr)
        else:
            print(f"headstart: cannot write the feature cache in {folder} ({exc.strerror}); continuing without it.", file=sys.stderr)
