"""Label issues: flipped labels found first, DATA untouched, --exclude, multi-label, the CSV."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images
from typer.testing import CliRunner

from headstart.cli import app
from headstart.data.index import Sample, scan
from headstart.engine.oof import fold_of
from headstart.errors import DataError
from headstart.label_issues import (
    LabelIssue,
    LabelSearch,
    Neighbour,
    apply_exclude,
    find_in_data,
    find_issues,
    read_csv,
    to_csv,
)
from headstart.label_issues.rank import (
    class_thresholds,
    flag_multiclass,
    flag_multilabel,
)

FLIPPED = {"images/red/red_3.png": "green", "images/green/green_5.png": "blue", "images/blue/blue_7.png": "yellow"}


def flipped_csv(root: Path) -> Path:
    """4 colours x 12 images in a CSV, three labels flipped (the files stay where they are)."""
    listing = make_images(root, "csv", classes=("red", "green", "blue", "yellow"), per_class=12, size=24)
    rows = list(csv.reader(listing.open()))
    rows = [rows[0]] + [[p, FLIPPED.get(p, label)] for p, label in rows[1:]]
    with listing.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return listing


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(name="search")
def search_fixture(convnet_weights):
    return LabelSearch(arch="convnet_tiny", weights=convnet_weights, image_size=24)


def test_flipped_labels_are_found_first(tmp_path, search):
    listing = flipped_csv(tmp_path / "data")
    found = find_in_data(listing, search)
    top = {Path(i.path).relative_to(tmp_path / "data").as_posix(): i for i in found.issues[: len(FLIPPED)]}
    assert set(top) == set(FLIPPED)
    for path, issue in top.items():
        assert issue.given == FLIPPED[path] and issue.suggested == path.split("/")[1]  # the colour it is
        assert issue.p_suggested > issue.p_given
        assert len(issue.neighbours) == 5 and issue.neighbours[0].labels == issue.suggested
    assert found.images == 48 and found.summary["folds"] == 5


def test_doctor_labels_writes_outside_and_never_changes_data(tmp_path, convnet_weights):
    listing = flipped_csv(tmp_path / "data")
    before = digest(tmp_path / "data")
    args = ["doctor", str(listing), "--labels", "--arch", "convnet_tiny", "--weights", convnet_weights, "--image-size", "24"]
    inside = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "data" / "report")])
    assert inside.exit_code != 0 and not (tmp_path / "data" / "report").exists()
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "images/red/red_3.png" in result.output
    assert digest(tmp_path / "data") == before  # byte for byte, no file added or removed
    issues = read_csv(tmp_path / "out" / "label_issues.csv", tmp_path / "data")
    assert {Path(i.path).name for i in issues[:3]} == {"red_3.png", "green_5.png", "blue_7.png"}
    html = (tmp_path / "out" / "doctor.html").read_text()
    assert "Possible label issues" in html and "data:image/png;base64" in html
    assert '"label_issues"' in (tmp_path / "out" / "doctor.json").read_text()


def test_exclude_drops_exactly_the_marked_files(tmp_path):
    data = make_images(tmp_path / "data", classes=("red", "green"), per_class=5, nested=False)
    listing = tmp_path / "issues.csv"
    listing.write_text(
        "path,given,exclude\nred/red_1.png,red,true\ngreen/green_2.png,green,false\ngreen/green_4.png,green,x\nred/gone.png,red,true\n"
    )
    index, lines = apply_exclude(scan(data), listing)
    left = {Path(s.path).name for s in index.all_samples}
    assert left == {f"red_{i}.png" for i in (0, 2, 3, 4)} | {f"green_{i}.png" for i in (0, 1, 2, 3)}
    assert lines[0].startswith("Excluded 2 images") and "exclude = true" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("1 files listed") and "gone.png" in lines[1]
    # Without an exclude column every listed path goes.
    listing.write_text("path\nred/red_1.png\ngreen/green_2.png\n")
    index, lines = apply_exclude(scan(data), listing)
    assert len(index.all_samples) == 8 and len(lines) == 1 and "every listed path" in lines[0]
    listing.write_text("path,exclude\nred/red_1.png,maybe\n")
    with pytest.raises(DataError, match="exclude='maybe'"):
        apply_exclude(scan(data), listing)


@pytest.mark.slow
def test_train_exclude_and_the_runs_label_issues(tmp_path, tiny, capsys):
    from headstart.config import TrainConfig

    data = make_images(tmp_path / "data", classes=("red", "green", "blue"), per_class=8, nested=False)
    listing = tmp_path / "issues.csv"
    listing.write_text("path,exclude\nred/red_0.png,true\nblue/blue_1.png,true\n")
    clf = tiny(train=TrainConfig(frozen_epochs=2, finetune_epochs=0, batch_size=8, patience=0, lr=1e-2, num_workers=0), report=True)
    clf.fit(data, out=tmp_path / "run", exclude=listing)
    split = (tmp_path / "run" / "split.csv").read_text()
    assert "red_0.png" not in split and "blue_1.png" not in split and split.count(".png") == 22
    assert "Excluded 2 images" in capsys.readouterr().err
    # Phase 1 ran on cached features: the label check came with them, into the run and its report.
    issues = read_csv(tmp_path / "run" / "label_issues.csv", data)
    assert all(Path(i.path).is_file() for i in issues)
    assert "Possible label issues" in (tmp_path / "run" / "report.html").read_text()


def test_multilabel_missing_and_spurious():
    rng = np.random.default_rng(0)
    classes = ["bright", "cold", "warm"]
    truth = [(2,), (0, 2), (0,), (1,)] * 15  # red: warm; yellow: bright+warm; white: bright; blue: cold
    colour = np.tile([0, 1, 2, 3], 15)
    features = np.repeat(np.eye(4)[colour], 16, axis=1) * 3 + rng.normal(0, 1.0, (60, 64))  # (60, 64): 16 dims per colour
    given = list(truth)
    given[5] = (0,)  # yellow without "warm": missing
    given[8] = (1, 2)  # red with "cold": spurious
    samples = [Sample(f"/d/{i}.png", labels) for i, labels in enumerate(given)]
    found = find_issues(features.astype(np.float32), samples, classes, "multilabel", "/d", folds=5, neighbours=3)
    top = {(Path(i.path).name, i.issue, i.given, i.suggested) for i in found.issues[:2]}
    assert top == {("5.png", "missing", "bright", "bright;warm"), ("8.png", "spurious", "cold;warm", "warm")}
    assert found.issues[0].p_suggested > found.issues[0].p_given


def test_cut_off_and_per_class_thresholds():
    # Class 1 is hard (low self-confidence): 0.46 for class 1 clears its bar (0.45), so the
    # last image's suggestion is class 1 although class 2 is more probable (0.50 < its 0.9 bar).
    p = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.5, 0.4], [0.3, 0.4, 0.3], [0.05, 0.05, 0.9], [0.04, 0.46, 0.50]])
    labels = np.array([0, 0, 1, 1, 2, 0])
    assert np.allclose(class_thresholds(p, labels), [(0.9 + 0.8 + 0.04) / 3, 0.45, 0.9])
    flags = flag_multiclass(p, labels)
    assert [(f.row, f.given, f.suggested, f.p_given) for f in flags] == [(5, 0, 1, 0.04)]
    # A higher floor takes row 3 (0.40) next; no other class clears its bar: the most probable other one.
    assert [(f.row, f.suggested) for f in flag_multiclass(p, labels, floor=0.45)] == [(5, 1), (3, 0)]
    ml = flag_multilabel(np.array([[0.99], [0.8], [0.03], [0.2]]), np.array([[1], [0], [1], [0]]))
    assert [(f.row, f.issue) for f in ml] == [(2, "spurious")]
    assert flag_multilabel(np.array([[0.97]]), np.array([[0]]))[0].issue == "missing"


def test_folds_are_stratified():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2)
    fold = fold_of(labels, 5, seed=0)
    assert np.bincount(fold[labels == 0], minlength=5).tolist() == [2] * 5
    assert np.bincount(fold, minlength=5).max() - np.bincount(fold, minlength=5).min() <= 1


def test_csv_round_trips(tmp_path):
    root = tmp_path / "data"
    issues = [
        LabelIssue(
            str(root / "a" / "x, 1.png"),
            "cat",
            "dog",
            "mislabelled",
            0.0312,
            0.9123,
            (Neighbour(str(root / "b" / "y.png"), "dog", 0.912), Neighbour(str(root / "c.png"), "dog;cat", 0.5)),
        ),
        LabelIssue(str(root / "z.png"), "cat;dog", "dog", "spurious", 0.1, 0.9, (), exclude=False),
        LabelIssue("/elsewhere/q.png", "dog", "cat", "mislabelled", 0.2, 0.7, (Neighbour(str(root / "z.png"), "cat;dog", 0.25),)),
    ]
    text = to_csv(issues, root)
    (tmp_path / "issues.csv").write_text(text)
    back = read_csv(tmp_path / "issues.csv", root)
    assert back == issues
    assert to_csv(back, root) == text
    header = text.splitlines()[0].split(",")
    assert header[:7] == ["path", "given", "suggested", "issue", "p_given", "p_suggested", "score"] and header[-1] == "exclude"
    assert text.splitlines()[1].startswith('"a/x, 1.png",cat,dog,mislabelled,0.0312,0.9123,0.9688,b/y.png,dog,0.912')


def test_multilabel_csv_end_to_end(tmp_path, search):
    """A multi-label CSV through the whole search: per-label rows, label sets in the CSV."""
    listing = make_images(
        tmp_path / "data",
        "multilabel",
        classes={"red": "warm", "yellow": "bright;warm", "white": "bright", "blue": "cold"},
        per_class=10,
        size=24,
    )
    text = listing.read_text().replace("images/yellow/yellow_3.png,bright;warm", "images/yellow/yellow_3.png,bright")
    listing.write_text(text)
    found = find_in_data(listing, search)
    assert found.task == "multilabel" and found.images == 40
    assert {i.issue for i in found.issues} <= {"missing", "spurious"}
    first = found.issues[0]
    assert (Path(first.path).name, first.issue, first.given, first.suggested) == ("yellow_3.png", "missing", "bright", "bright;warm")
    (tmp_path / "issues.csv").write_text(to_csv(found.issues, found.root))
    assert read_csv(tmp_path / "issues.csv", found.root) == found.issues
