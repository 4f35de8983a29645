"""Experiment logs: epochs.csv always, TensorBoard when installed, clear errors otherwise."""

from __future__ import annotations

import os

import pytest

from headstart.config import TrainConfig
from headstart.engine import loggers
from headstart.errors import ConfigError

FAST = dict(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0, num_workers=0)


@pytest.mark.slow
def test_tensorboard_gets_losses_metrics_and_learning_rates(tmp_path, make_images, tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_images(tmp_path / "data", per_class=6)
    tiny(train=TrainConfig(logger="tensorboard", **FAST)).fit(data, tmp_path / "run")
    assert (tmp_path / "run" / "epochs.csv").is_file()
    for phase in ("phase1", "phase2"):
        events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / phase)).Reload()
        tags = set(events.Tags()["scalars"])
        assert {"train_loss", "val_loss", "val_acc", "lr-AdamW/head"} <= tags, tags


def test_auto_is_tensorboard_when_installed_else_csv(monkeypatch):
    assert loggers.resolve_logger("auto") == "tensorboard"
    monkeypatch.setattr(loggers, "_installed", lambda package: False)
    assert loggers.resolve_logger("auto") == "csv"


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_asking_for_a_missing_logger_is_one_clear_error(name, monkeypatch, tiny):
    monkeypatch.setattr(loggers, "_installed", lambda package: False)
    with pytest.raises(ConfigError, match=f"--logger {name}: the '{name}' package is not installed; pip install {name}"):
        tiny(train=TrainConfig(logger=name, **FAST))


def test_unknown_logger_names_the_choices():
    with pytest.raises(ConfigError, match="tensorboard"):
        TrainConfig(logger="tensorbord")


def test_default_mlflow_store_lives_in_the_run_folder(tmp_path, monkeypatch):
    """MLflow 3 refuses a plain-file store unless told; SQLite is used where it can be."""
    import importlib.util

    from headstart.engine import loggers

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "sqlalchemy" else real(name, *a))
    assert loggers._default_mlflow_store(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sqlalchemy" else real(name, *a))
    assert loggers._default_mlflow_store(tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
