"""The training pipeline, as stages that return values:

    prepare  index, exclude, quick doctor, task, split          -> RunSpec
    plan     the recipe (pipeline/recipe.choose_recipe)          -> RunOptions
    decode   network, preprocessing, decoded images, features   -> Decoded
    lr       ``lr="auto"``: the range test's learning rate        -> RunOptions (config.json)
    fit      the phases (engine/fit.py)                          -> FitResult
    finish   scores, artifact, label issues, report              -> TrainedRun

``Training(request, console)`` runs a fresh run (``fit``), continues one (``resume``) or
runs the learning-rate range test alone (``lr_find``). Nothing is mutated on the way: each
stage's frozen result feeds the next, and the ``TrainedRun`` holds the options as trained
(the planned recipe, the learning rate found), which the ``Classifier`` facade shows.

Several processes: rank 0 prepares, plans, decodes into the cache and writes the run
folder; the others wait for it at one boundary (``_follow_rank0``: the ready marker, then
rank 0's config.json), train on the same split with the same options, and leave
evaluation and every file to rank 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from headstart.artifact import Artifact, num_outputs, save_artifact, versions
from headstart.config import ModelConfig, TrainConfig
from headstart.data.datasets import encode_targets
from headstart.data.index import DataIndex, Sample, scan
from headstart.data.prepare import Prepared, prepare, write_skipped
from headstart.data.split import stratified_split, write_split
from headstart.engine.balance import loss_weights
from headstart.engine.frozen import FEATURES, FrozenFeatures
from headstart.engine.ranks import global_rank, mark_ready, wait_for_rank0
from headstart.errors import ConfigError, DataError, DiskFullError, disk_full
from headstart.files import sweep_orphans
from headstart.metrics import Metrics
from headstart.models import Network, build_network
from headstart.models.network import data_config
from headstart.pipeline import outputs
from headstart.pipeline.loaders import PhaseLoaders
from headstart.pipeline.scoring import score
from headstart.predict.eager import Predictor
from headstart.preprocess import Preprocess
from headstart.runfolder import (
    OPTIONS,
    ArtifactMeta,
    DataSource,
    FitSummary,
    Headline,
    LRSummary,
    PlanRecord,
    RunOptions,
    RunSpec,
    as_json,
    read_options,
    write_options,
)
from headstart.text import shown

if TYPE_CHECKING:
    import lightning as L

    from headstart.engine.fit import FitResult
    from headstart.engine.lr_find import LRFinding
    from headstart.pipeline.recipe import Recipe

__all__ = ["RunRequest", "RunSpec", "TrainedRun", "Training", "check_placement", "check_prepared", "resolve_task"]

RUN_DIR_ENV = "HEADSTART_RUN_DIR"  # rank 0 -> the ranks Lightning starts: where the run is
PLACEMENT = ("devices", "num_nodes", "strategy", "accelerator", "dist_timeout")  # what --resume may change


def resolve_task(requested: str | None, index: DataIndex) -> str:
    """The task follows the data (multi-label CSV, two classes -> binary), unless overridden."""
    k = len(index.classes)
    if requested is None:
        return "multilabel" if index.multilabel else ("binary" if k == 2 else "multiclass")
    if index.multilabel and requested != "multilabel":
        raise ConfigError(f"task={requested!r} but the CSV has a 'labels' column (multi-label); use task='multilabel'.")
    if requested == "binary" and k != 2:
        raise ConfigError(f"task='binary' needs exactly 2 classes; the data has {k}: use 'multiclass'.")
    return requested


def check_placement(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(PLACEMENT))
    if unknown:
        raise ConfigError(f"resume can change only {sorted(PLACEMENT)}, not {unknown}.")
    return options


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for (before any plan): the facade's options."""

    model: ModelConfig
    train: TrainConfig
    image_size: int | None = None
    cache: bool = True
    report: bool = True


@dataclass(frozen=True)
class TrainedRun:
    """What a finished fit leaves behind (on rank 0; other ranks get ``artifact=None``)."""

    run_dir: Path
    options: RunOptions  # as trained: the planned recipe, ``lr='auto'`` resolved to the number found
    artifact: Artifact | None = None
    predictor: Predictor | None = None
    metrics: Mapping[str, Metrics] = field(default_factory=dict)

    @property
    def train(self) -> TrainConfig:
        return self.options.train


