"""The benchmark suite's data sets, written once as ROOT/<name>/{train,test}/<class>/*.png.

Built from what a Debian machine has (bench/locations.py lists where), each with a held-out
test split of at least 1,000 images and a ``dataset.json`` manifest written last (a folder
without it is half-written and rebuilt; one with it and the same parameters is reused):

  * ``fashion-<train>-<test>``: Fashion-MNIST, <train>/<test> images per class from the
    official train/test idx files (first in file order); ``fashion-6000-1000`` is the full
    60k/10k.
  * ``clipart``: OpenClipart, the 7 top-level categories with at least 280 regular files
    (the package's symlinked duplicates left out), 280 sampled a class (seeded), 150 of
    them held out for test (1,050 test images, 910 train), copied unmodified.
  * ``clipart64``: the same images and split, downscaled so the longer side is 64 px.
  * ``digits``: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) as 8-bit
    PNGs scaled up 4x (32 px, nearest: the pixels themselves) with a stratified, seeded
    1,000-image test split (797 train).

    python bench/suite_data.py --root /tmp/bench-data fashion-600-200 clipart clipart64 digits
    HEADSTART_BENCH_DATA=/tmp/bench-data python bench/suite_data.py fashion-6000-1000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.locations import FASHION_MNIST, OPENCLIPART  # noqa: E402

SEED = 0
MANIFEST = "dataset.json"
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
CLIPART_PER_CLASS, CLIPART_TEST_PER_CLASS = 280, 150
DIGITS_TEST, DIGITS_SCALE = 1000, 4
SMALL_SIDE = 64


def data_root(given: str | os.PathLike | None) -> Path:
    """The folder the data sets live in: ``given``, else $HEADSTART_BENCH_DATA."""
    root = given or os.environ.get("HEADSTART_BENCH_DATA")
    if not root:
        raise SystemExit(
            "No data folder: give --root DIR or set HEADSTART_BENCH_DATA=DIR (any writable folder; data sets are written once)."
        )
    return Path(root)


def read_idx(path: Path) -> np.ndarray:
    """An idx(.gz) file (MNIST's format) as a numpy array of its declared shape."""
    with gzip.open(path) as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _write_fashion(out: Path, train_per_class: int, test_per_class: int) -> dict:
    for split, prefix, n in (("train", "train", train_per_class), ("test", "t10k", test_per_class)):
        images = read_idx(FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        for k, name in enumerate(FASHION_CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True)
            for i in np.flatnonzero(labels == k)[:n]:
                Image.fromarray(images[i], "L").save(folder / f"{i:05d}.png")
    return {"source": str(FASHION_MNIST), "train_per_class": train_per_class, "test_per_class": test_per_class}


def clipart_split(seed: int = SEED) -> dict[str, dict[str, list[Path]]]:
    """{split: {category: files}}: the categories with at least CLIPART_PER_CLASS regular
    files, CLIPART_PER_CLASS sampled from each (seeded), the first CLIPART_TEST_PER_CLASS
    of the sample held out for test."""
    rng = np.random.default_rng(seed)
    parts: dict[str, dict[str, list[Path]]] = {"train": {}, "test": {}}
    for category in sorted(p.name for p in OPENCLIPART.iterdir() if p.is_dir()):
        files = sorted(p for p in (OPENCLIPART / category).rglob("*.png") if p.is_file() and not p.is_symlink())
        if len(files) < CLIPART_PER_CLASS:
            continue
        chosen = [files[i] for i in rng.choice(len(files), CLIPART_PER_CLASS, replace=False)]
        parts["test"][category] = chosen[:CLIPART_TEST_PER_CLASS]
        parts["train"][category] = chosen[CLIPART_TEST_PER_CLASS:]
    return parts


def _flat_name(path: Path) -> str:
    return "__".join(path.relative_to(OPENCLIPART).parts[1:])  # sub-folders joined: names stay unique


def _write_clipart(out: Path, side: int | None) -> dict:
    parts = clipart_split()
    Image.MAX_IMAGE_PIXELS = None  # our own trusted system files; some are larger than Pillow's bomb limit
    for split, categories in parts.items():
        for category, files in categories.items():
            folder = out / split / category
            folder.mkdir(parents=True)
            for f in files:
                if side is None:
                    shutil.copyfile(f, folder / _flat_name(f))
                    continue
                with Image.open(f) as image:
                    image.thumbnail((side, side), Image.Resampling.LANCZOS)
                    image.save(folder / _flat_name(f))
    counts = {s: {c: len(v) for c, v in cats.items()} for s, cats in parts.items()}
    return {"source": str(OPENCLIPART), "seed": SEED, "longer_side": side, "counts": counts}


def _write_digits(out: Path) -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.repeat(np.repeat(digits.images, DIGITS_SCALE, 1), DIGITS_SCALE, 2)  # (N, 32, 32), nearest
    pixels = np.round(images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(SEED)
    test = np.zeros(len(pixels), dtype=bool)
    for k in range(10):  # stratified: each digit's share of the test split as in the whole set
        members = rng.permutation(np.flatnonzero(digits.target == k))
        test[members[: round(DIGITS_TEST * len(members) / len(pixels))]] = True
    for i, (image, label) in enumerate(zip(pixels, digits.target)):
        folder = out / ("test" if test[i] else "train") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{i:04d}.png")
    return {"source": "sklearn.datasets.load_digits", "seed": SEED, "scale": DIGITS_SCALE, "test": int(test.sum())}


def builder(name: str) -> Callable[[Path], dict]:
    """The function that writes data set ``name`` into an empty folder."""
    if name.startswith("fashion-"):
        train, test = (int(v) for v in name.removeprefix("fashion-").split("-"))
        return lambda out: _write_fashion(out, train, test)
    named: dict[str, Callable[[Path], dict]] = {
        "clipart": lambda out: _write_clipart(out, None),
        "clipart64": lambda out: _write_clipart(out, SMALL_SIDE),
        "digits": _write_digits,
    }
    if name not in named:
        raise SystemExit(f"Unknown data set {name!r}: use fashion-<train>-<test> (per class), {', '.join(named)}.")
    return named[name]


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.png"))


def prepare(name: str, root: Path) -> Path:
    """ROOT/name, written now unless a complete copy (its manifest) is already there."""
    out = root / name
    if (out / MANIFEST).is_file():
        return out
    write = builder(name)
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    facts = write(partial)
    facts.update({"name": name, "train_images": count_images(partial / "train"), "test_images": count_images(partial / "test")})
    (partial / MANIFEST).write_text(json.dumps(facts, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="fashion-<train>-<test>, clipart, clipart64, digits")
    parser.add_argument("--root", help="Folder for the data sets (default: $HEADSTART_BENCH_DATA).")
    args = parser.parse_args()
    root = data_root(args.root)
    for name in args.names:
        out = prepare(name, root)
        facts = json.loads((out / MANIFEST).read_text())
        print(f"{out}: {facts['train_images']} train, {facts['test_images']} test images")


if __name__ == "__main__":
    main()
