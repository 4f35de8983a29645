"""Data-parallel scaling: 1 vs 2 processes through the CLI, and the expected scaling on GPUs.

    PYTHONPATH=src python bench/ddp_scaling.py [--arch tf_efficientnet_lite0] [--image-size 160]

Trains the bundled demo set (1,594 images, 1,276 for training) twice with the same recipe and
effective batch (1 process x 32, then 2 processes x 16, gloo on CPU), and reports the
fine-tuning throughput from epochs.csv (images per second, epoch wall time, so it includes
each epoch's validation). Then prints the all-reduce volume per step and the scaling it
predicts for 8 GPUs and 2 nodes x 8 GPUs from a single-device throughput (--gpu-img-s, your
measurement) and typical link bandwidths. On a 2-core machine 2 processes share the same
cores, so expect little or no speed-up there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
# Bandwidth (GB/s) the all-reduce ring gets on its slowest hop, order-of-magnitude figures:
# NVLink 4 (H100 SXM) ~350 bus bandwidth in NCCL tests; PCIe 4.0 x16 ~20; between two nodes
# the ring crosses the network, so the node's NICs carry the whole ring volume: 8 x 400 Gb/s
# InfiniBand NDR ~360 GB/s per node, one 200 Gb/s HDR NIC ~22.
LINKS = {"NVLink, 1 node": 350.0, "PCIe 4.0, 1 node": 20.0, "2 nodes, 8x400 Gb/s IB each": 360.0, "2 nodes, 1x200 Gb/s IB each": 22.0}


def train(data: Path, out: Path, devices: int, args: argparse.Namespace) -> dict:
    batch = args.batch // devices
    cmd = [
        sys.executable,
        "-m",
        "headstart.cli",
        "train",
        str(data),
        "--out",
        str(out),
        "--arch",
        args.arch,
        "--image-size",
        str(args.image_size),
        "--frozen-epochs",
        "1",
        "--finetune-epochs",
        str(args.epochs),
        "--patience",
        "0",
        "--batch-size",
        str(batch),
        "--accelerator",
        "cpu",
        "--devices",
        str(devices),
        "--workers",
        "0",
    ]
    env = {**os.environ, "PYTHONPATH": SRC, "HEADSTART_CACHE_DIR": str(out.parent / "cache")}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    with (out / "epochs.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["phase"] == "2"]
    with (out / "split.csv").open() as handle:
        n_train = sum(r["split"] == "train" for r in csv.DictReader(handle))
    epoch_s = [float(r["seconds"]) for r in rows]
    steady = min(epoch_s[1:] or epoch_s)  # the first epoch pays for warm-up
    return {
        "devices": devices,
        "batch_per_device": batch,
        "finetune_epoch_s": epoch_s,
        "img_per_s": round(n_train / steady, 1),
        "command_wall_s": round(wall, 1),
        "val_acc_last": float(rows[-1]["val_acc"]),
    }


def expected(params: int, gpu_img_s: float, batch: int) -> list[str]:
    """Step time = compute (batch / single-device rate) + ring all-reduce of the gradients,
    2 (n-1)/n x 4 bytes x parameters over the link, with no overlap (a lower bound on
    efficiency: DDP overlaps buckets with the backward pass)."""
    size = params * 4
    compute = batch / gpu_img_s
    lines = [
        f"gradient all-reduce: {params:,} parameters x 4 B = {size / 1e6:.1f} MB per step; "
        f"compute per step at {gpu_img_s:.0f} img/s and batch {batch}/device: {compute * 1e3:.1f} ms"
    ]
    for link, gbs in LINKS.items():
        n = 16 if link.startswith("2 nodes") else 8
        comm = 2 * (n - 1) / n * size / (gbs * 1e9)
        eff = compute / (compute + comm)
        lines.append(
            f"  {n:>2} GPUs over {link}: all-reduce {comm * 1e3:.2f} ms -> efficiency >= {eff:.1%}, ~{n * gpu_img_s * eff:,.0f} img/s"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32, help="effective batch (split over the processes)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--order", default="1,2", help="process counts in run order, e.g. 2,1 to check drift in a shared machine's load")
    parser.add_argument("--gpu-img-s", type=float, default=None, help="measured 1-GPU fine-tuning throughput, for the projection")
    args = parser.parse_args()
    sys.path.insert(0, SRC)
    data = Path(str(resources.files("headstart") / "demo_data" / "openclipart"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, devices in enumerate(int(d) for d in args.order.split(",")):
            results.append(train(data, Path(tmp) / f"run{i}-{devices}", devices, args))
            print(json.dumps(results[-1]))
    rate = {r["devices"]: r["img_per_s"] for r in results}
    if 1 in rate and 2 in rate:
        print(f"speed-up 2 processes / 1: {rate[2] / rate[1]:.2f}x (fine-tuning img/s, CPU, gloo)")

    from headstart.config import ModelConfig
    from headstart.models import build_network

    params = sum(p.numel() for p in build_network(ModelConfig(arch=args.arch), 5).parameters())
    if args.gpu_img_s:
        print("\n".join(expected(params, args.gpu_img_s, args.batch)))
    else:
        print(
            f"{args.arch}: {params:,} parameters = {params * 4 / 1e6:.1f} MB all-reduced per step "
            "(give --gpu-img-s for the 8-GPU / 2-node projection)"
        )


if __name__ == "__main__":
    main()
