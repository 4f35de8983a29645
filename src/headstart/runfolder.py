"""The run folder's two descriptions, typed and versioned: read and written only here.

    RUN/config.json     ``RunOptions``: what ``--resume`` and ranks > 0 rebuild the run from
                        (model, train, image_size, cache, classes, task, the data source,
                        the files indexing skipped, the lr-find summary, the plan)
    RUN/headstart.json  ``ArtifactMeta``: what the artifact says about itself (model,
                        classes, task, preprocessing, versions, training options, data,
                        result, metrics, seconds, lr-find, plan)
    RUN/metrics.json    split -> ``headstart.metrics.Metrics`` (``read_metrics``; written by
                        headstart.pipeline.outputs): the full per-split metrics

Both carry ``format``, ``format_version`` and ``written_by`` (the headstart release that
wrote them). A ``config.json`` without a version (headstart 0.1.0 wrote none) is version 1.
A file of a newer version than this release reads is a one-line ArtifactError naming the
release that wrote it. Torch-free: the predict-only install reads these too.

Unknown fields (policy): a field this release does not know, in a file of a version it can
read, is **kept verbatim and round-tripped**: at the top level and inside the
informational sections (``data``, ``result``, headstart.json's ``train``) it lands in that
object's ``extra`` and is written back unchanged (``lr_find`` likewise); ``plan`` is kept whole
(and a headstart.json ``train`` value this release refuses keeps the whole section in
``train_extra``, ``train`` None). It never makes a run unloadable. The sections that rebuild something are strict, because
guessing there would build a different model: ``model`` (the network) and ``preprocess``
(the input contract) refuse unknown fields, and config.json's ``train`` (what ``--resume``
trains) refuses an unknown option with its close match. A release that adds a field there
raises the format version.

Example:
    >>> options = read_options(Path("runs/pets"))             # doctest: +SKIP
    >>> options.model.arch, options.image_size                 # doctest: +SKIP
    ('tf_efficientnet_lite0', 224)
    >>> read_meta(Path("runs/pets")).metrics["val"].accuracy   # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from headstart.config import ModelConfig, TrainConfig
from headstart.data.index import Sample, Skipped
from headstart.data.split import read_split
from headstart.errors import ArtifactError, ConfigError, HeadstartError
from headstart.files import atomic_write
from headstart.json_checks import check_classes_task, check_model, check_preprocess, is_number
from headstart.metrics import Metrics
from headstart.preprocess import Preprocess

OPTIONS = "config.json"
DESCRIPTION = "headstart.json"
SPLIT = "split.csv"
METRICS = "metrics.json"
OPTIONS_FORMAT = "headstart-run"
MODEL_FORMAT = "headstart-model"
OPTIONS_VERSION = 1  # config.json; a file without one is 1
MODEL_VERSION = 1  # headstart.json
MAX_BYTES = 16 << 20


def _release() -> str:
    from headstart import __version__

    return __version__


def as_json(value: Any) -> Any:
    """A deep copy as plain JSON values (tuples become lists), so what is kept is what a
    file would hold."""
    return json.loads(json.dumps(value))


def _mapping(value: object, where: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: '{name}' must be an object, got {type(value).__name__}.")
    return value


def _optional(value: object, types: tuple[type, ...], where: str, name: str) -> Any:
    """``value`` when it is None or of ``types`` (never a bool for numbers), else an error."""
    if value is None or (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
        return value
    raise ArtifactError(f"{where}: '{name}' has type {type(value).__name__}, expected {'/'.join(t.__name__ for t in types)}.")


def _split_known(cls: type, value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in value.items() if k in names}, {k: v for k, v in value.items() if k not in names}


# -- the sections ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSource:
    """Where the images came from: config.json's ``meta``, headstart.json's ``data`` (which
    adds the counts per split and the number of unreadable files)."""

    data: str | None = None  # the folder or CSV, resolved
    layout: str = ""  # folders | splits | csv (headstart.data.index)
    ignored_files: int = 0  # files that are not images, by extension
    excluded_by: str | None = None  # the --exclude CSV, resolved
    counts: Mapping[str, int] | None = None  # images per split (headstart.json only)
    skipped: int | None = None  # unreadable files (headstart.json only)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data, "layout": self.layout, "ignored_files": self.ignored_files}
        if self.excluded_by is not None:
            out["excluded_by"] = self.excluded_by
        if self.counts is not None:
            out["counts"] = dict(self.counts)
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return {**out, **as_json(self.extra)}

    @classmethod
    def parse(cls, value: object, where: str, name: str) -> DataSource:
        known, extra = _split_known(cls, _mapping(value, where, name))
        counts = _optional(known.get("counts"), (dict,), where, f"{name}.counts")
        if counts is not None and not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
            raise ArtifactError(f"{where}: '{name}.counts' must map splits to integers.")
        return cls(
            data=_optional(known.get("data"), (str,), where, f"{name}.data"),
            layout=_optional(known.get("layout", ""), (str,), where, f"{name}.layout") or "",
            ignored_files=_optional(known.get("ignored_files", 0), (int,), where, f"{name}.ignored_files") or 0,
            excluded_by=_optional(known.get("excluded_by"), (str,), where, f"{name}.excluded_by"),
            counts=counts,
            skipped=_optional(known.get("skipped"), (int,), where, f"{name}.skipped"),
            extra=extra,
        )


@dataclass(frozen=True)
class FitSummary:
    """Which phase's best checkpoint the artifact holds, by which metric (``result``)."""

    best_phase: int
    monitor: str
    best_score: float | None  # None: that phase never scored
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"best_phase": self.best_phase, "monitor": self.monitor, "best_score": self.best_score, **as_json(self.extra)}

    @classmethod
    def parse(cls, value: object, where: str) -> FitSummary:
        known, extra = _split_known(cls, _mapping(value, where, "result"))
        score = _optional(known.get("best_score"), (int, float), where, "result.best_score")
        return cls(
            best_phase=_optional(known.get("best_phase", 0), (int,), where, "result.best_phase") or 0,
            monitor=_optional(known.get("monitor", ""), (str,), where, "result.monitor") or "",
            best_score=float(score) if is_number(score) else None,
            extra=extra,
        )


