"""Renamed public names keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import warnings

import pytest

from headstart import Classifier
from headstart.config import TrainConfig
from headstart.errors import ConfigError


def test_train_config_is_the_new_name_and_train_still_works():
    cfg = TrainConfig(seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = Classifier(train_config=cfg)  # the new name warns about nothing
        assert clf.train_config == cfg
    with pytest.warns(DeprecationWarning, match="train_config"):
        old = Classifier(train=cfg)
    assert old.train_config == cfg
    with pytest.warns(DeprecationWarning, match="Classifier.train is now Classifier.train_config"):
        assert old.train == cfg
    with pytest.raises(ConfigError, match="not both"), pytest.warns(DeprecationWarning):
        Classifier(train=cfg, train_config=cfg)


def test_the_fit_phase_has_a_name_of_its_own():
    from headstart.engine import fit

    with pytest.warns(DeprecationWarning, match="PhaseSchedule"):
        assert fit.Phase is fit.PhaseSchedule
    assert [p.number for p in fit.plan_phases(TrainConfig(frozen_epochs=1, finetune_epochs=1), pretrained=True)] == [1, 2]


def test_artifact_meta_still_reads_like_the_old_dict():
    from pathlib import Path

    from headstart.runfolder import read_meta

    meta = read_meta(Path(__file__).parent / "fixtures" / "run-0.1.0")
    with pytest.warns(DeprecationWarning, match="typed ArtifactMeta"):
        assert meta["result"]["best_phase"] == meta.result.best_phase  # type: ignore[union-attr]
    with pytest.warns(DeprecationWarning):
        assert meta.get("no such field", 3) == 3
