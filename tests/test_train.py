"""Training end to end on tiny data: tasks, run-folder files, learning, options, skipped files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import colour_image
from PIL import Image

import headstart
from headstart import Classifier
from headstart.config import ModelConfig, TrainConfig
from headstart.data.index import Sample
from headstart.data.split import read_split
from headstart.engine.balance import loss_weights, sample_weights
from headstart.errors import ConfigError, DataError

RUN_FILES = (
    "model.safetensors",
    "headstart.json",
    "metrics.json",
    "epochs.csv",
    "learning_curves.png",
    "confusion_matrix_val.png",
    "split.csv",
    "skipped.csv",
    "config.json",
)


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def epochs(run) -> list[tuple[int, int]]:
    return [(int(r["phase"]), int(r["epoch"])) for r in rows(run / "epochs.csv")]


def check_metrics(m: dict, classes: list[str]) -> None:
    """Internal consistency of one split's metrics.json entry (multiclass/binary)."""
    assert {"accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion", "count"} <= m.keys()
    assert [c["name"] for c in m["per_class"]] == classes
    for c in m["per_class"]:
        assert {"precision", "recall", "f1", "support"} <= c.keys()
        assert 0 <= c["precision"] <= 1 and 0 <= c["recall"] <= 1 and 0 <= c["f1"] <= 1
    confusion = np.array(m["confusion"])
    assert confusion.shape == (len(classes), len(classes))
    assert confusion.sum() == m["count"] == sum(c["support"] for c in m["per_class"])
    assert confusion.sum(1).tolist() == [c["support"] for c in m["per_class"]]
    assert m["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())


@pytest.mark.slow
def test_multiclass_two_phases_writes_the_whole_run_folder(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "green", "blue"), per_class=8)
    (data / "red" / "notes.txt").write_text("ignored")
    run = tmp_path / "run"
    clf = tiny(train=TrainConfig(frozen_epochs=2, finetune_epochs=2, batch_size=8, patience=0, val_fraction=0.25)).fit(data, out=run)
    assert clf.run_dir == run
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    for png in ("learning_curves.png", "confusion_matrix_val.png"):
        with Image.open(run / png) as im:
            assert im.format == "PNG" and im.size[0] > 100

    meta = json.loads((run / "headstart.json").read_text())
    assert meta["format"] == "headstart-model"
    assert meta["classes"] == ["blue", "green", "red"] and meta["task"] == "multiclass"
    assert meta["model"]["arch"] == "convnet_tiny"
    assert meta["preprocess"]["input_size"] == 32
    assert meta["data"]["ignored_files"] == 1 and meta["data"]["layout"] == "folders"
    assert meta["data"]["counts"] == {"train": 18, "val": 6}
    assert meta["versions"]["torch"] == torch.__version__

    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics) == ["val"]
    check_metrics(metrics["val"], meta["classes"])
    assert metrics["val"]["count"] == 6
    assert metrics["val"]["accuracy"] == pytest.approx(clf.metrics["val"].accuracy)

    assert epochs(run) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for r in rows(run / "epochs.csv"):
        assert float(r["train_loss"]) > 0 and r["val_loss"] and r["lr_head"]
        assert (r["lr_base"] == "") == (r["phase"] == "1")  # the base only learns in phase 2

    split = read_split(run / "split.csv", meta["classes"])
    assert {k: len(v) for k, v in split.items()} == {"train": 18, "val": 6}
    for c in range(3):  # stratified: 2 of each class's 8 images in val
        assert sum(s.labels == (c,) for s in split["val"]) == 2
    assert rows(run / "skipped.csv") == []
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["arch"] == "convnet_tiny" and config["train"]["finetune_epochs"] == 2
    assert config["classes"] == meta["classes"] and config["task"] == "multiclass"


@pytest.mark.slow
def test_learns_separable_colours(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "green", "blue", "yellow"), per_class=12)
    clf = tiny(
        pretrained=False, train=TrainConfig(frozen_epochs=0, finetune_epochs=5, batch_size=8, patience=0, lr=1e-2, val_fraction=0.25)
    ).fit(data, out=tmp_path / "run")
    m = clf.metrics["val"]
    assert m.count == 12
    assert m.accuracy >= 0.8, m.confusion  # chance is 0.25
    assert m.balanced_accuracy >= 0.8
    first, last = rows(tmp_path / "run" / "epochs.csv")[0], rows(tmp_path / "run" / "epochs.csv")[-1]
    assert float(last["train_loss"]) < float(first["train_loss"])
    preds = clf.predict([str(p) for p in sorted((data / "yellow").rglob("*.png"))])
    assert sum(p.top[0][0] == "yellow" for p in preds) >= 9


