"""Index and split a million files: time and peak memory of scan + stratified split + split.csv.

    PYTHONPATH=src python bench/index_scale.py --files 1000000 [--root DIR]   # default: $HEADSTART_BENCH_WORK/index

Builds (once) ROOT/tree/<class>/<dir>/<i>.png: every file a hard link to one valid 1x1 PNG,
so a million real directory entries cost ~100 MB of disk and 17 inodes' data. Also writes
ROOT/labels.csv listing the same files. Each measurement runs in a fresh subprocess so its
peak RSS (ru_maxrss) is its own; the baseline is the same interpreter importing headstart.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from locations import WORK

CLASSES = 10
PER_DIR = 1000

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from headstart.data.index import scan
from headstart.data.split import stratified_split, write_split
from headstart.data.index import DataIndex
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t1 = time.perf_counter()
index = scan(sys.argv[1])
t2 = time.perf_counter()
pool = index.samples["all"]
splits = stratified_split(pool, 0.2, 0)
t3 = time.perf_counter()
write_split(Path(sys.argv[2]), DataIndex(Path("."), "", index.classes, False, splits))
t4 = time.perf_counter()
print(json.dumps({"files": len(pool), "skipped": len(index.skipped), "scan_s": round(t2 - t1, 2),
    "split_s": round(t3 - t2, 2), "write_split_s": round(t4 - t3, 2),
    "import_rss_mb": round(base_rss / 1024), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def build(root: Path, files: int) -> tuple[Path, Path]:
    from PIL import Image

    tree, listing = root / "tree", root / "labels.csv"
    done = root / f"built-{files}"
    if done.exists():
        return tree, listing
    root.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (1, 1), (200, 30, 30))
    seed = root / "seed.png"
    start = time.perf_counter()
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i in range(files):
            c, d = i % CLASSES, (i // CLASSES) // PER_DIR
            folder = tree / f"class{c}" / f"d{d:04d}"
            if (i // CLASSES) % PER_DIR == 0:
                folder.mkdir(parents=True, exist_ok=True)
            if i % 60_000 == 0:  # ext4 allows 65,000 links per inode
                seed = root / f"seed{i // 60_000}.png"
                if not seed.exists():
                    image.save(seed)
            path = folder / f"{i}.png"
            if not path.exists():
                os.link(seed, path)
            writer.writerow([f"tree/class{c}/d{d:04d}/{i}.png", f"class{c}"])
    done.write_text("ok")
    print(f"built {files} hard links in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return tree, listing


def measure(data: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURE, str(data), str(out)], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return {**json.loads(result.stdout), "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--root", type=Path, default=WORK / "index")
    args = parser.parse_args()
    tree, listing = build(args.root, args.files)
    for name, data in (("folder tree", tree), ("csv", listing)):
        print(name, json.dumps(measure(data, args.root / "split.csv")))


if __name__ == "__main__":
    main()
