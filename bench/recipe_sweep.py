"""The measurements behind the planner (src/headstart/engine/plan.py), one named experiment a call.

Each run appends one JSON line (experiment, accuracy, seconds, load average, history) to
bench/results/recipe-sweep.jsonl. Fashion-MNIST is read from Debian's idx files into
memory (decoding measured separately, in bench/recipe.py); OpenClipart from the folders
bench/train_vs_baseline.py builds, decoded once at the largest size used.

    python bench/recipe_sweep.py fm-scratch --widths 32,64,128 --epochs 10
    python bench/recipe_sweep.py fm-finetune --size 32 --epochs 3 --train 10000
    python bench/recipe_sweep.py clip-probe --size 224 --clip 5x80
    python bench/recipe_sweep.py clip-finetune --size 160 --epochs 3 --clip 9x60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import recipes  # noqa: E402

from headstart.models.convnet import Variant  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recipe-sweep.jsonl"


def fashion(train: int | None):
    from fashion_mnist_folder import SOURCE, read_idx

    xtr, ytr = read_idx(SOURCE / "train-images-idx3-ubyte.gz"), read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
    xte, yte = read_idx(SOURCE / "t10k-images-idx3-ubyte.gz"), read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")
    if train:
        keep = np.random.default_rng(0).permutation(len(xtr))[:train]
        xtr, ytr = xtr[keep], ytr[keep]
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), 10


def clipart(name: str, side: int = 256):
    """OpenClipart 'CxM' (classes x per-class) split 80/20 as train_vs_baseline does; 'demo' = the demo set."""
    from clipdata import load

    return load(name, side)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "experiment", choices=["fm-tutorial", "fm-scratch", "fm-finetune", "fm-probe", "clip-probe", "clip-finetune", "clip-scratch"]
    )
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--plain", action="store_true", help="plain stages, not residual")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--frozen-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--base-lr-ratio", type=float, default=0.3)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--shift", type=int)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--ema", type=float, default=0.0)
    ap.add_argument("--freeze-bn", action="store_true", help="fine-tune: keep batch-norm statistics")
    ap.add_argument("--opt", default=None)
    ap.add_argument("--train", type=int, help="training subset size (Fashion-MNIST)")
    ap.add_argument("--clip", default="5x80")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    load0, cpu0 = os.getloadavg(), time.process_time()
    if a.experiment.startswith("fm"):
        data = fashion(a.train)
        dname = f"fashion-{len(data[0])}"
    else:
        data = clipart(a.clip)
        dname = f"clipart-{a.clip}"
    kw = {"smoothing": a.smoothing}
    if a.shift is not None:
        kw["shift"] = a.shift
    if a.no_flip:
        kw["flip"] = False
    if a.ema:
        kw["ema"] = a.ema
    if a.opt:
        kw["opt"] = a.opt
    if a.experiment == "fm-tutorial":
        r = recipes.tutorial(*data, epochs=a.epochs)
    elif a.experiment in ("fm-scratch", "clip-scratch"):
        v = Variant(tuple(int(w) for w in a.widths.split(",")), a.depth, residual=not a.plain)
        r = recipes.scratch(*data, variant=v, epochs=a.epochs, lr=a.lr or 0.2, batch=a.batch or 256, size=a.size, **kw)
    elif a.experiment in ("fm-probe", "clip-probe"):
        r = recipes.probe(*data, size=a.size or 224)
    else:
        r = recipes.finetune(
            *data,
            size=a.size or 224,
            epochs=a.epochs,
            lr=a.lr or 2e-3,
            base_lr_ratio=a.base_lr_ratio,
            frozen_epochs=a.frozen_epochs,
            batch=a.batch or 32,
            freeze_bn=a.freeze_bn,
            **kw,
        )
    r.update(
        cpu_seconds=round(time.process_time() - cpu0, 1),
        experiment=a.experiment,
        data=dname,
        args=vars(a),
        load_start=load0,
        load_end=os.getloadavg(),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        when=time.strftime("%H:%M"),
    )
    print(
        f"RESULT {a.experiment} {dname} {a.tag}: acc {r['acc']:.4f} in {r['seconds']:.1f}s, cpu {r['cpu_seconds']}s "
        f"(load {load0[0]:.1f} -> {r['load_end'][0]:.1f}, rss {r['peak_rss_mb']} MB)",
        flush=True,
    )
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
