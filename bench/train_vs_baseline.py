"""headstart's defaults against a hand-written transfer-learning baseline, on real images.

What it measures: wall-clock seconds and validation accuracy of
  * baseline: the PyTorch/Keras tutorial recipe - timm ``tf_efficientnet_lite0`` with the
    bundled ImageNet weights, frozen base (eval mode), new Linear head, Adam lr 1e-3,
    torchvision ``ImageFolder`` (PIL ``convert('RGB')``), Resize(256)+RandomResizedCrop(224)
    +flip for train, Resize(256)+CenterCrop(224) for val, decoded every epoch, batch 32,
    ``num_workers=0``, N epochs (default 5). Time includes building the model.
  * headstart: ``headstart.Classifier().fit(SPLIT_DIR)`` with every default, on a fresh,
    empty ``HEADSTART_CACHE_DIR`` (cold: the honest first run), then optionally again on
    the same cache (warm).
Both train and validate on the very same files: one seeded stratified 80/20 split written
as SPLIT_DIR/{train,val}/<class>/ symlinks. Library imports are done before any timing.

Data: Debian's public-domain OpenClipart PNGs (``apt-get install openclipart-png``), up to
M images from each of N top-level categories (sorted, seeded sample), copied unmodified
into DATA/<class>/ (regular files only: the package symlinks duplicates). Files Pillow
refuses to open by default (decompression-bomb limit) are left out, since the tutorial
loader would crash on them.

Run:  python bench/train_vs_baseline.py [--data DIR] [--classes N] [--per-class M]
                                        [--epochs-baseline 5] [--no-warm] [--keep]
Results: a table on stdout and bench/results/train_vs_baseline-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning  # noqa: F401  (imported here so neither contender's time includes imports)
import timm
import torch
from locations import OPENCLIPART, result_path
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from headstart.config import TrainConfig
from headstart.models.weights import bundled_state_dict

CLIPART = OPENCLIPART
CATEGORIES = ["animals", "food", "transportation", "people", "plants", "recreation", "tools", "geography", "office"]
SEED = 0


def build_dataset(data: Path, classes: list[str], per_class: int) -> dict[str, int]:
    """DATA/<class>/<sub__dirs__name>.png, copied unmodified; reused when already built."""
    stamp = data / ".built.json"
    want = {"classes": classes, "per_class": per_class, "seed": SEED, "version": 2}
    if stamp.exists() and json.loads(stamp.read_text())["params"] == want:
        return json.loads(stamp.read_text())["counts"]
    shutil.rmtree(data, ignore_errors=True)
    counts, excluded = {}, []
    for name in classes:
        # Debian links duplicate files to one copy (sometimes across categories): regular
        # files only, so no image sits in two classes or on both sides of the split.
        files = sorted(p for p in (CLIPART / name).rglob("*") if p.suffix.lower() == ".png" and not p.is_symlink())
        pick = sorted(random.Random(f"{SEED}-{name}").sample(files, min(per_class, len(files))))
        (data / name).mkdir(parents=True)
        for src in pick:
            try:
                Image.open(src).close()  # the default Pillow limit: what ImageFolder would hit
            except Image.DecompressionBombError:
                excluded.append(str(src))
                continue
            shutil.copy2(src, data / name / "__".join(src.relative_to(CLIPART / name).parts))
        counts[name] = len(pick) - sum(e.startswith(str(CLIPART / name) + "/") for e in excluded)
    stamp.write_text(json.dumps({"params": want, "counts": counts, "excluded": excluded}, indent=1))
    return counts


def write_split(data: Path, split_dir: Path, classes: list[str], val_fraction: float = 0.2) -> dict[str, int]:
    """One seeded stratified split as symlinks: SPLIT/{train,val}/<class>/<file>."""
    shutil.rmtree(split_dir, ignore_errors=True)
    sizes = {"train": 0, "val": 0}
    for name in classes:
        files = sorted((data / name).iterdir())
        random.Random(f"{SEED}-split-{name}").shuffle(files)
        n_val = max(1, round(len(files) * val_fraction))
        for split, part in (("val", files[:n_val]), ("train", files[n_val:])):
            (split_dir / split / name).mkdir(parents=True)
            for f in part:
                (split_dir / split / name / f.name).symlink_to(f.resolve())
            sizes[split] += len(part)
    return sizes


def baseline(split_dir: Path, epochs: int) -> dict:
    """The tutorial recipe, timed from model build to the last validation pass."""
    torch.manual_seed(SEED)
    start = time.perf_counter()
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(bundled_state_dict())
    model.reset_classifier(num_classes=len(os.listdir(split_dir / "train")))
    for p in model.parameters():
        p.requires_grad = False
    for p in model.get_classifier().parameters():
        p.requires_grad = True
    model.eval()  # frozen base: batch-norm statistics stay ImageNet's; the Linear head has no mode
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    train_tf = T.Compose([T.Resize(256), T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    val_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])
    train = DataLoader(datasets.ImageFolder(split_dir / "train", train_tf), batch_size=32, shuffle=True, num_workers=0)
    val = DataLoader(datasets.ImageFolder(split_dir / "val", val_tf), batch_size=32, num_workers=0)
    optimizer = torch.optim.Adam(model.get_classifier().parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for x, y in train:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x).argmax(1) == y).sum().item()
        history.append({"epoch": epoch + 1, "val_acc": correct / len(val.dataset), "seconds": round(time.perf_counter() - t0, 1)})
        print(f"baseline epoch {epoch + 1}: val_acc {history[-1]['val_acc']:.4f} ({history[-1]['seconds']}s)", flush=True)
    return {
        "seconds": time.perf_counter() - start,
        "val_acc": history[-1]["val_acc"],
        "best_val_acc": max(h["val_acc"] for h in history),
        "epochs": history,
    }


def timed(module, name: str, spent: dict) -> None:
    """Wrap ``module.name`` to add its seconds to ``spent[name]`` (instrumentation only)."""
    inner = getattr(module, name)

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)


def run_headstart(split_dir: Path, run_dir: Path) -> dict:
    import headstart.data.prepare
    import headstart.engine.features

    spent: dict[str, float] = {}
    saved = headstart.data.prepare.decode_all, headstart.engine.features.extract_features
    timed(headstart.data.prepare, "decode_all", spent)
    timed(headstart.engine.features, "extract_features", spent)
    start = time.perf_counter()
    clf = headstart.Classifier().fit(split_dir, out=run_dir)
    seconds = time.perf_counter() - start
    headstart.data.prepare.decode_all, headstart.engine.features.extract_features = saved
    with (run_dir / "epochs.csv").open() as handle:
        epochs = [{k: r[k] for k in ("phase", "epoch", "val_acc", "seconds")} for r in csv.DictReader(handle)]
    phase_s = {p: round(sum(float(e["seconds"]) for e in epochs if e["phase"] == p), 1) for p in ("1", "2")}
    return {
        "seconds": seconds,
        "val_acc": clf.metrics["val"].accuracy,
        "best_phase": clf.artifact.meta.result.best_phase,
        "phase_seconds": phase_s,
        "decode_seconds": round(spent.get("decode_all", 0), 1),
        "features_seconds": round(spent.get("extract_features", 0), 1),
        "other_seconds": round(seconds - sum(phase_s.values()) - sum(spent.values()), 1),
        "epochs": epochs,
    }


def code_version() -> dict:
    """The headstart commit (and whether src/ differs from it) plus its training defaults."""
    git = lambda *a: subprocess.run(["git", *a], cwd=Path(__file__).parent, capture_output=True, text=True).stdout.strip()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(git("status", "--porcelain", "--", "../src")),
        "train_defaults": TrainConfig().to_dict(),
    }


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return {
        "host": socket.gethostname(),
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cpu": cpu,
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="dataset folder (built there once); default: a temp folder")
    ap.add_argument("--classes", type=int, default=5, help=f"first N of {CATEGORIES}")
    ap.add_argument("--per-class", type=int, default=80)
    ap.add_argument("--epochs-baseline", type=int, default=5)
    ap.add_argument("--no-warm", action="store_true", help="skip the second (warm-cache) headstart run")
    ap.add_argument("--keep", action="store_true", help="keep the run folders and the cache")
    args = ap.parse_args()
    if not CLIPART.is_dir():
        print(f"{CLIPART} is missing. Install the images with:  sudo apt-get install openclipart-png", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # a few 168-Mpixel PNGs
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-"))
    data = (args.data or work / "openclipart").resolve()
    split_dir = data.with_name(data.name + "_split")
    classes = CATEGORIES[: args.classes]
    counts = build_dataset(data, classes, args.per_class)
    sizes = write_split(data, split_dir, classes)
    print(f"data {data}: {counts}; split {split_dir}: {sizes}", flush=True)

    results = {"machine": machine(), "headstart": code_version(), "data": {"folder": str(split_dir), "counts": counts, "split": sizes}}
    results["baseline"] = baseline(split_dir, args.epochs_baseline)
    os.environ["HEADSTART_CACHE_DIR"] = str(work / "cache")  # fresh and empty: a cold first run
    results["headstart_cold"] = run_headstart(split_dir, work / "run-cold")
    if not args.no_warm:
        results["headstart_warm"] = run_headstart(split_dir, work / "run-warm")

    b = results["baseline"]
    rows = [("baseline (tutorial)", b)] + [
        (f"headstart ({k.split('_')[1]} cache)", results[k]) for k in ("headstart_cold", "headstart_warm") if k in results
    ]
    m = results["machine"]
    print(
        f"\nmachine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), timm {m['timm']}, "
        f"load average at start {m['load_avg_at_start'][0]:.2f}; headstart {results['headstart']['commit']}"
    )
    print(f"data: {sum(counts.values())} OpenClipart PNGs, {len(classes)} classes, train {sizes['train']} / val {sizes['val']}\n")
    print(f"{'contender':<26}{'wall s':>9}{'val acc':>9}{'time / base':>13}{'acc - base':>12}")
    for name, r in rows:
        print(
            f"{name:<26}{r['seconds']:>9.1f}{r['val_acc']:>9.4f}{r['seconds'] / b['seconds']:>13.2f}{r['val_acc'] - b['val_acc']:>+12.4f}"
        )
    print(f"(baseline best val acc over its {len(b['epochs'])} epochs: {b['best_val_acc']:.4f})")
    for name, r in rows[1:]:
        print(
            f"{name}: decode {r['decode_seconds']}s, frozen features {r['features_seconds']}s, phase 1 epochs "
            f"{r['phase_seconds']['1']}s, phase 2 epochs {r['phase_seconds']['2']}s, rest (build, eval, saving) "
            f"{r['other_seconds']}s; best phase {r['best_phase']}"
        )
    results["machine"]["load_avg_at_end"] = os.getloadavg()  # > cores: something else ran, timings are suspect
    if results["machine"]["load_avg_at_end"][1] > results["machine"]["cores"] + 0.5:
        print(f"WARNING: 5-minute load average {results['machine']['load_avg_at_end'][1]:.2f} > cores: other work competed; rerun.")
    results["ratios"] = {
        k: {"time": results[k]["seconds"] / b["seconds"], "acc_diff": results[k]["val_acc"] - b["val_acc"]}
        for k in ("headstart_cold", "headstart_warm")
        if k in results
    }
    out = result_path("train_vs_baseline")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    if args.keep:
        print(f"run folders and cache kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