@dataclass(frozen=True)
class Stage:
    """What every stage of one run's training knows: where, what, and how it runs."""

    run_dir: Path
    spec: RunSpec
    options: RunOptions
    resume: bool
    deadline: float | None  # time.time() by which training stops, leaving time to finish
    callbacks: tuple[L.Callback, ...]
    console: Console
    rank: int
    note: str | None = None  # why the recipe is what it is, printed once the model is built

    @property
    def several(self) -> bool:
        return self.options.train.planned_processes() > 1


@dataclass(frozen=True)
class Decoded:
    """The network to train and the data decoded for it."""

    network: Network
    preprocess: Preprocess
    prepared: Prepared
    features: FrozenFeatures


def _deadline(started: float, budget: float | None) -> float | None:
    """Training ends early enough to leave evaluation, the artifact and the report in the budget."""
    return started + budget - min(60.0, 0.1 * budget) if budget else None


class Training:
    """One run's training pipeline (see the module docstring)."""

    def __init__(self, request: RunRequest, console: Console) -> None:
        self.request, self.console = request, console

    # -- entry points ----------------------------------------------------------------------
    def fit(
        self,
        data: str | os.PathLike,
        out: str | os.PathLike | None,
        callbacks: list[L.Callback] | None,
        exclude: str | os.PathLike | None = None,
    ) -> TrainedRun:
        started = time.time()  # the time budget counts from here
        rank = global_rank()
        run_dir = self._run_dir_for(data, out, rank)
        if rank > 0:  # rank 0 indexes, splits and plans; this process trains its options
            spec, options = _follow_rank0(run_dir, rank)
            return self._run(self._stage(run_dir, spec, options, False, started, callbacks, rank))
        with outputs.claimed(run_dir, default_for=data if out is None else None) as run_dir:
            if (run_dir / OPTIONS).exists():
                raise ConfigError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}.")
            spec = self._prepare(data, exclude)
            options, note = self._plan(spec, started)
            return self._run(replace(self._stage(run_dir, spec, options, False, started, callbacks, rank), note=note))

    def resume(self, run_dir: Path, options: RunOptions, callbacks: list[L.Callback] | None) -> TrainedRun:
        """Continue the run saved in ``run_dir`` with ``options`` (its config.json; see
        ``Training.for_resume``)."""
        started, rank = time.time(), global_rank()
        if rank > 0:
            spec, _ = _follow_rank0(run_dir, rank)
            return self._run(self._stage(run_dir, spec, options, True, started, callbacks, rank))
        with outputs.claimed(run_dir) as run_dir:
            for folder in [run_dir, *run_dir.glob("checkpoints/*")]:  # what a killed run was writing: never trusted, now gone
                sweep_orphans(folder)
            spec = RunSpec.read(run_dir, options)
            return self._run(self._stage(run_dir, spec, options, True, started, callbacks, rank))

    @classmethod
    def for_resume(cls, run_dir: Path, placement: dict[str, Any], console: Console, report: bool) -> tuple[Training, RunOptions]:
        """The Training of a saved run and its options, its placement (devices, ...) changed if asked."""
        saved = read_options(run_dir)
        try:
            train = TrainConfig.from_dict({**saved.train.to_dict(), **check_placement(placement)})
        except TypeError as exc:
            raise ConfigError(f"resume placement {placement}: {exc}") from None
        options = replace(saved, train=train)
        request = RunRequest(options.model, options.train, options.image_size, options.cache, report)
        return cls(request, console), options

    def lr_find(self, data: str | os.PathLike, out: str | os.PathLike | None) -> LRFinding:
        model, train = self.request.model, self.request.train
        if not model.pretrained:
            raise ConfigError("lr-find sweeps the head on a frozen pretrained base; it needs pretrained=True (and weights).")
        index = scan(data)
        task = resolve_task(model.task, index)
        network = build_network(model, num_outputs(task, index.classes))
        preprocess = Preprocess.from_timm_config(data_config(network.backbone), self.request.image_size)
        prepared = prepare(split_samples(index, train), preprocess, self.request.cache, index.skipped)
        check_prepared(prepared, index.classes)
        features = FrozenFeatures(network, prepared, preprocess, train, self.request.cache, self.console)
        finding = find_lr(network, features, prepared, task, len(index.classes), train, self.console)
        folder = Path(out) if out is not None else Path(f"lr-find-{outputs.safe_name(data)}")
        outputs.write_lr_finding(folder, finding, self.console)
        return finding

    def _stage(
        self, run_dir: Path, spec: RunSpec, options: RunOptions, resume: bool, started: float, callbacks: list[L.Callback] | None, rank: int
    ) -> Stage:
        console = self.console if rank == 0 else Console(stderr=True, quiet=True)  # rank 0 reports for everyone
        deadline = _deadline(started, options.train.time_budget)
        return Stage(run_dir, spec, options, resume, deadline, tuple(callbacks or ()), console, rank)

    # -- prepare and plan (rank 0 of a fresh run) ---------------------------------------------
    def _prepare(self, data: str | os.PathLike, exclude: str | os.PathLike | None) -> RunSpec:
        """Index ``data`` (less ``exclude``), run the quick doctor, resolve the task, split."""
        index = scan(data)
        if exclude is not None:  # the split is made without them, so --resume needs nothing more
            from headstart.label_issues import apply_exclude

            index, lines = apply_exclude(index, exclude)
            for line in lines:
                self.console.print(shown(line), highlight=False)
        for note in index.notes:
            self.console.print(f"[yellow]note:[/] {shown(note)}", highlight=False)
        if index.ignored:
            self.console.print(f"Ignored {index.ignored} files that are not images (by extension) in {shown(index.root)}", highlight=False)
        quick_doctor(index, self.console)
        task = resolve_task(self.request.model.task, index)
        source = DataSource(
            data=str(Path(data).resolve()),
            layout=index.layout,
            ignored_files=index.ignored,
            excluded_by=str(Path(exclude).resolve()) if exclude is not None else None,
        )
        return RunSpec(index.classes, task, split_samples(index, self.request.train), index.skipped, source)

    def planned_recipe(self, data: str | os.PathLike) -> Recipe:
        """The recipe ``fit`` would train on ``data`` (the same split and pilot), without training."""
        started = time.time()
        r, index = self.request, scan(data)
        spec = RunSpec(
            index.classes, resolve_task(r.model.task, index), split_samples(index, r.train), index.skipped, DataSource(data=str(data))
        )
        return self._recipe(spec, started)

    def _recipe(self, spec: RunSpec, started: float) -> Recipe:
        """The one call into the planner: planned options, or the user's as given."""
        from headstart.engine.fit import accelerated
        from headstart.pipeline.recipe import choose_recipe

        r = self.request
        return choose_recipe(
            r.model,
            r.train,
            r.image_size,
            spec,
            self.console,
            accelerated=accelerated(r.train.accelerator),
            spent_s=time.time() - started,
            cache=r.cache,
        )

    def _plan(self, spec: RunSpec, started: float) -> tuple[RunOptions, str | None]:
        """The options this run trains with: planned, or the user's as given (and why)."""
        r = self.request
        recipe = self._recipe(spec, started)
        # as JSON holds it, so the artifact and a resumed run see the same plan
        plan = PlanRecord(as_json(recipe.plan.to_dict())) if recipe.plan is not None else None
        options = RunOptions(
            model=recipe.model,
            train=recipe.train,
            image_size=recipe.image_size,
            cache=r.cache,
            classes=tuple(spec.classes),
            task=spec.task,
            source=spec.source,
            indexed_skipped=tuple(spec.skipped),
            plan=plan,
        )
        return options, recipe.note

    # -- the run -----------------------------------------------------------------------------
    def _run(self, stage: Stage) -> TrainedRun:
        """``_train``, with a full disk's error saying how to carry on: --resume once the run's
        config.json is written (what came before it is rewritten), else the same command."""
        try:
            return self._train(stage)
        except Exception as exc:
            full = disk_full(exc)
            if full is None or not (stage.run_dir / OPTIONS).is_file():
                raise
            # a library that did not name its file (TensorBoard's writer) wrote into the run folder
            raise DiskFullError(full.path, then=f"continue with: headstart train --resume {stage.run_dir}", folder=stage.run_dir) from exc

    def _train(self, stage: Stage) -> TrainedRun:
        import lightning as L

        began = time.time()
        L.seed_everything(stage.options.train.seed, workers=True, verbose=False)
        decoded = decode(stage, self.request.cache)
        stage, finding = resolve_lr(stage, decoded)
        if stage.rank == 0:
            write_run_start(stage, decoded.prepared, finding)
        if stage.several and stage.rank == 0:
            mark_ready(stage.run_dir)
            os.environ[RUN_DIR_ENV] = str(stage.run_dir.resolve())  # Lightning's ddp children inherit it
        outputs.print_data(stage.console, decoded.prepared, stage.spec.classes, stage.run_dir)
        result = fit_phases(stage, decoded)
        if stage.rank > 0:
            return TrainedRun(stage.run_dir, stage.options)  # rank 0 evaluates and writes the artifact
        return finish(stage, decoded, result, time.time() - began, self.request.report)

    def _run_dir_for(self, data: str | os.PathLike, out: str | os.PathLike | None, rank: int) -> Path:
        if out is not None:
            return Path(out)
        if rank > 0 and os.environ.get(RUN_DIR_ENV):  # set by rank 0 before Lightning starts us
            return Path(os.environ[RUN_DIR_ENV])
        if self.request.train.planned_processes() > 1 and (rank > 0 or "WORLD_SIZE" in os.environ):
            raise ConfigError("Runs started by torchrun or SLURM need --out RUN_DIR (the same for every process).")
        return outputs.default_run_dir(data)  # a name; claimed() takes the first free one


