"""The run folder as an artifact: reload parity, prediction, CSV output, evaluation."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import colour_image, make_images
from PIL import Image

import headstart
from headstart import Classifier
from headstart.config import ModelConfig, TrainConfig
from headstart.errors import ArtifactError, ConfigError, DataError
from headstart.predict.eager import Predictor

TOL = {"rtol": 1e-5, "atol": 1e-6}


def probs(pred) -> np.ndarray:
    return np.array(list(pred.probs.values()))


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_load_needs_only_the_run_folder_and_gives_identical_probabilities(tmp_path, make_images, convnet_weights, monkeypatch):
    weights = tmp_path / "w.safetensors"
    shutil.copy(convnet_weights, weights)  # "pretrained" weights, removed before loading
    data = make_images(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    clf = Classifier(
        model=ModelConfig(arch="convnet_tiny", weights=str(weights)),
        train=TrainConfig(frozen_epochs=2, finetune_epochs=1, batch_size=8, patience=0),
        image_size=32,
    ).fit(data, out=run)
    probe = tmp_path / "probe"
    probe.mkdir()
    for f in sorted(data.rglob("*.png"))[::3]:
        shutil.copy(f, probe / f.name)
    colour_image((200, 120, 40), 7, size=57).save(probe / "odd_size.jpg")  # not a training image
    files = [str(p) for p in sorted(probe.iterdir())]
    before = clf.predict(files, top_k=3)

    moved = shutil.copytree(run, tmp_path / "elsewhere" / "model")
    shutil.rmtree(run)
    shutil.rmtree(data)
    weights.unlink()
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path / "empty-cache"))
    loaded = headstart.load(moved)
    assert loaded.classes == ["blue", "green", "red"]
    after = loaded.predict(files, top_k=3)
    assert len(before) == len(after) == len(files)
    for a, b in zip(before, after):
        assert a.error is None and b.error is None
        assert list(a.probs) == list(b.probs) == ["blue", "green", "red"]
        np.testing.assert_allclose(probs(b), probs(a), **TOL)
        assert sum(a.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert [n for n, _ in a.top] == [n for n, _ in b.top]


def test_predict_shapes_order_and_decision(trained):
    clf, data, _ = trained
    files = [str(p) for p in sorted(data.rglob("*.png"))[:6]]
    for top_k in (1, 2, 3, 10):
        for pred in clf.predict(files, top_k=top_k):
            assert pred.error is None
            assert set(pred.probs) == {"blue", "green", "red"}
            assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert len(pred.top) == min(top_k, 3)
            values = [p for _, p in pred.top]
            assert values == sorted(values, reverse=True)
            assert pred.top[0][1] == pytest.approx(max(pred.probs.values()))
            assert pred.labels == [pred.top[0][0]]


def test_trained_model_recognises_the_colours(trained):
    clf, data, _ = trained
    preds = clf.predict([str(data)])  # a folder expands to its images
    assert len(preds) == 30
    right = sum(p.top[0][0] == Path(p.source).parent.name for p in preds)
    assert right >= 27, right


def test_every_kind_of_source_gives_the_same_probabilities(trained, tmp_path):
    clf, data, _ = trained
    path = data / "green" / "green_3.png"
    reference = probs(clf.predict(str(path))[0])
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes()), Image.open(path), Image.open(path).convert("RGBA")):
        got = clf.predict(source)
        assert len(got) == 1 and got[0].error is None
        np.testing.assert_allclose(probs(got[0]), reference, **TOL)
    batch = clf.predict([str(path), path.read_bytes()])
    np.testing.assert_allclose(probs(batch[0]), probs(batch[1]), **TOL)


def test_batched_prediction_equals_one_by_one(trained):
    clf, data, _ = trained
    files = [str(p) for p in sorted(data.rglob("*.png"))][::2]
    together = Predictor(clf.artifact, batch_size=4).predict(files)  # several batches, the last one partial
    assert len(together) == 15
    for f, pred in zip(files, together):
        np.testing.assert_allclose(probs(pred), probs(clf.predict(f)[0]), **TOL)


def test_predict_matches_the_evaluation_path(trained):
    """The stored-square path (fit, evaluate) and the file path (predict) agree."""
    clf, data, run = trained
    results = headstart.load(run).evaluate(data, out=run.parent / "eval-all")
    m = results["data"]
    preds = clf.predict([str(data)])
    truth = [Path(p.source).parent.name for p in preds]
    assert m.count == 30
    assert m.accuracy == pytest.approx(np.mean([p.top[0][0] == t for p, t in zip(preds, truth)]))


def test_unreadable_input_is_a_row_with_an_error(trained, tmp_path):
    clf, data, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_text("this is not a png")
    good = data / "red" / "red_0.png"
    preds = clf.predict([str(good), str(bad), str(good)])
    assert preds[0].error is None and preds[2].error is None
    assert preds[1].error and preds[1].source == str(bad)
    assert preds[1].probs == {} and preds[1].labels == [] and preds[1].top == []
    np.testing.assert_allclose(probs(preds[0]), probs(preds[2]), **TOL)
    with pytest.raises(DataError, match="does not exist"):
        clf.predict(str(tmp_path / "missing.png"))


def test_predict_to_csv(trained, tmp_path):
    clf, data, _ = trained
    folder = tmp_path / "in"
    shutil.copytree(data / "blue", folder)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "notes.txt").write_text("not an image: not listed")
    out = tmp_path / "preds.csv"
    n = clf.predict_to_csv([str(folder)], out, top_k=2)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,prediction,class_1,prob_1,class_2,prob_2,error"
    table = read_csv(out)
    assert n == len(table) == 11
    assert [r["path"] for r in table] == sorted(str(p) for p in folder.glob("*") if p.suffix != ".txt")
    broken = table[-1]
    assert broken["path"].endswith("zz_broken.jpg") and broken["error"]
    assert broken["prediction"] == broken["class_1"] == broken["prob_1"] == ""
    for r in table[:-1]:
        assert r["error"] == ""
        assert r["prediction"] == r["class_1"]
        assert r["class_1"] != r["class_2"] and {r["class_1"], r["class_2"]} <= {"blue", "green", "red"}
        assert 1.0 >= float(r["prob_1"]) >= float(r["prob_2"]) >= 0.0
    assert sum(r["prediction"] == "blue" for r in table[:-1]) >= 9
    # top_k larger than the number of classes: empty cells, never a crash
    clf.predict_to_csv([str(folder / "blue_0.png")], tmp_path / "wide.csv", top_k=4)
    wide = read_csv(tmp_path / "wide.csv")
    assert wide[0]["class_3"] and wide[0]["class_4"] == "" and wide[0]["prob_4"] == ""


# -- evaluation ------------------------------------------------------------------------------
def test_evaluate_another_folder_matches_classes_by_name(trained, tmp_path):
    _, _, run = trained
    other = tmp_path / "other"
    # only two of the three classes, created in the reverse of sorted order, new images
    for i, c in enumerate(("red", "blue")):
        (other / c).mkdir(parents=True)
        for j in range(4):
            colour_image(c, 1000 + 10 * i + j).save(other / c / f"{j}.png")
    clf = headstart.load(run)
    results = clf.evaluate(other, out=tmp_path / "eval")
    m = results["data"]
    assert m.count == 8 and m.classes == ["blue", "green", "red"]
    supports = {c.name: c.support for c in m.per_class}
    assert supports == {"blue": 4, "green": 0, "red": 4}
    expected = np.mean([p.top[0][0] == Path(p.source).parent.name for p in clf.predict([str(other)])])
    assert m.accuracy == pytest.approx(expected)
    assert m.accuracy >= 0.75
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["data"]["count"] == 8 and saved["data"]["accuracy"] == pytest.approx(m.accuracy)
    assert (tmp_path / "eval" / "confusion_matrix_data.png").is_file()
    assert (tmp_path / "eval" / "skipped.csv").is_file()


def test_evaluate_writes_under_the_run_folder_by_default(trained, tmp_path):
    _, data, run = trained
    copy = shutil.copytree(run, tmp_path / "run")
    other = make_images(tmp_path / "holdout", classes=("green", "red"), per_class=2)
    headstart.load(copy).evaluate(other)
    assert (copy / "eval-holdout" / "metrics.json").is_file()


def test_evaluate_unknown_class_is_an_error(trained, tmp_path):
    _, _, run = trained
    other = make_images(tmp_path / "alien", classes=("red", "yellow"), per_class=2)
    with pytest.raises(DataError, match="yellow"):
        headstart.load(run).evaluate(other, out=tmp_path / "eval")


def test_evaluate_own_split_reproduces_the_fit_metrics(trained, tmp_path):
    clf, _, run = trained
    copy = shutil.copytree(run, tmp_path / "run")
    results = headstart.load(copy).evaluate()
    assert set(results) == {"val"}
    val_rows = [r for r in read_csv(copy / "split.csv") if r["split"] == "val"]
    assert results["val"].count == len(val_rows) == clf.metrics["val"].count
    assert results["val"].accuracy == pytest.approx(clf.metrics["val"].accuracy)
    assert results["val"].confusion == clf.metrics["val"].confusion
    assert (copy / "eval-own-split" / "metrics.json").is_file()


def test_evaluate_a_split_layout_uses_its_test_split(trained, tmp_path):
    _, _, run = trained
    data = make_images(tmp_path / "d", "splits", classes=("red", "green", "blue"), per_class=(2, 2, 3))
    results = headstart.load(run).evaluate(data, out=tmp_path / "e1")
    assert set(results) == {"test"} and results["test"].count == 9
    shutil.rmtree(data / "test")
    results = headstart.load(run).evaluate(data, out=tmp_path / "e2")
    assert set(results) == {"val"} and results["val"].count == 6


def test_evaluate_a_csv_and_skip_unreadable_files(trained, tmp_path):
    _, _, run = trained
    csv_path = make_images(tmp_path / "d", "csv", classes=("green", "blue"), per_class=3)
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with csv_path.open("a") as handle:
        handle.write("broken.png,green\nmissing.png,blue\n")
    results = headstart.load(run).evaluate(csv_path, out=tmp_path / "e")
    assert results["data"].count == 6
    skipped = {Path(r["path"]).name for r in read_csv(tmp_path / "e" / "skipped.csv")}
    assert skipped == {"broken.png", "missing.png"}


def test_evaluate_with_nothing_readable_is_an_error(trained, tmp_path):
    _, _, run = trained
    data = tmp_path / "d"
    for c in ("red", "blue"):
        (data / c).mkdir(parents=True)
        (data / c / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="No readable images"):
        headstart.load(run).evaluate(data, out=tmp_path / "e")


# -- the artifact itself ----------------------------------------------------------------------
def test_description_is_plain_json_with_everything_needed(trained):
    _, _, run = trained
    meta = json.loads((run / "headstart.json").read_text())
    assert meta["format"] == "headstart-model" and meta["format_version"] == 1
    assert meta["classes"] == ["blue", "green", "red"] and meta["task"] == "multiclass"
    assert meta["model"]["arch"] == "convnet_tiny" and meta["model"]["threshold"] == 0.5
    assert meta["preprocess"] == {
        "input_size": 32,
        "resize_size": 32,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bilinear",
    }
    assert set(meta["metrics"]["val"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert meta["train"]["finetune_epochs"] == 5


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_json", "not a finished headstart run"),
        ("bad_json", "not valid JSON"),
        ("other_format", "not a headstart model"),
        ("future_version", "format_version"),
        ("one_class", "at least two"),
        ("no_weights", "Cannot read"),
        ("wrong_weights", "does not match"),
    ],
)
def test_broken_run_folders_are_artifact_errors(trained, tmp_path, damage, message):
    _, _, run = trained
    copy = shutil.copytree(run, tmp_path / "run")
    meta_path = copy / "headstart.json"
    meta = json.loads(meta_path.read_text())
    if damage == "no_json":
        meta_path.unlink()
    elif damage == "bad_json":
        meta_path.write_text("{")
    elif damage == "other_format":
        meta_path.write_text(json.dumps({**meta, "format": "something-else"}))
    elif damage == "future_version":
        meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    elif damage == "one_class":
        meta_path.write_text(json.dumps({**meta, "classes": ["red"]}))
    elif damage == "no_weights":
        (copy / "model.safetensors").unlink()
    else:
        meta_path.write_text(json.dumps({**meta, "classes": ["a", "b", "c", "d"]}))  # 4 outputs vs 3 stored
    with pytest.raises(ArtifactError, match=message):
        headstart.load(copy)


def test_an_untrained_classifier_cannot_predict():
    clf = Classifier(model=ModelConfig(arch="convnet_tiny", pretrained=False))
    with pytest.raises(ConfigError, match="not trained"):
        clf.predict("x.png")
    with pytest.raises(ConfigError, match="not trained"):
        clf.evaluate()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_reload_parity_for_sigmoid_tasks(tmp_path, tiny, kind):
    if kind == "binary":
        data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=6)
        files = [str(p) for p in sorted(data.rglob("*.png"))[::2]]
    else:
        data = make_images(tmp_path / "data", "multilabel", classes={"red": "warm", "yellow": "warm;bright", "blue": "cold"}, per_class=5)
        files = [str(p) for p in sorted((tmp_path / "data").rglob("*.png"))[::2]]
    train = TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0, class_weights="balanced", oversample=True)
    clf = tiny(train=train).fit(data, out=tmp_path / "run")
    assert clf.artifact.task == kind
    loaded = headstart.load(tmp_path / "run")
    for a, b in zip(clf.predict(files), loaded.predict(files)):
        np.testing.assert_allclose(probs(b), probs(a), **TOL)
        assert a.labels == b.labels
        if kind == "binary":
            assert sum(a.probs.values()) == pytest.approx(1.0, abs=1e-6)
        else:
            assert a.labels == [c for c, p in a.probs.items() if p >= 0.5]


def test_the_two_artifact_files_alone_are_enough(trained, tmp_path):
    clf, data, run = trained
    minimal = tmp_path / "minimal"
    minimal.mkdir()
    for name in ("model.safetensors", "headstart.json"):
        shutil.copy(run / name, minimal / name)
    files = [str(p) for p in sorted(data.rglob("*.png"))[::5]]
    for a, b in zip(clf.predict(files), headstart.load(minimal).predict(files)):
        np.testing.assert_allclose(probs(b), probs(a), **TOL)
