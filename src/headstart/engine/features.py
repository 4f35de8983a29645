"""Frozen-phase features: while the base is frozen its output per image never changes, so
compute it once and train the head on the cached (N, F) tensor at memory speed.

With the cache on, the features also persist across runs under ``<cache>/features/``,
keyed by the base's weights, the preprocessing and the very pixels of every square, so a
second ``train`` on the same data (another head, learning rate, epochs...) skips the base.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from headstart.allocator import keep_freed_memory
from headstart.config import AugmentConfig
from headstart.files import sweep_orphans
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
    from headstart.data.store import cache_root

    if not cache or len(rows) == 0:
        return extract_features(backbone, squares, rows, preprocess, show=show, augment=augment, seed=seed)
    folder = cache_root() / "features"
    key = _features_key(backbone, squares, rows, preprocess, augment, seed)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    if npy.exists() or meta.exists():
        try:
            array = np.load(npy)
            if json.loads(meta.read_text())["crc32"] == zlib.crc32(array) and array.shape[0] == len(rows):
                return torch.from_numpy(array)
            problem = "damaged"
        except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:  # truncated, half-written or unreadable
            problem = f"damaged ({type(exc).__name__})"
        print(f"headstart: feature cache entry {npy} is {problem}; recomputing it.", file=sys.stderr)
    features = extract_features(backbone, squares, rows, preprocess, show=show, augment=augment, seed=seed)
    array = features.numpy()
    tmp, meta_tmp = folder / f"{key}.{os.getpid()}.tmp.npy", folder / f"{key}.{os.getpid()}.tmp.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        sweep_orphans(folder)  # temporary files of runs killed while writing
        np.save(tmp, array)
        meta_tmp.write_text(json.dumps({"version": FEATURES_VERSION, "shape": list(array.shape), "crc32": zlib.crc32(array.data)}))
        os.replace(tmp, npy)  # the data first: a reader trusts nothing without its matching metadata
        os.replace(meta_tmp, meta)
    except OSError as exc:
        for leftover in (tmp, meta_tmp):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, FileNotFoundError):  # the folder was made above: removed since, by a `cache clear`
            print("headstart: the frozen-base features were not kept in the cache (it was cleared meanwhile).", file=sys.stderr)
        else:
            print(f"headstart: cannot write the feature cache in {folder} ({exc.strerror}); continuing without it.", file=sys.stderr)
    return features