# -- the stages ------------------------------------------------------------------------------------
def _follow_rank0(run_dir: Path, rank: int) -> tuple[RunSpec, RunOptions]:
    """Ranks > 0: wait until rank 0 has prepared the run folder, then read its split and its
    options as it trains them (the planned recipe, the learning rate --lr auto found)."""
    wait_for_rank0(run_dir, rank)  # its decoded-image cache is complete then
    options = read_options(run_dir)
    return RunSpec.read(run_dir, options), options


def decode(stage: Stage, cache: bool) -> Decoded:
    """Build the network (weights fail fast, before decoding), decode the split for it."""
    options, spec = stage.options, stage.spec
    network = build_network(options.model, num_outputs(spec.task, spec.classes))
    preprocess = Preprocess.from_timm_config(data_config(network.backbone), options.image_size)
    model = options.model
    outputs.print_model(
        stage.console, model.arch, model.pretrained, model.head, network, preprocess.input_size, preprocess.mean, preprocess.std, spec.task
    )
    if stage.note:
        stage.console.print(stage.note, highlight=False)
    prepared = prepare(spec.splits, preprocess, cache, spec.skipped)
    check_prepared(prepared, spec.classes)
    features = FrozenFeatures(network, prepared, preprocess, options.train, cache, stage.console)
    return Decoded(network, preprocess, prepared, features)


