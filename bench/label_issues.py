"""Label issues (headstart.label_issues) on flipped Fashion-MNIST and on real OpenClipart.

Fashion-MNIST: per-class subsets written as PNGs by bench/suite_data.py into
ROOT/fashion-<train>-<test>/{train,test}/<class>/ (once; --sizes gives the training images
per class, default 300 and 2000: 3,000 and 20,000 images), then 5 % of the training labels
flipped at random to another class (seeded) in a CSV, ROOT/flipped-<size>.csv, pointing at
the images: no file is moved. Measured at each size:
  * precision and recall of the listed images against the flipped ones, at the cut-off
    fitted on the data (label_issues/calibrate.py), beside the expected precision it
    reports; goal precision >= 0.7 at recall >= 0.8 at both sizes; and, for comparison,
    the former fixed cut-off (self-confidence under 5 %) on the same heads;
  * seconds beyond the feature extraction (out-of-fold heads + ranking + neighbours),
    torch on 2 threads, goal < 60 s;
  * (unless --no-test-accuracy) test accuracy of a linear head retrained on the same
    features with the flagged images and without them (and on the true labels).
Features: the bundled tf_efficientnet_lite0 at --image-size (default 64 px: 28 px
originals upscaled; 224 px costs ~12x the extraction time for these images).

OpenClipart (unflipped, real labels): up to --clipart-per-class images from each of
--clipart categories of /usr/share/openclipart/png, listed in a CSV (nothing copied), the
label search at the default 224 px; the top 20 findings are printed to be judged by eye.

Run:  python bench/label_issues.py --root DATA [--sizes 300,2000] [--no-test-accuracy] [--skip clipart]
Results: stdout and bench/results/label_issues-<host>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.locations import OPENCLIPART  # noqa: E402
from bench.suite_data import data_root  # noqa: E402
from bench.suite_data import prepare as prepare_dataset  # noqa: E402
from headstart.config import ModelConfig, TrainConfig
from headstart.data.index import Sample, scan, walk_images
from headstart.data.prepare import prepare
from headstart.engine.oof import WEIGHT_DECAY, _fit_predict, out_of_fold, principal_components
from headstart.label_issues import LabelSearch, find_in_data, find_issues, write_outputs
from headstart.label_issues.rank import FLOOR
from headstart.models import build_network
from headstart.models.network import data_config
from headstart.pipeline.loaders import FrozenFeatures
from headstart.preprocess import Preprocess

REPO = Path(__file__).resolve().parents[1]
CLIPART = OPENCLIPART


def features_of(samples: dict[str, list[Sample]], image_size: int | None) -> dict[str, torch.Tensor]:
    network = build_network(ModelConfig(), 10)
    preprocess = Preprocess.from_timm_config(data_config(network.backbone), image_size)
    prepared = prepare(samples, preprocess, True, [])
    assert not prepared.skipped, prepared.skipped[:3]
    frozen = FrozenFeatures(network, prepared, preprocess, TrainConfig(), True, Console(stderr=True))
    return {split: frozen.get(split) for split in samples}


def linear_accuracy(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray, k: int) -> float:
    """Test accuracy of a linear head (the label search's own recipe: standardised, top
    principal components, L2, L-BFGS) trained on (x_train, y_train)."""
    x = torch.cat([x_train, x_test])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    x = principal_components(x, 256)
    probs = _fit_predict(x[: len(x_train)], torch.as_tensor(y_train), x[len(x_train) :], k, False, WEIGHT_DECAY)
    return float((probs.argmax(1).numpy() == y_test).mean())


def fashion(args: argparse.Namespace, per_class: int) -> dict:
    root = data_root(args.root)
    images = prepare_dataset(f"fashion-{per_class}-{args.test_per_class}", root)
    work = root / f"label-issues-{per_class}"
    work.mkdir(parents=True, exist_ok=True)
    train, test = scan(images / "train"), scan(images / "test")
    classes = train.classes
    clean = train.samples["all"]
    truth = np.array([s.labels[0] for s in clean])
    rng = np.random.default_rng(args.seed)
    flipped_rows = np.sort(rng.choice(len(clean), round(args.flip * len(clean)), replace=False))
    noisy = truth.copy()
    noisy[flipped_rows] = (truth[flipped_rows] + rng.integers(1, len(classes), len(flipped_rows))) % len(classes)
    with (work / "flipped.csv").open("w", newline="") as handle:  # the flipped label list: images stay where they are
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows((os.path.relpath(s.path, work), classes[y]) for s, y in zip(clean, noisy))
    noisy_samples = [Sample(s.path, (int(y),)) for s, y in zip(clean, noisy)]

    started = time.perf_counter()
    splits = {"train": noisy_samples, **({"test": test.samples["all"]} if args.test_accuracy else {})}
    feats = features_of(splits, args.image_size)
    extract = time.perf_counter() - started

    torch.set_num_threads(2)
    started = time.perf_counter()
    found = find_issues(feats["train"], noisy_samples, classes, "multiclass", work, seed=args.seed)
    search = time.perf_counter() - started
    write_outputs(found, work / "out")

    row_of = {s.path: i for i, s in enumerate(noisy_samples)}
    flagged = {row_of[i.path] for i in found.issues}
    flips = set(flipped_rows.tolist())
    hits = len(flagged & flips)
    precision, recall = hits / max(1, len(flagged)), hits / max(1, len(flips))
    # recall within the top len(flips) of the ranking: how well the order alone does
    top = [row_of[i.path] for i in found.issues[: len(flips)]]

    # the former rule on the former heads: out-of-fold p(given) < 5 %, weight decay WEIGHT_DECAY
    before = out_of_fold(feats["train"], noisy, len(classes), seed=args.seed)
    fixed = set(np.flatnonzero(before[np.arange(len(noisy)), noisy] < FLOOR).tolist())
    result = {
        "images": len(clean),
        "image_size": args.image_size,
        "flipped": len(flips),
        "flagged": len(flagged),
        "true_positives": hits,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "expected_precision": found.summary["expected_precision"],
        "cutoff": found.summary["cutoff"],
        "fixed_5_percent": {
            "flagged": len(fixed),
            "precision": round(len(fixed & flips) / max(1, len(fixed)), 4),
            "recall": round(len(fixed & flips) / max(1, len(flips)), 4),
        },
        "precision_at_flipped_count": round(len(set(top) & flips) / max(1, len(top)), 4),
        "oof_accuracy_vs_given": found.summary["oof_agreement"],
        "seconds_features": round(extract, 1),
        "seconds_beyond_features": round(search, 1),
        "seconds_heads": found.summary["seconds_heads"],
        "seconds_rank_and_neighbours": found.summary["seconds_rank"],
    }
    if args.test_accuracy:
        y_test = np.array([s.labels[0] for s in test.samples["all"]])
        keep = np.array([r not in flagged for r in range(len(noisy))])
        result["test_images"] = len(y_test)
        result["test_accuracy_with_flagged"] = round(linear_accuracy(feats["train"], noisy, feats["test"], y_test, len(classes)), 4)
        result["test_accuracy_without_flagged"] = round(
            linear_accuracy(feats["train"][torch.as_tensor(keep)], noisy[keep], feats["test"], y_test, len(classes)), 4
        )
        result["test_accuracy_true_labels"] = round(linear_accuracy(feats["train"], truth, feats["test"], y_test, len(classes)), 4)
    return result


def clipart(args: argparse.Namespace) -> dict:
    work = Path(args.clipart_work) if args.clipart_work else data_root(args.root) / "openclipart-labels"
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    for name in args.clipart.split(","):
        files = [f for f in walk_images(CLIPART / name)[0] if os.path.getsize(f) > 0]
        chosen = sorted(rng.choice(files, min(args.clipart_per_class, len(files)), replace=False).tolist())
        rows += [(f, name) for f in chosen]
    listing = work / "labels.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    started = time.perf_counter()
    found = find_in_data(listing, LabelSearch(), Console(stderr=True))
    total = time.perf_counter() - started
    write_outputs(found, work / "out")
    top = [
        {
            "path": i.path,
            "given": i.given,
            "suggested": i.suggested,
            "p_given": i.p_given,
            "p_suggested": i.p_suggested,
            "neighbours": [n.labels for n in i.neighbours],
        }
        for i in found.issues[:20]
    ]
    return {
        "images": found.images,
        "categories": args.clipart.split(","),
        "flagged": len(found.issues),
        "oof_accuracy_vs_given": found.summary["oof_agreement"],
        "seconds_total": round(total, 1),
        "seconds_features": found.summary["seconds_features"],
        "seconds_beyond_features": round(found.summary["seconds_heads"] + found.summary["seconds_rank"], 2),
        "top20": top,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="Data sets folder (default: $HEADSTART_BENCH_DATA), as bench/suite_data.py.")
    parser.add_argument("--sizes", default="300,2000", help="Training images per class, one measurement each.")
    parser.add_argument("--test-per-class", type=int, default=500)
    parser.add_argument("--no-test-accuracy", dest="test_accuracy", action="store_false")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clipart", default="animals,buildings,food,geography,office,plants,tools,transportation")
    parser.add_argument("--clipart-per-class", type=int, default=80)
    parser.add_argument("--clipart-work", help="Folder for the OpenClipart listing (default: ROOT/openclipart-labels).")
    parser.add_argument("--skip", choices=["fashion", "clipart"], action="append", default=[])
    args = parser.parse_args()
    results: dict = {"host": socket.gethostname(), "cpus": os.cpu_count(), "torch_threads": 2, "load_average_at_start": os.getloadavg()[0]}
    if "fashion" not in args.skip:
        results["fashion"] = {}
        for per_class in (int(v) for v in args.sizes.split(",")):
            results["fashion"][str(per_class * 10)] = fashion(args, per_class)
            print(json.dumps(results["fashion"][str(per_class * 10)], indent=1), flush=True)
    if "clipart" not in args.skip:
        results["clipart"] = clipart(args)
        c = results["clipart"]
        print(json.dumps({k: v for k, v in c.items() if k != "top20"}, indent=1))
        for n, i in enumerate(c["top20"], 1):
            print(
                f"{n:2d}. {i['path']}  given {i['given']} ({i['p_given']:.2f}) -> {i['suggested']} ({i['p_suggested']:.2f})  "
                f"neighbours {', '.join(i['neighbours'])}"
            )
    results["load_average_at_end"] = os.getloadavg()[0]
    out = REPO / "bench" / "results" / f"label_issues-{socket.gethostname()}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
