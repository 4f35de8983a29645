"""Does glibc's mmap churn slow feature extraction? The same frozen forwards in two fresh
processes, with glibc's defaults and with ``allocator.keep_freed_memory`` (what training,
feature extraction and the throughput measurement use), interleaved, with the ratio.

    python bench/feature_alloc.py [--arch tf_efficientnet_lite0] [--side 224] [--batch 64] [--repeats 2]

Prints wall, user and system seconds and minor page faults of each run, then the median
wall-time ratio default / kept. Random weights and inputs: no data, no download.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch, timm
from headstart.allocator import keep_freed_memory
arch, side, batch, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
if keep:
    keep_freed_memory()
m = timm.create_model(arch, pretrained=False, num_classes=0).eval().to(memory_format=torch.channels_last)
x = torch.randn(batch, 3, side, side).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    m(x)  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(4):
        m(x)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt}))
"""


def run(args: argparse.Namespace, keep: bool) -> dict[str, float]:
    cmd = [sys.executable, "-c", CHILD, args.arch, str(args.side), str(args.batch), "1" if keep else "0"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="tf_efficientnet_lite0")
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    walls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for keep in (False, True):
            r = run(args, keep)
            walls[keep].append(r["wall"])
            name = "kept  " if keep else "default"
            print(f"{name} wall {r['wall']:.2f} s  user {r['user']:.2f} s  sys {r['sys']:.2f} s  minor faults {r['minflt']:.0f}")
    ratio = statistics.median(walls[False]) / statistics.median(walls[True])
    print(f"{args.arch} {args.side} px batch {args.batch}: default / kept wall time = {ratio:.2f}x")


if __name__ == "__main__":
    main()
