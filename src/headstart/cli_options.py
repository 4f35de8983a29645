"""Command-line options generated from the config dataclasses: one source of defaults.

Each option of ``train`` and ``lr-find`` that sets a ModelConfig, TrainConfig or
AugmentConfig field is built from that field: its name (``--batch-size``), type and
default come from the dataclass; only the help text and, where the CLI spells a value
differently (``--hidden 512,256``, ``--lr auto``, ``--workers``), a small ``Spec`` live
here. A new field becomes an option by itself; give it help text either with
``field(..., metadata={"help": "..."})`` in config.py or a line in ``SPECS``
(tests/test_cli_options.py fails for a field without help, or an option whose default
is not the field's).

Example:
    >>> @with_config_options(config_fields(ModelConfig))     # doctest: +SKIP
    ... def command(data: Path, **options): model = build_config(ModelConfig, options)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from headstart.config import HEADS, TASKS, AugmentConfig, ModelConfig, TrainConfig
from headstart.errors import ConfigError

Head = Enum("Head", {h: h for h in HEADS}, type=str)  # type: ignore[misc]
TaskName = Enum("TaskName", {t: t for t in TASKS}, type=str)  # type: ignore[misc]


def parse_lr(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--lr {text!r}: give a number such as 3e-3, or auto.") from None


def parse_widths(text: Optional[str]) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ConfigError(f"--hidden {text!r}: give comma-separated integers such as 512,256.") from None


@dataclass(frozen=True)
class Spec:
    """How one config field appears on the command line, where it differs from the default."""

    help: str = ""
    name: str | None = None  # option name when not --field-name
    flag_only: bool = False  # a bool switched on by --name, with no --no-name
    cli_type: Any = None  # the CLI's type when the field's does not fit click (Path, Enum, str)
    to_field: Callable[[Any], Any] | None = None  # CLI value -> field value
    to_cli: Callable[[Any], Any] | None = None  # field default -> CLI default


def parse_duration(text: str) -> float:
    """'10m' -> 600.0; '90s', '1h30m', '2h', or plain seconds ('600').

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    import re

    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text.lower())
    if not text.strip() or parts is None or not any(parts.groups()):
        raise typer.BadParameter(f"--time {text!r}: give a duration such as 10m, 90s or 1h30m")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise typer.BadParameter(f"--time {text!r}: the budget must be more than 0 seconds")
    return seconds


def _default_epochs_help() -> tuple[str, str]:
    """The "Default:" of the two epoch options, read off TrainConfig itself."""
    cached, uncached = TrainConfig().phase1_epochs, TrainConfig(feature_cache=False).phase1_epochs
    gpu, cpu = TrainConfig().phase2_epochs(accelerated=True), TrainConfig().phase2_epochs(accelerated=False)
    return f"Default: {cached} on cached features, else {uncached}.", f"Default: {gpu} on a GPU, {cpu} on a CPU."


_FROZEN_DEFAULT, _FINETUNE_DEFAULT = _default_epochs_help()

