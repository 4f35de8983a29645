"""Training end to end on tiny data: tasks, heads, phases, outputs, reload, resume."""

from __future__ import annotations

import csv
import json
import shutil

import lightning as L
import numpy as np
import pytest
import torch
from _imagegen import class_folders, split_folders
from safetensors.torch import save_file

import headstart
from headstart.config import ModelConfig, TrainConfig
from headstart.engine.module import ClassifierModule
from headstart.errors import ConfigError, DataError, WeightsError
from headstart.models import build_network
from headstart.models.convnet import create_convnet

FAST = TrainConfig(frozen_epochs=2, finetune_epochs=1, batch_size=8, patience=0, lr=1e-2, num_workers=0)


@pytest.fixture(scope="module")
def convnet_weights(tmp_path_factory):
    """A 'pretrained' convnet_tiny weights file, as a user would pass with --weights."""
    path = tmp_path_factory.mktemp("w") / "convnet_tiny.safetensors"
    torch.manual_seed(0)
    save_file(create_convnet("convnet_tiny").state_dict(), str(path))
    return str(path)


def tiny(weights: str | None = None, head: str = "linear", train: TrainConfig = FAST, **model) -> headstart.Classifier:
    cfg = ModelConfig(arch="convnet_tiny", pretrained=weights is not None, weights=weights, head=head, **model)
    return headstart.Classifier(model=cfg, train=train, image_size=32)


def test_multiclass_run_folder_and_reload_give_identical_probabilities(tmp_path, convnet_weights):
    data = class_folders(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    clf = tiny(convnet_weights, train=TrainConfig(frozen_epochs=8, finetune_epochs=2, batch_size=8, patience=0, lr=3e-2)).fit(data, out=run)
    for name in ("model.safetensors", "headstart.json", "metrics.json", "epochs.csv", "learning_curves.png",
                 "confusion_matrix_val.png", "split.csv", "skipped.csv", "config.json"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "headstart.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] and meta["task"] == "multiclass"
    assert meta["preprocess"]["input_size"] == 32 and meta["versions"]["torch"]
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    assert {"accuracy", "balanced_accuracy", "per_class", "confusion"} <= metrics.keys()
    assert {"precision", "recall", "f1", "support"} <= metrics["per_class"][0].keys()
    assert metrics["accuracy"] >= 0.8  # colours are trivially separable
    rows = list(csv.DictReader((run / "epochs.csv").open()))
    assert [(r["phase"], r["epoch"]) for r in rows] == [("1", str(i)) for i in range(1, 9)] + [("2", "1"), ("2", "2")]

    assert clf.predict(str(data / "red" / "red_0.png"))[0].top[0][0] == "red"


def test_reloaded_model_predicts_identically(tmp_path, convnet_weights):
    data = class_folders(tmp_path / "data", per_class=6)
    clf = tiny(convnet_weights).fit(data, out=tmp_path / "run")
    files = [str(p) for p in sorted(data.rglob("*.png"))[:5]]
    before = clf.predict(files, top_k=3)
    moved = shutil.copytree(tmp_path / "run", tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "run")
    after = headstart.load(moved).predict(files, top_k=3)
    for a, b in zip(before, after):
        np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), rtol=1e-5, atol=1e-6)
        assert a.top[0][0] == b.top[0][0]
        assert abs(sum(a.probs.values()) - 1) < 1e-5
        assert len(a.top) == 3


def test_binary_task_has_one_logit_and_two_probabilities(tmp_path, convnet_weights):
    data = class_folders(tmp_path / "data", classes=("red", "blue"), per_class=8)
    clf = tiny(convnet_weights).fit(data, out=tmp_path / "run")
    assert clf.artifact.task == "binary"
    assert clf.artifact.network.head[-1].out_features == 1
    pred = clf.predict(str(data / "red" / "red_0.png"))[0]
    assert set(pred.probs) == {"blue", "red"} and abs(sum(pred.probs.values()) - 1) < 1e-6
    assert clf.metrics["val"].threshold == 0.5


def test_multilabel_csv(tmp_path, convnet_weights):
    class_folders(tmp_path / "imgs", classes=("red", "green", "blue", "yellow"), per_class=6, nested=False)
    tags = {"red": "warm", "yellow": "warm;bright", "green": "bright", "blue": "cold"}
    rows = ["path,labels"] + [f"imgs/{c}/{c}_{i}.png,{tags[c]}" for c in tags for i in range(6)]
    (tmp_path / "tags.csv").write_text("\n".join(rows) + "\n")
    clf = tiny(convnet_weights).fit(tmp_path / "tags.csv", out=tmp_path / "run")
    assert clf.artifact.task == "multilabel" and clf.classes == ["bright", "cold", "warm"]
    m = clf.metrics["val"]
    assert len(m.confusion) == 3 and len(m.confusion[0]) == 2  # a 2x2 table per label
    pred = clf.predict(str(tmp_path / "imgs/yellow/yellow_0.png"))[0]
    assert all(0 <= p <= 1 for p in pred.probs.values())


