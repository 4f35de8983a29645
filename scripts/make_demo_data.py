"""Build the demo data set bundled with headstart from Debian's OpenClipart PNGs.

`headstart demo` must run offline on data shipped in the package, and its accuracy must
mean something: with 300 validation images a 95 % interval is about +-5 points (with the
50 of the first sample it was +-13). This script takes six well-populated, visually
distinct top-level OpenClipart categories, drops every file that could be a label conflict
or a leak between training and validation (the same name or bytes in two chosen categories,
and near-duplicates anywhere in the selection: within 5 of the 256 bits of `headstart
doctor`'s difference hash), takes a seeded sample of each, and writes each drawing
composited on white, fitted into a 224 px square (the bundled EfficientNet-Lite0's native
input, so the demo trains at full size whatever rule picks the side) as a palette PNG
(about 9 KB each).

    apt-get install openclipart-png
    python scripts/make_demo_data.py            # --source to read another copy
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.doctor.inspect import dhash

SOURCE = Path("/usr/share/openclipart/png")
TARGET = Path(__file__).resolve().parents[1] / "src/headstart/demo_data/openclipart"
CLASSES = ("animals", "computer", "food", "people", "recreation", "transportation")
NEAR_BITS = 5  # headstart doctor's --near default
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit: larger drawings are skipped


def candidates(source: Path, seed: int) -> dict[str, list[Path]]:
    """Per class, a seeded shuffle of the files that occur in exactly one chosen category."""
    files = {c: sorted((source / c).rglob("*.png")) for c in CLASSES}
    names = Counter(p.name for c in CLASSES for p in files[c])
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for c in CLASSES for p in files[c]}
    owners: dict[str, set[str]] = {}
    for c in CLASSES:
        for p in files[c]:
            owners.setdefault(digests[p], set()).add(c)
    rng = random.Random(seed)
    pools = {}
    for c in CLASSES:
        pool = [p for p in files[c] if names[p.name] == 1 and len(owners[digests[p]]) == 1]
        rng.shuffle(pool)
        pools[c] = pool
    return pools


def square(path: Path, side: int) -> Image.Image | None:
    """The drawing on white, fitted into a side x side square; None when unusable."""
    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS or min(image.size) < 32:
            return None
        image = image.convert("RGBA")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.convert("RGB")


def near_any(bits: np.ndarray, kept: list[np.ndarray]) -> bool:
    """Whether ``bits`` (256 booleans) is within NEAR_BITS of any kept hash."""
    if not kept:
        return False
    return bool((np.count_nonzero(np.stack(kept) != bits, axis=1) <= NEAR_BITS).any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.source.is_dir():
        raise SystemExit(f"{args.source} not found: apt-get install openclipart-png (or give --source)")

    pools = candidates(args.source, args.seed)
    for c in CLASSES:
        shutil.rmtree(TARGET / c, ignore_errors=True)
    kept: list[np.ndarray] = []  # hashes of every image written so far, all classes
    for c in CLASSES:
        out = TARGET / c
        out.mkdir(parents=True)
        written = 0
        for path in pools[c]:
            if written == args.per_class:
                break
            try:
                image = square(path, args.side)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                print(f"skipped {path}: {exc}")
                continue
            if image is None:
                continue
            bits = np.unpackbits(np.frombuffer(bytes.fromhex(dhash(image.copy())), dtype=np.uint8)).astype(bool)
            if near_any(bits, kept):
                continue
            kept.append(bits)
            image.quantize(256, method=Image.Quantize.MEDIANCUT).save(out / f"{path.stem}.png", optimize=True)
            written += 1
        print(f"{c}: {written} images")
    total = sum(f.stat().st_size for f in TARGET.rglob("*.png"))
    print(f"{TARGET}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
