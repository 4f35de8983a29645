"""Write a Fashion-MNIST subset as a train/test image-folder layout (DATA/{train,test}/<class>/).

Debian's `dataset-fashion-mnist` ships the idx files; headstart reads image folders, so
this turns N images per class of each split into PNGs, the way a user would prepare them.

    apt-get install dataset-fashion-mnist
    python scripts/fashion_mnist_folder.py OUT [--train-per-class 100] [--test-per-class 50]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=50)
    args = parser.parse_args()
    for split, prefix, n in (("train", "train", args.train_per_class), ("test", "t10k", args.test_per_class)):
        images = read_idx(SOURCE / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(SOURCE / f"{prefix}-labels-idx1-ubyte.gz")
        for k, name in enumerate(CLASSES):
            folder = args.out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(labels == k)[:n]:
                Image.fromarray(images[i], "L").save(folder / f"{i:05d}.png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
