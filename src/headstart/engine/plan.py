"""A training recipe planned from the data and the machine: base, input size, phases, epochs.

Interface (for ``headstart train --time 10m``; torch is imported only inside
``measure_throughput``, so planning itself is a pure, instant function):

    facts = DataFacts.from_files(train_paths, classes=10, val_images=12_000)   # headers only
    speed = measure_throughput(*sizes_to_measure(facts))    # ~5-10 s on 2 CPU cores
    evidence = run_pilot(spec, bases, ...)                  # headstart.pipeline.pilot: CV probe
    base = BaseSide(arch, evidence.choice.side, native, weights, evidence)  # the measured choice
    plan = make_plan(facts, speed, budget_s=600 - spent, base=base)  # seconds left for training:
                                                             # the --time budget less decoding and
                                                             # measuring; None: no time limit
    print(plan.describe())                                   # the plan and its reasons
    PlanRecord(plan.to_dict())                               # ArtifactMeta.plan (headstart.runfolder):
                                                             # headstart.json and the report

``Plan`` then drives training:
  * ``plan.arch`` / ``plan.pretrained``: the base (``tf_efficientnet_lite0`` with the bundled
    weights, or ``convnet_res`` from scratch);
  * ``plan.input_size``: the side the images are resized to (the decoded-image store needs
    no more than this);
  * ``plan.phases``: in order; ``PlannedPhase.kind`` is ``"frozen"`` (head only, base frozen in eval
    mode, on cached features when ``PlannedPhase.cached``), ``"finetune"`` (all layers, base lr =
    ``lr * base_lr_ratio``, batch-norm layers training) or ``"scratch"`` (all layers, batch
    norm training); each with its epochs, peak lr, optimizer and schedule ("one-cycle":
    linear warm-up over the first 20 % of steps then cosine to 0; "cosine": cosine from the
    peak to 0);
  * ``plan.label_smoothing``, ``plan.batch_size``, ``plan.augment`` ("flip+shift" for
    small images trained from scratch: horizontal flip and a translation of up to 1/14 of
    the side; "default" for headstart's crop/flip/rotation/colour);
  * ``plan.estimated_seconds``: the planner's cost estimate; training should still stop
    cleanly at the budget (keep the best checkpoint) since estimates err.

Decisions and the measurements behind them (2 CPU cores shared with other jobs,
bench/results/recipe-sweep.jsonl (the retired bench/recipe_sweep.py, in git history); accuracy is Fashion-MNIST test
or OpenClipart validation accuracy; CPU seconds are the load-robust cost):
  * From scratch (``convnet_res``, ResNet-9-like, 0.48 M parameters, at the images' own
    side, at most 64 px) when there is no pretrained base, or when the data is large
    (>= SCRATCH_MIN_IMAGES) and its images small (median side <= SCRATCH_MAX_SIDE).
    Fashion-MNIST 60k: 15 epochs 0.9366 test (0.9385 with flip TTA) in 866 CPU s (~500 s
    on a quiet machine, estimated from 1,823 img/s measured there), 8 epochs 0.928 in 444
    CPU s; the old default (linear probe on lite0 at 224 px) 0.8925 in 14 min 50 s. SGD-Nesterov lr
    0.1 (batch 256) beat 0.2 on a 10k pilot (0.855 vs 0.824 after 3 epochs). On that
    10k pilot, 3 scratch epochs (37 CPU s, 0.855) already matched lite0's probe at 64 px
    (38 CPU s, 0.848) and beat it at 32 px (16 CPU s, 0.798) and lite0 fine-tuned at 32 px
    (1 frozen + 3 epochs, 97 CPU s, 0.807), hence the 10k threshold. Epochs fill the
    budget at the measured rate.
  * Pretrained (the bundled ``tf_efficientnet_lite0``, or the base(s) named by ``--arch``)
    otherwise, at the side the pilot measured best on the user's own training images
    (``BaseSide.evidence``: the cheapest candidate within one paired standard error of the
    best, or what the budget forces), else at the base's native side (no folds to measure
    on: smaller sides cost accuracy on clip art, 5x80: probe 224 px 0.779 vs 128 px 0.727).
    A budget first drops fine-tuning, and lowers the side only when even the probe's
    features do not fit. A base the user named is never swapped for the from-scratch convnet.
  * Fine-tuning (fastai's ``fine_tune`` shape: one frozen epoch for the new head, then all
    layers, base lr 0.3x, one-cycle, label smoothing 0.1) when a budget leaves room for at
    least MIN_FINETUNE_EPOCHS at the chosen side, and by default on a GPU. Without a budget
    on a CPU, the linear probe (frozen base, 30 head epochs on cached features): 3
    fine-tuning epochs at 224 px measured +0.0 (5x80: 0.779 vs 0.779) and +2.8 points
    (9x60: 0.694 vs 0.667) at 5.1x and 5.3x the probe's CPU time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headstart.engine.pilot import Evidence

SIZES = (32, 48, 64, 96, 128, 160, 192, 224)
NATIVE_SIZE = 224  # the bundled tf_efficientnet_lite0's training resolution
PRETRAINED_ARCH = "tf_efficientnet_lite0"
SCRATCH_ARCH = "convnet_res"
SCRATCH_MIN_IMAGES = 10_000
SCRATCH_MAX_SIDE = 64
# Fine-tuning epochs: MIN is the fewest measured (3, on OpenClipart); MAX caps what a big
# budget spends on small data (not measured beyond 3: a guard, not a finding).
MIN_FINETUNE_EPOCHS, MAX_FINETUNE_EPOCHS = 3, 5
MIN_SCRATCH_EPOCHS, MAX_SCRATCH_EPOCHS, DEFAULT_SCRATCH_EPOCHS = 3, 40, 15
# The pretrained base never sees less than this: its 32x downsampling leaves a 1x1 map at
# 32 px (Fashion-MNIST 10k pilot: see bench/results/recipe-sweep.jsonl).
MIN_PRETRAINED_SIZE = 64
# Seconds outside the epochs: model build, decoding overhead, evaluation, artifact, report.
OVERHEAD_S = 20.0
DEFAULT_FINETUNE_EPOCHS = 3  # no budget, on a GPU


@dataclass(frozen=True)
class DataFacts:
    """What the planner needs to know about the data.

    images: training images (after the validation split); val_images: validation images
    (0: unknown, taken as a quarter of ``images``); median_side: median shorter side of the
    source files in px; greyscale: every image has R == G == B; pretrained: a pretrained
    base with weights available offline.
    """

    images: int
    classes: int
    median_side: int
    greyscale: bool = False
    pretrained: bool = True
    val_images: int = 0

    def __post_init__(self) -> None:
        if self.images < 1 or self.classes < 2 or self.median_side < 1:
            raise ValueError(f"DataFacts needs images >= 1, classes >= 2, median_side >= 1; got {self}")

    @classmethod
    def from_files(cls, train: Sequence[str], classes: int, val_images: int = 0, pretrained: bool = True, sample: int = 500) -> DataFacts:
        """Facts from the training files' headers (up to ``sample`` of them; pixels not decoded;
        unreadable files skipped: the store reports them).

        Greyscale means every sampled file is stored as a grey mode (L, LA, 1, I, I;16).
        """

        from headstart.data.index import image_sizes
        from headstart.preprocess import open_image

        sizes = image_sizes(list(train), limit=sample)
        modes = set()
        for path in list(train)[:: max(1, len(train) // sample)][:sample]:
            try:
                with open_image(path) as image:  # regular files, pinned decoders
                    modes.add(image.mode)
            except Exception:  # noqa: BLE001 - unreadable files are the store's to report
                continue
        return cls(
            images=len(train),
            classes=max(2, classes),
            median_side=max(1, int(sizes.median or NATIVE_SIZE)),
            greyscale=bool(modes) and modes <= {"L", "LA", "1", "I", "I;16"},
            pretrained=pretrained,
            val_images=val_images,
        )

    @property
    def eval_images(self) -> int:
        return self.val_images or max(1, self.images // 4)


@dataclass(frozen=True)
class Throughput:
    """Images per second on this machine by input side: ``frozen`` (pretrained base, eval
    forward), ``finetune`` (pretrained base, training step), ``scratch`` (the from-scratch
    convnet, training step). Sides between measured ones are interpolated on a log-log
    line (cost grows with pixels); outside, the nearest two extrapolate."""

    frozen: Mapping[int, float] = field(default_factory=dict)
    finetune: Mapping[int, float] = field(default_factory=dict)
    scratch: Mapping[int, float] = field(default_factory=dict)
    device: str = "cpu"

    def at(self, kind: str, side: int) -> float:
        table = dict(getattr(self, kind))
        if not table:
            raise ValueError(f"no {kind} throughput measured")
        if side in table:
            return table[side]
        sides = sorted(table)
        if len(sides) == 1:  # cost ~ pixels
            return table[sides[0]] * (sides[0] / side) ** 2
        lo = max([s for s in sides if s < side], default=sides[0])
        hi = min([s for s in sides if s > side], default=sides[-1])
        if lo == hi:
            lo, hi = (sides[0], sides[1]) if side < sides[0] else (sides[-2], sides[-1])
        slope = math.log(table[hi] / table[lo]) / math.log(hi / lo)
        return table[lo] * (side / lo) ** slope


@dataclass(frozen=True)
class PlannedPhase:
    """One planned phase of training (engine/fit.py has its own ``Phase``: a run's phase)."""

    kind: str  # "frozen" | "finetune" | "scratch"
    epochs: int
    lr: float  # peak learning rate of the head (of everything when from scratch)
    base_lr_ratio: float = 1.0  # base lr = lr * base_lr_ratio ("finetune")
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    schedule: str = "one-cycle"
    cached: bool = False  # "frozen": train the head on cached base features


@dataclass(frozen=True)
class Plan:
    arch: str
    pretrained: bool
    input_size: int
    phases: tuple[PlannedPhase, ...]
    label_smoothing: float
    batch_size: int
    augment: str
    estimated_seconds: float
    budget_seconds: float | None
    reasons: tuple[str, ...]
    weights: str | None = None  # the base's weights file (None: bundled or timm's cache)
    evidence: Evidence | None = None  # the pilot's cross-validated candidates, when measured
    device: str = "cpu"  # where the throughput was measured: the device that trains

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """Human lines: the plan, then why."""
        steps = ", ".join(f"{p.kind} {p.epochs} epoch{'s' * (p.epochs != 1)} (lr {p.lr:g})" for p in self.phases)
        budget = f" of a {self.budget_seconds:.0f} s budget" if self.budget_seconds else ""
        head = (
            f"Plan: {self.arch} ({'pretrained' if self.pretrained else 'from scratch'}) at {self.input_size} px; "
            f"{steps}; label smoothing {self.label_smoothing:g}; ~{self.estimated_seconds:.0f} s{budget}."
        )
        lines = [head, *(f"  - {r}" for r in self.reasons)]
        if self.evidence is not None:
            e = self.evidence
            lines.append(
                f"  Candidates: {e.folds}-fold cross-validated linear probe on {e.images:,} of your training images "
                f"({e.seconds:.1f} s on {e.device}; probe s: features still to compute at that side, timed there, "
                "+-10-20 % between runs on a shared machine):"
            )
            lines += e.table()
        return "\n".join(lines)


def natural_size(median_side: int) -> int:
    """The smallest planned side covering the images, capped at the base's native size."""
    return next((s for s in SIZES if s >= median_side), NATIVE_SIZE)


def from_scratch(facts: DataFacts) -> bool:
    """Whether the plan trains from scratch: no pretrained base, or large data of small images."""
    return not facts.pretrained or (facts.images >= SCRATCH_MIN_IMAGES and facts.median_side <= SCRATCH_MAX_SIDE)


def sizes_to_measure(facts: DataFacts) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(pretrained sides, from-scratch sides) whose throughput the planner will use."""
    if from_scratch(facts):
        return (), (min(facts.median_side, SCRATCH_MAX_SIDE),)
    top = max(natural_size(facts.median_side), MIN_PRETRAINED_SIZE)
    return (top // 2, top), ()


def _scratch_plan(facts: DataFacts, speed: Throughput, budget: float | None, reasons: list[str]) -> Plan:
    side = min(facts.median_side, SCRATCH_MAX_SIDE)  # native size: no upsampling from scratch
    rate = speed.at("scratch", side)
    epoch_s = facts.images / rate + facts.eval_images / (3 * rate)  # evaluation ~3x a training step
    if budget is None:
        epochs = DEFAULT_SCRATCH_EPOCHS
        reasons.append(f"no time budget: {epochs} epochs (~{epoch_s:.0f} s each at {rate:.0f} img/s)")
    else:
        fit = int((budget - OVERHEAD_S) // epoch_s)
        epochs = max(MIN_SCRATCH_EPOCHS, min(MAX_SCRATCH_EPOCHS, fit))
        reasons.append(f"{epochs} epochs fit {budget:.0f} s at {rate:.0f} img/s ({epoch_s:.0f} s an epoch)")
        if fit < MIN_SCRATCH_EPOCHS:
            reasons.append(f"the budget is short of {MIN_SCRATCH_EPOCHS} epochs: training stops at the budget")
    batch = 256 if facts.images >= 10_000 else 64
    phase = PlannedPhase("scratch", epochs, lr=0.1 * batch / 256, optimizer="sgd-nesterov", weight_decay=5e-4)
    if side < facts.median_side:
        reasons.append(f"{facts.median_side} px -> {side} px for a from-scratch convnet on a CPU")
    return Plan(SCRATCH_ARCH, False, side, (phase,), 0.1, batch, "flip+shift", OVERHEAD_S + epochs * epoch_s, budget, tuple(reasons))


def _costs(facts: DataFacts, speed: Throughput, side: int) -> tuple[float, float]:
    """(seconds of the frozen phase, seconds of one fine-tuning epoch) at ``side``; the
    epoch is infinite when fine-tuning was not measured (a CPU without a budget)."""
    frozen = (facts.images + facts.eval_images) / speed.at("frozen", side)
    if not speed.finetune:
        return frozen, math.inf
    epoch = facts.images / speed.at("finetune", side) + facts.eval_images / speed.at("frozen", side)
    return frozen, epoch


@dataclass(frozen=True)
class BaseSide:
    """The pretrained base a plan trains and the side it sees: the pilot's choice, or the rule's."""

    arch: str = PRETRAINED_ARCH
    side: int | None = None  # None: the rule (the base's native side)
    native: int = NATIVE_SIZE
    weights: str | None = None
    evidence: Evidence | None = None


def _probe(facts: DataFacts, speed: Throughput, base: BaseSide, side: int, budget: float | None, reasons: list[str]) -> Plan:
    phases = (PlannedPhase("frozen", 30, lr=3e-3, schedule="cosine", cached=True),)
    seconds = OVERHEAD_S + _costs(facts, speed, side)[0]
    return _pretrained(base, side, phases, 0.0, seconds, budget, reasons, speed)


def _pretrained(
    base: BaseSide,
    side: int,
    phases: tuple[PlannedPhase, ...],
    smoothing: float,
    seconds: float,
    budget: float | None,
    reasons: list[str],
    speed: Throughput,
) -> Plan:
    return Plan(
        base.arch, True, side, phases, smoothing, 32, "default", seconds, budget, tuple(reasons), base.weights, base.evidence, speed.device
    )


def _base_side(facts: DataFacts, base: BaseSide, reasons: list[str]) -> int:
    """The side the base sees: the pilot's choice, else the base's native side."""
    if base.evidence is not None:
        e, row = base.evidence, base.evidence.choice
        reasons.append(f"{row.arch} at {row.side} px: {e.rule} (cross-validated {e.metric} on your training images)")
        return row.side
    if base.side is not None:
        return base.side
    reasons.append(
        f"{base.native} px, the base's native side (not measured: too few images per class for folds, or a budget "
        "too short for a pilot); "
        f"smaller sides lost 4-6 points on clip art"
    )
    return max(base.native, MIN_PRETRAINED_SIZE)


def _finetune(
    facts: DataFacts, speed: Throughput, base: BaseSide, side: int, epochs: int, budget: float | None, reasons: list[str]
) -> Plan:
    frozen_s, epoch_s = _costs(facts, speed, side)
    if budget is not None:
        reasons.append(
            f"one frozen epoch for the new head, then {epochs} fine-tuning epochs of all layers "
            f"(~{epoch_s:.0f} s each at {speed.at('finetune', side):.0f} img/s; by rule, not measured on your data: "
            "fine-tuning measured +0 to +2.8 points over the probe on clip art); each epoch's time re-fits the rest"
        )
    phases = (
        PlannedPhase("frozen", 1, lr=1e-2, schedule="one-cycle", cached=True),
        PlannedPhase("finetune", epochs, lr=2e-3, base_lr_ratio=0.3, schedule="one-cycle"),
    )
    seconds = OVERHEAD_S + frozen_s + epochs * epoch_s
    if budget is not None and seconds < 0.8 * budget:
        reasons.append(
            f"~{100 * (1 - seconds / budget):.0f} % of the budget left unused: {MAX_FINETUNE_EPOCHS} fine-tuning epochs is the "
            "cap (more not measured to help) and no candidate side measured better than this one"
        )
    return _pretrained(base, side, phases, 0.1, seconds, budget, reasons, speed)


def _pretrained_plan(facts: DataFacts, speed: Throughput, budget: float | None, reasons: list[str], base: BaseSide) -> Plan:
    side = _base_side(facts, base, reasons)
    frozen_s, epoch_s = _costs(facts, speed, side)
    if budget is None:
        if speed.device == "cpu":
            reasons.append(
                "no time budget on a CPU: linear probe (by rule: fine-tuning 3 epochs measured +0 and +2.8 points "
                "on OpenClipart at ~5x the probe's time; give a budget to fine-tune)"
            )
            return _probe(facts, speed, base, side, budget, reasons)
        reasons.append(f"no time budget on {speed.device}: one frozen epoch, then {DEFAULT_FINETUNE_EPOCHS} fine-tuning epochs")
        return _finetune(facts, speed, base, side, DEFAULT_FINETUNE_EPOCHS, budget, reasons)
    epochs = min(MAX_FINETUNE_EPOCHS, int((budget - OVERHEAD_S - frozen_s) // epoch_s))
    if epochs >= MIN_FINETUNE_EPOCHS:
        return _finetune(facts, speed, base, side, epochs, budget, reasons)
    # Fine-tuning does not fit: the linear probe, at a lower side only if its features do not fit
    # either (lower sides cost accuracy: OpenClipart 5x80 probe 224 px 0.779, 128 px 0.727).
    reasons.append(
        f"{MIN_FINETUNE_EPOCHS} fine-tuning epochs at {side} px (~{epoch_s:.0f} s each) do not fit "
        f"{budget:.0f} s: linear probe on frozen features"
    )
    fits = [s for s in SIZES if MIN_PRETRAINED_SIZE <= s <= side and OVERHEAD_S + _costs(facts, speed, s)[0] <= budget]
    small = max(fits, default=min(side, MIN_PRETRAINED_SIZE))
    if not fits:
        reasons.append(f"even the probe's features at {small} px do not fit: training stops at the budget")
    if small < side:
        ratio = _costs(facts, speed, side)[0] / _costs(facts, speed, small)[0]
        reasons.append(f"{side} px -> {small} px: {ratio:.1f}x cheaper features, to fit the budget")
    return _probe(facts, speed, base, small, budget, reasons)


def make_plan(facts: DataFacts, speed: Throughput, budget_s: float | None = None, base: BaseSide | None = None) -> Plan:
    """The recipe for these data on this machine within ``budget_s`` seconds (None: no limit).

    ``base``: the pretrained base and the pilot's evidence (``headstart.pipeline.pilot``);
    None: the bundled base at its native side. A base the user named is never swapped for
    the from-scratch convnet.

    Example:
        >>> speed = Throughput(frozen={224: 80, 112: 300}, finetune={224: 20, 112: 75}, scratch={32: 1800})
        >>> make_plan(DataFacts(images=48_000, classes=10, median_side=28, greyscale=True), speed, 600).arch
        'convnet_res'
    """
    reasons: list[str] = []
    if not facts.pretrained:
        reasons.append("no pretrained base available: a small residual convnet from scratch")
        return _scratch_plan(facts, speed, budget_s, reasons)
    if from_scratch(facts) and (base is None or base.arch == PRETRAINED_ARCH):
        reasons.append(
            f"{facts.images:,} images of ~{facts.median_side} px{' greyscale' * facts.greyscale}: "
            "from scratch beats the pretrained photo base at this size and cost (by rule: Fashion-MNIST)"
        )
        return _scratch_plan(facts, speed, budget_s, reasons)
    return _pretrained_plan(facts, speed, budget_s, reasons, base or BaseSide())


def measure_throughput(
    sizes: Sequence[int],
    scratch_sizes: Sequence[int] = (),
    arch: str = PRETRAINED_ARCH,
    batch: int = 16,
    scratch_batch: int = 128,
    seconds: float = 1.0,
    device: str = "cpu",
    kinds: tuple[str, ...] = ("frozen", "finetune"),
) -> Throughput:
    """Images/s of a frozen forward and a training step of ``arch`` at each side, and of a
    ``convnet_res`` training step at ``scratch_sizes``, on random inputs (weights irrelevant).
    A small convnet needs a big batch to keep 2 cores busy, hence ``scratch_batch``.

    Each measurement runs one warm-up step, then steps until ``seconds`` pass (at least
    three), and reports the median step. ``device``: where training will run ("cuda" times
    the same steps there, synchronised); ``kinds``: which of ``arch``'s rates to measure.

    Example:
        >>> speed = measure_throughput([64], [28], seconds=0.2)
        >>> speed.at("finetune", 64) > 0
        True
    """
    import torch

    from headstart.allocator import keep_freed_memory
    from headstart.config import ModelConfig
    from headstart.models.convnet import create_convnet

    keep_freed_memory()  # measured the way training and feature extraction run (allocator.py)
    from headstart.models.network import create_backbone

    def rate(model, side: int, train: bool, size: int = batch) -> float:
        return _rate(model, side, train, size, seconds, device)

    scratch = create_convnet(SCRATCH_ARCH).to(device).to(memory_format=torch.channels_last) if scratch_sizes else None
    base = create_backbone(ModelConfig(arch=arch, pretrained=False)).to(device).to(memory_format=torch.channels_last) if sizes else None
    return Throughput(
        frozen={s: rate(base, s, False) for s in sizes} if "frozen" in kinds else {},
        finetune={s: rate(base, s, True) for s in sizes} if "finetune" in kinds else {},
        scratch={s: rate(scratch, s, True, scratch_batch) for s in scratch_sizes},
        device=device,
    )


def _rate(model, side: int, train: bool, batch: int, seconds: float, device: str) -> float:
    """Images/s of ``model`` at ``side``: a frozen forward, or a training step when ``train``."""
    import torch

    x = torch.randn(batch, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # tiny steps: the weights hardly move

    def step() -> None:
        if train:
            opt.zero_grad(set_to_none=True)
            model(x).float().square().mean().backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()  # the kernels, not their launch

    step()
    # The median step, not the mean: on a shared machine a few steps stall behind other
    # jobs (a 1 s mean once read 493 img/s where the epochs then ran at ~900).
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch / sorted(times)[len(times) // 2]


def __getattr__(name: str) -> object:
    if name == "Phase":  # renamed: engine/fit.py's Phase is another thing
        import warnings

        warnings.warn("headstart.engine.plan.Phase is now PlannedPhase; Phase is removed in 0.3.", DeprecationWarning, stacklevel=2)
        return PlannedPhase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
