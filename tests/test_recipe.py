"""The recipe of a run: planned from the data and the machine unless the user set one,
written into ordinary options (config.json, --resume), and the time budget enforced."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console

from headstart import Classifier
from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.engine import plan as planner
from headstart.engine.plan import DataFacts, Throughput
from headstart.pipeline import recipe
from headstart.pipeline.recipe import apply_plan, choose_recipe, pinned_options

SPEED = Throughput(frozen={64: 400.0, 128: 150.0, 224: 60.0}, finetune={64: 120.0, 128: 40.0, 224: 15.0}, scratch={28: 2000.0, 32: 1800.0})


def quiet() -> Console:
    return Console(stderr=True, quiet=True)


def test_default_options_pin_nothing_and_each_recipe_option_is_a_pin():
    assert pinned_options(ModelConfig(), TrainConfig(), None) == []
    assert pinned_options(ModelConfig(arch="resnet18"), TrainConfig(), None) == []  # a named base is planned for
    assert pinned_options(ModelConfig(), TrainConfig(frozen_epochs=5, lr=1e-2), 64) == ["--frozen-epochs", "--lr", "--image-size"]
    # where it runs, the budget and the seed are not recipe options
    assert pinned_options(ModelConfig(), TrainConfig(time_budget=600, seed=3, devices="2", patience=5), None) == []


def test_a_users_recipe_is_used_as_given(monkeypatch):
    monkeypatch.setattr(recipe, "data_facts", lambda *a, **k: pytest.fail("measured the data"))
    model, train = ModelConfig(arch="convnet_tiny", pretrained=False), TrainConfig(frozen_epochs=2)
    for cfg in (train, TrainConfig(recipe="fixed")):
        chosen = choose_recipe(model, cfg, None, None, quiet(), accelerated=False)  # type: ignore[arg-type]
        assert (chosen.model, chosen.train, chosen.image_size, chosen.plan) == (model, cfg, None, None)


def test_many_small_grey_images_plan_a_convnet_from_scratch_at_their_own_side(monkeypatch):
    facts = DataFacts(images=48_000, classes=10, median_side=28, greyscale=True, pretrained=True, val_images=12_000)
    monkeypatch.setattr(recipe, "data_facts", lambda spec, pretrained=True: facts)
    monkeypatch.setattr(recipe, "measure_throughput", lambda *a, **k: SPEED)
    chosen = choose_recipe(ModelConfig(), TrainConfig(time_budget=600), None, None, quiet(), accelerated=False)  # type: ignore[arg-type]
    assert chosen.plan is not None and chosen.model.arch == planner.SCRATCH_ARCH and not chosen.model.pretrained
    assert chosen.image_size == 28
    t = chosen.train
    assert t.frozen_epochs == 0 and t.finetune_epochs == chosen.plan.phases[0].epochs >= planner.MIN_SCRATCH_EPOCHS
    assert (t.optimizer, t.schedule, t.label_smoothing, t.recipe) == ("sgd", "onecycle", chosen.plan.label_smoothing, "fixed")
    assert t.augment == AugmentConfig.flip_shift() and t.time_budget == 600
    # the planned options are ordinary ones: they round-trip through config.json
    assert TrainConfig.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_a_pretrained_plan_becomes_the_two_phase_options():
    plan = planner.Plan(
        arch=planner.PRETRAINED_ARCH,
        pretrained=True,
        input_size=224,
        phases=(
            planner.PlannedPhase("frozen", 1, lr=1e-2, schedule="one-cycle", cached=True),
            planner.PlannedPhase("finetune", 3, lr=2e-3, base_lr_ratio=0.3, schedule="one-cycle"),
        ),
        label_smoothing=0.1,
        batch_size=32,
        augment="default",
        estimated_seconds=100.0,
        budget_seconds=300.0,
        reasons=("r",),
    )
    chosen = apply_plan(plan, ModelConfig(), TrainConfig())
    t = chosen.train
    assert (t.frozen_epochs, t.lr, t.feature_cache, t.finetune_epochs, t.finetune_lr, t.base_lr_ratio) == (1, 1e-2, True, 3, 2e-3, 0.3)
    assert t.schedule == "onecycle" and t.label_smoothing == 0.1 and t.augment == TrainConfig().augment
    assert chosen.model == ModelConfig() and chosen.image_size == 224


@pytest.mark.slow
def test_a_planned_run_trains_the_plan_and_records_it(tmp_path, make_images, monkeypatch):
    """End to end with the planner forced to 'from scratch' (the tiny data stands in for a
    large set of small images): config.json holds the planned options and the plan, the
    artifact the plan, and the resumed/loaded model is the planned architecture."""
    data = make_images(tmp_path / "data", per_class=10, size=28)
    real_facts = recipe.data_facts

    def many(spec, pretrained=True):
        f = real_facts(spec, pretrained)
        return DataFacts(images=30_000, classes=f.classes, median_side=f.median_side, greyscale=f.greyscale, val_images=f.val_images)

    monkeypatch.setattr(recipe, "data_facts", many)
    monkeypatch.setattr(recipe, "measure_throughput", lambda *a, **k: SPEED)
    monkeypatch.setattr(planner, "DEFAULT_SCRATCH_EPOCHS", 3)
    clf = Classifier(train_config=TrainConfig(num_workers=0, patience=0), report=False).fit(data, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["arch"] == planner.SCRATCH_ARCH and saved["image_size"] == 28 and saved["train"]["recipe"] == "fixed"
    assert saved["plan"]["arch"] == planner.SCRATCH_ARCH and saved["plan"]["reasons"]
    assert clf.artifact.meta.plan is not None and clf.artifact.meta.plan.raw == saved["plan"]
    assert clf.artifact.preprocess.input_size == 28
    # the Classifier is what was trained, not what was asked for (the default base at its own side)
    assert clf.model.arch == planner.SCRATCH_ARCH and not clf.model.pretrained and clf.image_size == 28
    assert clf.train_config == TrainConfig.from_dict(saved["train"]) and clf.train_config.recipe == "fixed"
    epochs = (tmp_path / "run" / "epochs.csv").read_text().strip().splitlines()[1:]
    assert len(epochs) == saved["plan"]["phases"][0]["epochs"] == 3


@pytest.mark.slow
def test_the_time_budget_stops_training_cleanly(tmp_path, make_images, tiny):
    """A budget spent before training: each phase stops after its first epoch (the best
    checkpoint kept), the next phase is skipped, and the run still finishes its artifact."""
    from headstart.engine.callbacks import Deadline

    data = make_images(tmp_path / "data", per_class=6)
    train = TrainConfig(frozen_epochs=5, finetune_epochs=5, batch_size=8, patience=0, lr=1e-2, num_workers=0, time_budget=0.01)
    tiny(train=train).fit(data, tmp_path / "run")  # the budget counts from fit(): gone by the first epoch's end
    rows = (tmp_path / "run" / "epochs.csv").read_text().strip().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1"]  # one epoch of phase 1, phase 2 skipped
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert Deadline(time.time() + 3600).deadline > time.time()


def test_the_report_shows_the_plan_and_its_reasons():
    from types import SimpleNamespace

    from headstart.report.sections import facts_section

    plan = {
        "arch": "convnet_res",
        "input_size": 28,
        "estimated_seconds": 412.0,
        "budget_seconds": 600.0,
        "reasons": ["48,000 images of ~28 px greyscale: from scratch", "15 epochs fit 600 s"],
    }
    network = __import__("headstart.models", fromlist=["build_network"]).build_network(
        ModelConfig(arch="convnet_tiny", pretrained=False), 3
    )
    from headstart.artifact import Artifact
    from headstart.preprocess import Preprocess
    from headstart.runfolder import ArtifactMeta, PlanRecord

    meta = ArtifactMeta(
        ModelConfig(arch="convnet_tiny", pretrained=False),
        ("a", "b", "c"),
        "multiclass",
        Preprocess(28, 28, (0.5,) * 3, (0.5,) * 3, "bilinear"),
        train=TrainConfig(seed=0),
        plan=PlanRecord(plan),
    )
    art = Artifact(network, meta)
    inp = SimpleNamespace(artifact=art, tta=(), kind="train", data="DATA", seconds=None)
    rows = dict(facts_section(inp, {}, None)["run"])  # type: ignore[arg-type]
    assert "convnet_res at 28 px" in rows["recipe"] and "600 s budget" in rows["recipe"]
    run = facts_section(inp, {}, None)["run"]  # type: ignore[arg-type]
    assert [v for k, v in run if k == "why"] == plan["reasons"]
