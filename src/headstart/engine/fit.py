"""The two-phase schedule on Lightning: frozen base, then fine-tuning; resumable.

Each phase is one ``Trainer.fit`` with its own checkpoint folder
(``checkpoints/phase{1,2}/{best,last}.ckpt``) so ``--resume`` restarts the phase that was
interrupted, from its last epoch, with the optimizer, scheduler and callback state intact.
A ``PhaseRecord`` callback keeps each phase's state in those checkpoints: a phase whose
last.ckpt says it finished is skipped on resume, its best weights (``best.safetensors``,
the whole network) restored. These checkpoints are internal resume files; the artifact a
user loads is safetensors.

Why separate fits rather than Lightning's ``BaseFinetuning`` (one fit that unfreezes the
base at an epoch): phase 1 usually trains the head alone on cached base features (a
TensorDataset, a head-only module, no augmentation), phase 2 the network on images. The
data, the module, the epoch count, the schedule's length, early stopping and the best
checkpoint all differ per phase, and the best phase is chosen at the end; one fit holds
one of each.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from rich.console import Console
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from headstart.allocator import keep_freed_memory
from headstart.config import TrainConfig, monitor_mode
from headstart.engine.callbacks import Deadline, EpochLog, EpochRefit, PhaseRecord
from headstart.engine.checkpoint_io import AtomicCheckpointIO
from headstart.engine.features import head_only
from headstart.engine.loggers import make_logger
from headstart.engine.module import ClassifierModule
from headstart.engine.progress import EpochProgress
from headstart.errors import ArtifactError, ConfigError
from headstart.files import atomic_target
from headstart.memory_guard import is_out_of_memory
from headstart.models import Network
from headstart.text import shown

if TYPE_CHECKING:
    from lightning.pytorch.strategies import Strategy


@dataclass(frozen=True)
class PhaseSchedule:
    """One phase of the two-phase schedule as ``two_phase_fit`` runs it (not
    ``engine.plan``'s planned phase, which the recipe turns into TrainConfig options)."""

    number: int  # 1: frozen base, 2: fine-tuning
    epochs: int
    head_lr: float
    base_lr: float  # unused while the base is frozen


@dataclass
class FitResult:
    best_phase: int
    best_score: float
    monitor: str
    seconds: float


def accelerated(accelerator: str) -> bool:
    """Whether Lightning will train on a GPU (or Apple's MPS) for this ``accelerator``."""
    if accelerator == "cpu":
        return False
    if accelerator in ("gpu", "cuda", "mps"):
        return True
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


def plan_phases(config: TrainConfig, pretrained: bool, on_gpu: bool = False) -> list[PhaseSchedule]:
    """Pretrained: frozen then fine-tune. From scratch, freezing a random base is pointless,
    so every epoch trains the whole network at the full learning rate."""
    lr = config.lr
    if isinstance(lr, str):
        raise ConfigError("lr='auto' has not been resolved yet: fit() runs the range test first.")
    if not pretrained:
        extra = config.finetune_epochs if config.finetune_epochs is not None else 3
        return [PhaseSchedule(2, config.phase1_epochs + extra, lr, lr)]
    # Fine-tuning starts from a trained head: a tenth of its learning rate, and less for
    # the pretrained base, so the first steps do not undo what phase 1 learned.
    phases = [
        PhaseSchedule(1, config.phase1_epochs, lr, 0.0),
        PhaseSchedule(2, config.phase2_epochs(on_gpu), config.phase2_lr, config.phase2_lr * config.base_lr_ratio),
    ]
    return [p for p in phases if p.epochs > 0]


class ResumeHint(L.Callback):
    """On an interruption, say which process stopped, why, and how to continue."""

    def __init__(self, run_dir: Path, console: Console) -> None:
        self.run_dir, self.console = run_dir, console

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exc: BaseException) -> None:
        if is_out_of_memory(exc):  # resuming would run out again: the error says what to lower
            return
        if trainer.world_size > 1:  # the other ranks are stopped by the launcher; name the culprit
            cause = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            # a fresh console: ranks > 0 run with a quiet one, but this line must be seen
            Console(stderr=True, soft_wrap=True).print(
                f"[red]rank {trainer.global_rank} of {trainer.world_size} failed:[/] {shown(cause)}", highlight=False
            )
        if trainer.is_global_zero or trainer.world_size > 1:
            self.console.print(
                f"[yellow]Training stopped ({type(exc).__name__}). Continue with: headstart train --resume {shown(self.run_dir)}"
            )