@dataclass(frozen=True)
class Headline:
    """The headline metrics of one split (``metrics.<split>``)."""

    accuracy: float
    balanced_accuracy: float
    macro_f1: float

    def to_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1}

    @classmethod
    def parse(cls, value: object, where: str) -> Headline:
        value = _mapping(value, where, "metrics.<split>")
        numbers: dict[str, float] = {}
        for f in fields(cls):
            v = value.get(f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ArtifactError(f"{where}: each split in 'metrics' needs numbers accuracy, balanced_accuracy, macro_f1.")
            numbers[f.name] = float(v)
        return cls(**numbers)


@dataclass(frozen=True)
class PlanRecord:
    """A planned recipe (headstart.engine.plan.Plan.to_dict), kept whole in ``raw``; the
    fields the report shows are typed here."""

    raw: Mapping[str, Any]

    @property
    def arch(self) -> str:
        return str(self.raw.get("arch", ""))

    @property
    def input_size(self) -> int | None:
        size = self.raw.get("input_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @property
    def estimated_seconds(self) -> float:
        s = self.raw.get("estimated_seconds")
        return float(s) if is_number(s) else 0.0

    @property
    def budget_seconds(self) -> float | None:
        s = self.raw.get("budget_seconds")
        return float(s) if is_number(s) else None

    @property
    def reasons(self) -> tuple[str, ...]:
        reasons = self.raw.get("reasons")
        return tuple(str(r) for r in reasons) if isinstance(reasons, list) else ()

    @property
    def evidence(self) -> Mapping[str, Any] | None:
        """The pilot's candidates' table (headstart.engine.pilot.Evidence.to_dict), when measured."""
        evidence = self.raw.get("evidence")
        return evidence if isinstance(evidence, Mapping) else None

    @classmethod
    def parse(cls, value: object, where: str) -> PlanRecord | None:
        return None if value is None else cls(_mapping(value, where, "plan"))


@dataclass(frozen=True)
class LRSummary:
    """What the learning-rate range test found (engine/lr_find.LRFinding without the sweep)."""

    suggestion: float
    steepest: float
    min_loss_lr: float
    diverged: bool
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"suggestion": self.suggestion, "steepest": self.steepest, "min_loss_lr": self.min_loss_lr, "diverged": self.diverged}
        return {**out, **as_json(self.extra)}

    @classmethod
    def parse(cls, value: object, where: str) -> LRSummary | None:
        if value is None:
            return None
        known, extra = _split_known(cls, _mapping(value, where, "lr_find"))
        numbers = [known.get(k) for k in ("suggestion", "steepest", "min_loss_lr")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ArtifactError(f"{where}: 'lr_find' needs numbers suggestion, steepest, min_loss_lr.")
        suggestion, steepest, min_lr = (float(v) for v in numbers)  # type: ignore[arg-type]  # checked just above
        return cls(suggestion, steepest, min_lr, bool(known.get("diverged", False)), extra)


def _train_config(value: object, where: str, name: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(_mapping(value, where, name))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: '{name}': {exc}") from None


def _model_config(value: object, where: str) -> ModelConfig:
    check_model(value, where)
    try:
        return ModelConfig.from_dict(value)  # type: ignore[arg-type]  # check_model proved it a dict
    except (ConfigError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: invalid model description ({exc}).") from None


# -- reading a file -------------------------------------------------------------------------------
def _load(path: Path, missing: HeadstartError) -> dict[str, Any]:
    if not path.is_file():
        raise missing
    if path.stat().st_size > MAX_BYTES:
        raise ArtifactError(f"{path} is over {MAX_BYTES >> 20} MiB: not a headstart run file.")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({str(exc)[:100]}).") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{path} is not a headstart run file (a JSON object was expected).")
    return value


def _check_version(value: dict[str, Any], where: str, fmt: str, supported: int, written_by: object) -> int:
    """The file's format version, or a one-line error when this release cannot read it."""
    if value.get("format", fmt) != fmt:
        raise ArtifactError(f"{where} is not a {fmt} file (format {value.get('format')!r}).")
    version = value.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ArtifactError(f"{where} has format_version {version!r}; this headstart reads 1 to {supported}.")
    if version > supported:
        by = f"headstart {written_by}" if isinstance(written_by, str) else "a newer headstart"
        raise ArtifactError(
            f"{where} has format_version {version}, written by {by}; this headstart {_release()} reads up to "
            f"{supported}: upgrade headstart (pip install -U headstart) to read it."
        )
    return version


# -- config.json ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """config.json: a run's options and fixed facts, as the run trains them (the planned
    recipe and the learning rate ``--lr auto`` found, once known)."""

    model: ModelConfig
    train: TrainConfig
    image_size: int | None
    cache: bool
    classes: tuple[str, ...]
    task: str
    source: DataSource
    indexed_skipped: tuple[Skipped, ...] = ()
    lr_find: LRSummary | None = None
    plan: PlanRecord | None = None
    format_version: int = OPTIONS_VERSION
    written_by: str | None = None  # None: read from a file that did not say (headstart 0.1.0)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": OPTIONS_FORMAT,
            "format_version": OPTIONS_VERSION,
            "written_by": _release(),
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "image_size": self.image_size,
            "cache": self.cache,
            "classes": list(self.classes),
            "task": self.task,
            "meta": self.source.to_dict(),
            "indexed_skipped": [{"path": s.path, "reason": s.reason} for s in self.indexed_skipped],
        }
        if self.lr_find is not None:
            out["lr_find"] = self.lr_find.to_dict()
        if self.plan is not None:
            out["plan"] = self.plan.raw
        return as_json({**out, **self.extra})

    @classmethod
    def parse(cls, value: dict[str, Any], where: str) -> RunOptions:
        version = _check_version(value, where, OPTIONS_FORMAT, OPTIONS_VERSION, value.get("written_by"))
        known = {f.name for f in fields(cls)} | {"format", "meta"}
        check_classes_task(value, where)
        size = _optional(value.get("image_size"), (int,), where, "image_size")
        skipped = value.get("indexed_skipped", [])
        if not isinstance(skipped, list) or not all(isinstance(s, dict) and isinstance(s.get("path"), str) for s in skipped):
            raise ArtifactError(f"{where}: 'indexed_skipped' must be a list of {{path, reason}} objects.")
        return cls(
            model=_model_config(value.get("model"), where),
            train=_train_config(value.get("train"), where, "train"),
            image_size=size,
            cache=bool(_optional(value.get("cache", True), (bool,), where, "cache")),
            classes=tuple(value["classes"]),
            task=value["task"],
            source=DataSource.parse(value.get("meta", {}), where, "meta"),
            indexed_skipped=tuple(Skipped(s["path"], str(s.get("reason", ""))) for s in skipped),
            lr_find=LRSummary.parse(value.get("lr_find"), where),
            plan=PlanRecord.parse(value.get("plan"), where),
            format_version=version,
            written_by=_optional(value.get("written_by"), (str,), where, "written_by"),
            extra={k: v for k, v in value.items() if k not in known},
        )


def read_options(run_dir: Path) -> RunOptions:
    """RUN/config.json, checked; a one-line error saying how to start a run there."""
    path = Path(run_dir) / OPTIONS
    missing = ConfigError(f"{run_dir} has no {OPTIONS}: nothing to resume (start with 'headstart train DATA --out {run_dir}').")
    return RunOptions.parse(_load(path, missing), str(path))


def write_options(run_dir: Path, options: RunOptions) -> None:
    atomic_write(Path(run_dir) / OPTIONS, json.dumps(options.to_dict(), indent=2, ensure_ascii=False))


def trained_on(run_dir: Path) -> Path | None:
    """The data a run was trained on, as its config.json records it (None: unknown or unreadable)."""
    try:
        data = read_options(run_dir).source.data
    except HeadstartError:
        return None
    return Path(data) if data is not None else None


@dataclass(frozen=True)
class RunSpec:
    """A run's fixed facts: the classes, the task, the split and where the data came from.
    Written to config.json and split.csv; read back by ``--resume`` and ranks > 0."""

    classes: list[str]
    task: str
    splits: dict[str, list[Sample]]
    skipped: list[Skipped]
    source: DataSource

    @classmethod
    def read(cls, run_dir: Path, options: RunOptions) -> RunSpec:
        splits = read_split(Path(run_dir) / SPLIT, list(options.classes))
        return cls(list(options.classes), options.task, splits, list(options.indexed_skipped), options.source)


# -- headstart.json -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactMeta:
    """headstart.json: everything the weights need to be used and understood."""

    model: ModelConfig
    classes: tuple[str, ...]
    task: str
    preprocess: Preprocess
    versions: Mapping[str, str] = field(default_factory=dict)
    train: TrainConfig | None = None
    train_extra: Mapping[str, Any] = field(default_factory=dict)  # options this release does not know
    data: DataSource | None = None
    result: FitSummary | None = None
    metrics: Mapping[str, Headline] = field(default_factory=dict)
    seconds: float | None = None  # training wall time
    lr_find: LRSummary | None = None
    plan: PlanRecord | None = None
    format_version: int = MODEL_VERSION
    written_by: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.model.threshold

    def __getitem__(self, key: str) -> Any:
        """Deprecated: ``artifact.meta`` was the headstart.json dict; read its fields instead."""
        warnings.warn(
            f"artifact.meta[{key!r}]: artifact.meta is a typed ArtifactMeta now; read its fields "
            "(artifact.meta.metrics, .train, .result, ...). Subscripting is removed in 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Deprecated, like ``__getitem__``."""
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_VERSION,
            "written_by": _release(),
            "model": self.model.to_dict(),
            "classes": list(self.classes),
            "task": self.task,
            "preprocess": self.preprocess.to_dict(),
            "versions": dict(self.versions),
        }
        if self.train is not None or self.train_extra:
            out["train"] = {**(self.train.to_dict() if self.train else {}), **self.train_extra}
        optional = {
            "data": self.data.to_dict() if self.data else None,
            "result": self.result.to_dict() if self.result else None,
            "metrics": {split: m.to_dict() for split, m in self.metrics.items()} if self.metrics else None,
            "seconds": self.seconds,
            "lr_find": self.lr_find.to_dict() if self.lr_find else None,
            "plan": self.plan.raw if self.plan else None,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return as_json({**out, **self.extra})

    @classmethod
    def parse(cls, value: dict[str, Any], where: str) -> ArtifactMeta:
        versions = _optional(value.get("versions", {}), (dict,), where, "versions") or {}
        written_by = value.get("written_by", versions.get("headstart"))
        if value.get("format") != MODEL_FORMAT:
            raise ArtifactError(f"{where} is not a headstart model description.")
        version = _check_version(value, where, MODEL_FORMAT, MODEL_VERSION, written_by)
        check_classes_task(value, where)
        model = _model_config(value.get("model"), where)
        preprocess = check_preprocess(value.get("preprocess"), where)
        train: TrainConfig | None = None
        train_extra: dict[str, Any] = {}
        if value.get("train") is not None:
            known, train_extra = _split_known(TrainConfig, _mapping(value["train"], where, "train"))
            try:
                train = _train_config(known, where, "train")
            except ArtifactError:  # informational here: a value this release does not accept is kept, not refused
                train, train_extra = None, dict(value["train"])
        metrics = _optional(value.get("metrics", {}), (dict,), where, "metrics") or {}
        seconds = _optional(value.get("seconds"), (int, float), where, "seconds")
        names = {f.name for f in fields(cls)} - {"train_extra", "extra"} | {"format"}
        return cls(
            model=model,
            classes=tuple(value["classes"]),
            task=value["task"],
            preprocess=preprocess,
            versions={str(k): str(v) for k, v in versions.items()},
            train=train,
            train_extra=train_extra,
            data=DataSource.parse(value["data"], where, "data") if value.get("data") is not None else None,
            result=FitSummary.parse(value["result"], where) if value.get("result") is not None else None,
            metrics={str(split): Headline.parse(m, where) for split, m in metrics.items()},
            seconds=float(seconds) if seconds is not None else None,
            lr_find=LRSummary.parse(value.get("lr_find"), where),
            plan=PlanRecord.parse(value.get("plan"), where),
            format_version=version,
            written_by=written_by if isinstance(written_by, str) else None,
            extra={k: v for k, v in value.items() if k not in names},
        )


def read_meta(run_dir: Path) -> ArtifactMeta:
    """RUN/headstart.json, checked field by field (a description is data, never code)."""
    path = Path(run_dir) / DESCRIPTION
    missing = ArtifactError(
        f"{path} not found: {run_dir} is not a finished headstart run (train one with 'headstart train DATA --out {run_dir}')."
    )
    return ArtifactMeta.parse(_load(path, missing), str(path))


def read_meta_file(path: Path) -> ArtifactMeta:
    """A description in headstart.json's schema at any path (a timm export's headstart_meta.json)."""
    return ArtifactMeta.parse(_load(Path(path), ArtifactError(f"{path} not found.")), str(path))


def read_metrics(folder: Path) -> dict[str, Metrics]:
    """FOLDER/metrics.json (a run's, or an evaluation's RUN/eval-*) as split -> Metrics,
    checked; {} when the folder has none.

    Example:
        >>> read_metrics(Path("runs/pets"))["val"].macro_f1   # doctest: +SKIP
        0.91
    """
    path = Path(folder) / METRICS
    if not path.is_file():
        return {}
    try:
        splits = _load(path, ArtifactError(f"{path} not found."))
        return {str(split): Metrics.from_dict(m, f"{path}: split {split!r}") for split, m in splits.items()}
    except ArtifactError as exc:
        raise ArtifactError(f"{exc} Restore the file that headstart wrote, or remove it to go on without these metrics.") from None


def write_meta(run_dir: Path, meta: ArtifactMeta) -> None:
    """headstart.json, atomically: written last, so a folder without it is incomplete."""
    atomic_write(Path(run_dir) / DESCRIPTION, json.dumps(meta.to_dict(), indent=2, ensure_ascii=False))
