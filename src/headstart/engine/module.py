"""The one LightningModule: loss, metrics and optimizer for a phase of training."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torchmetrics
from torch import nn

from headstart.config import TrainConfig, monitor_mode
from headstart.engine.epoch_metrics import make_metrics
from headstart.models import Network
from headstart.models.network import to_channels_last


def make_loss(task: str, weights: torch.Tensor | None, label_smoothing: float = 0.0) -> nn.Module:
    """multiclass: cross-entropy (class weights, label smoothing); binary/multilabel: BCE
    (positive weights; label smoothing does not apply to independent yes/no outputs)."""
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)
    return nn.BCEWithLogitsLoss(pos_weight=weights)


def make_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over parameter groups (each with its own "lr")."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _freeze_norm_stats(module: nn.Module, all_norms: bool) -> None:
    """Batch-norm layers in eval mode: all of them, or those whose parameters are frozen."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and (all_norms or not any(p.requires_grad for p in m.parameters(recurse=False))):
            m.eval()


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int) -> dict | None:
    """The configured learning-rate schedule as Lightning's ``lr_scheduler`` entry (None: constant).

    ``steps``: optimizer steps in the whole phase. "onecycle" warms each parameter group up
    to its own rate (the group's "lr" is its peak: discriminative rates survive) over the first
    ``warmup_fraction`` of the steps, then anneals it ("cos" or "linear") towards zero.
    """
    if config.schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=monitor_mode(config.monitor), factor=0.3, patience=1)
        return {"scheduler": plateau, "monitor": config.monitor}
    if config.schedule == "cosine":
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps), eta_min=0.0)
        return {"scheduler": cosine, "interval": "step"}
    if config.schedule == "onecycle":
        onecycle = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max(2, steps),
            pct_start=config.warmup_fraction,
            anneal_strategy="linear" if config.anneal == "linear" else "cos",
        )
        return {"scheduler": onecycle, "interval": "step"}
    return None


class ClassifierModule(L.LightningModule):
    """Phase 1 trains the head on a frozen base; phase 2 fine-tunes (part of) the base too.

    Args:
        network: the network to train (in place).
        task: "multiclass", "binary" or "multilabel".
        num_classes: classes (labels) the metrics count.
        config: the training options (optimizer, schedule, unfreeze, label smoothing ...).
        phase: 1 (frozen base, head only) or 2 (the chosen base stages and the head).
        head_lr, base_lr: the learning rates of the "head" and "base" parameter groups.
        threshold: binary and multi-label decision threshold for the metrics.
        loss_weights: class weights (multiclass) or positive weights, None for none.
        pretrained: whether the base starts from learned weights. Then phase 2 keeps its
            batch-norm statistics (a fine-tuning choice); from scratch they must be learned.

    Example:
        >>> module = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(),
        ...                           phase=2, head_lr=3e-4, base_lr=1e-4)  # doctest: +SKIP
    """

    def __init__(
        self,
        network: Network,
        *,
        task: str,
        num_classes: int,
        config: TrainConfig,
        phase: int,
        head_lr: float,
        base_lr: float,
        threshold: float = 0.5,
        loss_weights: torch.Tensor | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.network = network
        self.task = task
        self.config = config
        self.phase = phase
        self.head_lr, self.base_lr = head_lr, base_lr
        self.pretrained = pretrained
        self.loss_fn = make_loss(task, loss_weights, config.label_smoothing)
        metrics = make_metrics(task, num_classes, threshold)
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        # A metric, not a logged mean: summed over every image of every rank, then divided,
        # so uneven validation shards weigh each image once.
        self.val_loss = torchmetrics.MeanMetric()
        self._set_trainable()
        self.network.to(memory_format=torch.channels_last)  # 1.6x faster conv training on CPU, measured
        # Training steps only, through a wrapper kept outside the module tree: parameter
        # names (checkpoints, the artifact) stay the plain module's, and validation and
        # prediction never wait for a recompilation. The first steps pay the compilation.
        self._train_forward: list[Callable[[torch.Tensor], torch.Tensor]] = (
            [torch.compile(self.network)] if config.compile and phase == 2 else []
        )

    def _set_trainable(self) -> None:
        self.network.backbone.requires_grad_(False)
        self.network.head.requires_grad_(True)
        if self.phase == 2:
            groups = self.network.base_groups()
            chosen = groups if self.config.unfreeze == 0 else groups[-self.config.unfreeze :]
            for group in chosen:
                for p in group:
                    p.requires_grad_(True)

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        # Lightning restores each submodule's mode itself after validation (without calling
        # train()), so the frozen parts are put back in eval mode before every batch.
        self._fix_modes()

    def _fix_modes(self) -> None:
        if self.training:
            if self.phase == 1:
                self.network.backbone.eval()  # frozen base: fixed BN stats, no dropout
            else:
                self.network.backbone.train()  # phase 1 may have left it in eval mode
                # Fine-tuning a pretrained base keeps its batch-norm statistics (their
                # scale/shift still learn): small batches of a new domain would otherwise
                # shift them and undo what phase 1 learned on top of them. From scratch the
                # statistics are part of what is learned (frozen at mean 0 / variance 1 they
                # normalise nothing); layers of frozen stages keep theirs either way.
                _freeze_norm_stats(self.network.backbone, all_norms=self.pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def _metric_inputs(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task == "multiclass":
            return logits, y
        p = logits.sigmoid()
        if self.task == "binary":
            return p.squeeze(-1), y.squeeze(-1).long()
        return p, y.long()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        x = to_channels_last(x)
        logits = (self._train_forward[0] if self._train_forward else self.network)(x)
        loss = self.loss_fn(logits, y)
        self.train_metrics.update(*self._metric_inputs(logits.detach(), y))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        x = to_channels_last(x)
        logits = self.network(x)
        self.val_loss.update(self.loss_fn(logits, y), weight=len(x))
        self.log("val_loss", self.val_loss, on_epoch=True, prog_bar=True, batch_size=len(x))
        self.val_metrics.update(*self._metric_inputs(logits, y))
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        cfg = self.config
        groups = [{"params": list(self.network.head.parameters()), "lr": self.head_lr, "name": "head"}]
        base = [p for p in self.network.backbone.parameters() if p.requires_grad]
        if base:
            groups.append({"params": base, "lr": self.base_lr, "name": "base"})
        optimizer = make_optimizer(groups, cfg)
        steps = int(self.trainer.estimated_stepping_batches) if cfg.schedule in ("cosine", "onecycle") else 0
        scheduler = make_scheduler(optimizer, cfg, steps)
        return {"optimizer": optimizer, "lr_scheduler": scheduler} if scheduler else optimizer
