"""Build the small demo data set bundled with headstart from Debian's OpenClipart PNGs.

`headstart demo` must run offline on data shipped in the package, within a few MB. This
script picks a few visually distinct top-level OpenClipart categories, takes a fixed
sample of each (sorted, seeded), drops files that appear in more than one chosen category
(same name or same bytes: they would be label conflicts), and writes downscaled copies,
alpha kept (headstart composites transparency itself).

    apt-get install openclipart-png
    python scripts/make_demo_data.py
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
from collections import Counter
from pathlib import Path

from PIL import Image

SOURCE = Path("/usr/share/openclipart/png")
TARGET = Path(__file__).resolve().parents[1] / "src/headstart/demo_data/openclipart"
CLASSES = ("animals", "food", "transportation", "plants", "tools")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=48)
    parser.add_argument("--max-side", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not SOURCE.is_dir():
        raise SystemExit(f"{SOURCE} not found: apt-get install openclipart-png")

    files = {c: sorted((SOURCE / c).rglob("*.png")) for c in CLASSES}
    names = Counter(p.name for c in CLASSES for p in files[c])
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for c in CLASSES for p in files[c]}
    owners: dict[str, set[str]] = {}
    for c in CLASSES:
        for p in files[c]:
            owners.setdefault(digests[p], set()).add(c)

    shutil.rmtree(TARGET, ignore_errors=True)
    rng = random.Random(args.seed)
    for c in CLASSES:
        pool = [p for p in files[c] if names[p.name] == 1 and len(owners[digests[p]]) == 1]
        rng.shuffle(pool)
        out = TARGET / c
        out.mkdir(parents=True)
        written = 0
        for path in pool:
            if written == args.per_class:
                break
            try:
                with Image.open(path) as image:
                    image.load()
                    image.thumbnail((args.max_side, args.max_side), Image.Resampling.LANCZOS)
                    image.save(out / f"{path.stem}.png", optimize=True)
            except (OSError, ValueError) as exc:
                print(f"skipped {path}: {exc}")
                continue
            written += 1
        print(f"{c}: {written} images")
    total = sum(f.stat().st_size for f in TARGET.rglob("*") if f.is_file())
    print(f"{TARGET}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
