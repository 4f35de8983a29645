"""Lightning's progress bar replaced by headstart's: one display per training phase.

A rich bar for the epoch (training then validation batches) on a terminal, drawn on the
Console that prints the epoch lines, so each "phase P epoch N ..." line lands above the
bar instead of glued to it, and the bar is gone when the phase ends (early stopping
included). In a log: a plain line every ``EVERY`` seconds inside a long epoch.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar
from rich.console import Console
from rich.progress import Progress, TaskID

from headstart.progress import EVERY, PlainLines, bar


class EpochProgress(ProgressBar):
    """Progress of each epoch of one phase; only the global-zero process shows it."""

    def __init__(self, phase: int, console: Console | None = None, every: float = EVERY) -> None:
        super().__init__()
        self.phase = phase
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.every = every
        self._enabled = True
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._plain: PlainLines | None = None
        self._total = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _shown(self, trainer: L.Trainer) -> bool:
        return self._enabled and trainer.is_global_zero and not self.console.quiet

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._shown(trainer) and self.console.is_terminal:
            self._bar = bar(self.console)
            self._bar.start()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self._shown(trainer):
            return
        what = f"phase {self.phase} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        total = int(trainer.num_training_batches) if trainer.num_training_batches != float("inf") else 0
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._total = total
            self._task = self._bar.add_task(what, total=total or None)
        else:
            self._plain = PlainLines(what + " batches", total, self.console, self.every)

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._shown(trainer):
            return
        extra = int(sum(n for n in trainer.num_val_batches if n != float("inf")))
        if self._bar is not None and self._task is not None:
            self._total += extra
            self._bar.update(self._task, total=self._total or None)
        elif self._plain is not None:
            self._plain.total += extra

    def _advance(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)
        elif self._plain is not None:
            self._plain.advance()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._shown(trainer):
            self._advance()

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._shown(trainer) and not trainer.sanity_checking:
            self._advance()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()  # transient: the bar leaves the screen
        self._bar, self._task, self._plain = None, None, None

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self._stop()
