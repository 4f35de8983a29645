"""The Classifier facade: fit / evaluate / predict / load. The CLI calls only this.

Example:
    >>> import headstart
    >>> clf = headstart.Classifier("tf_efficientnet_lite0")          # doctest: +SKIP
    >>> clf.fit("pets/", out="runs/pets")                            # doctest: +SKIP
    >>> clf.predict(["cat.jpg"], top_k=3)[0].top                     # doctest: +SKIP
    >>> headstart.load("runs/pets").evaluate("pets-test/")           # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from headstart import plots
from headstart.artifact import Artifact, load_artifact, num_outputs, save_artifact, versions
from headstart.config import ModelConfig, TrainConfig
from headstart.data.index import DataIndex, Sample, Skipped, scan
from headstart.data.split import read_split, stratified_split, write_split
from headstart.data.prepare import Prepared, prepare, write_skipped
from headstart.data.store import cpu_count
from headstart.engine.balance import loss_weights, sample_weights
from headstart.engine.ranks import global_rank, mark_ready, wait_for_rank0
from headstart.engine.loggers import resolve_logger
from headstart.errors import ConfigError, DataError
from headstart.evaluate import Metrics, compute_metrics
from headstart.models import build_network
from headstart.models.network import data_config
from headstart.predict import Prediction, Predictor, expand_inputs
from headstart.preprocess import ImageSource, Preprocess
from headstart.tta import tta_views

if TYPE_CHECKING:
    from headstart.engine.lr_find import LRFinding

CONFIG = "config.json"
FEATURES = "features.pt"  # under RUN/checkpoints, multi-process runs only
RUN_DIR_ENV = "HEADSTART_RUN_DIR"  # rank 0 -> the ranks Lightning starts: where the run is


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


def _targets(samples: list[Sample], k: int, task: str) -> torch.Tensor:
    from headstart.data.datasets import encode_targets

    return encode_targets(samples, k, task)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a loader worker must not spawn its own thread pool


def _placement(options: dict) -> dict:
    allowed = {"devices", "num_nodes", "strategy", "accelerator", "dist_timeout"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"resume can change only {sorted(allowed)}, not {unknown}.")
    return options


def default_run_dir(data: str | os.PathLike) -> Path:
    name = re.sub(r"[^\w.-]+", "_", Path(data).resolve().stem) or "run"
    candidate = Path("runs") / name
    n = 2
    while candidate.exists():
        candidate = Path("runs") / f"{name}-{n}"
        n += 1
    return candidate


class Classifier:
    """Build, train, evaluate and use an image classifier.

    Args:
        arch: any timm architecture name, or ``convnet_tiny``/``convnet_small``.
        model: full model options (overrides ``arch`` when given).
        train: training options (two phases, learning rates, callbacks...).
        image_size: model input side; default: the architecture's pretrained config.
        cache: keep decoded images in the on-disk cache (see ``headstart.data.store``).
        report: write ``report.html`` after fit and evaluate (see ``headstart.report``).
    """

    def __init__(
        self,
        arch: str = ModelConfig.arch,
        *,
        model: ModelConfig | None = None,
        train: TrainConfig | None = None,
        image_size: int | None = None,
        cache: bool = True,
        console: Console | None = None,
        report: bool = True,
    ) -> None:
        self.model = model or ModelConfig(arch=arch)
        self.train = train or TrainConfig()
        resolve_logger(self.train.logger)  # a logger asked for but not installed fails here, not after decoding
        if self.train.lr == "auto" and not self.model.pretrained:
            raise ConfigError(
                "lr='auto' runs the range test on the frozen pretrained base, but pretrained=False; "
                "give a number (--lr 3e-3) when training from scratch."
            )
        if image_size is not None and image_size < 16:
            raise ConfigError(f"image_size={image_size} is too small; use 16 or more.")
        self.image_size = image_size
        self.cache = cache
        self.report = report
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.run_dir: Path | None = None
        self.artifact: Artifact | None = None
        self.metrics: dict[str, Metrics] = {}
        self._predictor: Predictor | None = None

    # -- training ------------------------------------------------------------------------
    def fit(
        self, data: str | os.PathLike, out: str | os.PathLike | None = None, callbacks: list | None = None
    ) -> "Classifier":
        """Index ``data``, split it, train both phases, evaluate, and save the run folder."""
        rank = global_rank()
        run_dir = self._run_dir_for(data, out, rank)
        if rank > 0:  # rank 0 indexes and splits; this process trains on rank 0's split
            return self._follow(run_dir, rank, callbacks)
        if (run_dir / CONFIG).exists():
            raise ConfigError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}.")
        index = scan(data)
        for note in index.notes:
            self.console.print(f"[yellow]note:[/] {note}")
        if index.ignored:
            self.console.print(f"Ignored {index.ignored} files that are not images (by extension) in {index.root}")
        self._quick_doctor(index)
        task = resolve_task(self.model.task, index)
        splits = self._splits(index)
        meta = {"data": str(Path(data).resolve()), "layout": index.layout, "ignored_files": index.ignored}
        return self._run(run_dir, index.classes, task, splits, index.skipped, meta, resume=False, callbacks=callbacks)

    def _splits(self, index: DataIndex) -> dict[str, list[Sample]]:
        splits = dict(index.samples)
        if "val" not in splits:  # no validation given: a stratified, seeded split of train
            pool = splits.pop("train") if "train" in splits else splits.pop("all")
            splits = {**stratified_split(pool, self.train.val_fraction, self.train.seed), **splits}
        return splits

    def lr_find(self, data: str | os.PathLike, out: str | os.PathLike | None = None) -> "LRFinding":
        """Learning-rate range test for the head on the frozen base; writes lr_find.png/.json.

        Example:
            >>> Classifier().lr_find("pets/").suggestion          # doctest: +SKIP
        """
        if not self.model.pretrained:
            raise ConfigError("lr-find sweeps the head on a frozen pretrained base; it needs pretrained=True (and weights).")
        index = scan(data)
        task = resolve_task(self.model.task, index)
        network = build_network(self.model, num_outputs(task, index.classes))
        preprocess = Preprocess.from_timm_config(data_config(network.backbone), self.image_size)
        prepared = prepare(self._splits(index), preprocess, self.cache, index.skipped)
        self._check_prepared(prepared, index.classes, Path("."))
        finding = self._find_lr(network, prepared, preprocess, task, len(index.classes), {})
        name = re.sub(r"[^\w.-]+", "_", Path(data).resolve().stem)
        folder = Path(out) if out is not None else Path(f"lr-find-{name}")
        self._write_lr_finding(folder, finding)
        return finding

    def _find_lr(self, network, prepared: Prepared, preprocess: Preprocess, task: str, k: int, features: dict) -> "LRFinding":  # type: ignore[no-untyped-def]
        from headstart.engine.lr_find import range_test

        f_train = self._phase1_features(network, prepared, preprocess, features, "train")
        samples = prepared.samples["train"]
        weights = loss_weights(samples, k, task) if self.train.class_weights else None
        finding = range_test(network.head, f_train, _targets(samples, k, task), task=task, config=self.train, loss_weights=weights)
        self.console.print(
            f"[bold]lr-find[/]: suggested learning rate {finding.suggestion:.2g} (steepest descent {finding.steepest:.2g}, "
            f"loss minimum at {finding.min_loss_lr:.2g}; {len(finding.lrs)} steps{', stopped at divergence' if finding.diverged else ''})"
        )
        return finding

    def _phase1_features(self, network, prepared: Prepared, preprocess: Preprocess, memo: dict, split: str, view: int = 0) -> torch.Tensor:  # type: ignore[no-untyped-def]
        """Frozen-base features of a split, computed once per run (lr-find and phase 1 share
        them); view 0 is the evaluation view, view v > 0 a random training view (seed + v)."""
        from headstart.engine.features import cached_features

        if (split, view) not in memo:
            memo[(split, view)] = cached_features(
                network.backbone, prepared.images.array, prepared.rows[split], preprocess, self.cache, show=not self.console.quiet,
                augment=self.train.augment if view else None, seed=self.train.seed + view,
            )
        return memo[(split, view)]

    def _write_lr_finding(self, folder: Path, finding: "LRFinding") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lr_find.json").write_text(json.dumps(finding.to_dict(), indent=1), encoding="utf-8")
        plots.lr_find(finding.lrs, finding.losses, finding.smoothed, finding.suggestion, folder / "lr_find.png")
        self.console.print(f"Range test plot: [bold]{folder / 'lr_find.png'}[/]")

    def _quick_doctor(self, index: DataIndex) -> None:
        """The data doctor's cheap checks (a stat per file): warn, never stop the run."""
        from headstart.doctor import quick_checks

        findings = quick_checks(index)
        for f in findings:
            self.console.print(f"[yellow]doctor {f.severity}:[/] {f.message}", highlight=False)
        if findings:
            self.console.print("  (`headstart doctor DATA` checks more: unreadable files, near-duplicates, sizes, leakage)", highlight=False)

    def _run_dir_for(self, data: str | os.PathLike, out: str | os.PathLike | None, rank: int) -> Path:
        if out is not None:
            return Path(out)
        if rank > 0 and os.environ.get(RUN_DIR_ENV):  # set by rank 0 before Lightning starts us
            return Path(os.environ[RUN_DIR_ENV])
        if self.train.planned_processes() > 1 and (rank > 0 or "WORLD_SIZE" in os.environ):
            raise ConfigError("Runs started by torchrun or SLURM need --out RUN_DIR (the same for every process).")
        return default_run_dir(data)

    def _follow(self, run_dir: Path, rank: int, callbacks: list | None) -> "Classifier":
        """Ranks > 0 of a fresh run: wait for rank 0's split, then train on it."""
        wait_for_rank0(run_dir, rank)
        saved = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
        self.train = TrainConfig.from_dict(saved["train"])  # with the learning rate rank 0 found for --lr auto
        splits = read_split(run_dir / "split.csv", saved["classes"])
        skipped = [Skipped(s["path"], s["reason"]) for s in saved.get("indexed_skipped", [])]
        return self._run(run_dir, saved["classes"], saved["task"], splits, skipped, saved["meta"], resume=False, callbacks=callbacks)

    @classmethod
    def resume(
        cls, run_dir: str | os.PathLike, callbacks: list | None = None, console: Console | None = None, report: bool = True,
        placement: dict | None = None,
    ) -> "Classifier":
        """Continue an interrupted run from its last checkpoint (same options, same split).

        ``placement`` may change where it runs: devices, num_nodes, strategy, accelerator,
        dist_timeout (e.g. resume a 2-GPU run on 4)."""
        run_dir = Path(run_dir)
        path = run_dir / CONFIG
        if not path.is_file():
            raise ConfigError(f"{run_dir} has no {CONFIG}: nothing to resume (start with 'headstart train DATA --out {run_dir}').")
        saved = json.loads(path.read_text(encoding="utf-8"))
        clf = cls(
            model=ModelConfig.from_dict(saved["model"]),
            train=TrainConfig.from_dict({**saved["train"], **_placement(placement or {})}),
            image_size=saved["image_size"],
            cache=saved["cache"],
            console=console,
            report=report,
        )
        splits = read_split(run_dir / "split.csv", saved["classes"])
        skipped = [Skipped(s["path"], s["reason"]) for s in saved.get("indexed_skipped", [])]
        return clf._run(run_dir, saved["classes"], saved["task"], splits, skipped, saved["meta"], resume=True, callbacks=callbacks)

    def _run(
        self,
        run_dir: Path,
        classes: list[str],
        task: str,
        splits: dict[str, list[Sample]],
        skipped: list[Skipped],
        meta: dict,
        *,
        resume: bool,
        callbacks: list | None,
    ) -> "Classifier":
        import lightning as L

        from headstart.engine.fit import two_phase_fit

        started = time.time()
        cfg = self.train
        rank, several = global_rank(), cfg.planned_processes() > 1
        if rank > 0:
            self.console = Console(stderr=True, quiet=True)  # rank 0 reports for everyone
            wait_for_rank0(run_dir, rank)  # its decoded-image cache is complete then
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        k = len(classes)
        network = build_network(self.model, num_outputs(task, classes))  # weights fail fast, before decoding
        preprocess = Preprocess.from_timm_config(data_config(network.backbone), self.image_size)
        self._print_model(network, preprocess, task)

        prepared = prepare(splits, preprocess, self.cache, skipped)
        self._check_prepared(prepared, classes, run_dir)
        features: dict[str, torch.Tensor] = {}  # frozen-base features, shared by lr-find and phase 1
        finding = None
        if cfg.lr == "auto":  # never on resume, nor on ranks > 0: the saved config holds the found number
            finding = self._find_lr(network, prepared, preprocess, task, k, features)
            cfg = self.train = replace(cfg, lr=finding.suggestion)
            self.console.print(f"Training with --lr auto = {cfg.lr:.2g}")
        if rank == 0:
            self._write_run_start(run_dir, classes, task, splits, skipped, meta, prepared, resume, finding)
        if several and rank == 0:
            mark_ready(run_dir)
            os.environ[RUN_DIR_ENV] = str(run_dir.resolve())  # Lightning's ddp children inherit it
        self._print_data(prepared, classes, run_dir)

        loaders = self._loaders(prepared, preprocess, network, task, k, features, run_dir if several else None, rank)
        result = two_phase_fit(
            network, task=task, num_classes=k, threshold=self.model.threshold, config=cfg,
            pretrained=self.model.pretrained, loaders=loaders, run_dir=run_dir,
            loss_weights=loss_weights(prepared.samples["train"], k, task) if cfg.class_weights else None,
            resume=resume, callbacks=callbacks, console=self.console, rank=rank,
        )
        if rank > 0:
            return self  # rank 0 evaluates and writes the artifact
        (run_dir / "checkpoints" / FEATURES).unlink(missing_ok=True)
        network.cpu().eval()
        self.artifact = Artifact(network, self.model, list(classes), task, preprocess, {})
        self._predictor = Predictor(self.artifact)
        scored = {split: self._score(prepared, split) for split in ("val", "test") if len(prepared.rows.get(split, ())) > 0}
        self.metrics = {split: m for split, (m, _) in scored.items()}
        self.artifact.meta = {
            "versions": versions(),
            "train": cfg.to_dict(),
            "data": {**meta, "counts": {s: len(v) for s, v in prepared.samples.items()}, "skipped": len(prepared.skipped)},
            "result": {"best_phase": result.best_phase, "monitor": result.monitor, "best_score": result.best_score},
            "metrics": {split: {"accuracy": m.accuracy, "balanced_accuracy": m.balanced_accuracy, "macro_f1": m.macro_f1} for split, m in self.metrics.items()},
            "seconds": round(time.time() - started, 1),
        }
        if finding is not None:
            self.artifact.meta["lr_find"] = finding.summary()
        self.run_dir = run_dir
        self._write_results(run_dir)
        save_artifact(run_dir, self.artifact)
        self._print_summary(run_dir)
        self._report(run_dir, "train", prepared, scored, data=meta.get("data"))
        return self

    def _write_run_start(
        self, run_dir: Path, classes: list[str], task: str, splits: dict[str, list[Sample]], skipped: list[Skipped],
        meta: dict, prepared: Prepared, resume: bool, finding: "LRFinding | None",
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if finding is not None:
            self._write_lr_finding(run_dir, finding)
        if not resume:
            saved = {
                "model": self.model.to_dict(), "train": self.train.to_dict(), "image_size": self.image_size,
                "cache": self.cache, "classes": classes, "task": task, "meta": meta,
                "indexed_skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
            }
            if finding is not None:
                saved["lr_find"] = finding.summary()
            write_split(run_dir / "split.csv", DataIndex(Path("."), "", classes, task == "multilabel", splits))
            (run_dir / CONFIG).write_text(json.dumps(saved, indent=2, ensure_ascii=False), encoding="utf-8")
        write_skipped(run_dir / "skipped.csv", prepared.skipped)

    def _loaders(  # type: ignore[no-untyped-def]
        self, prepared: Prepared, preprocess: Preprocess, network: torch.nn.Module, task: str, k: int, features: dict,
        shared: Path | None = None, rank: int = 0,
    ):
        """phase -> (train loader, val loader, on_features) for ``two_phase_fit``."""
        from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

        from headstart.data.datasets import SquaresDataset
        cfg = self.train
        train_s, val_s = prepared.samples["train"], prepared.samples["val"]
        squares = prepared.images.array
        y_train, y_val = _targets(train_s, k, task), _targets(val_s, k, task)
        # With 2 cores a worker process competes with the model's threads (measured: sys
        # time as high as user time), so small machines load in the main process.
        workers = cfg.num_workers if cfg.num_workers is not None else (0 if cpu_count() <= 2 else min(6, cpu_count() - 1))
        generator = torch.Generator().manual_seed(cfg.seed)

        def make(train_ds, val_ds, workers: int) -> tuple[DataLoader, DataLoader]:  # type: ignore[no-untyped-def]
            views = len(train_ds) // max(1, len(train_s))  # phase 1 on K feature views: K rows per image
            weights = sample_weights(train_s, k).repeat(views)
            sampler = WeightedRandomSampler(weights, len(weights), generator=generator) if cfg.oversample else None
            kw = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": torch.cuda.is_available(),
                  "worker_init_fn": _one_thread if workers else None}
            train = DataLoader(
                train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, generator=generator,
                drop_last=len(train_ds) % cfg.batch_size == 1,  # a batch of one breaks batch norm
                collate_fn=getattr(train_ds, "collate", None), **kw,
            )
            return train, DataLoader(val_ds, batch_size=cfg.batch_size * 2, **kw)

        def loaders(phase: int):  # type: ignore[no-untyped-def]
            if phase == 1 and cfg.feature_cache:
                f_train, f_val = self._features(network, prepared, preprocess, features, shared, rank)
                views = len(f_train) // max(1, len(y_train))  # the targets repeat once per view
                y_views = y_train.repeat(views, *[1] * (y_train.dim() - 1))
                return (*make(TensorDataset(f_train, y_views), TensorDataset(f_val, y_val), 0), True)
            train_ds = SquaresDataset(squares, prepared.rows["train"], y_train, preprocess, cfg.augment)
            val_ds = SquaresDataset(squares, prepared.rows["val"], y_val, preprocess, None)
            return (*make(train_ds, val_ds, workers), False)

        return loaders

    def _features(self, network, prepared: Prepared, preprocess: Preprocess, memo: dict, shared: Path | None, rank: int):  # type: ignore[no-untyped-def]
        """Phase-1 features (train, val). With several processes rank 0 computes them once
        (through the feature cache) into RUN/checkpoints/features.pt, kept for a resume until
        training ends; the other ranks wait for that file and load it."""
        from headstart.engine.ranks import wait_for_file

        path = shared / "checkpoints" / FEATURES if shared is not None else None
        if path is not None and (rank > 0 or path.exists()):
            wait_for_file(path, rank, "phase-1 features")
            saved = torch.load(path, weights_only=True)
            return saved["train"], saved["val"]
        f_train = self._phase1_features(network, prepared, preprocess, memo, "train")
        f_val = self._phase1_features(network, prepared, preprocess, memo, "val")
        if self.train.feature_views > 1:  # random training views after the evaluation view: (K * N, F)
            f_train = torch.cat([f_train] + [self._phase1_features(network, prepared, preprocess, memo, "train", view=v)
                                              for v in range(1, self.train.feature_views)])
        if path is not None:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"train": f_train, "val": f_val}, tmp)
            os.replace(tmp, path)
        return f_train, f_val

    def _score(self, prepared: Prepared, split: str, tta: tuple[str, ...] = ()) -> tuple[Metrics, np.ndarray]:
        """Metrics of one split, and the (N, K) probabilities behind them."""
        probs = self._require_predictor(tta).probabilities_of_squares(prepared.images.array, prepared.rows[split])
        labels = [s.labels for s in prepared.samples[split]]
        artifact = self._require_artifact()
        return compute_metrics(probs, labels, artifact.classes, artifact.task, self.model.threshold), probs

    def _check_prepared(self, prepared: Prepared, classes: list[str], run_dir: Path) -> None:
        counts = np.bincount([i for s in prepared.samples["train"] for i in s.labels], minlength=len(classes))
        empty = [classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise DataError(
                f"No readable training images for classes {empty} ({len(prepared.skipped)} files skipped); "
                "add images to those classes or remove them."
            )
        if len(prepared.samples.get("val", [])) == 0:
            raise DataError(
                "The validation split is empty: add images to val/, or give each class at least 2 readable images."
            )

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(
        self, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None, tta: bool | str | tuple[str, ...] = False
    ) -> dict[str, Metrics]:
        """Metrics on another folder/CSV (its test split if it has one), or on this run's
        own validation/test split when ``data`` is None. Written under ``out``.

        ``tta``: True (original + horizontal flip) or view names from ``headstart.tta.VIEWS``;
        the report then shows the metrics with and without it."""
        started = time.time()
        views = tta_views(tta)
        artifact = self._require_artifact()
        if data is None:
            if self.run_dir is None:
                raise ConfigError("evaluate() without data needs a run folder; pass data=FOLDER or CSV.")
            splits = {k: v for k, v in read_split(self.run_dir / "split.csv", artifact.classes).items() if k != "train"}
            skipped: list[Skipped] = []
            name = "own-split"
        else:
            index = scan(data).remap(artifact.classes)
            if index.layout == "splits":
                pick = "test" if "test" in index.samples else "val"
                splits = {pick: index.samples[pick]}
            else:
                splits = {"data": index.all_samples}
            skipped = index.skipped
            name = re.sub(r"[^\w.-]+", "_", Path(data).resolve().stem)
        prepared = prepare(splits, artifact.preprocess, self.cache, skipped)
        scored = {split: self._score(prepared, split, views) for split in prepared.rows if len(prepared.rows[split])}
        results = {split: m for split, (m, _) in scored.items()}
        if not results:
            raise DataError(f"No readable images to evaluate in {data}.")
        target = Path(out) if out else (self.run_dir / f"eval-{name}" if self.run_dir else Path(f"eval-{name}"))
        target.mkdir(parents=True, exist_ok=True)
        write_skipped(target / "skipped.csv", prepared.skipped)
        saved, self.metrics = self.metrics, results
        self._write_results(target, curves=False)
        self.metrics = saved if data is not None else results
        self._print_summary(target, results)
        plain = {split: self._score(prepared, split) for split in scored} if views else {}
        source = str(data) if data is not None else f"{self.run_dir}/split.csv ({', '.join(scored)})"
        self._report(target, "evaluate", prepared, scored, data=source, tta=views, without_tta=plain, seconds=time.time() - started)
        return results

    # -- prediction ----------------------------------------------------------------------
    def predict(
        self, sources: list[ImageSource] | ImageSource, top_k: int = 5, tta: bool | str | tuple[str, ...] = False
    ) -> list[Prediction]:
        """Class names and probabilities for files, folders, bytes or PIL images
        (``tta``: average over flipped/cropped views, see ``headstart.tta``)."""
        predictor = self._require_predictor(tta_views(tta))
        if not isinstance(sources, list):
            sources = [sources]
        expanded: list[ImageSource] = []
        for s in sources:
            expanded.extend(expand_inputs([s]) if isinstance(s, (str, os.PathLike)) else [s])
        return predictor.predict(expanded, top_k=top_k)

    def predict_to_csv(
        self, sources: list[str], path: str | os.PathLike, top_k: int = 5, tta: bool | str | tuple[str, ...] = False,
        resume: bool = False, shard: tuple[int, int] = (0, 1),
    ) -> int:
        """Predictions for files, folders or CSVs (a ``path`` column) into a CSV, streamed:
        any number of inputs, rows on disk as they come; ``resume`` continues an
        interrupted file. Returns the number of rows in the file."""
        from headstart.batch_predict import predict_to_file

        predictor = self._require_predictor(tta_views(tta))
        new, old = predict_to_file(predictor, sources, Path(path), top_k, resume=resume, shard=shard)
        return new + old

    def export(self, format: str = "onnx", out: str | os.PathLike | None = None):  # type: ignore[no-untyped-def]
        """Write the model as ONNX or TorchScript and prove it predicts the same (parity).

        Returns an ``ExportResult`` (path, format, parity report); raises ExportError and
        keeps nothing when parity fails.

        Example:
            >>> headstart.load("runs/pets").export("onnx").path       # doctest: +SKIP
        """
        from headstart.export.run import export

        if self.run_dir is None:
            raise ConfigError("Export needs a trained run: call fit(DATA) first, or headstart.load(RUN_DIR).")
        return export(self._require_artifact(), Path(self.run_dir), format, out)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str | None = None) -> "Classifier":
        """A trained classifier from its run folder alone (``device``: where it predicts)."""
        artifact = load_artifact(run_dir)
        clf = cls(model=artifact.model, image_size=artifact.preprocess.input_size)
        clf.artifact, clf.run_dir = artifact, Path(run_dir)
        clf._predictor = Predictor(artifact, device=device)
        return clf

    @property
    def classes(self) -> list[str]:
        return self._require_artifact().classes

    def _require_artifact(self) -> Artifact:
        if self.artifact is None:
            raise ConfigError("This Classifier is not trained: call fit(DATA) first, or headstart.load(RUN_DIR).")
        return self.artifact

    def _require_predictor(self, tta: tuple[str, ...] = ()) -> Predictor:
        self._require_artifact()
        if tta:
            return Predictor(self._require_artifact(), tta=tta)
        if self._predictor is None:
            self._predictor = Predictor(self._require_artifact())
        return self._predictor

    # -- output --------------------------------------------------------------------------
    def _write_results(self, folder: Path, curves: bool = True) -> None:
        from headstart.engine.callbacks import read_epochs

        (folder / "metrics.json").write_text(
            json.dumps({split: m.to_dict() for split, m in self.metrics.items()}, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        for split, m in self.metrics.items():
            if m.task != "multilabel":
                plots.confusion_matrix(m.confusion, m.classes, folder / f"confusion_matrix_{split}.png", f"{split}: confusion matrix")  # type: ignore[arg-type]
        if curves:
            plots.learning_curves(read_epochs(folder / "epochs.csv"), folder / "learning_curves.png")

    def _report(
        self, folder: Path, kind: str, prepared: Prepared, scored: dict[str, tuple[Metrics, np.ndarray]], *, data: str | None,
        tta: tuple[str, ...] = (), without_tta: dict[str, tuple[Metrics, np.ndarray]] | None = None, seconds: float | None = None,
    ) -> Path | None:
        """``report.html`` in ``folder``; a failure only warns (see ``headstart.report``)."""
        if not self.report:
            return None
        from headstart.report import ReportInputs, write_report_safely

        inputs = ReportInputs(
            folder, kind, self._require_artifact(), prepared, {s: m for s, (m, _) in scored.items()},
            {s: p for s, (_, p) in scored.items()}, self.run_dir, data, tta, without_tta or {}, seconds,
        )
        return write_report_safely(inputs, self.console)

    def _print_model(self, network: torch.nn.Module, preprocess: Preprocess, task: str) -> None:
        total = sum(p.numel() for p in network.parameters())
        head = sum(p.numel() for p in network.head.parameters())  # type: ignore[union-attr]
        self.console.print(
            f"[bold]Model[/] {self.model.arch} ({'pretrained' if self.model.pretrained else 'random init'}) + "
            f"{self.model.head} head, task {task}: {total:,} parameters ({head:,} in the head); input "
            f"{preprocess.input_size}px, mean {preprocess.mean}, std {preprocess.std}"
        )

    def _print_data(self, prepared: Prepared, classes: list[str], run_dir: Path) -> None:
        table = Table(title="Images per class", title_justify="left")
        table.add_column("class")
        splits = list(prepared.samples)
        for split in splits:
            table.add_column(split, justify="right")
        counts = {s: np.bincount([i for x in v for i in x.labels], minlength=len(classes)) for s, v in prepared.samples.items()}
        for i, name in enumerate(classes):
            table.add_row(name, *(str(counts[s][i]) for s in splits))
        self.console.print(table)
        if prepared.skipped:
            self.console.print(f"[yellow]Skipped {len(prepared.skipped)} unreadable files[/] (listed in {run_dir / 'skipped.csv'}):")
            for s in prepared.skipped[:5]:
                self.console.print(f"  {s.path}: {s.reason}")

    def _print_summary(self, folder: Path, results: dict[str, Metrics] | None = None) -> None:
        for split, m in (results or self.metrics).items():
            self.console.print(
                f"[bold]{split}[/]: accuracy {m.accuracy:.4f}  balanced accuracy {m.balanced_accuracy:.4f}  "
                f"macro F1 {m.macro_f1:.4f}  ({m.count} images)"
            )
        self.console.print(f"Results in [bold]{folder}[/]")


def load(run_dir: str | os.PathLike) -> Classifier:
    """``headstart.load(run_dir)``: a trained Classifier from its run folder alone."""
    return Classifier.load(run_dir)