SPECS: dict[tuple[type, str], Spec] = {
    (ModelConfig, "arch"): Spec("Any timm architecture, or convnet_tiny / convnet_small; a,b: candidates the planner measures."),
    (ModelConfig, "pretrained"): Spec("Start from pretrained weights (--no-pretrained: random init)."),
    (ModelConfig, "weights"): Spec(
        "Backbone weights file (.safetensors/.pth/.bin).", cli_type=Optional[Path], to_field=lambda v: str(v) if v else None
    ),
    (ModelConfig, "head"): Spec("Head on the pooled features.", cli_type=Head, to_field=lambda v: Head(v).value, to_cli=lambda d: Head(d)),
    (ModelConfig, "hidden"): Spec(
        "Hidden widths, e.g. 256 (bottleneck) or 512,256 (mlp).",
        cli_type=Optional[str],
        to_field=parse_widths,
        to_cli=lambda d: ",".join(map(str, d)) or None,
    ),
    (ModelConfig, "dropout"): Spec("Dropout in the head."),
    (ModelConfig, "task"): Spec(
        "Default: follows the data.",
        cli_type=Optional[TaskName],
        to_field=lambda v: TaskName(v).value if v else None,
        to_cli=lambda d: TaskName(d) if d else None,
    ),
    (ModelConfig, "threshold"): Spec("Decision threshold for binary and multi-label."),
    (TrainConfig, "frozen_epochs"): Spec(f"Phase 1: epochs training the head on the frozen base. {_FROZEN_DEFAULT}"),
    (TrainConfig, "finetune_epochs"): Spec(f"Phase 2: epochs fine-tuning the base (0: skip). {_FINETUNE_DEFAULT}"),
    (TrainConfig, "lr"): Spec(
        "Head learning rate, or 'auto': run lr-find first and use its suggestion.",
        cli_type=str,
        to_field=parse_lr,
        to_cli=lambda d: d if isinstance(d, str) else f"{d:g}",
    ),
    (TrainConfig, "finetune_lr"): Spec("Phase 2 head learning rate. Default: lr / 10."),
    (TrainConfig, "base_lr_ratio"): Spec("Phase 2: base learning rate = finetune-lr * this."),
    (TrainConfig, "unfreeze"): Spec("Phase 2: unfreeze the last N stages (0: all)."),
    (TrainConfig, "optimizer"): Spec("adamw, adam or sgd."),
    (TrainConfig, "weight_decay"): Spec("Optimizer weight decay."),
    (TrainConfig, "schedule"): Spec("cosine, constant, plateau (reduce LR on plateau) or onecycle (warm-up, then decay)."),
    (TrainConfig, "recipe"): Spec(
        "auto: plan base, input size, phases and epochs from the data and this machine when no recipe option is set; "
        "fixed: the options as given."
    ),
    (TrainConfig, "time_budget"): Spec(
        "Time budget for the whole run, e.g. 10m, 90s or 1h30m: the plan fits it and training stops cleanly at it.",
        name="--time",
        cli_type=Optional[str],
        to_field=lambda v: parse_duration(v) if v else None,
    ),
    (TrainConfig, "warmup_fraction"): Spec("onecycle: share of a phase's steps spent warming up."),
    (TrainConfig, "anneal"): Spec("onecycle: decay after the warm-up, cos or linear."),
    (TrainConfig, "label_smoothing"): Spec("Multiclass loss: target probability mass spread over all classes (0: off)."),
    (TrainConfig, "batch_size"): Spec("Images per batch (per process)."),
    (TrainConfig, "val_fraction"): Spec("Validation share when DATA has no val split."),
    (TrainConfig, "seed"): Spec("Seed of the split, the initialisation and the augmentation."),
    (TrainConfig, "monitor"): Spec("Best-checkpoint and early-stopping metric: val_loss, val_acc or val_f1."),
    (TrainConfig, "patience"): Spec("Early stopping patience in epochs (0: off)."),
    (TrainConfig, "class_weights"): Spec("'balanced': loss weights inverse to class frequency."),
    (TrainConfig, "oversample"): Spec("Sample rare classes more often.", flag_only=True),
    (TrainConfig, "feature_cache"): Spec("Phase 1 on base features computed once."),
    (TrainConfig, "feature_views"): Spec("Phase 1 on cached features: 1 + this many minus 1 random training views per image."),
    (TrainConfig, "num_workers"): Spec("Data loader workers. Default: sized to the machine.", name="--workers"),
    (TrainConfig, "accelerator"): Spec("Lightning accelerator: auto, cpu, gpu, mps."),
    (TrainConfig, "precision"): Spec("Lightning precision, e.g. bf16-mixed."),
    (TrainConfig, "devices"): Spec("Devices (processes) per machine: a count, 'auto', -1 (all) or ids such as 0,1."),
    (TrainConfig, "num_nodes"): Spec("Machines (launch with torchrun or SLURM; see README)."),
    (TrainConfig, "strategy"): Spec("Lightning strategy: ddp (default with several devices), fsdp, auto."),
    (TrainConfig, "dist_timeout"): Spec("Seconds a process waits in a collective for a silent one before the run fails."),
    (TrainConfig, "compile"): Spec("torch.compile the base for fine-tuning (slow first steps).", flag_only=True),
    (TrainConfig, "logger"): Spec("Besides epochs.csv: auto (TensorBoard if installed), csv, tensorboard or mlflow."),
    (AugmentConfig, "rotation"): Spec("Augmentation: max rotation in degrees."),
    (AugmentConfig, "vflip"): Spec("Augmentation: vertical flips too."),
}

