"""Lightning checkpoints written like every other file of a run: whole, or not at all.

Lightning's own writer (fsspec) saves to a temporary file in the system's temp folder and
then *moves* it to the run folder. Across file systems that move is a copy, so a full run
disk left a truncated best.ckpt or last.ckpt in place of the good one, which the next
``--resume`` then failed to read. Here the checkpoint is written beside its target and
renamed over it (``headstart.files.atomic_target``): a failed save keeps the previous
checkpoint, and a full disk is reported as such.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from headstart.files import atomic_target


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic on the local disk.

    Example:
        >>> L.Trainer(plugins=[AtomicCheckpointIO(then="continue with: headstart train --resume RUN")])        # doctest: +SKIP
    """

    def __init__(self, then: str = "run the command again") -> None:
        super().__init__()
        self.then = then  # what a full disk's error tells the user to do once there is space

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        target = Path(os.fspath(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(target, then=self.then) as tmp:
            torch.save(checkpoint, tmp)
