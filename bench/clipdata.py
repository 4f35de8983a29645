"""OpenClipart and demo-set image arrays for the recipe benchmarks, decoded once and kept.

``load("5x80")`` builds (or reuses) the folder bench/train_vs_baseline.py builds (first 5
categories, 80 images each, seeded), splits it 80/20 with the same seeded rule, decodes
every image the headstart way (alpha on white, shorter side to ``side``, centred square)
and returns ``(x_train, y_train, x_val, y_val, classes)`` as uint8 (N, side, side, 3) and
int64 arrays. ``load("demo")`` does the same for src/headstart/demo_data/openclipart.
Decoded arrays are kept under $RECIPE_CACHE (default /tmp/headstart-recipe-cache) with
the seconds decoding took, so experiments after the first read them back.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.preprocess import load_rgb, resize_square

CACHE = Path(os.environ.get("RECIPE_CACHE", "/tmp/headstart-recipe-cache"))
DEMO = Path(__file__).resolve().parents[1] / "src" / "headstart" / "demo_data" / "openclipart"
SEED = 0


def _decode(args: tuple[str, int]) -> np.ndarray:
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    path, side = args
    return resize_square(load_rgb(path, side), side, "bicubic")


def decode(paths: list[str], side: int) -> np.ndarray:
    """Decode files to (N, side, side, 3) uint8 on every core."""
    with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        return np.stack(list(pool.map(_decode, [(p, side) for p in paths], chunksize=8)))


def folder(name: str) -> Path:
    if name == "demo":
        return DEMO
    import train_vs_baseline as tvb  # the very folder its README table used

    classes, per_class = (int(v) for v in name.split("x"))
    data = CACHE / f"openclipart-{name}"
    tvb.build_dataset(data, tvb.CATEGORIES[:classes], per_class)
    return data


def split(root: Path, val_fraction: float = 0.2) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """The seeded stratified split of bench/train_vs_baseline.py: (classes, {train, val})."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for k, name in enumerate(classes):
        files = sorted(str(p) for p in (root / name).rglob("*") if p.suffix.lower() == ".png")
        random.Random(f"{SEED}-split-{name}").shuffle(files)
        n_val = max(1, round(len(files) * val_fraction))
        parts["val"] += [(f, k) for f in files[:n_val]]
        parts["train"] += [(f, k) for f in files[n_val:]]
    return classes, parts


def load(name: str, side: int = 224):
    CACHE.mkdir(parents=True, exist_ok=True)
    npz = CACHE / f"{name}-{side}.npz"
    if not npz.exists():
        classes, parts = split(folder(name))
        start = time.perf_counter()
        arrays = {f"x_{s}": decode([p for p, _ in parts[s]], side) for s in parts}
        seconds = time.perf_counter() - start
        np.savez(npz, **arrays, **{f"y_{s}": np.array([k for _, k in parts[s]], np.int64) for s in parts})
        (CACHE / f"{name}-{side}.json").write_text(json.dumps({"classes": classes, "decode_seconds": seconds}))
    z = np.load(npz)
    classes = json.loads((CACHE / f"{name}-{side}.json").read_text())["classes"]
    return z["x_train"], z["y_train"], z["x_val"], z["y_val"], len(classes)


def decode_seconds(name: str, side: int = 224) -> float:
    return json.loads((CACHE / f"{name}-{side}.json").read_text())["decode_seconds"]