@pytest.mark.slow
def test_two_phases_learn_separable_colours(tmp_path, make_images, tiny):
    """Moved from the former tests/test_training.py: a frozen 'pretrained' base, then fine-tuning, learns."""
    data = make_images(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    clf = tiny(train=TrainConfig(frozen_epochs=8, finetune_epochs=2, batch_size=8, patience=0, lr=3e-2)).fit(data, out=run)
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    meta = json.loads((run / "headstart.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] and meta["task"] == "multiclass"
    assert meta["preprocess"]["input_size"] == 32 and meta["versions"]["torch"]
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    assert {"accuracy", "balanced_accuracy", "per_class", "confusion"} <= metrics.keys()
    assert {"precision", "recall", "f1", "support"} <= metrics["per_class"][0].keys()
    assert metrics["accuracy"] >= 0.8  # colours are trivially separable
    assert epochs(run) == [(1, i) for i in range(1, 9)] + [(2, 1), (2, 2)]
    assert clf.predict(str(data / "red" / "red_0.png"))[0].top[0][0] == "red"


@pytest.mark.slow
def test_from_scratch_is_one_phase_over_all_epochs(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=5)
    clf = tiny(pretrained=False, train=TrainConfig(frozen_epochs=2, finetune_epochs=1, batch_size=8, patience=0)).fit(
        data, out=tmp_path / "run"
    )
    assert epochs(tmp_path / "run") == [(2, 1), (2, 2), (2, 3)]
    assert clf.artifact.model.pretrained is False
    assert json.loads((tmp_path / "run" / "headstart.json").read_text())["result"]["best_phase"] == 2


@pytest.mark.slow
def test_binary(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=8)
    run = tmp_path / "run"
    clf = tiny().fit(data, out=run)
    assert clf.artifact.task == "binary" and clf.classes == ["blue", "red"]
    linear = [m for m in clf.artifact.network.head.modules() if isinstance(m, torch.nn.Linear)]
    assert linear[-1].out_features == 1
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())["val"]
    check_metrics(metrics, ["blue", "red"])
    assert metrics["threshold"] == 0.5
    pred = clf.predict(str(data / "red" / "red_0.png"))[0]
    assert set(pred.probs) == {"blue", "red"}
    assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert pred.labels == ["red" if pred.probs["red"] >= 0.5 else "blue"]


@pytest.mark.slow
def test_multilabel_csv(tmp_path, make_images, tiny):
    tags = {"red": "warm", "yellow": "warm;bright", "white": "bright", "blue": "cold"}
    csv_path = make_images(tmp_path / "data", "multilabel", classes=tags, per_class=6)
    colour_image("black", 0).save(tmp_path / "data" / "images" / "black.png")
    with csv_path.open("a") as handle:
        handle.write("images/black.png,\n")  # no tag at all is allowed in multi-label data
    run = tmp_path / "run"
    clf = tiny().fit(csv_path, out=run)
    assert clf.artifact.task == "multilabel"
    assert clf.classes == ["bright", "cold", "warm"]
    linear = [m for m in clf.artifact.network.head.modules() if isinstance(m, torch.nn.Linear)]
    assert linear[-1].out_features == 3
    for name in set(RUN_FILES) - {"confusion_matrix_val.png"}:
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())["val"]
    assert m["task"] == "multilabel" and m["threshold"] == 0.5
    assert np.array(m["confusion"]).shape == (3, 2, 2)  # [[tn, fp], [fn, tp]] per label
    assert all(np.array(c).sum() == m["count"] for c in m["confusion"])
    assert "subset_accuracy" in m["extra"]
    assert [c["support"] for c in m["per_class"]] == [int(np.array(c)[1].sum()) for c in m["confusion"]]
    pred = clf.predict(str(tmp_path / "data" / "images" / "yellow" / "yellow_0.png"))[0]
    assert all(0 <= p <= 1 for p in pred.probs.values())
    assert pred.labels == [c for c in clf.classes if pred.probs[c] >= 0.5]
    split = read_split(run / "split.csv", clf.classes)
    labels = {s.path.rsplit("/", 1)[-1]: s.labels for part in split.values() for s in part}
    assert labels["black.png"] == () and labels["yellow_0.png"] == (0, 2)


@pytest.mark.slow
def test_balanced_class_weights_and_oversampling_run(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "green"), per_class=12)
    make_images(tmp_path / "data", classes=("blue",), per_class=3)
    train = TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0, class_weights="balanced", oversample=True)
    clf = tiny(train=train).fit(data, out=tmp_path / "run")
    assert (tmp_path / "run" / "headstart.json").is_file()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["class_weights"] == "balanced" and saved["oversample"] is True
    assert clf.metrics["val"].count == 2 + 2 + 1  # round(12 * 0.2) of red and green, 1 of 3 blue