def resolve_lr(stage: Stage, decoded: Decoded) -> tuple[Stage, LRFinding | None]:
    """``lr="auto"``: the range test's suggestion, in the options from here on. Never on
    resume nor on ranks > 0: the saved options hold the number found."""
    train = stage.options.train
    if train.lr != "auto":
        return stage, None
    k, task = len(stage.spec.classes), stage.spec.task
    finding = find_lr(decoded.network, decoded.features, decoded.prepared, task, k, train, stage.console)
    stage.console.print(f"Training with --lr auto = {finding.suggestion:.2g}")
    summary = LRSummary(finding.suggestion, finding.steepest, finding.min_loss_lr, finding.diverged)
    options = replace(stage.options, train=replace(train, lr=finding.suggestion), lr_find=summary)
    return replace(stage, options=options), finding


def write_run_start(stage: Stage, prepared: Prepared, finding: LRFinding | None) -> None:
    """Rank 0: the lr-find plot, config.json and split.csv (a fresh run), skipped.csv."""
    run_dir, spec = stage.run_dir, stage.spec
    run_dir.mkdir(parents=True, exist_ok=True)
    if finding is not None:
        outputs.write_lr_finding(run_dir, finding, stage.console)
    if not stage.resume:
        write_split(run_dir / "split.csv", DataIndex(Path("."), "", spec.classes, spec.task == "multilabel", spec.splits))
        write_options(run_dir, stage.options)
    write_skipped(run_dir / "skipped.csv", prepared.skipped)


def fit_phases(stage: Stage, decoded: Decoded) -> FitResult:
    """The phases of engine/fit.py on the decoded data; the network ends at its best."""
    from headstart.engine.fit import FitContext, FitTask, two_phase_fit
    from headstart.pipeline.recipe import planned_epoch_cap

    train, spec, k = stage.options.train, stage.spec, len(stage.spec.classes)
    shared = stage.run_dir if stage.several else None
    loaders = PhaseLoaders(train, decoded.prepared, decoded.preprocess, decoded.features, spec.task, k, shared, stage.rank)
    weights = loss_weights(decoded.prepared.samples["train"], k, spec.task) if train.class_weights else None
    task = FitTask(spec.task, k, stage.options.model.threshold, stage.options.model.pretrained, weights)
    cap = planned_epoch_cap(stage.options.plan.raw if stage.options.plan is not None else None)
    context = FitContext(stage.run_dir, stage.resume, stage.callbacks, stage.console, stage.rank, stage.deadline, cap)
    return two_phase_fit(decoded.network, task, train, loaders, context)


