"""A training script for the multi-process tests: Lightning's ddp launcher re-runs this file
(sys.argv) once per extra rank, as it would a user's script.

    python _ddp_script.py DATA RUN WEIGHTS DEVICES [--crash-rank R] [--resume]
"""

from __future__ import annotations

import argparse

import lightning as L

from headstart import Classifier
from headstart.config import AugmentConfig, ModelConfig, TrainConfig


class CrashOnRank(L.Callback):
    """Raises on one rank only, in the second fine-tuning epoch: a rank failing mid-run."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def on_train_epoch_end(self, trainer, module):
        if trainer.global_rank == self.rank and module.phase == 2 and trainer.current_epoch == 1:
            raise RuntimeError(f"simulated failure on rank {self.rank}")


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("data", "run", "weights", "devices"):
        parser.add_argument(name)
    parser.add_argument("--crash-rank", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    callbacks = [CrashOnRank(args.crash_rank)] if args.crash_rank is not None else []
    if args.resume:
        Classifier.resume(args.run, callbacks=callbacks)
        return
    train = TrainConfig(
        frozen_epochs=1,
        finetune_epochs=2,
        batch_size=8,
        patience=0,
        lr=1e-2,
        num_workers=0,
        augment=AugmentConfig.none(),
        accelerator="cpu",
        devices=args.devices,
        dist_timeout=60.0,
    )
    model = ModelConfig(arch="convnet_tiny", weights=args.weights)
    Classifier(model=model, train_config=train, image_size=32).fit(args.data, out=args.run, callbacks=callbacks)


if __name__ == "__main__":
    main()