def test_loss_and_sample_weights():
    s = [Sample(str(i), (0,)) for i in range(6)] + [Sample("a", (1,)), Sample("b", (1,))]
    torch.testing.assert_close(loss_weights(s, 2, "multiclass"), torch.tensor([8 / 12, 8 / 4]))
    torch.testing.assert_close(loss_weights(s, 2, "binary"), torch.tensor([6 / 2]))
    ml = [Sample("x", (0, 1)), Sample("y", (0,)), Sample("z", ())]
    torch.testing.assert_close(loss_weights(ml, 3, "multilabel"), torch.tensor([1 / 2, 2 / 1, 3 / 1]))
    w = sample_weights(s, 2)
    assert w[:6].tolist() == [1 / 6] * 6 and w[6:].tolist() == [1 / 2] * 2
    assert sample_weights(ml, 3).tolist() == [1.0, 1 / 2, 1 / 3]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "schedule": "plateau", "monitor": "val_acc"},
        {"optimizer": "adam", "schedule": "constant", "monitor": "val_f1", "feature_cache": False, "unfreeze": 1},
        {"optimizer": "adamw", "schedule": "onecycle", "monitor": "val_loss", "label_smoothing": 0.1},
    ],
)
def test_other_optimizers_schedules_and_monitors_run(tmp_path, make_images, tiny, options):
    data = make_images(tmp_path / "data", per_class=5)
    clf = tiny(
        head="mlp", hidden=(8,), dropout=0.2, train=TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0, **options)
    ).fit(data, out=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "headstart.json").read_text())
    assert meta["result"]["monitor"] == options["monitor"]
    assert epochs(tmp_path / "run") == [(1, 1), (2, 1)]
    assert clf.metrics["val"].count == 3