class _Loaders(L.LightningDataModule):
    """Hands Lightning the phase's loaders. With several processes the validation loader
    gets a sampler that gives each image to exactly one rank: Lightning's default pads the
    shards with repeated images, which would count them twice in the synced metrics."""

    def __init__(self, train: DataLoader, val: DataLoader) -> None:
        super().__init__()
        self.train, self.val = train, val

    def train_dataloader(self) -> DataLoader:
        return self.train

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        if trainer is None or world <= 1 or len(self.val.dataset) < world:  # type: ignore[arg-type]  # torch's Dataset declares no __len__; ours have one
            return self.val  # fewer images than ranks: Lightning's padded sampler (an empty shard would hang)
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        sampler = UnrepeatedDistributedSampler(self.val.dataset, num_replicas=world, rank=trainer.global_rank, shuffle=False)
        v = self.val
        return DataLoader(
            v.dataset,
            batch_size=v.batch_size,
            sampler=sampler,
            num_workers=v.num_workers,
            persistent_workers=v.persistent_workers,
            pin_memory=v.pin_memory,
            worker_init_fn=v.worker_init_fn,
            collate_fn=v.collate_fn,  # whole batches from the store come through their own collate
        )


def make_strategy(config: TrainConfig) -> str | Strategy:
    """The Lightning strategy: ddp by default with several processes, with a timeout on the
    process group so a rank that stops answering fails the run instead of hanging it."""
    from datetime import timedelta

    name = config.strategy or ("ddp" if config.planned_processes() > 1 else "auto")
    timeout = timedelta(seconds=config.dist_timeout)
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(timeout=timeout)
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        return FSDPStrategy(timeout=timeout)
    return name


def load_weights_from_checkpoint(network: Network, path: str | Path) -> None:
    """Copy the network tensors out of an internal Lightning checkpoint (tensors only).

    A phase trained on cached features saved the head alone; the base is unchanged then.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    weights = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}
    head_only = not any(k.startswith("backbone.") for k in weights)
    target = network.head if head_only else network
    target.load_state_dict({k.removeprefix("head."): v for k, v in weights.items()} if head_only else weights)


def finished_phases(run_dir: Path) -> dict[int, PhaseRecord]:
    """The phases of a run that finished, read from their own last.ckpt: number -> record."""
    records = {}
    for folder in sorted((Path(run_dir) / "checkpoints").glob("phase*")):
        record = PhaseRecord.read(folder / "last.ckpt")
        if record is not None and record.finished:
            records[record.phase] = record
    return records


def quiet_lightning() -> None:
    """Keep Lightning's banners (GPU available, tips, dataloader notes) off the user's screen."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # expected on --resume


@dataclass(frozen=True)
class FitTask:
    """What the phases learn: the task, its classes, the decision threshold, the start."""

    task: str
    num_classes: int
    threshold: float
    pretrained: bool
    loss_weights: torch.Tensor | None = None  # per class (engine/balance.py), or None


@dataclass(frozen=True)
class FitContext:
    """Where and how the phases run. Only ``rank`` 0 writes files. ``deadline``
    (``time.time()`` seconds): each phase stops after the last epoch that ends before it,
    and a phase that would start after it is skipped once an earlier one has finished;
    phase 2's epochs are re-fitted to it after each epoch (``EpochRefit``)."""

    run_dir: Path
    resume: bool = False
    callbacks: tuple[L.Callback, ...] = ()
    console: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    rank: int = 0
    deadline: float | None = None
    epoch_cap: int | None = None  # phase 2 may grow to this many epochs when they run faster (None: never more)

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def then(self) -> str:
        return f"continue with: headstart train --resume {self.run_dir}"