# Fields with no option of their own, and why (the test accepts exactly these).
NOT_ON_CLI: dict[tuple[type, str], str] = {
    (TrainConfig, "augment"): "the nested AugmentConfig: --augment/--no-augment and its own fields",
    (AugmentConfig, "hflip"): "always on with --augment, off with --no-augment",
    (AugmentConfig, "scale"): "a (min, max) pair: the Python API only",
    (AugmentConfig, "color"): "the Python API only",
    (AugmentConfig, "translate"): "set by the small-image recipe (AugmentConfig.flip_shift); the Python API otherwise",
}


def config_fields(cls: type, *, exclude: Iterable[str] = ()) -> list[tuple[type, str]]:
    """(cls, name) of every field of ``cls`` that has an option, in declaration order."""
    skip = set(exclude)
    return [(cls, f.name) for f in dataclasses.fields(cls) if f.name not in skip and (cls, f.name) not in NOT_ON_CLI]


def spec_of(cls: type, name: str) -> Spec:
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    spec = SPECS.get((cls, name), Spec())
    return dataclasses.replace(spec, help=meta["help"]) if "help" in meta else spec


def field_default(cls: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def option_name(cls: type, name: str) -> str:
    return spec_of(cls, name).name or "--" + name.replace("_", "-")


def _parameter(cls: type, name: str, help: str | None = None) -> inspect.Parameter:
    spec = spec_of(cls, name)
    annotation = spec.cli_type or typing.get_type_hints(cls)[name]
    default = field_default(cls, name)
    if spec.to_cli is not None:
        default = spec.to_cli(default)
    names = [spec.name] if spec.name else []
    if spec.flag_only:
        names = [option_name(cls, name)]
    option = typer.Option(
        default,
        *names,
        help=help or spec.help,
        show_default=not spec.flag_only,
        callback=_checked(spec.to_field) if spec.to_field else None,
    )
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _checked(to_field: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A click callback: a value the field cannot take is a usage error while parsing."""

    def check(value: Any) -> Any:
        try:
            to_field(value)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc).rstrip(".")) from None
        return value

    return check


def with_config_options(fields: list[tuple[type, str]], help: dict[str, str] | None = None) -> Callable:
    """Add one option per config field to a Typer command that takes ``**options``.

    The command receives each field's CLI value under the field's name; ``build_config``
    turns them into the dataclass. ``help`` overrides a field's help text for this command.
    """
    names = [n for _, n in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"two config fields share an option name: {names}")

    def decorate(func: Callable) -> Callable:
        own = [p for p in inspect.signature(func).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        hints = typing.get_type_hints(func)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        made = [_parameter(cls, name, (help or {}).get(name)) for cls, name in fields]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            return func(**kwargs)

        command.__signature__ = inspect.Signature([*own, *made])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in [*own, *made]}
        command.config_fields = list(fields)  # type: ignore[attr-defined]
        return command

    return decorate


def build_config(cls: type, values: dict[str, Any], **extra: Any) -> Any:
    """``cls`` from the CLI values of its fields (those present), plus ``extra`` fields."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            to_field = spec_of(cls, f.name).to_field
            kwargs[f.name] = to_field(values[f.name]) if to_field else values[f.name]
    return cls(**{**kwargs, **extra})
