"""lr-find: the range test, its suggestion, `train --lr auto`, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from headstart.cli import app
from headstart.config import TrainConfig
from headstart.engine.lr_find import range_test, suggest
from headstart.errors import ConfigError


def test_suggestion_is_the_steepest_descent_below_the_minimum():
    lrs = np.logspace(-6, 1, 200)
    x = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3))  # falls fastest at lr 1e-3
    loss[x > 0] += (x[x > 0] ** 2) * 5  # diverges past lr 1
    suggestion, steepest, min_lr = suggest(lrs, loss)
    assert math.isclose(math.log10(steepest), -3, abs_tol=0.1)
    assert 1e-1 < min_lr <= 1.5 and suggestion == steepest


@pytest.mark.slow
def test_range_test_sweeps_a_copy_and_stops_at_divergence():
    torch.manual_seed(0)
    y = torch.randint(0, 3, (120,))
    features = torch.randn(120, 16) + 3 * nn.functional.one_hot(y, 16).float()
    head = nn.Linear(16, 3)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    finding = range_test(
        head, features, y, task="multiclass", config=TrainConfig(optimizer="sgd", batch_size=16), start_lr=1e-5, end_lr=1e3, steps=150
    )
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())  # the real head is untouched
    assert finding.diverged and len(finding.lrs) < 150  # SGD at lr 1e3 blows up
    assert np.all(np.diff(finding.lrs) > 0)
    assert 1e-5 < finding.suggestion <= finding.min_loss_lr / 10
    assert finding.smoothed[int(np.argmin(finding.smoothed))] < finding.smoothed[0] * 0.5  # it did learn


@pytest.mark.slow
def test_train_lr_auto_records_the_found_rate(tmp_path, make_images, tiny, convnet_weights):
    data = make_images(tmp_path / "data", per_class=8)
    clf = tiny(train=TrainConfig(lr="auto", frozen_epochs=2, finetune_epochs=0, batch_size=8, patience=0, num_workers=0))
    clf.fit(data, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    lr = config["train"]["lr"]
    assert isinstance(lr, float) and lr == config["lr_find"]["suggestion"]
    meta = json.loads((tmp_path / "run" / "headstart.json").read_text())
    assert meta["lr_find"]["suggestion"] == lr and meta["train"]["lr"] == lr
    assert (tmp_path / "run" / "lr_find.png").stat().st_size > 1000
    rows = (tmp_path / "run" / "epochs.csv").read_text().splitlines()
    assert math.isclose(float(rows[1].split(",")[7]), lr, rel_tol=1e-6)  # phase 1 started at the found rate


def test_lr_auto_needs_a_pretrained_base(tiny):
    with pytest.raises(ConfigError, match="from scratch"):
        tiny(pretrained=False, train=TrainConfig(lr="auto"))
    with pytest.raises(ConfigError, match="or 'auto'"):
        TrainConfig(lr="fast")


@pytest.mark.slow
def test_cli_lr_find(tmp_path, make_images, convnet_weights):
    data = make_images(tmp_path / "data", per_class=8)
    result = CliRunner().invoke(
        app,
        [
            "lr-find",
            str(data),
            "--arch",
            "convnet_tiny",
            "--weights",
            convnet_weights,
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--out",
            str(tmp_path / "lr"),
        ],
    )
    assert result.exit_code == 0, result.output
    suggestion = json.loads((tmp_path / "lr" / "lr_find.json").read_text())["suggestion"]
    assert math.isclose(float(result.stdout.strip().splitlines()[0]), suggestion, rel_tol=0.01)
    assert (tmp_path / "lr" / "lr_find.png").is_file()
    bad = CliRunner().invoke(app, ["train", str(data), "--lr", "fast"])
    assert bad.exit_code != 0 and "give a number" in bad.output
