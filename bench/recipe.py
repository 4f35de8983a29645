"""Issue 10's benchmark in one invocation: accuracy per minute, old default vs planned recipe.

Fashion-MNIST (full 60k/10k as image folders, or ``--quick``: 600/100 per class), each
contender in its own process (so peak RSS is its own), wall time including decoding:
  * tutorial: the seed tutorials' two-convolution net, 3 epochs, Adam (PyTorch MNIST example);
  * old: headstart's old default, a linear probe on frozen tf_efficientnet_lite0 features at
    224 px (30 head epochs on cached features). Slow: ``--skip-old`` leaves it out; the
    previous session measured ``headstart train`` doing it in 14 min 50 s, test 0.8925,
    16.4 GB peak RSS and a 13 GB image cache, on this 2-core machine;
  * recipe: the plan of headstart.engine.plan for these data and this machine within
    ``--budget`` seconds (default 600): data facts from the files, a few seconds of measured
    throughput, ``make_plan``, then the plan trained.
OpenClipart (``--clip 5x80,9x60,demo``: the folders bench/train_vs_baseline.py builds, and
the demo set), each: the linear probe (old default) vs the recipe planned with a budget of
``--clip-factor`` (5) times the probe's measured seconds, the issue's bound (``0``: no
budget, which on a CPU plans the probe itself).

The recipe runs standalone (bench/recipes.py's loops on uint8 arrays in memory). Once the
planner is wired into the engine this should call ``headstart train DATA --time 10m``
instead, and read accuracy, plan and timings from the run folder.

    python bench/recipe.py --fashion /work/data/fashion [--quick] [--skip-old] [--skip-tutorial]
                           [--budget 600] [--clip 5x80,9x60,demo] [--no-fashion]

Write the folders first: ``python scripts/fashion_mnist_folder.py /work/data/fashion
--train-per-class 6000 --test-per-class 1000``. Results: a table on stdout and
bench/results/recipe-<host>.json. Timings are only comparable on a quiet machine: the load
average at each contender's start and end is recorded next to its wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _read(path: str, grey: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L" if grey else "RGB"))


def decode_fashion(root: Path, quick: bool):
    """Folders DATA/{train,test}/<class>/ -> uint8 (N, 28, 28) arrays, decoded on every core."""
    from headstart.data.index import scan

    index = scan(root)
    out = []
    for split in ("train", "test"):
        samples = index.samples[split]
        if quick:  # the first N of each class
            per = 600 if split == "train" else 100
            by_class: dict[int, list] = {}
            for sample in samples:
                by_class.setdefault(sample.labels[0], []).append(sample)
            samples = [s for k in sorted(by_class) for s in by_class[k][:per]]
        with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
            x = np.stack(list(pool.map(_read, [s.path for s in samples], [True] * len(samples), chunksize=256)))
        out += [x, np.array([s.labels[0] for s in samples], np.int64)]
    return (*out, len(index.classes))


from headstart.engine.plan import DataFacts  # noqa: E402  (no torch: cheap)


def planned(facts, budget):
    from headstart.engine.plan import make_plan, measure_throughput, sizes_to_measure

    t0 = time.perf_counter()
    speed = measure_throughput(*sizes_to_measure(facts), seconds=1.0)
    plan = make_plan(facts, speed, budget)
    print(plan.describe(), flush=True)
    return plan, time.perf_counter() - t0


def one(name: str, args) -> dict:
    """Run one contender in this process; return its figures."""
    import recipes
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    start, cpu0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    extra: dict = {}
    if name.startswith("fashion:"):
        xtr, ytr, xte, yte, k = decode_fashion(args.fashion, args.quick)
        extra["decode_seconds"] = round(time.perf_counter() - start, 1)
        extra["cache_mb"] = round((xtr.nbytes + xte.nbytes) / 2**20, 1)
        kind = name.split(":")[1]
        if kind == "tutorial":
            r = recipes.tutorial(xtr, ytr, xte, yte, k, epochs=3)
        elif kind == "old":
            r = recipes.probe(xtr, ytr, xte, yte, k, size=224)
        else:
            from headstart.data.index import scan

            paths = [s.path for s in scan(args.fashion).samples["train"]]
            facts = DataFacts.from_files(paths, k, len(xte))
            # The budget covers the whole run: what decoding took is no longer available.
            plan, extra["plan_seconds"] = planned(facts, args.budget - (time.perf_counter() - start))
            extra["plan"] = plan.to_dict()
            r = recipes.run_plan(plan, xtr, ytr, xte, yte, k)
    else:
        import clipdata

        _, clip, kind = name.split(":")
        xtr, ytr, xva, yva, k = clipdata.load(clip, 224)
        extra["decode_seconds"] = round(clipdata.decode_seconds(clip, 224), 1)  # from the first (cold) decode
        if kind == "probe":
            r = recipes.probe(xtr, ytr, xva, yva, k, size=224)
        else:
            _, parts = clipdata.split(clipdata.folder(clip))
            facts = DataFacts.from_files([p for p, _ in parts["train"]], k, len(xva))
            # The budget covers the whole run; decoding is already spent.
            budget = args.clip_budget - extra["decode_seconds"] if args.clip_budget else None
            plan, extra["plan_seconds"] = planned(facts, budget)
            extra["plan"] = plan.to_dict()
            r = recipes.run_plan(plan, xtr, ytr, xva, yva, k)
        start -= extra["decode_seconds"]  # the decode was cached: count its cold seconds
    r.pop("history", None)
    return {
        **r,
        **extra,
        "name": name,
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "load": [load0[0], os.getloadavg()[0]],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fashion", type=Path, default=Path("/work/data/fashion"))
    ap.add_argument("--quick", action="store_true", help="600 train / 100 test images per class")
    ap.add_argument("--skip-old", action="store_true", help="leave out the 224 px linear probe on Fashion-MNIST")
    ap.add_argument("--skip-tutorial", action="store_true")
    ap.add_argument("--no-fashion", action="store_true")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds for the Fashion-MNIST recipe")
    ap.add_argument("--clip", default="5x80,9x60,demo", help="OpenClipart sets ('' for none)")
    ap.add_argument(
        "--clip-factor", type=float, default=5.0, help="OpenClipart recipe budget = this x the probe's measured seconds (0: no budget)"
    )
    ap.add_argument("--clip-budget", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args)), flush=True)
        return 0
    names = (
        []
        if args.no_fashion
        else [
            f"fashion:{n}"
            for n in ("tutorial", "old", "recipe")
            if not (n == "old" and args.skip_old) and not (n == "tutorial" and args.skip_tutorial)
        ]
    )
    names += [f"clip:{c}:{k}" for c in filter(None, args.clip.split(",")) for k in ("probe", "recipe")]
    flags = [f"--{k}={v}" for k, v in (("fashion", args.fashion), ("budget", args.budget))] + ["--quick"] * args.quick
    results = []
    for name in names:
        print(f"== {name}", flush=True)
        extra = []
        if name.endswith(":recipe") and name.startswith("clip:") and args.clip_factor:
            probe_run = next((r for r in results if r["name"] == name.replace(":recipe", ":probe")), None)
            if probe_run:
                extra = [f"--clip-budget={args.clip_factor * probe_run['seconds']:.0f}"]
        proc = subprocess.run([sys.executable, __file__, "--one", name, *flags, *extra], stdout=subprocess.PIPE, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        print("\n".join(l for l in proc.stdout.splitlines() if not l.startswith("RESULT ")), flush=True)
        if proc.returncode or not lines:
            print(f"{name} failed (exit {proc.returncode})", flush=True)
            continue
        results.append(json.loads(lines[-1][7:]))
    print(f"\n{'contender':<22}{'acc':>8}{'wall s':>9}{'cpu s':>8}{'rss MB':>8}{'load':>12}")
    for r in results:
        print(
            f"{r['name']:<22}{r['acc']:>8.4f}{r['seconds']:>9.1f}{r['cpu_seconds']:>8.1f}{r['peak_rss_mb']:>8}"
            f"{r['load'][0]:>6.1f}-{r['load'][1]:<5.1f}"
        )
    by = {r["name"]: r for r in results}
    for base, new in [("fashion:tutorial", "fashion:recipe"), ("fashion:old", "fashion:recipe")] + [
        (f"clip:{c}:probe", f"clip:{c}:recipe") for c in filter(None, args.clip.split(","))
    ]:
        if base in by and new in by:
            b, n = by[base], by[new]
            print(f"{new} vs {base}: accuracy {n['acc'] - b['acc']:+.4f}, time x{n['seconds'] / b['seconds']:.2f}")
    out = HERE / "results" / f"recipe-{socket.gethostname() or 'cpu2'}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "budget": args.budget, "results": results}, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
