"""Several processes (Lightning ddp, gloo on CPU): the same results as one process, one run
folder, a failing rank stops the run with its name and cause, and the run resumes.

The multi-process runs go through a real launch (a subprocess that Lightning re-runs per
rank), as a user's would; each costs ~10-25 s on 2 shared cores, most of it imports.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from headstart.engine.fit import _Loaders
from headstart.engine.ranks import global_rank

SRC = str(Path(__file__).resolve().parents[1] / "src")
SCRIPT = str(Path(__file__).with_name("_ddp_script.py"))
# 1 process x batch 16 against 2 processes x batch 8: the same effective batch, steps and
# learning rates; only the order in which images are drawn differs (DistributedSampler).
LOSS_TOLERANCE = 0.03  # absolute, on a validation loss near 1.0
ACC_TOLERANCE = 0.2  # absolute: one or two of the 9 validation images


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(PYTHONPATH=SRC, HEADSTART_CACHE_DIR=str(tmp_path / "cache"), HEADSTART_RANK_WAIT="120", OMP_NUM_THREADS="1")
    return env


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "epochs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, make_images, convnet_weights):
    data = make_images(tmp_path / "data", per_class=15)
    (data / "red" / "zz_broken.png").write_bytes(b"not a png")  # skipped, and listed once
    common = [
        "--arch",
        "convnet_tiny",
        "--weights",
        convnet_weights,
        "--image-size",
        "32",
        "--frozen-epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--patience",
        "0",
        "--lr",
        "0.02",
        "--no-augment",
        "--accelerator",
        "cpu",
        "--workers",
        "0",
    ]
    cli = [sys.executable, "-m", "headstart.cli", "train", str(data)]
    one = subprocess.run(
        [*cli, "--out", str(tmp_path / "one"), *common, "--batch-size", "16"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    started = time.monotonic()
    two = subprocess.run(
        [*cli, "--out", str(tmp_path / "two"), *common, "--batch-size", "8", "--devices", "2"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    print(f"2-process run: {time.monotonic() - started:.1f} s")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data", "one", "two"]  # one run folder each
    assert (tmp_path / "two" / "split.csv").read_text() == (tmp_path / "one" / "split.csv").read_text()
    assert two.stderr.count("Results in") == 1  # rank 1 reports nothing; rank 0 once
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["val"]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["val"]
    assert m1["count"] == m2["count"] >= 8  # 9 or 10 drawn, less the broken file
    assert abs(m1["accuracy"] - m2["accuracy"]) <= ACC_TOLERANCE
    r1, r2 = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [(r["phase"], r["epoch"]) for r in r2] == [("1", "1"), ("1", "2"), ("2", "1")]  # one row per epoch
    for a, b in zip(r1, r2):
        assert abs(float(a["val_loss"]) - float(b["val_loss"])) <= LOSS_TOLERANCE, (a, b)
    assert not (tmp_path / "two" / "checkpoints" / "features.pt").exists()
    skipped = (tmp_path / "two" / "skipped.csv").read_text().splitlines()
    assert len(skipped) == 2 and "zz_broken.png" in skipped[1]  # removed once training ended


@pytest.mark.slow
def test_a_failing_rank_stops_the_run_and_it_resumes(tmp_path, make_images, convnet_weights):
    data = make_images(tmp_path / "data", per_class=8)
    run = tmp_path / "run"
    base = [sys.executable, SCRIPT, str(data), str(run), convnet_weights, "2"]
    started = time.monotonic()
    crashed = subprocess.run([*base, "--crash-rank", "1"], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert crashed.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: simulated failure on rank 1" in crashed.stderr, crashed.stderr[-3000:]
    assert time.monotonic() - started < 200  # stopped, not hung until the 60 s collective timeout and beyond
    assert not (run / "headstart.json").exists()

    resumed = subprocess.run([*base, "--resume"], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [(r["phase"], r["epoch"]) for r in _rows(run)] == [("1", "1"), ("2", "1"), ("2", "2")]
    assert (run / "headstart.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["val"]["count"] == 6


class _Trainer:
    def __init__(self, world: int, rank: int) -> None:
        self.world_size, self.global_rank = world, rank


@pytest.mark.parametrize("n, world", [(9, 2), (10, 4), (3, 3)])
def test_validation_shards_hold_every_image_once(n, world):
    ds = TensorDataset(torch.arange(n))
    seen: list[int] = []
    for rank in range(world):
        loaders = _Loaders(DataLoader(ds), DataLoader(ds, batch_size=4))
        loaders.trainer = _Trainer(world, rank)  # type: ignore[assignment]
        seen += [int(v) for (batch,) in loaders.val_dataloader() for v in batch]
    assert sorted(seen) == list(range(n))  # Lightning's padded sampler would repeat some


def test_rank_comes_from_the_launcher(monkeypatch):
    for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_PROCID", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert global_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning started
    assert global_rank() == 1
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    assert global_rank() == 5
    monkeypatch.setenv("RANK", "3")  # torchrun
    assert global_rank() == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"devices": "0"}, "devices='0'"),
        ({"devices": "two"}, "device ids"),
        ({"strategy": "ddp_spawn"}, "not one of auto, ddp, fsdp"),
        ({"num_nodes": 0}, "num_nodes=0"),
        ({"dist_timeout": 0}, "dist_timeout"),
    ],
)
def test_scale_options_are_checked(options, message):
    from headstart.config import TrainConfig
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_planned_processes(monkeypatch):
    from headstart.config import TrainConfig

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert TrainConfig(devices="4", num_nodes=2).planned_processes() == 8
    assert TrainConfig(devices="0,2").planned_processes() == 2
    assert TrainConfig(devices="0,2").lightning_devices() == [0, 2]
    assert TrainConfig(devices="auto", accelerator="cpu").planned_processes() == 1
    monkeypatch.setenv("WORLD_SIZE", "16")  # under torchrun the launcher knows best
    assert TrainConfig().planned_processes() == 16


def test_torchrun_needs_an_explicit_run_folder(tmp_path, make_images, tiny, monkeypatch):
    from headstart.errors import ConfigError

    data = make_images(tmp_path / "data", per_class=2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="need --out"):
        tiny().fit(data)


def test_a_rank_waiting_for_a_failed_rank0_gives_up_with_a_clear_error(tmp_path, monkeypatch):
    from headstart.engine.ranks import mark_ready, wait_for_rank0
    from headstart.errors import DataError

    monkeypatch.setenv("HEADSTART_RANK_WAIT", "0.5")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-2")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "prepared.json").write_text("launch-1|||")  # an earlier launch's mark
    with pytest.raises(DataError, match="rank 1 waited 0 s for rank 0"):
        wait_for_rank0(tmp_path, 1)
    mark_ready(tmp_path)  # this launch's rank 0 is done: no wait
    wait_for_rank0(tmp_path, 1)
