"""Callbacks that each do one thing."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L
from rich.console import Console

COLUMNS = ["phase", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "lr_head", "lr_base", "seconds", "train_seconds"]


class EpochLog(L.Callback):
    """Append one row per epoch to ``metrics.csv`` and print it: the learning-curve source.

    Rows are keyed by (phase, epoch), so a resumed phase rewrites nothing twice.
    """

    def __init__(self, path: Path, phase: int, console: Console | None = None) -> None:
        self.path = path
        self.phase = phase
        self.console = console or Console(stderr=True, soft_wrap=True)
        self._start = time.perf_counter()
        self._train_seconds: float | None = None
        self._lrs: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._train_seconds = None
        # the rates this epoch starts with (a per-step scheduler has moved on by its end)
        self._lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(trainer.optimizers[0].param_groups)}

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._start  # training steps only

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        lrs = self._lrs
        row = {
            "phase": self.phase,
            "epoch": trainer.current_epoch + 1,
            **{k: metrics.get(k, "") for k in COLUMNS[2:7]},
            "lr_head": lrs.get("head", ""),
            "lr_base": lrs.get("base", ""),
            "seconds": round(time.perf_counter() - self._start, 2),
            "train_seconds": round(self._train_seconds if self._train_seconds is not None else time.perf_counter() - self._start, 2),
        }
        rows = read_epochs(self.path)
        rows = [r for r in rows if (int(r["phase"]), int(r["epoch"])) != (self.phase, row["epoch"])]
        rows.append({k: str(v) for k, v in row.items()})
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in COLUMNS[2:7] if k in metrics)
        self.console.print(f"phase {self.phase} epoch {row['epoch']:>3}  {shown}  ({row['seconds']}s)")


def read_epochs(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
