"""Peak memory of `headstart train` for N and 10N images: it must not grow with the data.

    python bench/train_memory.py [--small 1000] [--large 10000] [--arch tf_efficientnet_lite0]
                           [--image-size 96] [--kind shapes|garments] [--data-only] [--keep]

Generates two folders (10 classes): ``shapes``, JPEGs of random shapes on random
backgrounds, 128 px; ``garments``, Fashion-MNIST-like 28 px greyscale PNGs (a light shape
on black),
then runs the CLI once per folder in a fresh process (empty HEADSTART_CACHE_DIR, default
two phases shortened to --frozen-epochs 3 --finetune-epochs 1) and samples its
/proc/PID/status every 20 ms. Reported per run:
  peak RSS      everything resident, including pages of the memory-mapped image cache
                (file-backed and reclaimable: the kernel drops them under pressure)
  peak anon     private memory: what training really holds (model, activations, batches)
  image cache   bytes of the decoded-image store the run left (cache/images)
and the ratios large/small. Goal: anon peaks within a small constant of each other.
Writes bench/results/train_memory-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from locations import result_path
from PIL import Image, ImageDraw


def make_folder(root: Path, n: int, classes: int = 10, size: int = 128) -> None:
    rng = random.Random(n)
    for i in range(n):
        label = i % classes
        image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        x, y, r = rng.randrange(20, size - 20), rng.randrange(20, size - 20), rng.randrange(8, 20 + 3 * label)
        box = (x - r, y - r, x + r, y + r)
        (draw.ellipse if label % 2 else draw.rectangle)(box, fill=tuple((40 * label + 30 * k) % 256 for k in range(3)))
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def make_garments(root: Path, n: int, classes: int = 10, size: int = 28) -> None:
    rng = random.Random(n)
    for i in range(n):
        label = i % classes
        image = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(image)
        w, h = 6 + label, 20 - label // 2
        x, y = rng.randrange(2, size - w - 2), rng.randrange(2, size - h - 2)
        (draw.ellipse if label % 2 else draw.rectangle)((x, y, x + w, y + h), fill=rng.randrange(120, 256))
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.png")


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20 if folder.exists() else 0.0


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


# --data-only: the data path alone, no model: decode (through the cache) then read every
# image once as the evaluation view, a batch of 64 at a time, as feature extraction and
# evaluation do. Minutes instead of hours on a busy 2-core machine, at the base's 224 px.
DATA_ONLY = """
import sys, numpy as np, torch
from pathlib import Path
from headstart.data.datasets import SquaresDataset
from headstart.data.store import decode_all
from headstart.preprocess import Preprocess
pre = Preprocess(input_size=224, resize_size=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
paths = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.png")) + sorted(str(p) for p in Path(sys.argv[1]).rglob("*.jpg"))
images = decode_all(paths, pre, show=False)
ds = SquaresDataset(images.array, np.arange(len(paths)), torch.zeros(len(paths), dtype=torch.long), pre, None)
for i in range(0, len(ds), 64):
    torch.stack([ds[j][0] for j in range(i, min(len(ds), i + 64))])
"""


def run(data: Path, run_dir: Path, cache: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "headstart.cli",
        "train",
        str(data),
        "--out",
        str(run_dir),
        "--arch",
        args.arch,
        "--image-size",
        str(args.image_size),
        "--frozen-epochs",
        "3",
        "--finetune-epochs",
        "1",
    ]
    if args.data_only:
        cmd = [sys.executable, "-c", DATA_ONLY, str(data)]
    env = {**os.environ, "HEADSTART_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    while proc.poll() is None:
        now = status_kb(proc.pid)
        for k in peak:
            peak[k] = max(peak[k], now.get(k, 0))
        time.sleep(0.02)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"training failed ({proc.returncode}):\n{stderr[-2000:]}")
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "image_cache_mb": round(folder_mb(cache / "images"), 1),
        "peak_rss_mb": peak["VmRSS"] / 1024,
        "peak_anon_mb": peak["RssAnon"] / 1024,
        "peak_file_mb": peak["RssFile"] / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=10000)
    ap.add_argument("--arch", default="tf_efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=96, help="input side; small keeps the 10k run to minutes on 2 cores")
    ap.add_argument("--kind", choices=("shapes", "garments"), default="shapes")
    ap.add_argument("--data-only", action="store_true", help="decode + one evaluation-view pass at 224 px, no model")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headstart-memory-"))
    results: dict = {
        "cores": len(os.sched_getaffinity(0)),
        "arch": args.arch,
        "image_size": args.image_size,
        "kind": args.kind,
        "data_only": args.data_only,
        "runs": {},
    }
    for n in (args.small, args.large):
        (make_garments if args.kind == "garments" else make_folder)(work / f"data{n}", n)
        results["runs"][n] = run(work / f"data{n}", work / f"run{n}", work / f"cache{n}", args)
        r = results["runs"][n]
        print(
            f"{n:>7} images: {r['seconds']:>7.1f}s  image cache {r['image_cache_mb']:>8.1f} MB  peak RSS {r['peak_rss_mb']:>7.0f} MB  "
            f"(anon {r['peak_anon_mb']:.0f} MB, mapped files {r['peak_file_mb']:.0f} MB)",
            flush=True,
        )
    small, large = (results["runs"][n] for n in (args.small, args.large))
    results["ratio_rss"] = large["peak_rss_mb"] / small["peak_rss_mb"]
    results["ratio_anon"] = large["peak_anon_mb"] / small["peak_anon_mb"]
    print(
        f"{args.large}/{args.small} images: peak RSS x{results['ratio_rss']:.2f}, peak anon x{results['ratio_anon']:.2f} "
        f"(+{large['peak_anon_mb'] - small['peak_anon_mb']:.0f} MB private memory for {args.large - args.small} more images)"
    )
    tag = ("" if args.kind == "shapes" else f"-{args.kind}") + ("-data" if args.data_only else "")
    out = result_path(f"train_memory{tag}")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