@pytest.mark.slow
def test_unreadable_files_are_skipped_and_listed(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "blue", "green"), per_class=6, nested=False)
    corrupt = data / "red" / "corrupt.jpg"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    good = (data / "blue" / "blue_0.png").read_bytes()
    truncated = data / "blue" / "truncated.png"
    truncated.write_bytes(good[: len(good) // 2])
    run = tmp_path / "run"
    clf = tiny().fit(data, out=run)
    skipped = {r["path"]: r["reason"] for r in rows(run / "skipped.csv")}
    assert set(skipped) == {str(corrupt.resolve()), str(truncated.resolve())}
    assert all(reason.strip() for reason in skipped.values())
    assert "truncated" in skipped[str(truncated.resolve())].lower()
    meta = json.loads((run / "headstart.json").read_text())
    assert meta["data"]["skipped"] == 2
    assert sum(meta["data"]["counts"].values()) == 18  # only the readable images
    assert clf.metrics["val"].count + meta["data"]["counts"]["train"] == 18


def test_a_class_with_no_readable_image_is_an_error(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=4)
    (data / "green").mkdir()
    for i in range(3):
        (data / "green" / f"{i}.jpg").write_bytes(b"not a jpeg at all" * i)
    with pytest.raises(DataError, match="green"):
        tiny().fit(data, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_split_layout_reports_val_and_test(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", "splits", classes=("red", "green", "blue"), per_class=(5, 2, 3))
    run = tmp_path / "run"
    clf = tiny().fit(data, out=run)
    assert set(clf.metrics) == {"val", "test"}
    assert clf.metrics["val"].count == 6 and clf.metrics["test"].count == 9
    assert (run / "confusion_matrix_test.png").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    check_metrics(metrics["test"], ["blue", "green", "red"])
    split = read_split(run / "split.csv", clf.classes)
    for name, part in split.items():  # the given splits are used as they are
        assert all(f"/{name}/" in s.path for s in part)
    own = headstart.load(run).evaluate()  # moved from the former tests/test_training.py
    assert set(own) == {"val", "test"}


@pytest.mark.slow
def test_train_and_test_without_val_split_val_off_train(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", "splits", classes=("red", "blue", "green"), per_class=(6, 2, 2))
    for f in sorted((data / "val").rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    (data / "val").rmdir()
    clf = tiny().fit(data, out=tmp_path / "run")
    assert set(clf.metrics) == {"val", "test"}
    split = read_split(tmp_path / "run" / "split.csv", clf.classes)
    assert all("/train/" in s.path for s in split["val"] + split["train"])
    assert len(split["val"]) == 3 and len(split["test"]) == 6


@pytest.mark.slow
def test_same_seed_same_split(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=6)
    fast = TrainConfig(frozen_epochs=1, finetune_epochs=0, batch_size=8, patience=0, seed=5)
    tiny(train=fast).fit(data, out=tmp_path / "a")
    tiny(train=fast).fit(data, out=tmp_path / "b")
    assert (tmp_path / "a" / "split.csv").read_text() == (tmp_path / "b" / "split.csv").read_text()


@pytest.mark.slow
def test_refuses_to_overwrite_a_run(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=4)
    tiny(train=TrainConfig(frozen_epochs=1, finetune_epochs=0, batch_size=8, patience=0)).fit(data, out=tmp_path / "run")
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        tiny().fit(data, out=tmp_path / "run")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_a_run_folder_has_one_writer_and_trains_without_out_get_one_each(tmp_path, make_images, tiny, monkeypatch):
    """Found by bench/faults.py crowd: trains started together without --out all chose
    runs/<data> (looked free to each) and wrote into it together; two given one --out did too."""
    from rich.console import Console

    from headstart.pipeline import outputs
    from headstart.pipeline.train import RunRequest, Training

    data = make_images(tmp_path / "data", per_class=3)
    run = tmp_path / "run"
    with outputs.claimed(run):  # another train is writing this folder
        with pytest.raises(ConfigError, match="being written by another headstart train"):
            tiny().fit(data, out=run)
    assert not any(run.iterdir())  # refused before writing anything
    monkeypatch.chdir(tmp_path)
    default = Training(RunRequest(ModelConfig(), TrainConfig(), None, False, False), Console(quiet=True))._run_dir_for(data, None, 0)
    with outputs.claimed(default, default_for=data) as first, outputs.claimed(default, default_for=data) as second:
        assert (first, second) == (Path("runs/data"), Path("runs/data-2"))  # both had looked at runs/data
    with pytest.raises(DataError), outputs.claimed(default, default_for=tmp_path / "nothing"):
        raise DataError("a run failing before it wrote anything")
    assert sorted(p.name for p in Path("runs").iterdir()) == ["data", "data-2"]  # no empty runs/nothing left


def test_task_override_errors_come_before_training(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=3)
    with pytest.raises(ConfigError, match="binary"):
        tiny(task="binary").fit(data, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="16"):
        Classifier(model=ModelConfig(arch="convnet_tiny", pretrained=False), image_size=8)


def test_empty_validation_is_an_error(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", "splits", classes=("red", "blue"), per_class=(4, 2, 2))
    for f in (data / "val").rglob("*.png"):
        f.unlink()
    with pytest.raises(DataError, match="validation split is empty"):
        tiny().fit(data, out=tmp_path / "run")


@pytest.mark.slow
def test_explicit_multiclass_on_two_classes(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=5)
    clf = tiny(task="multiclass", train=TrainConfig(frozen_epochs=1, finetune_epochs=0, batch_size=8, patience=0)).fit(
        data, out=tmp_path / "run"
    )
    assert clf.artifact.task == "multiclass"
    assert clf.artifact.network.head[-1].out_features == 2


@pytest.mark.slow
def test_mixed_modes_formats_and_odd_names_train_without_skips(tmp_path, tiny):
    """Real folders mix modes and formats; names have spaces, commas and accents."""
    data = tmp_path / "my data, v2"
    spec = {"café au lait": (150, 100, 60), "sky, blue": (60, 120, 230)}
    for c, rgb in spec.items():
        folder = data / c
        (folder / "sub dir").mkdir(parents=True)
        for i in range(3):
            base = colour_image(rgb, i, size=36 + 2 * i)
            base.save(folder / f"rgb {i}, ü.png")
            base.convert("L").save(folder / f"grey_{i}.jpg")
            rgba = base.convert("RGBA")
            rgba.putpixel((0, 0), (0, 0, 0, 0))
            rgba.save(folder / "sub dir" / f"alpha_{i}.png")
            base.convert("P").save(folder / f"palette_{i}.gif")
            base.convert("CMYK").save(folder / f"cmyk_{i}.jpg")
            exif = Image.Exif()
            exif[0x0112] = 6
            base.resize((40, 30)).save(folder / f"rotated_{i}.jpg", exif=exif.tobytes())
            Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(folder / f"deep_{i}.png")
            base.save(folder / f"bitmap_{i}.bmp")
            base.save(folder / f"web_{i}.webp")
    run = tmp_path / "run, 1"
    clf = tiny(train=TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0)).fit(data, out=run)
    assert rows(run / "skipped.csv") == []
    assert clf.classes == ["café au lait", "sky, blue"]
    split = read_split(run / "split.csv", clf.classes)
    assert sum(len(v) for v in split.values()) == 2 * 3 * 9  # 9 files per (class, i)
    assert any("ü" in s.path for v in split.values() for s in v)
    loaded = headstart.load(run)
    f = str(data / "sky, blue" / "rgb 0, ü.png")
    np.testing.assert_allclose(list(loaded.predict(f)[0].probs.values()), list(clf.predict(f)[0].probs.values()), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_default_run_folder_never_overwrites(tmp_path, make_images, tiny, monkeypatch):
    data = make_images(tmp_path / "pets v1", classes=("red", "blue"), per_class=3)
    monkeypatch.chdir(tmp_path)
    fast = TrainConfig(frozen_epochs=1, finetune_epochs=0, batch_size=8, patience=0)
    first = tiny(train=fast).fit(data)
    second = tiny(train=fast).fit(data)
    assert first.run_dir == Path("runs") / "pets_v1"
    assert second.run_dir.name == "pets_v1-2"
    assert (tmp_path / "runs" / "pets_v1" / "headstart.json").is_file()
    assert (tmp_path / "runs" / "pets_v1-2" / "headstart.json").is_file()


@pytest.mark.slow
def test_loader_worker_processes(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=4)
    clf = tiny(pretrained=False, train=TrainConfig(frozen_epochs=0, finetune_epochs=1, batch_size=4, patience=0, num_workers=1)).fit(
        data, out=tmp_path / "run"
    )
    assert clf.metrics["val"].count == 3


class ModeProbe(L.Callback):
    """Per phase: were the backbone's non-norm modules in train mode while training?"""

    def __init__(self) -> None:
        self.modes: dict[int, set[bool]] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        backbone = module.network.backbone
        flags = {m.training for m in backbone.modules() if not isinstance(m, torch.nn.modules.batchnorm._NormBase)}
        self.modes.setdefault(module.phase, set()).update(flags)
        if module.phase == 2:  # batch-norm statistics stay frozen while fine-tuning
            assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.slow
@pytest.mark.parametrize("feature_cache", [True, False])
def test_fine_tuning_runs_the_base_in_train_mode(tmp_path, make_images, tiny, feature_cache):
    data = make_images(tmp_path / "data", per_class=4)
    probe = ModeProbe()
    tiny(train=TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0, feature_cache=feature_cache)).fit(
        data, out=tmp_path / "run", callbacks=[probe]
    )
    assert probe.modes[2] == {True}  # dropout / drop-path of the base are active when it learns
    if not feature_cache:
        assert probe.modes[1] == {False}  # the frozen base runs in eval mode


# -- the phase plan (moved from the former tests/test_options.py) ---------------------------------
@pytest.mark.parametrize(
    "options, on_gpu, planned",
    [
        ({}, False, [(1, 30)]),  # a CPU: the frozen phase only
        ({}, True, [(1, 30), (2, 3)]),
        ({"finetune_epochs": 2}, False, [(1, 30), (2, 2)]),  # asked for: always honoured
        ({"finetune_epochs": 0}, True, [(1, 30)]),
        ({"frozen_epochs": 0}, False, [(2, 3)]),  # no frozen phase: fine-tuning is the training
        ({"feature_cache": False}, False, [(1, 5)]),
    ],
)
def test_default_phases_follow_the_device(options, on_gpu, planned):
    from headstart.engine.fit import plan_phases

    phases = plan_phases(TrainConfig(**options), pretrained=True, on_gpu=on_gpu)
    assert [(p.number, p.epochs) for p in phases] == planned


def test_accelerator_names_decide_the_device(monkeypatch):
    from headstart.engine.fit import accelerated

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert accelerated("gpu") and accelerated("cuda") and not accelerated("cpu")
    assert accelerated("auto") is bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert accelerated("auto") and not accelerated("cpu")
