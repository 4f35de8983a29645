"""The Classifier facade: fit / evaluate / predict / export / load. The CLI calls only this.

Each verb delegates to its home: training to ``headstart.pipeline.train``, evaluation to
``headstart.pipeline.evaluate``, prediction to ``headstart.predict``, export to
``headstart.export``.

Example:
    >>> import headstart
    >>> clf = headstart.Classifier("tf_efficientnet_lite0")          # doctest: +SKIP
    >>> clf.fit("pets/", out="runs/pets")                            # doctest: +SKIP
    >>> clf.predict(["cat.jpg"], top_k=3)[0].top                     # doctest: +SKIP
    >>> headstart.load("runs/pets").evaluate("pets-test/")           # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from headstart.artifact import Artifact, load_artifact
from headstart.config import ModelConfig, TrainConfig
from headstart.engine.loggers import resolve_logger
from headstart.errors import ConfigError
from headstart.metrics import Metrics
from headstart.pipeline.outputs import default_run_dir
from headstart.pipeline.train import RunRequest, TrainedRun, Training, resolve_task
from headstart.predict.base import BatchPredictor, Prediction
from headstart.predict.eager import Predictor
from headstart.predict.inputs import iter_sources
from headstart.preprocess import ImageSource
from headstart.process import guarded
from headstart.runfolder import RunOptions
from headstart.tta import tta_views

if TYPE_CHECKING:
    import lightning as L

    from headstart.engine.lr_find import LRFinding
    from headstart.export.run import ExportResult
    from headstart.pipeline.recipe import Recipe
    from headstart.predict.resolve import ModelChoice
    from headstart.share.hub import PushResult

__all__ = ["Classifier", "load", "default_run_dir", "resolve_task"]

TTA = bool | str | tuple[str, ...]


class Classifier:
    """Build, train, evaluate and use an image classifier.

    Args:
        arch: any timm architecture name, or ``convnet_tiny``/``convnet_small``.
        model: full model options (overrides ``arch`` when given).
        train_config: training options (two phases, learning rates, callbacks...);
            ``train=`` is its old name, deprecated.
        image_size: model input side; default: the architecture's pretrained config.
        cache: keep decoded images in the on-disk cache (see ``headstart.data.store``).
        report: write ``report.html`` after fit and evaluate (see ``headstart.report``).

    ``model``, ``train_config`` and ``image_size`` read back what this classifier is: the
    options asked for until it is trained, then what was trained (a planned recipe's base,
    side and options; the learning rate ``lr='auto'`` found), or what a loaded run holds.

    Example:
        >>> clf = Classifier(train_config=TrainConfig(time_budget=600)).fit("pets/")   # doctest: +SKIP
        >>> clf.model.arch, clf.image_size                                              # doctest: +SKIP
        ('tf_efficientnet_lite0', 224)
    """

    def __init__(
        self,
        arch: str = ModelConfig.arch,
        *,
        model: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        image_size: int | None = None,
        cache: bool = True,
        console: Console | None = None,
        report: bool = True,
        train: TrainConfig | None = None,
    ) -> None:
        if train is not None:
            warnings.warn(
                "Classifier(train=...) is now Classifier(train_config=...); train= is removed in 0.3.",
                DeprecationWarning,
                stacklevel=2,
            )
            if train_config is not None:
                raise ConfigError("Give train_config= only (train= is its old name), not both.")
            train_config = train
        self._model = model or ModelConfig(arch=arch)
        self._train_config = train_config or TrainConfig()
        resolve_logger(self._train_config.logger)  # a logger asked for but not installed fails here, not after decoding
        if self._train_config.lr == "auto" and not self._model.pretrained:
            raise ConfigError(
                "lr='auto' runs the range test on the frozen pretrained base, but pretrained=False; "
                "give a number (--lr 3e-3) when training from scratch."
            )
        if image_size is not None and image_size < 16:
            raise ConfigError(f"image_size={image_size} is too small; use 16 or more.")
        self._image_size = image_size
        self.cache = cache
        self.report = report
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.run_dir: Path | None = None
        self.artifact: Artifact | None = None
        self.metrics: dict[str, Metrics] = {}
        self._predictor: BatchPredictor | None = None
        self._choice: ModelChoice | None = None  # which file predicts, after load (headstart.predict.resolve)
        self._trained: RunOptions | None = None  # the options as trained, once fit/resume ran

    # -- what this classifier is -----------------------------------------------------------
    @property
    def model(self) -> ModelConfig:
        """The model options: as trained (a planned run: the planned base), as loaded, or as asked."""
        if self._trained is not None:
            return self._trained.model
        return self.artifact.model if self.artifact is not None else self._model

    @property
    def train_config(self) -> TrainConfig:
        """The training options: as trained (planned, ``lr='auto'`` resolved), as loaded, or as asked."""
        if self._trained is not None:
            return self._trained.train
        if self.artifact is not None and self.artifact.meta.train is not None:
            return self.artifact.meta.train
        return self._train_config

    @property
    def train(self) -> TrainConfig:
        """Deprecated: ``train_config`` (this name read like the verb)."""
        warnings.warn("Classifier.train is now Classifier.train_config; train is removed in 0.3.", DeprecationWarning, stacklevel=2)
        return self.train_config

    @property
    def image_size(self) -> int | None:
        """The input side: the trained or loaded model's, else as asked (None: the architecture's)."""
        if self.artifact is not None:
            return self.artifact.preprocess.input_size
        if self._trained is not None:
            return self._trained.image_size
        return self._image_size

    # -- training ------------------------------------------------------------------------
    @guarded()
    def fit(
        self,
        data: str | os.PathLike,
        out: str | os.PathLike | None = None,
        callbacks: list[L.Callback] | None = None,
        exclude: str | os.PathLike | None = None,
    ) -> Classifier:
        """Index ``data``, split it, train both phases, evaluate, and save the run folder.

        ``exclude``: a CSV of files to leave out (``label_issues.csv``: its rows marked
        exclude = true; see ``headstart.label_issues``)."""
        return self._keep(self._training().fit(data, out, callbacks, exclude))

    @classmethod
    @guarded()
    def resume(
        cls,
        run_dir: str | os.PathLike,
        callbacks: list[L.Callback] | None = None,
        console: Console | None = None,
        report: bool = True,
        placement: dict[str, Any] | None = None,
    ) -> Classifier:
        """Continue an interrupted run from its last checkpoint (same options, same split).

        ``placement`` may change where it runs: devices, num_nodes, strategy, accelerator,
        dist_timeout (e.g. resume a 2-GPU run on 4)."""
        console = console or Console(stderr=True, soft_wrap=True)
        training, options = Training.for_resume(Path(run_dir), placement or {}, console, report)
        r = training.request
        clf = cls(model=r.model, train_config=r.train, image_size=r.image_size, cache=r.cache, console=console, report=report)
        return clf._keep(training.resume(Path(run_dir), options, callbacks))

    @guarded()
    def lr_find(self, data: str | os.PathLike, out: str | os.PathLike | None = None) -> LRFinding:
        """Learning-rate range test for the head on the frozen base; writes lr_find.png/.json.

        Example:
            >>> Classifier().lr_find("pets/").suggestion          # doctest: +SKIP
        """
        return self._training().lr_find(data, out)

    def plan(self, data: str | os.PathLike) -> Recipe:
        """The recipe ``fit`` would train on ``data``, measured and planned, without training.

        Example:
            >>> print(Classifier(train=TrainConfig(time_budget=300)).plan("pets/").plan.describe())  # doctest: +SKIP
        """
        return self._training().planned_recipe(data)

    def _training(self) -> Training:
        request = RunRequest(self._model, self._train_config, self._image_size, self.cache, self.report)
        return Training(request, self.console)

    def _keep(self, run: TrainedRun) -> Classifier:
        self._trained = run.options
        if run.artifact is not None:  # rank 0: the trained model; other ranks keep nothing
            self.run_dir, self.artifact, self.metrics, self._predictor = run.run_dir, run.artifact, dict(run.metrics), run.predictor
        return self

    # -- evaluation ----------------------------------------------------------------------
    @guarded()
    def evaluate(self, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None, tta: TTA = False) -> dict[str, Metrics]:
        """Metrics on another folder/CSV (its test split if it has one), or on this run's
        own validation/test split when ``data`` is None. Written under ``out``.

        ``tta``: True (original + horizontal flip) or view names from ``headstart.tta.VIEWS``;
        the report then shows the metrics with and without it."""
        from headstart.pipeline.evaluate import evaluate

        results = evaluate(
            self._require_artifact(),
            self.run_dir,
            self._eager_predictor,
            data,
            out,
            tta_views(tta),
            cache=self.cache,
            threshold=self.model.threshold,
            console=self.console,
            report=self.report,
        )
        if data is None:
            self.metrics = results
        return results

    # -- prediction ----------------------------------------------------------------------
    def predictor(self, tta: TTA = ()) -> BatchPredictor:
        """The batched predictor of this model (after ``load``: the file the resolver picked);
        ``tta``: True or view names from ``headstart.tta.VIEWS``, fixed at construction (a new
        predictor when given).

        Example:
            >>> headstart.load("runs/pets").predictor(tta="hflip").predict(["cat.jpg"])   # doctest: +SKIP
        """
        views = tta_views(tta)
        if self._choice is not None:
            from headstart.predict.resolve import load_predictor

            return load_predictor(self._choice, tta=views) if views else self._predictor  # type: ignore[return-value]
        return self._eager_predictor(views)

    def _eager_predictor(self, views: tuple[str, ...] = ()) -> Predictor:
        """The eager network, what evaluation scores."""
        artifact = self._require_artifact()
        if views:
            return Predictor(artifact, tta=views)
        if not isinstance(self._predictor, Predictor):
            return Predictor(artifact)
        return self._predictor

    @guarded()
    def predict(self, sources: list[ImageSource] | ImageSource, top_k: int = 5, tta: TTA = False) -> list[Prediction]:
        """Class names and probabilities for files, folders, bytes or PIL images
        (``tta``: average over flipped/cropped views, see ``headstart.tta``)."""
        predictor = self.predictor(tta)
        if not isinstance(sources, list):
            sources = [sources]
        expanded: list[ImageSource] = []
        for s in sources:
            expanded.extend(iter_sources([s]) if isinstance(s, (str, os.PathLike)) else [s])
        return predictor.predict(expanded, top_k=top_k)

    @guarded()
    def predict_to_csv(
        self,
        sources: list[str],
        path: str | os.PathLike,
        top_k: int = 5,
        tta: TTA = False,
        resume: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> int:
        """Predictions for files, folders or CSVs (a ``path`` column) into a CSV, streamed:
        any number of inputs, rows on disk as they come; ``resume`` continues an
        interrupted file. Returns the number of rows in the file."""
        from headstart.predict.csvfile import predict_to_file

        new, old = predict_to_file(self.predictor(tta), sources, Path(path), top_k, resume=resume, shard=shard)
        return new + old

    @guarded()
    def export(
        self, format: str = "onnx", out: str | os.PathLike | None = None, int8: bool = False, min_agreement: float = 0.98
    ) -> ExportResult:
        """Write the model as ONNX, TorchScript or a timm folder (``"timm"``, see
        ``headstart.share``) and prove it predicts the same (parity);
        ``int8``: also ``model.int8.onnx``, kept when its top-1 agreement with fp32 has a 95 %
        lower bound >= ``min_agreement`` (``headstart.export.agreement``).

        Returns an ``ExportResult`` (path, format, parity report, measured speed, int8 result);
        raises ExportError and keeps nothing when parity fails.

        Example:
            >>> headstart.load("runs/pets").export("onnx").path       # doctest: +SKIP
        """
        from headstart.export.run import export

        if self.run_dir is None:
            raise ConfigError("Export needs a trained run: call fit(DATA) first, or headstart.load(RUN_DIR).")
        from headstart.share.hub import refuse_cache_default

        refuse_cache_default(Path(self.run_dir), out)  # a model fetched from the Hub lives in the Hugging Face cache
        if int8 and format != "onnx":
            raise ConfigError(f"int8 quantizes the ONNX export; use format 'onnx' (got {format!r}).")
        if format == "timm":  # a folder timm.create_model("local-dir:...") loads (headstart.share)
            from headstart.share.folder import export_timm

            return export_timm(self._require_artifact(), Path(self.run_dir), out)
        return export(self._require_artifact(), Path(self.run_dir), format, out, int8=int8, min_agreement=min_agreement)

    @guarded()
    def push(self, repo: str, private: bool = False) -> PushResult:
        """Export in timm's layout with a model card and upload it to the Hugging Face Hub
        (``headstart.share``); returns a PushResult (repo, url, files).

        Example:
            >>> headstart.load("runs/pets").push("ann/pets").url       # doctest: +SKIP
        """
        from headstart.share.folder import push

        if self.run_dir is None:
            raise ConfigError("Push needs a trained run: call fit(DATA) first, or headstart.load(RUN_DIR).")
        return push(self._require_artifact(), Path(self.run_dir), repo, private)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str | None = None, backend: str = "auto") -> Classifier:
        """A trained classifier from its run folder alone, an exported ``.onnx`` (predict only),
        or a timm-layout export / ``hf-hub:USER/REPO`` (``headstart.share``, eager).

        ``backend`` (auto, torch, onnx, onnx-int8) picks the file that predicts, by the rule of
        ``headstart.predict.resolve`` that ``predict`` and ``serve`` share; when the run holds
        several, the choice is printed. ``device``: where the eager network predicts."""
        from headstart.predict.resolve import load_predictor, resolve
        from headstart.share.folder import load_shared

        shared = load_shared(run_dir)
        if shared is not None:
            artifact, run_dir = shared
            clf = cls(model=artifact.model, image_size=artifact.preprocess.input_size)
            clf.artifact, clf.run_dir = artifact, Path(run_dir)
            clf._predictor = Predictor(artifact, device=device)
            return clf
        choice = resolve(run_dir, backend)
        predictor = load_predictor(choice, device=device)
        if choice.run_dir is None:  # a bare exported file: prediction only
            clf = cls(image_size=predictor.preprocess.input_size)
        else:
            artifact = load_artifact(run_dir)
            clf = cls(model=artifact.model, image_size=artifact.preprocess.input_size)
            clf.artifact, clf.run_dir = artifact, Path(run_dir)
        if choice.others:
            clf.console.print(choice.summary(), highlight=False, markup=False)
        clf._choice, clf._predictor = choice, predictor
        return clf

    @property
    def classes(self) -> list[str]:
        if self.artifact is None and self._predictor is not None:
            return self._predictor.classes
        return self._require_artifact().classes

    def _require_artifact(self) -> Artifact:
        if self.artifact is None:
            raise ConfigError("This Classifier is not trained: call fit(DATA) first, or headstart.load(RUN_DIR).")
        return self.artifact


def load(run_dir: str | os.PathLike, backend: str = "auto") -> Classifier:
    """``headstart.load(run_dir)``: a trained Classifier from its run folder (or an exported .onnx) alone."""
    return Classifier.load(run_dir, backend=backend)
