"""Speed goals of issue 3, each measured against its baseline in the same run.

    python bench/speed_goals.py [--data FOLDER] [--batch 32]

Default data: the bundled demo sample (1,594 OpenClipart PNGs). Prints absolute figures,
ratios and machine facts; writes bench/results/speed_goals-<machine>-<date>.json.
  frozen epoch   uncached (decode every file + frozen base + head step) vs cached
                 features (head step only): goal >= 20x
  fine-tuning    headstart's phase-2 Lightning epoch (training images/s, epochs.csv's train_seconds) vs a bare
                 forward+backward loop over in-memory tensors, same model and batch: goal >= 0.9x
  predict        Predictor over a folder vs a naive per-image PIL -> model loop: goal >= 2x;
                 plus batch-1 latency
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import timm
import torch
from locations import result_path
from rich.console import Console

import headstart
from headstart.config import TrainConfig
from headstart.data.index import scan
from headstart.models.weights import bundled_state_dict
from headstart.preprocess import Preprocess


def machine() -> dict:
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "flags": [f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")],
    }


def frozen_epochs(files: list[str], labels: torch.Tensor, pre: Preprocess, batch: int) -> dict:
    base = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    full = timm.create_model("tf_efficientnet_lite0")
    full.load_state_dict(bundled_state_dict())
    base.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")})
    head = torch.nn.Linear(base.num_features, int(labels.max()) + 1)
    opt = torch.optim.AdamW(head.parameters(), 1e-3)
    t0 = time.perf_counter()  # uncached: every file decoded, the base run, every epoch
    for i in range(0, len(files), batch):
        x = torch.from_numpy(np.stack([pre(f) for f in files[i : i + batch]]))
        with torch.no_grad():
            feats = base(x)
        loss = torch.nn.functional.cross_entropy(head(feats), labels[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    uncached = time.perf_counter() - t0
    with torch.no_grad():
        feats = torch.cat([base(torch.from_numpy(np.stack([pre(f) for f in files[i : i + batch]]))) for i in range(0, len(files), batch)])
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):  # cached: the head on stored features
        for i in range(0, len(files), batch):
            loss = torch.nn.functional.cross_entropy(head(feats[i : i + batch]), labels[i : i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    cached = (time.perf_counter() - t0) / reps
    return {"uncached_s": uncached, "cached_s": cached, "ratio": uncached / cached, "goal": 20}


def finetune(data: Path, batch: int, work: Path) -> dict:
    os.environ["HEADSTART_CACHE_DIR"] = str(work / "cache")
    cfg = TrainConfig(frozen_epochs=1, finetune_epochs=2, batch_size=batch, patience=0, augment=TrainConfig().augment)
    clf = headstart.Classifier(train_config=cfg, console=Console(file=io.StringIO()))
    clf.fit(data, out=work / "run")
    rows = [r for r in csv.DictReader((work / "run" / "epochs.csv").open()) if r["phase"] == "2"]
    n_train = sum(1 for r in csv.DictReader((work / "run" / "split.csv").open()) if r["split"] == "train")
    n_val = sum(1 for r in csv.DictReader((work / "run" / "split.csv").open()) if r["split"] == "val")
    epoch_s = float(rows[-1]["seconds"])  # the second epoch: past any warm-up
    train_s = float(rows[-1]["train_seconds"])  # the same epoch's training steps, without validation

    from headstart.allocator import keep_freed_memory

    keep_freed_memory()  # same allocator setting as headstart's loop
    model = timm.create_model("tf_efficientnet_lite0", num_classes=5).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (batch,))
    steps = max(2, n_train // batch)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    bare = steps * batch / (time.perf_counter() - t0)
    ours = n_train / train_s  # the goal compares training throughput; validation is reported apart
    return {
        "headstart_img_s": ours,
        "headstart_img_s_incl_val": n_train / epoch_s,
        "bare_img_s": bare,
        "ratio": ours / bare,
        "goal": 0.9,
        "train_images": n_train,
        "val_images": n_val,
        "run": str(work / "run"),
    }


def precision(batch: int) -> dict:
    """fp32 vs bf16 autocast on this CPU, same model, in-memory tensors: training step and inference."""
    model = timm.create_model("tf_efficientnet_lite0", num_classes=5).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    def rate(fn, bf16: bool, reps: int = 4) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fn()  # warm-up (oneDNN picks kernels)
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
        return reps * batch / (time.perf_counter() - t0)

    model.train()
    train32, train16 = rate(step, False), rate(step, True)
    model.eval()
    infer32, infer16 = rate(infer, False), rate(infer, True)
    return {
        "train_fp32_img_s": train32,
        "train_bf16_img_s": train16,
        "train_ratio": train16 / train32,
        "infer_fp32_img_s": infer32,
        "infer_bf16_img_s": infer16,
        "infer_ratio": infer16 / infer32,
    }


def predict(run: Path, files: list[str]) -> dict:
    clf = headstart.load(run)
    clf.predict(files[:4])
    t0 = time.perf_counter()
    clf.predict(files)
    ours = len(files) / (time.perf_counter() - t0)
    net, pre = clf.artifact.network.eval(), clf.artifact.preprocess
    t0 = time.perf_counter()
    with torch.inference_mode():  # the naive loop: one image at a time
        for f in files:
            net(torch.from_numpy(pre(f))[None]).softmax(-1)
    naive = len(files) / (time.perf_counter() - t0)
    lat = []
    for f in files[:20]:
        t0 = time.perf_counter()
        clf.predict(f)
        lat.append(time.perf_counter() - t0)
    return {"headstart_img_s": ours, "naive_img_s": naive, "ratio": ours / naive, "goal": 2, "batch1_ms_p50": 1000 * float(np.median(lat))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(str(resources.files("headstart") / "demo_data" / "openclipart")))
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headstart-speed-"))
    index = scan(args.data)
    samples = index.all_samples
    files = [s.path for s in samples]
    labels = torch.tensor([s.labels[0] for s in samples])
    pre = Preprocess.from_timm_config(timm.data.resolve_model_data_config(timm.create_model("tf_efficientnet_lite0")))
    results = {"machine": machine(), "data": str(args.data), "images": len(files)}
    results["frozen_epoch"] = frozen_epochs(files, labels, pre, args.batch)
    results["finetune"] = finetune(args.data, args.batch, work)
    results["predict"] = predict(work / "run", files)
    results["precision"] = precision(args.batch)
    m = results["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), flags {m['flags']}; {len(files)} images")
    f, t, p = results["frozen_epoch"], results["finetune"], results["predict"]
    print(f"frozen epoch   uncached {f['uncached_s']:.2f}s  cached {f['cached_s'] * 1000:.1f}ms  ratio {f['ratio']:.0f}x (goal >= 20x)")
    print(
        f"fine-tuning    headstart {t['headstart_img_s']:.1f} img/s ({t['headstart_img_s_incl_val']:.1f} counting validation)  "
        f"bare loop {t['bare_img_s']:.1f} img/s  ratio {t['ratio']:.2f} (goal >= 0.9)"
    )
    print(
        f"predict        headstart {p['headstart_img_s']:.1f} img/s  naive {p['naive_img_s']:.1f} img/s  ratio {p['ratio']:.2f} "
        f"(goal >= 2)  batch-1 p50 {p['batch1_ms_p50']:.0f} ms"
    )
    b = results["precision"]
    print(
        f"bf16 autocast  training {b['train_bf16_img_s']:.1f} vs fp32 {b['train_fp32_img_s']:.1f} img/s (x{b['train_ratio']:.2f}); "
        f"inference {b['infer_bf16_img_s']:.1f} vs {b['infer_fp32_img_s']:.1f} img/s (x{b['infer_ratio']:.2f})"
    )
    out = result_path("speed_goals")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
