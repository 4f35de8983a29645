"""The recipe planner's decisions on synthetic data facts and throughputs (no training)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from headstart.engine.plan import (
    PRETRAINED_ARCH,
    SCRATCH_ARCH,
    BaseSide,
    DataFacts,
    Throughput,
    make_plan,
    natural_size,
    sizes_to_measure,
)

# Roughly what 2 CPU cores measured (bench/results/recipe-sweep.jsonl, from the retired bench/recipe_sweep.py): tf_efficientnet_lite0 and convnet_res.
CPU = Throughput(
    frozen={32: 6000, 64: 1650, 128: 440, 224: 80},
    finetune={32: 970, 64: 240, 128: 75, 224: 20},
    scratch={32: 1800},
)
GPU = Throughput(frozen={112: 20000, 224: 5000}, finetune={112: 6000, 224: 1500}, scratch={32: 50000}, device="cuda")

FASHION = DataFacts(images=48_000, classes=10, median_side=28, greyscale=True, val_images=12_000)
CLIPART = DataFacts(images=300, classes=5, median_side=600, val_images=80)


@pytest.mark.slow
def test_planning_needs_no_torch():
    code = "import sys, headstart.engine.plan; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("side, want", [(28, 32), (32, 32), (33, 48), (100, 128), (224, 224), (4000, 224)])
def test_input_size_follows_the_images_up_to_the_native_size(side, want):
    assert natural_size(side) == want


def test_large_small_greyscale_data_trains_from_scratch_at_native_size():
    plan = make_plan(FASHION, CPU, budget_s=600)
    assert plan.arch == SCRATCH_ARCH and not plan.pretrained and plan.input_size == 28
    (phase,) = plan.phases
    assert phase.kind == "scratch" and phase.schedule == "one-cycle"
    assert plan.estimated_seconds <= 600 and phase.epochs >= 5
    assert plan.label_smoothing > 0 and plan.augment == "flip+shift"


def test_scratch_epochs_grow_with_the_budget_and_stay_bounded():
    short, long = make_plan(FASHION, CPU, 300), make_plan(FASHION, CPU, 1200)
    assert short.phases[0].epochs < long.phases[0].epochs
    assert make_plan(FASHION, CPU, 10).phases[0].epochs >= 3  # never fewer: the run stops at the budget instead
    assert any("stops at the budget" in r for r in make_plan(FASHION, CPU, 10).reasons)


def test_no_pretrained_base_means_scratch_even_for_small_photo_data():
    facts = DataFacts(images=300, classes=5, median_side=600, pretrained=False)
    plan = make_plan(facts, CPU, 600)
    assert plan.arch == SCRATCH_ARCH and plan.input_size <= 64 and plan.batch_size == 64


def test_small_photo_data_fine_tunes_the_pretrained_base_after_one_frozen_epoch():
    plan = make_plan(CLIPART, CPU, budget_s=120)
    assert plan.arch == PRETRAINED_ARCH and plan.pretrained
    frozen, finetune = plan.phases
    assert (frozen.kind, frozen.epochs, frozen.cached) == ("frozen", 1, True)
    assert finetune.kind == "finetune" and 2 <= finetune.epochs <= 5 and finetune.base_lr_ratio < 1
    assert plan.estimated_seconds <= 120


def test_a_tight_budget_drops_fine_tuning_before_lowering_the_resolution():
    probe = make_plan(CLIPART, CPU, 40)
    assert probe.input_size == 224 and [p.kind for p in probe.phases] == ["frozen"]
    tight = make_plan(CLIPART, CPU, 22)
    assert tight.input_size < 224 and [p.kind for p in tight.phases] == ["frozen"]
    assert any("224 px ->" in r and "cheaper" in r for r in tight.reasons)


def test_no_room_to_fine_tune_falls_back_to_the_linear_probe():
    plan = make_plan(CLIPART, CPU, budget_s=25)
    (phase,) = plan.phases
    assert phase.kind == "frozen" and phase.epochs == 30 and phase.cached
    assert any("linear probe" in r for r in plan.reasons)


def test_without_a_budget_a_cpu_probes_and_a_gpu_fine_tunes():
    cpu, gpu = make_plan(CLIPART, CPU), make_plan(CLIPART, GPU)
    assert [p.kind for p in cpu.phases] == ["frozen"] and cpu.input_size == 224
    assert [p.kind for p in gpu.phases] == ["frozen", "finetune"] and gpu.phases[1].epochs == 3


def test_small_images_with_little_data_fine_tune_at_the_side_the_pilot_chose():
    facts = DataFacts(images=1000, classes=10, median_side=28, greyscale=True)
    plan = make_plan(facts, CPU, 120, BaseSide(side=64))
    assert plan.arch == PRETRAINED_ARCH and plan.input_size == 64 and plan.phases[-1].kind == "finetune"
    # unmeasured (no folds), the rule is the base's native side, never the images' own: smaller
    # sides lost 4-6 points on clip art
    assert make_plan(facts, CPU, None).input_size == 224


def test_the_pilots_evidence_travels_with_the_plan():
    from headstart.engine.pilot import Candidate, select

    evidence = select([Candidate("resnet18", 160, (0.8, 0.9), 5.0, "r.pth"), Candidate("resnet18", 224, (0.6, 0.7), 9.0, "r.pth")])
    plan = make_plan(CLIPART, CPU, None, BaseSide("resnet18", 160, 224, "r.pth", evidence))
    assert (plan.arch, plan.input_size, plan.weights) == ("resnet18", 160, "r.pth")
    saved = json.loads(json.dumps(plan.to_dict()))
    assert saved["evidence"]["rows"][0]["side"] == 160 and saved["evidence"]["rule"] == "the best measured"
    assert "resnet18 at 160 px: the best measured" in plan.describe()


def test_a_gpu_fine_tunes_at_full_resolution():
    plan = make_plan(DataFacts(images=5000, classes=20, median_side=400), GPU, 600)
    assert plan.input_size == 224 and plan.phases[-1].epochs == 5


def test_plan_describes_itself_and_serialises():
    plan = make_plan(FASHION, CPU, 600)
    assert json.loads(json.dumps(plan.to_dict()))["arch"] == SCRATCH_ARCH
    text = plan.describe()
    assert text.startswith("Plan: convnet_res (from scratch) at 28 px") and "600 s budget" in text


def test_throughput_interpolates_between_measured_sides():
    assert CPU.at("finetune", 64) == 240
    mid = CPU.at("finetune", 96)
    assert 75 < mid < 240
    assert CPU.at("scratch", 64) == pytest.approx(1800 / 4)  # one point: cost ~ pixels
    with pytest.raises(ValueError):
        Throughput().at("frozen", 32)


def test_sizes_to_measure_are_few_and_cover_the_natural_size():
    assert sizes_to_measure(FASHION) == ((), (28,))
    assert sizes_to_measure(CLIPART) == ((112, 224), ())
    assert sizes_to_measure(DataFacts(images=9, classes=2, median_side=40, pretrained=False)) == ((), (40,))


def test_bad_facts_are_refused():
    with pytest.raises(ValueError):
        DataFacts(images=0, classes=5, median_side=100)


@pytest.mark.slow
def test_measure_throughput_times_the_asked_sides_in_a_moment():
    from headstart.engine.plan import measure_throughput

    speed = measure_throughput([32], [28], batch=2, scratch_batch=2, seconds=0.01)
    assert set(speed.frozen) == set(speed.finetune) == {32} and set(speed.scratch) == {28}
    assert all(v > 0 for v in (*speed.frozen.values(), *speed.finetune.values(), *speed.scratch.values()))


@pytest.mark.parametrize("images, arch", [(5_000, PRETRAINED_ARCH), (12_000, SCRATCH_ARCH)])
def test_small_images_train_from_scratch_from_ten_thousand_on(images, arch):
    assert make_plan(DataFacts(images=images, classes=10, median_side=28), CPU, 600).arch == arch


def test_photo_sized_images_stay_pretrained_however_many():
    plan = make_plan(DataFacts(images=500_000, classes=100, median_side=400), CPU, 600)
    assert plan.arch == PRETRAINED_ARCH and plan.input_size == 64
    assert any("224 px -> 64 px" in r for r in plan.reasons)
    huge = make_plan(DataFacts(images=5_000_000, classes=100, median_side=400), CPU, 600)
    assert huge.input_size == 64 and any("stops at the budget" in r for r in huge.reasons)


def test_facts_from_files_read_headers(tmp_path):
    from PIL import Image

    paths = []
    for i, (size, mode) in enumerate([((28, 28), "L"), ((30, 40), "L"), ((50, 28), "L")]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new(mode, size).save(paths[-1])
    facts = DataFacts.from_files(paths, classes=2, val_images=1)
    assert (facts.images, facts.median_side, facts.greyscale, facts.val_images) == (3, 28, True, 1)
    Image.new("RGB", (64, 64)).save(tmp_path / "c.png")
    assert not DataFacts.from_files([*paths, str(tmp_path / "c.png")], classes=2).greyscale
