"""Experiment loggers. ``epochs.csv`` is always written (EpochLog); on top of it:

    auto         TensorBoard when the ``tensorboard`` package is installed, else nothing more
    csv          nothing more
    tensorboard  RUN/tensorboard/phase{1,2}/ (``tensorboard --logdir RUN/tensorboard``)
    mlflow       an MLflow run per phase; $MLFLOW_TRACKING_URI, else RUN/mlruns

Only checks for packages here (no Lightning import), so options fail before any decoding.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from headstart.config import LOGGERS  # noqa: F401 - the names, validated in TrainConfig
from headstart.errors import ConfigError, disk_full

_PACKAGE = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def resolve_logger(name: str) -> str:
    """The logger ``name`` stands for on this machine; ConfigError when asked for one that
    is not installed."""
    if name == "auto":
        return "tensorboard" if _installed("tensorboard") else "csv"
    package = _PACKAGE.get(name)
    if package and not _installed(package):
        raise ConfigError(f"--logger {name}: the '{package}' package is not installed; pip install {package}, or use --logger csv.")
    return name


def make_logger(name: str, run_dir: Path, phase: int):
    """A Lightning logger for one phase's Trainer, or False (epochs.csv only)."""
    kind = resolve_logger(name)
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        _quiet_full_disk_in_threads()

        # version "": the folder is RUN/tensorboard/phaseN itself, and the progress bar shows
        # no "v_num" (it would print the version's last four characters, "ase1").
        return TensorBoardLogger(save_dir=str(run_dir), name=f"tensorboard/phase{phase}", version="", default_hp_metric=False)
    if kind == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        uri = os.environ.get("MLFLOW_TRACKING_URI") or _default_mlflow_store(run_dir)
        try:
            return MLFlowLogger(experiment_name="headstart", run_name=f"{run_dir.name}-phase{phase}", tracking_uri=uri)
        except Exception as exc:  # mlflow's own errors: one line, before any epoch runs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--logger mlflow: cannot open the tracking store {uri} ({first}); set MLFLOW_TRACKING_URI.") from None
    return False


def _quiet_full_disk_in_threads() -> None:
    """TensorBoard writes from a thread; on a full disk that thread dies with a traceback on
    stderr, and its error is raised again in the training loop at the next log call, which
    reports it in one line. Only that thread's traceback is dropped: any other error in any
    thread is printed as before."""
    previous = threading.excepthook
    if getattr(previous, "headstart", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or disk_full(args.exc_value) is None:
            previous(args)

    hook.headstart = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _default_mlflow_store(run_dir: Path) -> str:
    """A store inside the run folder: SQLite where MLflow can use it (its recommended
    backend; needs SQLAlchemy), else the plain-file store, which MLflow 3 refuses unless
    MLFLOW_ALLOW_FILE_STORE is set (mlflow-skinny has no SQLAlchemy)."""
    import importlib.util

    if importlib.util.find_spec("sqlalchemy") is not None:
        return f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (run_dir / "mlruns").resolve().as_uri()
