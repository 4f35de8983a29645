"""What every scenario shares: its context, its rows, and running headstart in a child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "headstart" / "demo_data" / "openclipart"


@dataclass
class Context:
    """Where a scenario works and at what scale.

    quick: the test suite's reduced version (tiny generated data, a few cases, seconds).
    data:  the image folder to train on at benchmark scale (default: the bundled demo).
    work:  an empty folder the scenario owns; removed by the caller afterwards.
    """

    work: Path
    quick: bool = False
    data: Path = DEMO
    say: Callable[[str], None] = print  # progress lines: print, or a no-op in tests
    options: dict[str, float] = field(default_factory=dict)  # scenario knobs: kills, minutes

    def env(self, **extra: str) -> dict[str, str]:
        """The child environment: a private cache under work/ unless overridden."""
        base = {**os.environ, "HEADSTART_CACHE_DIR": str(self.work / "cache"), "PYTHONUNBUFFERED": "1"}
        return {**base, **extra}


@dataclass
class Row:
    """One thing tried: its scenario, what was done, what happened, and whether that is fine."""

    scenario: str
    case: str
    outcome: str
    ok: bool
    figures: dict[str, float] = field(default_factory=dict)


def headstart_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "headstart.cli", *args]


def start(args: Sequence[str], env: dict[str, str], **popen: object) -> subprocess.Popen:
    """``headstart ARGS`` in a child process, stderr captured (stdout too unless redirected)."""
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen(headstart_cmd(*args), env=env, stderr=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]


def headstart(args: Sequence[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """``headstart ARGS`` to the end; never raises on a non-zero exit."""
    return subprocess.run(headstart_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def one_line_error(proc: subprocess.CompletedProcess) -> bool:
    """headstart's contract for a failure it understands: exit 2, an 'error:' line, no traceback."""
    return proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def metrics(run_dir: Path) -> dict[str, float]:
    """Accuracy per split from a run folder's metrics.json."""
    return {split: m["accuracy"] for split, m in json.loads((run_dir / "metrics.json").read_text()).items()}


def orphans(*paths: Path) -> list[str]:
    """Temporary files left behind in folders (or beside files): atomic writes name them
    .<name>.<pid>.tmp; anything else with '.tmp' in its name counts too."""
    found = []
    for path in paths:
        folder, pattern = (path, "*") if path.is_dir() else (path.parent, f".{path.name}*")
        if folder.exists():
            found += [str(p) for p in folder.rglob(pattern) if ".tmp" in p.name]
    return found


def tiny_data(root: Path, classes: Sequence[str] = ("red", "green", "blue"), per_class: int = 12, size: int = 32) -> Path:
    """A folder of noisy single-colour squares, one sub-folder per class (deterministic)."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(zlib.crc32(f"{c}{i}".encode()))
            pixels = np.asarray(colours[c], dtype=np.float64) + rng.normal(0.0, 14.0, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(root / c / f"{c}_{i}.png")
    return root


# A short deterministic two-phase recipe on tiny data: a from-scratch convnet, a few seconds.
QUICK_TRAIN = [
    "--recipe",
    "fixed",
    "--arch",
    "convnet_tiny",
    "--no-pretrained",
    "--image-size",
    "32",
    "--frozen-epochs",
    "2",
    "--finetune-epochs",
    "1",
    "--patience",
    "0",
    "--no-report",
    "--workers",
    "0",
]
# The benchmark's recipe on the demo: every phase boundary and write point inside ~10 s.
BENCH_TRAIN = ["--recipe", "fixed", "--frozen-epochs", "4", "--finetune-epochs", "1", "--patience", "0", "--image-size", "96"]


def train_options(ctx: Context) -> list[str]:
    return QUICK_TRAIN if ctx.quick else BENCH_TRAIN


def train_data(ctx: Context) -> Path:
    """The data a scenario trains on: generated once under work/ when quick."""
    if not ctx.quick:
        return ctx.data
    root = ctx.work / "data"
    return root if root.exists() else tiny_data(root)


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - began
