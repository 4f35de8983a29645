"""Kill anywhere (issue 13, first part): SIGKILL `headstart train` at spread-out moments,
then resume, and check the run ends as an uninterrupted one does.

For each of ``--kills`` moments spread over a reference run's wall time (indexing,
decoding, features, each phase, checkpoint and artifact writes, the report), one fresh
run folder: start ``headstart train DATA --out RUN``, SIGKILL it at that moment, then
``headstart train --resume RUN`` (or the same command again when the kill came before
config.json existed), and compare with the uninterrupted reference:

  * the same metrics (accuracy of every split) — weights are not compared: resuming
    mid-epoch replays data order from the last checkpoint, which is not bit-identical;
  * no orphan temporary files (``.*.tmp``) in the run folder or the cache;
  * a finished artifact (headstart.json + model.safetensors) that loads.

    python bench/faults.py [--data DIR] [--kills 20] [--recipe fixed options...]

Prints one row per kill and a summary; exit status 1 when any kill broke something.
Not yet covered (the rest of issue 13): full disk, memory limits, concurrent processes,
hostile server load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "src" / "headstart" / "demo_data" / "openclipart"
# A short deterministic two-phase run: every phase boundary and write point inside ~1 min.
OPTIONS = ["--recipe", "fixed", "--frozen-epochs", "4", "--finetune-epochs", "1", "--patience", "0", "--image-size", "96"]


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "headstart.cli", "train", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def metrics(run: Path) -> dict[str, float]:
    return {split: m["accuracy"] for split, m in json.loads((run / "metrics.json").read_text()).items()}


def orphans(*folders: Path) -> list[str]:
    return [str(p) for folder in folders if folder.exists() for p in folder.rglob("*.tmp")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEMO)
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    cache = work / "cache"
    env = {**os.environ, "HEADSTART_CACHE_DIR": str(cache)}

    reference = work / "reference"
    began = time.perf_counter()
    done = start([str(args.data), "--out", str(reference), *OPTIONS], env)
    _, err = done.communicate()
    total = time.perf_counter() - began
    if done.returncode:
        print(err[-2000:])
        return 1
    expected = metrics(reference)
    print(f"reference: {expected} in {total:.1f} s")

    rows, broken = [], 0
    for k in range(args.kills):
        at = total * (k + 0.5) / args.kills
        run = work / f"kill-{k:02d}"
        if k % 2:  # half the kills with a cold cache: decoding and feature extraction are write points too
            shutil.rmtree(cache, ignore_errors=True)
        proc = start([str(args.data), "--out", str(run), *OPTIONS], env)
        time.sleep(at)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed = ["--resume", str(run)] if (run / "config.json").exists() else [str(args.data), "--out", str(run), *OPTIONS]
        if not killed and (run / "headstart.json").exists():
            resumed = []
        if resumed:
            again = start(resumed, env)
            _, err = again.communicate()
            if again.returncode:
                rows.append((k, at, "resume failed: " + err.strip().splitlines()[-1][:160]))
                broken += 1
                continue
        got = metrics(run)
        left = orphans(run, cache)
        ok = got == expected and not left and (run / "model.safetensors").is_file()
        broken += not ok
        how = "resume" if resumed and resumed[0] == "--resume" else ("rerun" if resumed else "finished before the kill")
        rows.append((k, at, f"{'ok' if ok else 'BROKEN'} ({how}); {got}" + (f"; orphans {left[:3]}" if left else "")))

    for k, at, what in rows:
        print(f"kill {k:2d} at {at:5.1f} s: {what}")
    print(f"\n{args.kills - broken} of {args.kills} kills ended like the uninterrupted run")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
