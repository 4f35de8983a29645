"""Where the benchmarks find their data and put their results: the one place that knows.

Debian installs the real images the benchmarks use at fixed places; each can be moved
with an environment variable, and every script takes these as its defaults:

    HEADSTART_OPENCLIPART    openclipart-png's PNGs      (apt-get install openclipart-png)
    HEADSTART_FASHION_MNIST  Fashion-MNIST's idx .gz     (apt-get install dataset-fashion-mnist)
    HEADSTART_BENCH_WORK     scratch space for generated folders (default: the temp dir)
    HEADSTART_BENCH_MACHINE  the machine's name in result files (default: the host name)

Results are named ``bench/results/<what>-<machine>-<YYYY-MM-DD>.json``.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import tempfile
from pathlib import Path

OPENCLIPART = Path(os.environ.get("HEADSTART_OPENCLIPART", "/usr/share/openclipart/png"))
FASHION_MNIST = Path(os.environ.get("HEADSTART_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
WORK = Path(os.environ.get("HEADSTART_BENCH_WORK", Path(tempfile.gettempdir()) / "headstart-bench"))
RESULTS = Path(__file__).resolve().parent / "results"
DEMO = Path(__file__).resolve().parents[1] / "src" / "headstart" / "demo_data" / "openclipart"


def machine() -> str:
    """A short, file-name-safe name for this machine."""
    name = os.environ.get("HEADSTART_BENCH_MACHINE") or socket.gethostname() or "machine"
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name)[:24]


def result_path(what: str, suffix: str = ".json") -> Path:
    """``bench/results/<what>-<machine>-<today>.json`` (created folder included)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{what}-{machine()}-{datetime.date.today().isoformat()}{suffix}"


def require(folder: Path, install: str, variable: str) -> Path:
    """``folder``, or exit with one line saying how to get it or where to point instead."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found: {install}, or set {variable} to where the data is.")
    return folder