@pytest.mark.parametrize("head, hidden", [("linear", ()), ("bottleneck", (16,)), ("mlp", (24, 12))])
def test_heads_and_balancing_options_train(tmp_path, convnet_weights, head, hidden):
    data = class_folders(tmp_path / "data", per_class=6)
    train = TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0, num_workers=0,
                        class_weights="balanced", oversample=head == "mlp", schedule="plateau" if head == "mlp" else "cosine")
    clf = tiny(convnet_weights, head=head, hidden=hidden, dropout=0.1, train=train).fit(data, out=tmp_path / "run")
    linears = [m for m in clf.artifact.network.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [*hidden, 3]


def test_frozen_and_partial_unfreeze_parameter_counts(convnet_weights):
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=True, weights=convnet_weights), 3)
    counts = {}
    for phase, unfreeze in ((1, 0), (2, 1), (2, 0)):
        ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(unfreeze=unfreeze), phase=phase, head_lr=1e-3, base_lr=1e-4)
        counts[(phase, unfreeze)] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    head = sum(p.numel() for p in net.head.parameters())
    total = sum(p.numel() for p in net.parameters())
    assert counts[(1, 0)] == head
    assert head < counts[(2, 1)] < total
    assert counts[(2, 0)] == total


def test_split_layout_evaluates_test_split_and_other_folders(tmp_path, convnet_weights):
    data = split_folders(tmp_path / "data")
    clf = tiny(convnet_weights).fit(data, out=tmp_path / "run")
    assert set(clf.metrics) == {"val", "test"}
    assert (tmp_path / "run" / "confusion_matrix_test.png").is_file()
    other = class_folders(tmp_path / "other", classes=("green", "red"), per_class=3)
    results = headstart.load(tmp_path / "run").evaluate(other)
    assert results["data"].count == 6
    assert (tmp_path / "run" / "eval-other" / "metrics.json").is_file()
    own = headstart.load(tmp_path / "run").evaluate()
    assert set(own) == {"val", "test"}
    class_folders(tmp_path / "alien", classes=("green", "yellow"), per_class=2)
    with pytest.raises(DataError, match="yellow"):
        headstart.load(tmp_path / "run").evaluate(tmp_path / "alien")


def test_unreadable_files_are_skipped_listed_and_predicted_as_errors(tmp_path, convnet_weights):
    data = class_folders(tmp_path / "data", per_class=6)
    (data / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    clf = tiny(convnet_weights).fit(data, out=tmp_path / "run")
    skipped = list(csv.DictReader((tmp_path / "run" / "skipped.csv").open()))
    assert [r["path"].endswith("broken.jpg") for r in skipped] == [True]
    assert skipped[0]["reason"]
    n = clf.predict_to_csv([str(data / "red")], tmp_path / "preds.csv", top_k=2)
    rows = list(csv.DictReader((tmp_path / "preds.csv").open()))
    assert n == len(rows) == 7
    assert list(rows[0]) == ["path", "prediction", "class_1", "prob_1", "class_2", "prob_2", "error"]
    broken = [r for r in rows if r["path"].endswith("broken.jpg")]
    assert broken[0]["error"] and not broken[0]["prediction"]


class Crash(L.Callback):
    """Simulates a run killed during the first fine-tuning epoch (after phase 1 finished)."""

    def on_train_epoch_end(self, trainer, module):
        if module.phase == 2 and trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def test_resume_continues_the_interrupted_phase(tmp_path, convnet_weights):
    data = class_folders(tmp_path / "data", per_class=6)
    train = TrainConfig(frozen_epochs=2, finetune_epochs=3, batch_size=8, patience=0, num_workers=0)
    with pytest.raises(RuntimeError, match="simulated"):
        tiny(convnet_weights, train=train).fit(data, out=tmp_path / "run", callbacks=[Crash()])
    assert not (tmp_path / "run" / "headstart.json").exists()  # no half-finished artifact
    clf = headstart.Classifier.resume(tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))
    assert [(r["phase"], r["epoch"]) for r in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2"), ("2", "3")]
    assert (tmp_path / "run" / "headstart.json").is_file()
    assert clf.metrics["val"].count > 0
    with pytest.raises(ConfigError, match="already holds a run"):
        tiny(convnet_weights).fit(data, out=tmp_path / "run")


def test_weights_that_do_not_fit_and_unknown_arch(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"nonsense.weight": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError, match="do not fit"):
        build_network(ModelConfig(arch="convnet_tiny", weights=str(path)), 2)
    with pytest.raises(ConfigError, match="resnet50"):
        build_network(ModelConfig(arch="resnet5O", pretrained=False), 2)
    with pytest.raises(ConfigError, match="no-pretrained"):
        build_network(ModelConfig(arch="convnet_small"), 2)


def test_from_scratch_trains_everything_in_one_phase(tmp_path):
    data = class_folders(tmp_path / "data", per_class=6)
    clf = tiny(None).fit(data, out=tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))
    assert {r["phase"] for r in rows} == {"2"} and len(rows) == 3
    assert clf.artifact.model.pretrained is False