def finish(stage: Stage, decoded: Decoded, result: FitResult, seconds: float, report: bool) -> TrainedRun:
    """Rank 0: score val/test, write metrics and the artifact, find label issues, report."""
    run_dir, options, prepared = stage.run_dir, stage.options, decoded.prepared
    (run_dir / "checkpoints" / FEATURES).unlink(missing_ok=True)
    decoded.network.cpu().eval()
    meta = ArtifactMeta(
        model=options.model,
        classes=options.classes,
        task=options.task,
        preprocess=decoded.preprocess,
        versions=versions(),
        train=options.train,
        data=replace(options.source, counts={s: len(v) for s, v in prepared.samples.items()}, skipped=len(prepared.skipped)),
        result=FitSummary(result.best_phase, result.monitor, result.best_score if not np.isnan(result.best_score) else None),
        seconds=round(seconds, 1),
        lr_find=options.lr_find,
        plan=options.plan,
    )
    threshold = options.model.threshold
    scorer = Predictor(Artifact(decoded.network, meta))
    scored = {s: score(scorer, prepared, s, threshold) for s in ("val", "test") if len(prepared.rows.get(s, ())) > 0}
    metrics = {split: m for split, (m, _) in scored.items()}
    headlines = {s: Headline(m.accuracy, m.balanced_accuracy, m.macro_f1) for s, m in metrics.items()}
    artifact = Artifact(decoded.network, replace(meta, metrics=headlines))
    outputs.write_metrics(run_dir, metrics, stage.console, monitor=options.train.monitor)
    save_artifact(run_dir, artifact)
    outputs.print_summary(stage.console, run_dir, metrics)
    from headstart.label_issues import for_run  # from the phase-1 features at hand; None without them

    root = _data_root(options.source.data)
    issues = for_run(decoded.features, prepared, list(options.classes), options.task, root, run_dir, stage.console, options.train.seed)
    if report:
        from headstart.report import ReportInputs

        probabilities = {s: p for s, (_, p) in scored.items()}
        inputs = ReportInputs(
            run_dir, "train", artifact, prepared, metrics, probabilities, run_dir, options.source.data, label_issues=issues
        )
        outputs.write_report(inputs, stage.console)
    return TrainedRun(run_dir, options, artifact, Predictor(artifact), metrics)


# -- helpers -----------------------------------------------------------------------------------
def split_samples(index: DataIndex, train: TrainConfig) -> dict[str, list[Sample]]:
    """The index's splits; without a validation split, a stratified, seeded one of train."""
    splits = dict(index.samples)
    if "val" not in splits:
        pool = splits.pop("train") if "train" in splits else splits.pop("all")
        splits = {**stratified_split(pool, train.val_fraction, train.seed), **splits}
    return splits


def find_lr(
    network: Network, features: FrozenFeatures, prepared: Prepared, task: str, k: int, train: TrainConfig, console: Console
) -> LRFinding:
    """The learning-rate range test for the head on the frozen base's cached features."""
    from headstart.engine.lr_find import range_test

    samples = prepared.samples["train"]
    weights = loss_weights(samples, k, task) if train.class_weights else None
    finding = range_test(
        network.head, features.get("train"), encode_targets(samples, k, task), task=task, config=train, loss_weights=weights
    )
    console.print(
        f"[bold]lr-find[/]: suggested learning rate {finding.suggestion:.2g} (steepest descent {finding.steepest:.2g}, "
        f"loss minimum at {finding.min_loss_lr:.2g}; {len(finding.lrs)} steps{', stopped at divergence' if finding.diverged else ''})"
    )
    return finding


def quick_doctor(index: DataIndex, console: Console) -> None:
    """The data doctor's cheap checks (a stat per file): warn, never stop the run."""
    from headstart.doctor import quick_checks

    findings = quick_checks(index)
    for f in findings:
        console.print(f"[yellow]doctor {f.severity}:[/] {shown(f.message)}", highlight=False)
    if findings:
        console.print("  (`headstart doctor DATA` checks more: unreadable files, near-duplicates, sizes, leakage)", highlight=False)


def _data_root(data: str | None) -> str:
    """The folder that relative paths of the data are relative to (a CSV's folder)."""
    return str(Path(data).parent) if data and Path(data).is_file() else (data or ".")


def check_prepared(prepared: Prepared, classes: list[str]) -> None:
    """Every class has a readable training image, and there is something to validate on."""
    counts = np.bincount([i for s in prepared.samples["train"] for i in s.labels], minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(
            f"No readable training images for classes {empty} ({len(prepared.skipped)} files skipped); "
            "add images to those classes or remove them."
        )
    if len(prepared.samples.get("val", [])) == 0:
        raise DataError("The validation split is empty: add images to val/, or give each class at least 2 readable images.")
