"""The recipe of a run: planned from the data and this machine, or the options as given.

With ``recipe="auto"`` (the default) and none of the recipe's options set by the user,
headstart measures the data (image count, classes, median side from file headers,
greyscale), runs the pilot (``headstart.pipeline.pilot``: a cross-validated linear probe of
each candidate base at each candidate side on the user's own training images) and the
throughput on the device that will train, and lets ``headstart.engine.plan.make_plan``
choose the phases, their epochs and learning rates, fitting ``time_budget`` when one is
given. ``--arch X`` (or ``--arch a,b``: both measured) names the base to plan for. Any
option about the recipe itself (an input size, epochs, learning rates, --no-pretrained,
...) means the user's recipe: every option is then used as given, and the run says so.

Example:
    >>> chosen = choose_recipe(model, train, None, spec, console)        # doctest: +SKIP
    >>> chosen.plan.describe() if chosen.plan else "options as given"   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rich.console import Console

from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.engine.plan import (
    MAX_FINETUNE_EPOCHS,
    MAX_SCRATCH_EPOCHS,
    PRETRAINED_ARCH,
    BaseSide,
    DataFacts,
    Plan,
    Throughput,
    from_scratch,
    make_plan,
    measure_throughput,
    sizes_to_measure,
)
from headstart.errors import ConfigError
from headstart.pipeline.pilot import Base, run_pilot

if TYPE_CHECKING:
    from headstart.runfolder import RunSpec

# The options about the recipe itself. Setting any of them by hand means "my recipe, as
# given". The base is not one of them: ``--arch X`` (or ``--arch a,b``, ``--weights``) names
# the candidates the planner measures and plans for.
PLANNED_MODEL = ("pretrained",)
PLANNED_TRAIN = (
    "frozen_epochs",
    "finetune_epochs",
    "lr",
    "finetune_lr",
    "base_lr_ratio",
    "unfreeze",
    "optimizer",
    "weight_decay",
    "schedule",
    "warmup_fraction",
    "anneal",
    "label_smoothing",
    "batch_size",
    "augment",
    "feature_cache",
    "feature_views",
)
OPTIMIZERS = {"sgd-nesterov": "sgd", "adamw": "adamw", "adam": "adam", "sgd": "sgd"}
SCHEDULES = {"one-cycle": "onecycle", "cosine": "cosine", "constant": "constant"}


@dataclass(frozen=True)
class Recipe:
    """The options a run trains with, and the plan behind them (None: as given)."""

    model: ModelConfig
    train: TrainConfig
    image_size: int | None
    plan: Plan | None = None
    note: str | None = None  # why the options are used as given, printed once the model is built


def pinned_options(model: ModelConfig, train: TrainConfig, image_size: int | None) -> list[str]:
    """The recipe options the user set (those differing from the defaults)."""
    model_defaults, train_defaults = ModelConfig(), TrainConfig()
    names = [f"--{n.replace('_', '-')}" for n in PLANNED_MODEL if getattr(model, n) != getattr(model_defaults, n)]
    names += [f"--{n.replace('_', '-')}" for n in PLANNED_TRAIN if getattr(train, n) != getattr(train_defaults, n)]
    return names + (["--image-size"] if image_size is not None else [])


def candidate_bases(model: ModelConfig) -> list[Base]:
    """``--arch a,b`` with ``--weights wa,wb`` (an empty entry: bundled or timm's cache) -> bases.

    Example:
        >>> [b.arch for b in candidate_bases(ModelConfig(arch="tf_efficientnet_lite0,resnet18"))]
        ['tf_efficientnet_lite0', 'resnet18']
    """
    archs = [a.strip() for a in model.arch.split(",")]
    if "," not in model.arch:
        return [Base(model.arch, model.weights)]
    weights = [w.strip() or None for w in model.weights.split(",")] if model.weights else [None] * len(archs)
    if len(weights) != len(archs) or not all(archs) or len(set(archs)) != len(archs):
        raise ConfigError(
            f"--arch {model.arch!r} --weights {model.weights!r}: give distinct names, and one weights entry per "
            "architecture, in order (empty for the bundled or cached weights), e.g. --arch a,b --weights ,b.safetensors."
        )
    return [Base(a, w) for a, w in zip(archs, weights)]


def data_facts(spec: RunSpec, pretrained: bool = True) -> DataFacts:
    """Counts from the split; the median shorter side and greyscale from file headers."""
    train = [s.path for s in spec.splits["train"]]
    return DataFacts.from_files(train, len(spec.classes), val_images=len(spec.splits.get("val", [])), pretrained=pretrained)


def training_device(accelerator: str, accelerated: bool) -> str:
    """The torch device training will use: where the throughput and the pilot are measured."""
    if not accelerated:
        return "cpu"
    import torch

    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def choose_recipe(
    model: ModelConfig,
    train: TrainConfig,
    image_size: int | None,
    spec: RunSpec,
    console: Console,
    *,
    accelerated: bool,
    spent_s: float = 0.0,
    cache: bool = True,
) -> Recipe:
    """The recipe for this run (see the module docstring); prints what was chosen and why.

    ``spent_s``: seconds of the time budget already used (indexing, the split)."""
    given = Recipe(model, train, image_size)
    several = "," in model.arch
    pins = pinned_options(model, train, image_size) if train.recipe == "auto" else ["--recipe fixed"]
    if pins and several:
        raise ConfigError(f"--arch {model.arch!r} names candidates for the planner, which {', '.join(pins)} turns off: give one --arch.")
    if train.recipe == "fixed":
        return given
    if pins:
        note = (
            f"Recipe: your options as given ({', '.join(pins)} set); without them headstart plans the recipe "
            "from the data and this machine."
        )
        return replace(given, note=note)
    started = time.perf_counter()
    plan = _plan(model, train, spec, console, training_device(train.accelerator, accelerated), spent_s, cache)
    console.print(plan.describe(), highlight=False)
    console.print(f"  (planned in {time.perf_counter() - started:.1f} s; --recipe fixed uses the options as given)", highlight=False)
    return apply_plan(plan, model, train)


def _plan(model: ModelConfig, train: TrainConfig, spec: RunSpec, console: Console, device: str, spent_s: float, cache: bool) -> Plan:
    """Measure (the data's facts, the pilot, the throughput) and plan."""
    started = time.perf_counter()
    bases = candidate_bases(model)
    facts = data_facts(spec)

    def budget() -> float | None:
        if train.time_budget is None:
            return None
        return max(1.0, train.time_budget - spent_s - (time.perf_counter() - started))

    named = bases != [Base(PRETRAINED_ARCH)]
    if from_scratch(facts) and not named:
        # the from-scratch rule; the throughput only sizes the epochs (a short look without a budget)
        speed = measure_throughput(*sizes_to_measure(facts), seconds=1.0 if train.time_budget else 0.2, device=device)
        return make_plan(facts, speed, budget())
    evidence = run_pilot(spec, bases, facts.median_side, budget(), device, cache, train.seed)
    if evidence is not None:
        choice = evidence.choice
        base = BaseSide(choice.arch, choice.side, choice.side, choice.weights, evidence)
        rows = [r for r in evidence.rows if r.arch == choice.arch]
        run_images = facts.images + facts.val_images
        frozen = {r.side: run_images / max(r.seconds, 1e-9) for r in rows}
    else:
        base, frozen = BaseSide(bases[0].arch, None, _native_side(bases[0]), bases[0].weights), {}
    side = base.side or base.native
    # fine-tuning's rate matters only where the plan may fine-tune: with a budget, or off the CPU
    kinds: tuple[str, ...] = ("finetune",) if train.time_budget is not None or device != "cpu" else ()
    kinds += () if frozen else ("frozen",)
    measured = measure_throughput([side], arch=base.arch, seconds=0.5, device=device, kinds=kinds) if kinds else Throughput()
    speed = Throughput(frozen=frozen or measured.frozen, finetune=measured.finetune, device=device)
    return make_plan(facts, speed, budget(), base)


def _native_side(base: Base) -> int:
    """The base's own input side, from its pretrained config (no weights loaded)."""
    from headstart.models.network import create_backbone, data_config

    return int(data_config(create_backbone(ModelConfig(arch=base.arch, pretrained=False)))["input_size"][-1])


def apply_plan(plan: Plan, model: ModelConfig, train: TrainConfig) -> Recipe:
    """The plan written into the options, so config.json, --resume and the artifact see
    ordinary, fixed values."""
    kinds = {p.kind: p for p in plan.phases}
    augment = AugmentConfig.flip_shift() if plan.augment == "flip+shift" else train.augment
    model = replace(model, arch=plan.arch, pretrained=plan.pretrained, weights=plan.weights)
    common: dict[str, Any] = {
        "label_smoothing": plan.label_smoothing,
        "batch_size": plan.batch_size,
        "augment": augment,
        "warmup_fraction": 0.2,
        "recipe": "fixed",
    }
    if "scratch" in kinds:
        p = kinds["scratch"]
        train = replace(
            train,
            **common,
            frozen_epochs=0,
            finetune_epochs=p.epochs,
            lr=p.lr,
            optimizer=OPTIMIZERS[p.optimizer],
            weight_decay=p.weight_decay,
            schedule=SCHEDULES[p.schedule],
        )
    else:
        frozen, tune = kinds["frozen"], kinds.get("finetune")
        train = replace(
            train,
            **common,
            frozen_epochs=frozen.epochs,
            lr=frozen.lr,
            feature_cache=frozen.cached,
            optimizer=OPTIMIZERS[frozen.optimizer],
            weight_decay=frozen.weight_decay,
            schedule=SCHEDULES[frozen.schedule],
            finetune_epochs=tune.epochs if tune else 0,
            finetune_lr=tune.lr if tune else None,
            base_lr_ratio=tune.base_lr_ratio if tune else train.base_lr_ratio,
        )
    # "fixed" once planned: a resumed run or a rank > 0 reads these options and trains them as they are.
    return Recipe(model, train, plan.input_size, plan)


def planned_epoch_cap(plan: Mapping[str, Any] | None) -> int | None:
    """The most epochs a planned run's last phase may grow to when its epochs run faster
    than planned (the planner's own caps); None for the user's recipe: never more than asked.

    Example:
        >>> planned_epoch_cap({"phases": [{"kind": "scratch", "epochs": 8}]}), planned_epoch_cap(None)
        (40, None)
    """
    if not plan or not plan.get("phases"):
        return None
    last = plan["phases"][-1]
    cap = {"scratch": MAX_SCRATCH_EPOCHS, "finetune": MAX_FINETUNE_EPOCHS}.get(last.get("kind"))
    return max(cap, int(last.get("epochs", 0))) if cap else None
