"""The recipe of a run: planned from the data and this machine, or the options as given.

With ``recipe="auto"`` (the default) and none of the recipe's options set by the user,
headstart measures the data (image count, classes, median side from file headers,
greyscale) and this machine's throughput for a few seconds, and lets
``headstart.engine.plan.make_plan`` choose the base, the input size, the phases, their
epochs and learning rates, fitting ``time_budget`` when one is given. Any recipe option
set by the user (an architecture, an input size, epochs, learning rates, ...) means the
user's recipe: every option is then used as given, and the run says so.

Example:
    >>> chosen = choose_recipe(model, train, None, spec, console)        # doctest: +SKIP
    >>> chosen.plan.describe() if chosen.plan else "options as given"   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rich.console import Console

from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.engine.plan import DataFacts, Plan, make_plan, measure_throughput, sizes_to_measure

if TYPE_CHECKING:
    from headstart.runfolder import RunSpec

# The options a plan chooses. Setting any of them by hand means "my recipe, as given".
PLANNED_MODEL = ("arch", "pretrained", "weights")
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


def data_facts(spec: RunSpec, pretrained: bool = True) -> DataFacts:
    """Counts from the split; the median shorter side and greyscale from file headers."""
    train = [s.path for s in spec.splits["train"]]
    return DataFacts.from_files(train, len(spec.classes), val_images=len(spec.splits.get("val", [])), pretrained=pretrained)


def choose_recipe(
    model: ModelConfig,
    train: TrainConfig,
    image_size: int | None,
    spec: RunSpec,
    console: Console,
    *,
    accelerated: bool,
    spent_s: float = 0.0,
) -> Recipe:
    """The recipe for this run (see the module docstring); prints what was chosen and why.

    ``spent_s``: seconds of the time budget already used (indexing, the split)."""
    given = Recipe(model, train, image_size)
    if train.recipe == "fixed":
        return given
    pins = pinned_options(model, train, image_size)
    if pins:
        note = (
            f"Recipe: your options as given ({', '.join(pins)} set); without them headstart plans the recipe "
            "from the data and this machine."
        )
        return replace(given, note=note)
    if accelerated:
        # Throughput is measured on the CPU; a GPU run keeps the GPU defaults (frozen, then
        # 3 fine-tuning epochs) until the planner measures accelerators too.
        console.print("Recipe: the GPU defaults (frozen phase, then fine-tuning).", highlight=False)
        return given
    started = time.perf_counter()
    facts = data_facts(spec)
    # Without a budget the throughput only sizes the printed estimate: a shorter look will do.
    speed = measure_throughput(*sizes_to_measure(facts), seconds=1.0 if train.time_budget else 0.2)
    budget = None if train.time_budget is None else max(1.0, train.time_budget - spent_s - (time.perf_counter() - started))
    plan = make_plan(facts, speed, budget)
    console.print(plan.describe(), highlight=False)
    console.print(f"  (planned in {time.perf_counter() - started:.1f} s; --recipe fixed uses the options as given)", highlight=False)
    return apply_plan(plan, model, train)


def apply_plan(plan: Plan, model: ModelConfig, train: TrainConfig) -> Recipe:
    """The plan written into the options, so config.json, --resume and the artifact see
    ordinary, fixed values."""
    kinds = {p.kind: p for p in plan.phases}
    augment = AugmentConfig.flip_shift() if plan.augment == "flip+shift" else train.augment
    model = replace(model, arch=plan.arch, pretrained=plan.pretrained, weights=None)
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