Loaders = Callable[[int], tuple[DataLoader, DataLoader, bool]]


def two_phase_fit(network: Network, task: FitTask, config: TrainConfig, loaders: Loaders, context: FitContext) -> FitResult:
    """Train ``network`` in place; on return it holds the best weights of all phases.

    ``loaders(phase)`` gives (train, val, on_features): when ``on_features`` the batches are
    cached base features and only the head runs. Every rank returns with the best weights.

    Example:
        >>> task = FitTask("multiclass", 3, 0.5, pretrained=True)                      # doctest: +SKIP
        >>> two_phase_fit(network, task, TrainConfig(), loaders, FitContext(run)).best_phase  # doctest: +SKIP
        1
    """
    quiet_lightning()
    keep_freed_memory()
    if context.rank == 0:
        context.checkpoints.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    on_gpu = accelerated(config.accelerator)
    if task.pretrained and config.finetune_epochs is None and not on_gpu:
        context.console.print(
            "Fine-tuning the base is off on a CPU (phase 2 costs several times phase 1 here); --finetune-epochs 3 turns it on.",
            highlight=False,
        )
    records: dict[int, PhaseRecord] = {}
    for phase in plan_phases(config, task.pretrained, on_gpu):
        done = _finished_record(network, phase, context)
        if done is not None:
            records[phase.number] = done
            continue
        if context.deadline is not None and records and time.time() >= context.deadline:
            context.console.print(
                f"Time budget spent: phase {phase.number} skipped; the best of the finished phases is kept.", highlight=False
            )
            break
        records[phase.number] = _fit_phase(network, phase, task, config, loaders, context)
    pick = best_phase({n: r.best_score for n, r in records.items()}, monitor_mode(config.monitor))
    network.load_state_dict(load_file(context.checkpoints / f"phase{pick}" / str(records[pick].weights)))
    return FitResult(pick, _score(records[pick].best_score), config.monitor, time.perf_counter() - start)


def _score(value: float | None) -> float:
    return math.nan if value is None else float(value)


def best_phase(scores: dict[int, float | None], mode: str) -> int:
    """The phase whose best checkpoint scored best under ``mode`` ("min" or "max"); a phase
    with no score (None or NaN: it never validated) never wins while another has one. On a
    tie, "min" keeps the earlier phase and "max" the later one.

    Example:
        >>> best_phase({1: float("nan"), 2: 0.9}, "min")
        2
    """
    scored = {n: _score(v) for n, v in scores.items() if not math.isnan(_score(v))}
    if not scored:
        return max(scores)  # none scored: the last phase trained
    return (min if mode == "min" else max)(scored, key=lambda n: (scored[n], n))


def _finished_record(network: Network, phase: PhaseSchedule, context: FitContext) -> PhaseRecord | None:
    """A phase a resumed run already finished: its best weights loaded, its record; else None."""
    folder = context.checkpoints / f"phase{phase.number}"
    done = PhaseRecord.read(folder / "last.ckpt")
    if done is None or not done.finished or not done.weights:
        return None
    network.load_state_dict(load_file(folder / done.weights))
    return done


