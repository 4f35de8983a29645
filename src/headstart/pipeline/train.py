"""The training pipeline: index -> split -> decode -> (lr-find) -> phases -> artifact.

``Training(model, train, ...)`` runs a fresh run (``fit``), continues one (``resume``) or
runs the learning-rate range test alone (``lr_find``). Each returns plain results; the
``Classifier`` facade keeps them.

Several processes: rank 0 indexes, splits, decodes into the cache and writes the run
folder; the others wait for its files (headstart.engine.ranks), train on the same split,
and leave evaluation and every file to rank 0.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from headstart.artifact import Artifact, num_outputs, save_artifact, versions
from headstart.config import ModelConfig, TrainConfig
from headstart.data.datasets import encode_targets
from headstart.data.index import DataIndex, Sample, Skipped, scan
from headstart.data.prepare import Prepared, prepare, write_skipped
from headstart.data.split import read_split, stratified_split, write_split
from headstart.engine.balance import loss_weights
from headstart.engine.ranks import global_rank, mark_ready, wait_for_rank0
from headstart.errors import ConfigError, DataError, DiskFullError, disk_full
from headstart.evaluate import Metrics
from headstart.files import sweep_orphans
from headstart.models import Network, build_network
from headstart.models.network import data_config
from headstart.pipeline import outputs
from headstart.pipeline.loaders import FEATURES, FrozenFeatures, PhaseLoaders
from headstart.pipeline.recipe import Recipe, planned_epoch_cap
from headstart.pipeline.scoring import score
from headstart.predict.eager import Predictor
from headstart.preprocess import Preprocess

if TYPE_CHECKING:
    import lightning as L

    from headstart.engine.lr_find import LRFinding

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


@dataclass
class TrainedRun:
    """What a finished fit leaves behind (on rank 0; other ranks get ``artifact=None``)."""

    run_dir: Path
    train: TrainConfig  # as trained: ``lr='auto'`` resolved to the number found
    artifact: Artifact | None = None
    predictor: Predictor | None = None
    metrics: dict[str, Metrics] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """A run's fixed facts: saved in config.json, read back by ``--resume`` and ranks > 0."""

    classes: list[str]
    task: str
    splits: dict[str, list[Sample]]
    skipped: list[Skipped]
    meta: dict[str, Any]

    @classmethod
    def read(cls, run_dir: Path, saved: dict[str, Any]) -> RunSpec:
        splits = read_split(run_dir / "split.csv", saved["classes"])
        skipped = [Skipped(s["path"], s["reason"]) for s in saved.get("indexed_skipped", [])]
        return cls(saved["classes"], saved["task"], splits, skipped, saved["meta"])


