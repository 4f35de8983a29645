"""The pilot: a cross-validated linear probe per candidate (base, side) on the user's own
training images, the selection rule, and the evidence it leaves in the plan."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from headstart.config import ModelConfig, TrainConfig
from headstart.engine.pilot import Candidate, fold_count, fold_scores, metric_for, pilot_subset, select
from headstart.errors import ConfigError


def cand(side: int, scores: tuple[float, ...], seconds: float, arch: str = "b") -> Candidate:
    return Candidate(arch, side, scores, seconds)


def test_a_cheaper_side_within_one_paired_standard_error_is_chosen():
    best = cand(224, (0.80, 0.84, 0.78, 0.82, 0.81), 10.0)
    close = cand(160, (0.78, 0.85, 0.77, 0.84, 0.80), 5.0)  # 0.002 behind, the folds disagree on which is better
    far = cand(128, (0.70, 0.74, 0.69, 0.72, 0.71), 3.0)  # ten points behind on every fold
    evidence = select([best, close, far])
    assert evidence.choice.side == 160 and "within one standard error" in evidence.rule
    verdicts = {r.side: r.verdict for r in evidence.rows}
    assert verdicts == {224: "best", 160: "within 1 SE", 128: "worse"}


def test_a_consistent_small_loss_is_not_noise_even_when_the_means_are_close():
    # paired: the smaller side loses 0.01 on every fold, so the difference's SE is 0
    best = cand(224, (0.70, 0.90, 0.60, 0.80, 0.75), 10.0)
    worse = cand(128, (0.69, 0.89, 0.59, 0.79, 0.74), 3.0)
    assert select([best, worse]).choice.side == 224


def test_the_budget_forces_a_cheaper_candidate_and_says_so():
    best = cand(224, (0.80, 0.82, 0.81), 100.0)
    small = cand(128, (0.70, 0.71, 0.72), 20.0)
    evidence = select([best, small], limit_s=50.0)
    assert evidence.choice.side == 128 and "forces" in evidence.rule
    assert evidence.rows[0].verdict.startswith("best, over")
    nothing = select([best, small], limit_s=5.0)
    assert nothing.choice.side == 128 and "no candidate fits" in nothing.rule


def test_the_cost_cap_keeps_a_far_costlier_base_out_unless_allowed():
    lite = cand(224, (0.80, 0.81, 0.82), 10.0, "lite0")
    big = cand(224, (0.90, 0.91, 0.92), 50.0, "big")
    assert select([lite, big], limit_s=20.0, limit_what="the cost cap").choice.arch == "lite0"
    assert select([lite, big]).choice.arch == "big"


def test_the_metric_and_folds_fit_the_task_and_the_counts():
    assert metric_for("multiclass", [30, 30, 25]) == "accuracy"
    assert metric_for("binary", [90, 10]) == "balanced_accuracy"
    assert metric_for("multilabel", [5, 5]) == "macro_f1"
    assert fold_count([40, 40]) == 5 and fold_count([40, 2]) == 2 and fold_count([40, 1]) is None


def test_the_pilot_subset_is_stratified_seeded_and_bounded():
    labels = np.repeat(np.arange(4), [5000, 3000, 1500, 500])
    subset = pilot_subset(labels, 2000, seed=0)
    assert 1990 <= len(subset) <= 2010 and np.array_equal(subset, pilot_subset(labels, 2000, seed=0))
    share = np.bincount(labels[subset]) / len(subset)
    assert np.allclose(share, [0.5, 0.3, 0.15, 0.05], atol=0.01)
    assert len(pilot_subset(labels[:100], 2000)) == 100


def test_fold_scores_follow_the_signal_and_repeat_exactly():
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.normal(size=(90, 16)).astype(np.float32)
    x[np.arange(90), y] += 4.0  # separable
    strong = fold_scores(x, y, 3, "multiclass", 5, "accuracy")
    noise = fold_scores(rng.normal(size=(90, 16)), y, 3, "multiclass", 5, "accuracy")
    assert len(strong) == 5 and min(strong) > 0.9 and np.mean(noise) < 0.6
    assert strong == fold_scores(x, y, 3, "multiclass", 5, "accuracy")
    hot = np.eye(3, dtype=np.float32)[y]
    assert min(fold_scores(x, hot, 3, "multilabel", 3, "macro_f1")) > 0.8


def _spec(data, val_fraction: float = 0.25):
    from headstart.data.index import scan
    from headstart.data.split import stratified_split
    from headstart.runfolder import DataSource, RunSpec

    index = scan(data)
    return RunSpec(index.classes, "multiclass", stratified_split(index.samples["all"], val_fraction, 0), [], DataSource())


def test_the_pilot_on_a_few_dozen_images_is_deterministic(tmp_path, make_images, convnet_weights):
    from headstart.pipeline.pilot import Base, run_pilot

    spec = _spec(make_images(tmp_path / "d", per_class=10, size=40))
    bases = [Base("convnet_tiny", convnet_weights)]
    first = run_pilot(spec, bases, median_side=40, budget_s=None, device="cpu", cache=True)
    again = run_pilot(spec, bases, median_side=40, budget_s=None, device="cpu", cache=False)
    assert first is not None and again is not None
    assert [r.side for r in first.rows] == [64, 128] and first.folds == 5 and first.images == len(spec.splits["train"])
    assert [(r.score, r.se) for r in first.rows] == [(r.score, r.se) for r in again.rows]
    assert first.choice == again.choice or first.rows[0].seconds != again.rows[0].seconds  # only throughput may differ
    assert first.metric == "accuracy" and all(r.seconds > 0 for r in first.rows)


def test_a_class_with_one_training_image_leaves_the_side_to_the_rule(tmp_path, make_images, convnet_weights):
    from dataclasses import replace

    from headstart.pipeline.pilot import Base, run_pilot

    spec = _spec(make_images(tmp_path / "d", per_class=8, size=40))
    train = spec.splits["train"]
    lone = [s for s in train if s.labels[0] == 2][:1]
    spec = replace(spec, splits={**spec.splits, "train": [s for s in train if s.labels[0] != 2] + lone})
    assert run_pilot(spec, [Base("convnet_tiny", convnet_weights)], 40, None, "cpu", True) is None


def test_two_named_bases_are_both_measured_and_planned_for(tmp_path, make_images, convnet_weights):
    import torch
    from safetensors.torch import save_file

    from headstart.models.convnet import create_convnet
    from headstart.pipeline.recipe import choose_recipe

    torch.manual_seed(7)
    small = tmp_path / "small.safetensors"
    save_file(create_convnet("convnet_small").state_dict(), str(small))
    spec = _spec(make_images(tmp_path / "d", per_class=10, size=40))
    model = ModelConfig(arch="convnet_tiny,convnet_small", weights=f"{convnet_weights},{small}")
    chosen = choose_recipe(model, TrainConfig(), None, spec, Console(quiet=True), accelerated=False)
    assert chosen.plan is not None and chosen.plan.evidence is not None
    assert {r.arch for r in chosen.plan.evidence.rows} == {"convnet_tiny", "convnet_small"}
    row = chosen.plan.evidence.choice
    assert (chosen.model.arch, chosen.model.weights, chosen.image_size) == (row.arch, row.weights, row.side)
    saved = json.loads(json.dumps(chosen.plan.to_dict()))  # what headstart.json and config.json hold
    assert saved["evidence"]["rows"][saved["evidence"]["chosen"]]["arch"] == row.arch
    assert "Candidates:" in chosen.plan.describe() and "> " in chosen.plan.describe()


def test_several_bases_need_the_planner_and_one_weights_entry_each():
    from headstart.pipeline.recipe import candidate_bases, choose_recipe

    with pytest.raises(ConfigError, match="one weights entry per"):
        candidate_bases(ModelConfig(arch="a,b", weights="w.safetensors"))
    assert [b.weights for b in candidate_bases(ModelConfig(arch="a,b", weights=",w.pth"))] == [None, "w.pth"]
    with pytest.raises(ConfigError, match="turns off"):
        choose_recipe(ModelConfig(arch="a,b"), TrainConfig(lr=1e-2), None, None, Console(quiet=True), accelerated=False)  # type: ignore[arg-type]


def test_naming_a_base_keeps_the_planner():
    from headstart.pipeline.recipe import pinned_options

    assert pinned_options(ModelConfig(arch="resnet18", weights="r.pth"), TrainConfig(), None) == []
    assert pinned_options(ModelConfig(pretrained=False), TrainConfig(), None) == ["--pretrained"]


def test_the_plan_command_shows_the_table_without_training(tmp_path, make_images, convnet_weights):
    from typer.testing import CliRunner

    from headstart.cli import app

    data = make_images(tmp_path / "d", per_class=10, size=40)
    args = ["plan", str(data), "--arch", "convnet_tiny", "--weights", convnet_weights]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Candidates: 5-fold" in result.output and "convnet_tiny" in result.output
    as_json = CliRunner().invoke(app, [*args, "--json", "--time", "5m"])
    plan = json.loads(as_json.stdout)
    assert plan["budget_seconds"] < 300 and len(plan["evidence"]["rows"]) == 2
    assert not list(tmp_path.glob("runs*")) and not (tmp_path / "d" / "runs").exists()  # nothing trained, no run folder
    pinned = CliRunner().invoke(app, [*args, "--lr", "0.01"])
    assert pinned.exit_code == 0 and "your options as given" in pinned.output


def test_the_old_phase_name_still_works_with_a_warning():
    from headstart.engine import plan

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plan.Phase is plan.PlannedPhase
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


class FakeTrainer(SimpleNamespace):
    pass


def _trainer(max_epochs: int, batches: int = 10):
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=max_epochs * batches)
    config = SimpleNamespace(interval="step", scheduler=scheduler)
    return FakeTrainer(
        sanity_checking=False,
        should_stop=False,
        is_global_zero=True,
        current_epoch=0,
        fit_loop=SimpleNamespace(max_epochs=max_epochs),
        num_training_batches=batches,
        lr_scheduler_configs=[config],
    )


def test_each_epochs_time_refits_the_remaining_epochs_and_the_schedule():
    from headstart.engine.callbacks import EpochRefit

    now = [1000.0]
    refit = EpochRefit(deadline=1000.0 + 300, cap=40, clock=lambda: now[0])
    trainer = _trainer(max_epochs=6)
    refit.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    now[0] += 100.0  # the first epoch took 100 s, not the planned 50: 200 s left, 110 s budgeted an epoch
    refit.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.fit_loop.max_epochs == 2
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, __import__("torch").optim.lr_scheduler.LambdaLR)
    for _ in range(10):  # the remaining epoch's steps anneal to zero
        scheduler.optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)

    fast = _trainer(max_epochs=6)
    refit = EpochRefit(deadline=1000.0 + 600, cap=8, clock=lambda: now[0])
    now[0] = 1000.0
    refit.on_train_epoch_start(fast, None)  # type: ignore[arg-type]
    now[0] += 20.0  # much faster than planned: grows, up to the cap
    refit.on_validation_end(fast, None)  # type: ignore[arg-type]
    assert fast.fit_loop.max_epochs == 8
    user = _trainer(max_epochs=6)  # the user's recipe (no cap): never more than asked
    refit = EpochRefit(deadline=1000.0 + 600, cap=None, clock=lambda: now[0])
    refit.on_train_epoch_start(user, None)  # type: ignore[arg-type]
    now[0] += 20.0
    refit.on_validation_end(user, None)  # type: ignore[arg-type]
    assert user.fit_loop.max_epochs == 6


def test_the_report_draws_the_candidates_table():
    from headstart.report.sections import plan_rows

    rows = [
        {"arch": "lite0", "side": 224, "score": 0.8, "se": 0.01, "gap": 0.0, "gap_se": 0.0, "seconds": 9.0, "verdict": "best"},
        {"arch": "lite0", "side": 128, "score": 0.7, "se": 0.02, "gap": 0.1, "gap_se": 0.01, "seconds": 3.0, "verdict": "worse"},
    ]
    plan = {"evidence": {"metric": "accuracy", "folds": 5, "images": 300, "rows": rows, "chosen": 0, "rule": "the best measured"}}
    from headstart.runfolder import PlanRecord

    lines = dict(plan_rows(PlanRecord(plan)))
    assert "224 px" in lines["candidates"] and "0.800 ± 0.010" in lines["candidates"] and "chosen" in lines["candidates"]
    assert plan_rows(PlanRecord({})) == []


def test_a_budget_too_short_for_a_pilot_plans_by_rule(tmp_path, make_images, convnet_weights):
    from headstart.pipeline.pilot import MIN_PILOT_BUDGET_S, Base, run_pilot

    spec = _spec(make_images(tmp_path / "d", per_class=10, size=40))
    assert run_pilot(spec, [Base("convnet_tiny", convnet_weights)], 40, MIN_PILOT_BUDGET_S - 1, "cpu", True) is None


@pytest.mark.slow
def test_a_planned_run_keeps_the_evidence_in_headstart_json(tmp_path, make_images, convnet_weights):
    from headstart import Classifier

    data = make_images(tmp_path / "d", per_class=10, size=40)
    model = ModelConfig(arch="convnet_tiny", weights=convnet_weights)  # a named base: planned, not pinned
    clf = Classifier(model=model, train_config=TrainConfig(num_workers=0, patience=0), report=False).fit(data, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "headstart.json").read_text())
    evidence = saved["plan"]["evidence"]
    assert [r["side"] for r in evidence["rows"]] == [64, 128] and evidence["folds"] == 5
    chosen = evidence["rows"][evidence["chosen"]]
    assert clf.artifact is not None and clf.artifact.preprocess.input_size == chosen["side"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["plan"]["evidence"] == evidence