def _fit_phase(
    network: Network, phase: PhaseSchedule, task: FitTask, config: TrainConfig, loaders: Loaders, context: FitContext
) -> PhaseRecord:
    """One phase as one ``Trainer.fit``; returns its finished record, the network at its best."""
    folder = context.checkpoints / f"phase{phase.number}"
    last = folder / "last.ckpt"
    train_loader, val_loader, on_features = loaders(phase.number)
    network.train()  # the module sets the frozen parts' modes per batch
    if on_features:
        network.backbone.requires_grad_(False)
    module = ClassifierModule(
        head_only(network) if on_features else network,
        task=task.task,
        num_classes=task.num_classes,
        config=config,
        phase=phase.number,
        head_lr=phase.head_lr,
        base_lr=phase.base_lr,
        threshold=task.threshold,
        loss_weights=task.loss_weights,
        pretrained=task.pretrained,
    )
    _print_parameters(context.console, network, phase.number, task.pretrained)
    mode = monitor_mode(config.monitor)
    best = ModelCheckpoint(
        dirpath=folder, filename="best", monitor=config.monitor, mode=mode, save_top_k=1, save_last=True, enable_version_counter=False
    )
    record = PhaseRecord(phase.number)
    trainer = _trainer(phase, config, [best, record], len(train_loader), context)
    trainer.fit(module, datamodule=_Loaders(train_loader, val_loader), ckpt_path=str(last) if context.resume and last.exists() else None)
    if not best.best_model_path:
        raise ArtifactError(f"Phase {phase.number} produced no checkpoint in {folder}.")
    load_weights_from_checkpoint(network, best.best_model_path)
    _save_phase(network, trainer, record, best, folder, context)
    return record


def _trainer(phase: PhaseSchedule, config: TrainConfig, own: list[L.Callback], batches: int, context: FitContext) -> L.Trainer:
    """The Lightning Trainer of one phase, with headstart's callbacks before the user's."""
    run_dir, console = context.run_dir, context.console
    extra: list[L.Callback] = [
        *own,
        EpochLog(run_dir / "epochs.csv", phase.number, console),
        ResumeHint(run_dir, console),
        EpochProgress(phase.number, console),
    ]
    if context.deadline is not None:
        extra.append(Deadline(context.deadline, console))
        if phase.number == 2:  # on images: an epoch costs real time (phase 1 usually runs on cached features)
            extra.append(EpochRefit(context.deadline, context.epoch_cap, console))
    if config.patience:
        extra.append(EarlyStopping(monitor=config.monitor, mode=monitor_mode(config.monitor), patience=config.patience))
    logger = make_logger(config.logger, run_dir, phase.number)
    if logger:
        extra.append(LearningRateMonitor(logging_interval="step"))
    return L.Trainer(
        max_epochs=phase.epochs,
        accelerator=config.accelerator,
        devices=config.lightning_devices(),
        num_nodes=config.num_nodes,
        strategy=make_strategy(config),
        precision=config.precision,  # type: ignore[arg-type]  # Lightning types it as a Literal of names; it checks the string itself
        callbacks=extra + list(context.callbacks),
        logger=logger,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, batches // config.planned_processes())),  # batches per rank
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO(then=context.then)],
    )


def _save_phase(
    network: Network, trainer: L.Trainer, record: PhaseRecord, best: ModelCheckpoint, folder: Path, context: FitContext
) -> None:
    """The whole network at this phase's best (best.safetensors), so picking an earlier phase
    later also restores its base (a phase on cached features saved only the head); then the
    phase's last.ckpt once more, its record marked finished: the weights file is written
    first, so a record that says finished always has them. Every rank calls this (rank 0
    writes; Lightning waits for all of them)."""
    full = folder / "best.safetensors"
    if context.rank == 0:
        with atomic_target(full, then=context.then) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, str(tmp))
    score = best.best_model_score
    record.finish(float(score) if score is not None else math.nan, full.name)
    trainer.save_checkpoint(folder / "last.ckpt")
    trainer.strategy.barrier("headstart-phase-saved")  # ranks > 0 read these files at the end


def _print_parameters(console: Console, network: Network, phase: int, pretrained: bool) -> None:
    total = sum(p.numel() for p in network.parameters())
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    label = "frozen base, training the head" if phase == 1 else ("fine-tuning" if pretrained else "from scratch, all layers")
    console.print(f"[bold]Phase {phase}[/] ({label}): {trainable:,} of {total:,} parameters trainable")


def __getattr__(name: str) -> Any:
    if name == "Phase":  # renamed: engine.plan has a Phase of its own
        warnings.warn("headstart.engine.fit.Phase is now PhaseSchedule; Phase is removed in 0.3.", DeprecationWarning, stacklevel=2)
        return PhaseSchedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