class Training:
    """One run's training pipeline (see the module docstring)."""

    def __init__(self, model: ModelConfig, train: TrainConfig, image_size: int | None, cache: bool, console: Console, report: bool) -> None:
        self.model, self.train, self.image_size = model, train, image_size
        self.cache, self.console, self.report = cache, console, report
        self.plan: dict[str, Any] | None = None  # the planned recipe (pipeline/recipe.py), when one was
        self.recipe_note: str | None = None
        self.started = time.time()  # the time budget counts from here

    # -- entry points ----------------------------------------------------------------------
    def fit(
        self,
        data: str | os.PathLike,
        out: str | os.PathLike | None,
        callbacks: list[L.Callback] | None,
        exclude: str | os.PathLike | None = None,
    ) -> TrainedRun:
        self.started = time.time()
        rank = global_rank()
        run_dir = self._run_dir_for(data, out, rank)
        if rank > 0:  # rank 0 indexes and splits; this process trains on rank 0's split
            return self._follow(run_dir, rank, callbacks)
        with outputs.claimed(run_dir, default_for=data if out is None else None) as run_dir:
            if (run_dir / outputs.CONFIG).exists():
                raise ConfigError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}.")
            return self._start(run_dir, data, exclude, callbacks)

    def _start(
        self, run_dir: Path, data: str | os.PathLike, exclude: str | os.PathLike | None, callbacks: list[L.Callback] | None
    ) -> TrainedRun:
        """A fresh run in ``run_dir``: index, split, choose the recipe, train."""
        index = scan(data)
        if exclude is not None:  # the split is made without them, so --resume needs nothing more
            from headstart.label_issues import apply_exclude

            index, lines = apply_exclude(index, exclude)
            for line in lines:
                self.console.print(line, highlight=False)
        for note in index.notes:
            self.console.print(f"[yellow]note:[/] {note}")
        if index.ignored:
            self.console.print(f"Ignored {index.ignored} files that are not images (by extension) in {index.root}")
        self._quick_doctor(index)
        task = resolve_task(self.model.task, index)
        meta = {
            "data": str(Path(data).resolve()),
            "layout": index.layout,
            "ignored_files": index.ignored,
            **({"excluded_by": str(Path(exclude).resolve())} if exclude is not None else {}),
        }
        spec = RunSpec(index.classes, task, self._splits(index), index.skipped, meta)
        self._choose_recipe(spec)
        return self._run(run_dir, spec, resume=False, callbacks=callbacks)

    def planned_recipe(self, data: str | os.PathLike) -> Recipe:
        """The recipe ``fit`` would train on ``data`` (the same split and pilot), without training."""
        from headstart.engine.fit import accelerated
        from headstart.pipeline.recipe import choose_recipe

        self.started = time.time()
        index = scan(data)
        spec = RunSpec(index.classes, resolve_task(self.model.task, index), self._splits(index), index.skipped, {})
        return choose_recipe(
            self.model,
            self.train,
            self.image_size,
            spec,
            self.console,
            accelerated=accelerated(self.train.accelerator),
            spent_s=time.time() - self.started,
            cache=self.cache,
        )

    def _choose_recipe(self, spec: RunSpec) -> None:
        from headstart.engine.fit import accelerated
        from headstart.pipeline.recipe import choose_recipe

        recipe = choose_recipe(
            self.model,
            self.train,
            self.image_size,
            spec,
            self.console,
            accelerated=accelerated(self.train.accelerator),
            spent_s=time.time() - self.started,
            cache=self.cache,
        )
        self.model, self.train, self.image_size = recipe.model, recipe.train, recipe.image_size
        # as JSON holds it, so the artifact and a resumed run see the same plan
        self.plan = json.loads(json.dumps(recipe.plan.to_dict())) if recipe.plan is not None else None
        self.recipe_note = recipe.note

    def resume(self, run_dir: Path, saved: dict[str, Any], callbacks: list[L.Callback] | None) -> TrainedRun:
        """Continue the run saved in ``run_dir`` (``saved``: its config.json, from which this
        Training was built; see ``Training.from_saved``)."""
        self.plan = saved.get("plan")
        if global_rank() > 0:
            return self._run(run_dir, RunSpec.read(run_dir, saved), resume=True, callbacks=callbacks)
        with outputs.claimed(run_dir) as run_dir:
            for folder in [run_dir, *run_dir.glob("checkpoints/*")]:  # what a killed run was writing: never trusted, now gone
                sweep_orphans(folder)
            return self._run(run_dir, RunSpec.read(run_dir, saved), resume=True, callbacks=callbacks)

    @classmethod
    def from_saved(cls, saved: dict[str, Any], placement: dict[str, Any], console: Console, report: bool) -> Training:
        """The Training of a saved run, with its placement (devices, ...) changed if asked."""
        return cls(
            ModelConfig.from_dict(saved["model"]),
            TrainConfig.from_dict({**saved["train"], **check_placement(placement)}),
            saved["image_size"],
            saved["cache"],
            console,
            report,
        )

    def lr_find(self, data: str | os.PathLike, out: str | os.PathLike | None) -> LRFinding:
        if not self.model.pretrained:
            raise ConfigError("lr-find sweeps the head on a frozen pretrained base; it needs pretrained=True (and weights).")
        index = scan(data)
        task = resolve_task(self.model.task, index)
        network = build_network(self.model, num_outputs(task, index.classes))
        preprocess = Preprocess.from_timm_config(data_config(network.backbone), self.image_size)
        prepared = prepare(self._splits(index), preprocess, self.cache, index.skipped)
        check_prepared(prepared, index.classes)
        features = FrozenFeatures(network, prepared, preprocess, self.train, self.cache, self.console)
        finding = self._find_lr(network, features, prepared, task, len(index.classes))
        folder = Path(out) if out is not None else Path(f"lr-find-{outputs.safe_name(data)}")
        outputs.write_lr_finding(folder, finding, self.console)
        return finding

    # -- the run -----------------------------------------------------------------------------
    def _run(self, run_dir: Path, spec: RunSpec, *, resume: bool, callbacks: list[L.Callback] | None) -> TrainedRun:
        """``_train``, with a full disk's error saying how to carry on: --resume once the run's
        config.json is written (what came before it is rewritten), else the same command."""
        try:
            return self._train(run_dir, spec, resume=resume, callbacks=callbacks)
        except Exception as exc:
            full = disk_full(exc)
            if full is None or not (run_dir / outputs.CONFIG).is_file():
                raise
            # a library that did not name its file (TensorBoard's writer) wrote into the run folder
            raise DiskFullError(full.path, then=f"continue with: headstart train --resume {run_dir}", folder=run_dir) from exc

    def _train(self, run_dir: Path, spec: RunSpec, *, resume: bool, callbacks: list[L.Callback] | None) -> TrainedRun:
        import lightning as L

        from headstart.engine.fit import two_phase_fit

        started = time.time()
        budget = self.train.time_budget
        # Training ends early enough to leave evaluation, the artifact and the report in the budget.
        deadline = self.started + budget - min(60.0, 0.1 * budget) if budget else None
        cfg = self.train
        rank, several = global_rank(), cfg.planned_processes() > 1
        if rank > 0:
            self.console = Console(stderr=True, quiet=True)  # rank 0 reports for everyone
            wait_for_rank0(run_dir, rank)  # its decoded-image cache is complete then
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        k, task = len(spec.classes), spec.task
        network = build_network(self.model, num_outputs(task, spec.classes))  # weights fail fast, before decoding
        preprocess = Preprocess.from_timm_config(data_config(network.backbone), self.image_size)
        outputs.print_model(
            self.console,
            self.model.arch,
            self.model.pretrained,
            self.model.head,
            network,
            preprocess.input_size,
            preprocess.mean,
            preprocess.std,
            task,
        )
        if self.recipe_note:
            self.console.print(self.recipe_note, highlight=False)

        prepared = prepare(spec.splits, preprocess, self.cache, spec.skipped)
        check_prepared(prepared, spec.classes)
        features = FrozenFeatures(network, prepared, preprocess, cfg, self.cache, self.console)
        finding = None
        if cfg.lr == "auto":  # never on resume, nor on ranks > 0: the saved config holds the found number
            finding = self._find_lr(network, features, prepared, task, k)
            cfg = self.train = replace(cfg, lr=finding.suggestion)
            self.console.print(f"Training with --lr auto = {cfg.lr:.2g}")
        if rank == 0:
            self._write_run_start(run_dir, spec, prepared, resume, finding)
        if several and rank == 0:
            mark_ready(run_dir)
            os.environ[RUN_DIR_ENV] = str(run_dir.resolve())  # Lightning's ddp children inherit it
        outputs.print_data(self.console, prepared, spec.classes, run_dir)

        loaders = PhaseLoaders(cfg, prepared, preprocess, features, task, k, run_dir if several else None, rank)
        result = two_phase_fit(
            network,
            task=task,
            num_classes=k,
            threshold=self.model.threshold,
            config=cfg,
            pretrained=self.model.pretrained,
            loaders=loaders,
            run_dir=run_dir,
            loss_weights=loss_weights(prepared.samples["train"], k, task) if cfg.class_weights else None,
            resume=resume,
            callbacks=callbacks,
            console=self.console,
            rank=rank,
            deadline=deadline,
            epoch_cap=planned_epoch_cap(self.plan),
        )
        if rank > 0:
            return TrainedRun(run_dir, cfg)  # rank 0 evaluates and writes the artifact
        (run_dir / "checkpoints" / FEATURES).unlink(missing_ok=True)
        network.cpu().eval()
        artifact = Artifact(network, self.model, list(spec.classes), task, preprocess, {})
        predictor = Predictor(artifact)
        scored = {
            split: score(predictor, prepared, split, self.model.threshold)
            for split in ("val", "test")
            if len(prepared.rows.get(split, ())) > 0
        }
        metrics = {split: m for split, (m, _) in scored.items()}
        artifact.meta = {
            "versions": versions(),
            "train": cfg.to_dict(),
            "data": {**spec.meta, "counts": {s: len(v) for s, v in prepared.samples.items()}, "skipped": len(prepared.skipped)},
            "result": {"best_phase": result.best_phase, "monitor": result.monitor, "best_score": result.best_score},
            "metrics": {
                split: {"accuracy": m.accuracy, "balanced_accuracy": m.balanced_accuracy, "macro_f1": m.macro_f1}
                for split, m in metrics.items()
            },
            "seconds": round(time.time() - started, 1),
        }
        if finding is not None:
            artifact.meta["lr_find"] = finding.summary()
        if self.plan is not None:
            artifact.meta["plan"] = self.plan
        outputs.write_metrics(run_dir, metrics, self.console, monitor=cfg.monitor)
        save_artifact(run_dir, artifact)
        outputs.print_summary(self.console, run_dir, metrics)
        from headstart.label_issues import for_run  # from the phase-1 features at hand; None without them

        issues = for_run(features, prepared, spec.classes, task, _data_root(spec.meta.get("data")), run_dir, self.console, cfg.seed)
        if self.report:
            from headstart.report import ReportInputs

            inputs = ReportInputs(
                run_dir,
                "train",
                artifact,
                prepared,
                metrics,
                {s: p for s, (_, p) in scored.items()},
                run_dir,
                spec.meta.get("data"),
                label_issues=issues,
            )
            outputs.write_report(inputs, self.console)
        return TrainedRun(run_dir, cfg, artifact, predictor, metrics)

    def _follow(self, run_dir: Path, rank: int, callbacks: list[L.Callback] | None) -> TrainedRun:
        """Ranks > 0 of a fresh run: wait for rank 0's split, then train on it."""
        wait_for_rank0(run_dir, rank)
        saved = outputs.read_config(run_dir)
        # rank 0's options as it trains them: the planned recipe, the learning rate --lr auto found
        self.model, self.train = ModelConfig.from_dict(saved["model"]), TrainConfig.from_dict(saved["train"])
        self.image_size, self.plan = saved["image_size"], saved.get("plan")
        return self._run(run_dir, RunSpec.read(run_dir, saved), resume=False, callbacks=callbacks)

    def _write_run_start(self, run_dir: Path, spec: RunSpec, prepared: Prepared, resume: bool, finding: LRFinding | None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if finding is not None:
            outputs.write_lr_finding(run_dir, finding, self.console)
        if not resume:
            saved: dict[str, Any] = {
                "model": self.model.to_dict(),
                "train": self.train.to_dict(),
                "image_size": self.image_size,
                "cache": self.cache,
                "classes": spec.classes,
                "task": spec.task,
                "meta": spec.meta,
                "indexed_skipped": [{"path": s.path, "reason": s.reason} for s in spec.skipped],
            }
            if finding is not None:
                saved["lr_find"] = finding.summary()
            if self.plan is not None:
                saved["plan"] = self.plan
            write_split(run_dir / "split.csv", DataIndex(Path("."), "", spec.classes, spec.task == "multilabel", spec.splits))
            outputs.write_config(run_dir, saved)
        write_skipped(run_dir / "skipped.csv", prepared.skipped)

    # -- helpers -------------------------------------------------------------------------------
    def _splits(self, index: DataIndex) -> dict[str, list[Sample]]:
        splits = dict(index.samples)
        if "val" not in splits:  # no validation given: a stratified, seeded split of train
            pool = splits.pop("train") if "train" in splits else splits.pop("all")
            splits = {**stratified_split(pool, self.train.val_fraction, self.train.seed), **splits}
        return splits

    def _find_lr(self, network: Network, features: FrozenFeatures, prepared: Prepared, task: str, k: int) -> LRFinding:
        from headstart.engine.lr_find import range_test

        samples = prepared.samples["train"]
        weights = loss_weights(samples, k, task) if self.train.class_weights else None
        finding = range_test(
            network.head, features.get("train"), encode_targets(samples, k, task), task=task, config=self.train, loss_weights=weights
        )
        self.console.print(
            f"[bold]lr-find[/]: suggested learning rate {finding.suggestion:.2g} (steepest descent {finding.steepest:.2g}, "
            f"loss minimum at {finding.min_loss_lr:.2g}; {len(finding.lrs)} steps{', stopped at divergence' if finding.diverged else ''})"
        )
        return finding

    def _quick_doctor(self, index: DataIndex) -> None:
        """The data doctor's cheap checks (a stat per file): warn, never stop the run."""
        from headstart.doctor import quick_checks

        findings = quick_checks(index)
        for f in findings:
            self.console.print(f"[yellow]doctor {f.severity}:[/] {f.message}", highlight=False)
        if findings:
            self.console.print(
                "  (`headstart doctor DATA` checks more: unreadable files, near-duplicates, sizes, leakage)", highlight=False
            )

    def _run_dir_for(self, data: str | os.PathLike, out: str | os.PathLike | None, rank: int) -> Path:
        if out is not None:
            return Path(out)
        if rank > 0 and os.environ.get(RUN_DIR_ENV):  # set by rank 0 before Lightning starts us
            return Path(os.environ[RUN_DIR_ENV])
        if self.train.planned_processes() > 1 and (rank > 0 or "WORLD_SIZE" in os.environ):
            raise ConfigError("Runs started by torchrun or SLURM need --out RUN_DIR (the same for every process).")
        return outputs.default_run_dir(data)  # a name; claimed() takes the first free one


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
