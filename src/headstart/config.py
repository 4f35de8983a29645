"""Frozen, typed options. They flow one way: CLI/API -> these -> the engine.

Every dataclass round-trips through plain JSON (``to_dict``/``from_dict``) so a run
folder can describe itself and ``--resume`` rebuilds exactly the same options.
Unknown keys fail with the closest valid name instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from headstart.errors import ConfigError

Task = Literal["multiclass", "binary", "multilabel"]
TASKS: tuple[str, ...] = ("multiclass", "binary", "multilabel")
HEADS: tuple[str, ...] = ("linear", "bottleneck", "mlp")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
SCHEDULES: tuple[str, ...] = ("cosine", "constant", "plateau", "onecycle")
ANNEALS: tuple[str, ...] = ("cos", "linear")  # the decay after a one-cycle warm-up
MONITORS: tuple[str, ...] = ("val_acc", "val_loss", "val_f1")
STRATEGIES: tuple[str, ...] = ("auto", "ddp", "fsdp")
RECIPES: tuple[str, ...] = ("auto", "fixed")  # see pipeline/recipe.py
LOGGERS: tuple[str, ...] = ("auto", "csv", "tensorboard", "mlflow")  # see engine/loggers.py


def monitor_mode(monitor: str) -> Literal["min", "max"]:
    """Whether a better ``monitor`` value is lower (losses) or higher (accuracy, F1)."""
    return "min" if monitor.endswith("loss") else "max"


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(options)}.{hint}")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if not (value >= 0) or (value == 0 and not allow_zero):  # `not >=` also refuses NaN
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} must be {bound}.")


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = [k for k in data if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(names), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown option '{unknown[0]}' for {cls.__name__}.{hint}")
        kwargs = {}
        for key, value in data.items():
            sub = _NESTED.get((cls.__name__, key))
            if sub is not None and isinstance(value, dict):
                value = sub.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class AugmentConfig(_Serializable):
    """Training-only augmentation. Validation, evaluation and prediction never augment."""

    hflip: bool = True
    vflip: bool = False
    rotation: float = 10.0  # degrees, uniform in [-rotation, rotation]
    scale: tuple[float, float] = (0.6, 1.0)  # area fraction kept by the random crop
    color: float = 0.2  # brightness/contrast/saturation jitter strength
    translate: float = 0.0  # random shift of up to this fraction of the side, each axis

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"augment scale={self.scale} must satisfy 0 < min <= max <= 1.")
        _positive("augment rotation", self.rotation, allow_zero=True)
        _positive("augment color", self.color, allow_zero=True)
        if not 0 <= self.translate < 0.5:
            raise ConfigError(f"augment translate={self.translate!r} must be in [0, 0.5).")

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(hflip=False, vflip=False, rotation=0.0, scale=(1.0, 1.0), color=0.0, translate=0.0)

    @classmethod
    def flip_shift(cls) -> AugmentConfig:
        """Horizontal flips and shifts of up to 1/14 of the side: the small-image recipe
        (2 px on 28 px garments), no crop zoom, rotation or colour."""
        return cls(hflip=True, vflip=False, rotation=0.0, scale=(1.0, 1.0), color=0.0, translate=1 / 14)


@dataclass(frozen=True)
class ModelConfig(_Serializable):
    """What to build: a backbone by name, a head, and the task it solves."""

    arch: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = None  # explicit .safetensors/.pth/.bin for the backbone
    head: str = "linear"
    hidden: tuple[int, ...] = ()  # bottleneck: one width; mlp: one or more widths
    dropout: float = 0.0
    task: str | None = None  # None: follow the data
    threshold: float = 0.5  # binary and multi-label decision threshold

    def __post_init__(self) -> None:
        _choice("head", self.head, HEADS)
        if self.task is not None:
            _choice("task", self.task, TASKS)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1).")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold={self.threshold} must be in (0, 1).")
        if any(int(h) <= 0 for h in self.hidden):
            raise ConfigError(f"hidden={self.hidden} widths must be positive integers.")


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """How to train: two phases, frozen base then fine-tuning at a lower learning rate."""

    # None: 30 on cached features (an epoch there costs milliseconds), else 5.
    frozen_epochs: int | None = None
    # None: 3 on a GPU; 0 on a CPU, where fine-tuning the base costs many times phase 1 and,
    # on our OpenClipart benchmarks, never beat it (see the README's Training section).
    finetune_epochs: int | None = None
    # Head learning rate in phase 1 (and for everything when from scratch); "auto": fit()
    # runs the learning-rate range test (headstart lr-find) first and uses its suggestion.
    lr: float | str = 3e-3
    finetune_lr: float | None = None  # phase 2 head learning rate; None: lr / 10
    base_lr_ratio: float = 0.3  # phase 2: base lr = finetune_lr * base_lr_ratio
    unfreeze: int = 0  # phase 2: 0 = whole base, N = last N parameter groups (stages)
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    # Per phase: cosine decay per step, constant, plateau (x0.3 after 2 epochs without
    # improvement), or onecycle (warm-up then decay per step, each group to its own peak).
    schedule: str = "cosine"
    warmup_fraction: float = 0.25  # onecycle: the share of the phase's steps spent warming up
    anneal: str = "cos"  # onecycle: "cos" or "linear" decay after the warm-up
    label_smoothing: float = 0.0  # multiclass cross-entropy only: target mass spread over all classes
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    # Validation loss, not accuracy: on small validation sets accuracy moves in coarse
    # steps and ties, so the best checkpoint and early stopping would follow noise.
    monitor: str = "val_loss"
    patience: int = 3  # early stopping, in epochs without improvement; 0 disables
    class_weights: str | None = None  # None or "balanced"
    oversample: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Phase 1 on cached base features (computed once, no augmentation): far faster, and
    # the base's output cannot change while it is frozen.
    feature_cache: bool = True
    # Phase 1 on cached features: 1 = the evaluation view of each image only; K adds K-1
    # random training views per image (augmentation, computed once with the features).
    feature_views: int = 1
    num_workers: int | None = None  # None: sized to the machine
    accelerator: str = "auto"
    precision: str | None = None  # None: Lightning's default (32-bit)
    # Scale-out, passed to Lightning: devices per machine ("1", "4", "auto", "0,2"),
    # machines, and the strategy (None: ddp when more than one process, else Lightning's).
    devices: str = "1"
    num_nodes: int = 1
    strategy: str | None = None
    dist_timeout: float = 1800.0  # seconds a collective waits for a silent rank before failing
    compile: bool = False  # torch.compile the base for the phase that runs it on images
    logger: str = "auto"  # epochs.csv always; plus auto | csv | tensorboard | mlflow (engine/loggers.py)
    # "auto": when no recipe option is set, headstart plans base, input size, phases and
    # epochs from the data and this machine (pipeline/recipe.py); "fixed": the options as given.
    recipe: str = "auto"
    time_budget: float | None = None  # seconds for the whole run; training stops cleanly at it

    def __post_init__(self) -> None:
        for name in ("patience", "unfreeze"):
            _positive(name, getattr(self, name), allow_zero=True)
        for name in ("frozen_epochs", "finetune_epochs"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), allow_zero=True)
        if self.phase1_epochs + (self.finetune_epochs or 0) == 0 and self.finetune_epochs is not None:
            raise ConfigError("frozen_epochs + finetune_epochs is 0: nothing to train.")
        if isinstance(self.lr, str):
            if self.lr != "auto":
                raise ConfigError(f"lr={self.lr!r}: give a number such as 3e-3, or 'auto' to run the learning-rate range test.")
        else:
            _positive("lr", self.lr)
        _positive("base_lr_ratio", self.base_lr_ratio)
        if self.finetune_lr is not None:
            _positive("finetune_lr", self.finetune_lr)
        _positive("batch_size", self.batch_size)
        if not (isinstance(self.feature_views, int) and 1 <= self.feature_views <= 32):
            raise ConfigError(f"feature_views={self.feature_views!r} must be an integer from 1 to 32.")
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in (0, 1).")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("anneal", self.anneal, ANNEALS)
        if not 0 < self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction={self.warmup_fraction!r} must be in (0, 1).")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing={self.label_smoothing!r} must be in [0, 1).")
        _choice("monitor", self.monitor, MONITORS)
        if self.class_weights is not None:
            _choice("class_weights", self.class_weights, ("balanced",))
        self._check_placement()
        _choice("logger", self.logger, LOGGERS)
        _choice("recipe", self.recipe, RECIPES)
        if self.time_budget is not None:
            _positive("time_budget", self.time_budget)

    def _check_placement(self) -> None:
        """Where it runs: the strategy, machines, devices and the collectives' timeout."""
        if self.strategy is not None:
            _choice("strategy", self.strategy, STRATEGIES)
        if not isinstance(self.num_nodes, int) or self.num_nodes < 1:
            raise ConfigError(f"num_nodes={self.num_nodes!r} must be an integer >= 1.")
        _positive("dist_timeout", self.dist_timeout)
        if not re.fullmatch(r"auto|-1|[1-9]\d*|\d+(?:,\d+)+|\d+,", str(self.devices)):
            raise ConfigError(f"devices={self.devices!r}: give a count (4), 'auto', -1 (all), or device ids such as 0,1.")

    def planned_processes(self) -> int:
        """How many processes Lightning will run (WORLD_SIZE once launched)."""
        import os

        if "WORLD_SIZE" in os.environ:
            return int(os.environ["WORLD_SIZE"])
        devices = str(self.devices)
        if "," in devices:
            per_node = len([d for d in devices.split(",") if d])
        elif devices in ("auto", "-1"):
            import torch

            gpu = self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
            per_node = torch.cuda.device_count() if gpu else 1
        else:
            per_node = int(devices)
        return per_node * self.num_nodes

    def lightning_devices(self) -> int | str | list[int]:
        devices = str(self.devices)
        if "," in devices:
            return [int(d) for d in devices.split(",") if d]
        return devices if devices == "auto" else int(devices)

    @property
    def phase2_lr(self) -> float:
        if self.finetune_lr is not None:
            return self.finetune_lr
        if isinstance(self.lr, str):
            raise ConfigError("lr='auto' has not been resolved yet: fit() runs the range test first.")
        return self.lr / 10

    def phase2_epochs(self, accelerated: bool) -> int:
        """Fine-tuning epochs: as given, else 3 on a GPU and 0 on a CPU."""
        if self.finetune_epochs is not None:
            return self.finetune_epochs
        return 3 if accelerated or self.frozen_epochs == 0 else 0  # frozen_epochs=0: fine-tuning is all there is

    @property
    def phase1_epochs(self) -> int:
        if self.frozen_epochs is not None:
            return self.frozen_epochs
        return 30 if self.feature_cache else 5


_NESTED: dict[tuple[str, str], type[_Serializable]] = {("TrainConfig", "augment"): AugmentConfig}
