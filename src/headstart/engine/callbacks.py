"""Callbacks that each do one thing."""

from __future__ import annotations

import csv
import io
import pickle
import time
from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Console

from headstart.errors import ArtifactError, describe
from headstart.files import atomic_write

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
        text = io.StringIO()
        writer = csv.DictWriter(text, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, text.getvalue().encode(), then=f"continue with: headstart train --resume {self.path.parent}")
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in COLUMNS[2:7] if k in metrics)
        self.console.print(f"phase {self.phase} epoch {row['epoch']:>3}  {shown}  ({row['seconds']}s)")


def read_epochs(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class PhaseRecord(L.Callback):
    """Which phase a ``Trainer.fit`` trains and, once it has ended, its result.

    Lightning stores this ``state_dict`` in every checkpoint of the phase (best.ckpt,
    last.ckpt) and gives it back on resume. When the phase ends, ``finish`` records its best
    score and the file of its best whole-network weights, and the phase's last.ckpt is
    written once more: a finished phase is recognised from its own last.ckpt (``read``),
    with no side file to keep in step with the checkpoints.
    """

    def __init__(self, phase: int) -> None:
        self.phase = phase
        self.finished = False
        self.best_score: float | None = None
        self.weights: str | None = None  # file name in the phase's checkpoint folder

    @property
    def state_key(self) -> str:
        return "PhaseRecord"

    def finish(self, best_score: float, weights: str) -> None:
        self.finished, self.best_score, self.weights = True, best_score, weights

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "finished": self.finished, "best_score": self.best_score, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("phase", self.phase) != self.phase:
            raise ValueError(f"A checkpoint of phase {state_dict['phase']} cannot resume phase {self.phase}.")
        self.finished = bool(state_dict.get("finished", False))
        self.best_score = state_dict.get("best_score")
        self.weights = state_dict.get("weights")

    @classmethod
    def read(cls, checkpoint: Path) -> PhaseRecord | None:
        """The record saved in a Lightning checkpoint file, or None (absent, or none saved)."""
        import torch

        if not checkpoint.is_file():
            return None
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # truncated or damaged: never trusted
            raise ArtifactError(
                f"{checkpoint} is damaged and cannot be resumed from ({describe(exc)}); delete it to train this phase "
                f"again from its start, then run 'headstart train --resume {checkpoint.parents[2]}'."
            ) from None
        state = saved.get("callbacks", {}).get(cls.__name__)
        if state is None:
            return None
        record = cls(int(state["phase"]))
        record.load_state_dict(state)
        return record


class Deadline(L.Callback):
    """Stops training cleanly before a wall-clock ``deadline`` (``time.time()`` seconds).

    After each epoch (its validation included, so the best checkpoint is up to date) it
    stops when another epoch of the same length would end past the deadline. The phase then
    ends as if its epochs were done: best checkpoint kept, nothing half-written.
    """

    def __init__(self, deadline: float, console: Console | None = None) -> None:
        self.deadline, self.console = deadline, console
        self._epoch_started = time.time()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._epoch_started = time.time()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        now = time.time()
        if now + (now - self._epoch_started) > self.deadline and not trainer.should_stop:
            trainer.should_stop = True
            if self.console is not None and trainer.is_global_zero:
                self.console.print(
                    f"Time budget: stopping after epoch {trainer.current_epoch + 1} "
                    f"(another would end {now + (now - self._epoch_started) - self.deadline:.0f} s past it).",
                    highlight=False,
                )


MARGIN = 1.1  # EpochRefit: the next epoch is budgeted at the slowest so far times this


class EpochRefit(L.Callback):
    """After each epoch, re-fit the phase's remaining epochs and its schedule to the budget.

    The slowest epoch so far (validation included; MARGIN more) says how many more fit before the
    ``deadline`` (``clock()`` seconds): the phase's length becomes that, at most ``cap``
    epochs (None: the planned count, so a fast machine never trains more than asked) and
    never fewer than it has done (``Deadline`` stops the phase then). When the length
    changes, a per-step schedule is replaced by a cosine from the current learning rates to
    zero over the new remaining steps, so the run still ends annealed (Ultralytics' ``time=``
    recomputes its epoch count every epoch in the same way).

    Example:
        >>> EpochRefit(deadline=time.time() + 600, cap=40)        # doctest: +ELLIPSIS
        <...EpochRefit object at ...>
    """

    def __init__(self, deadline: float, cap: int | None = None, console: Console | None = None, clock: Any = time.time) -> None:
        self.deadline, self.cap, self.console, self.clock = deadline, cap, console, clock
        self._started = clock()
        self._slowest = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._started = self.clock()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.should_stop:
            return
        now = self.clock()
        self._slowest = max(self._slowest, now - self._started, 1e-6)
        # The slowest epoch so far, 10 % more: on a shared machine the next epoch may be slower
        # still, and a phase the Deadline cuts short ends with its schedule un-annealed
        # (Fashion-MNIST 10k, --time 5m, load ~16 on 2 cores: epochs of 61, 51 then 73 s).
        epoch_s = MARGIN * self._slowest
        done, planned = trainer.current_epoch + 1, trainer.fit_loop.max_epochs or 0
        target = min(done + int(max(0.0, self.deadline - now) // epoch_s), self.cap or planned)
        if target <= done or target == planned:
            return  # nothing more fits (Deadline stops the phase) or the plan still fits
        trainer.fit_loop.max_epochs = target
        steps = (target - done) * max(1, int(trainer.num_training_batches))
        for config in trainer.lr_scheduler_configs:
            if config.interval == "step":
                config.scheduler = _anneal(config.scheduler.optimizer, steps)
        if self.console is not None and trainer.is_global_zero:
            self.console.print(
                f"Time budget: epochs re-fitted to {target} ({'+' if target > planned else ''}{target - planned}; "
                f"~{epoch_s:.0f} s an epoch, {self.deadline - now:.0f} s left)",
                highlight=False,
            )


def _anneal(optimizer: Any, steps: int) -> Any:
    """A cosine from each group's current learning rate to 0 over ``steps`` steps."""
    import math

    import torch

    start = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, start):
        group["initial_lr"] = lr  # LambdaLR scales each group's initial_lr
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
