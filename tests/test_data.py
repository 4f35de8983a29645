"""Indexing: the three layouts, class order, split matching by name, errors."""

from __future__ import annotations

import pytest
from _imagegen import class_folders, image, split_folders

from headstart.data.index import scan
from headstart.data.split import read_split, stratified_split, write_split
from headstart.errors import DataError


def test_class_folders_recursive_sorted_and_ignoring_non_images(tmp_path):
    class_folders(tmp_path, classes=("red", "blue", "green"), per_class=4)
    (tmp_path / "red" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("loose file")
    index = scan(tmp_path)
    assert index.layout == "folders"
    assert index.classes == ["blue", "green", "red"]  # sorted names, not creation order
    assert len(index.all_samples) == 12
    assert any("deeper" in s.path for s in index.all_samples)
    assert index.ignored == 2
    red = index.classes.index("red")
    assert all(s.labels == (red,) for s in index.all_samples if "/red/" in s.path)


def test_split_layout_matches_classes_by_name(tmp_path):
    split_folders(tmp_path)
    (tmp_path / "test" / "green").rename(tmp_path / "green_gone")
    index = scan(tmp_path)
    assert index.layout == "splits"
    assert set(index.samples) == {"train", "val", "test"}
    for split, samples in index.samples.items():
        for s in samples:
            folder_class = s.path.split("/")[-2]
            assert index.classes[s.labels[0]] == folder_class, split
    assert any("test" in n and "green" in n for n in index.notes)


def test_split_layout_rejects_class_unknown_to_train(tmp_path):
    split_folders(tmp_path)
    (tmp_path / "val" / "purple").mkdir()
    image((1, 2, 3), 0).save(tmp_path / "val" / "purple" / "x.png")
    with pytest.raises(DataError, match="purple"):
        scan(tmp_path)


def test_csv_single_and_multi_label(tmp_path):
    class_folders(tmp_path / "imgs", per_class=3, nested=False)
    rows = ["path,label"] + [f"imgs/{c}/{c}_{i}.png,{c}" for c in ("red", "green") for i in range(3)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    index = scan(tmp_path / "data.csv")
    assert index.layout == "csv" and not index.multilabel
    assert index.classes == ["green", "red"]
    multi = ["path,labels", "imgs/red/red_0.png,warm;bright", "imgs/blue/blue_0.png,cold", "imgs/green/green_0.png,cold;bright",
             "imgs/missing.png,cold"]
    (tmp_path / "multi.csv").write_text("\n".join(multi) + "\n")
    index = scan(tmp_path / "multi.csv")
    assert index.multilabel and index.classes == ["bright", "cold", "warm"]
    assert index.all_samples[0].labels == (0, 2)
    assert [s.reason for s in index.skipped] == ["listed in the CSV but not found"]


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: None, "No images found"),
        (lambda p: class_folders(p, classes=("red",), per_class=2), "Only one class"),
        (lambda p: (class_folders(p, classes=("red", "green"), per_class=2), (p / "empty").mkdir()), "empty"),
    ],
    ids=["zero-images", "one-class", "empty-class"],
)
def test_bad_layouts_name_the_folder(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(DataError, match=match) as info:
        scan(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_path_and_non_csv_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match="not a .csv"):
        scan(tmp_path / "x.txt")


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    class_folders(tmp_path, classes=("red", "green", "blue", "yellow"), per_class=10)
    index = scan(tmp_path)
    a = stratified_split(index.all_samples, 0.2, seed=1)
    b = stratified_split(index.all_samples, 0.2, seed=1)
    c = stratified_split(index.all_samples, 0.2, seed=2)
    assert a == b and a != c
    assert len(a["val"]) == 8 and len(a["train"]) == 32
    assert {s.labels[0] for s in a["val"]} == {0, 1, 2, 3}
    assert not {s.path for s in a["val"]} & {s.path for s in a["train"]}
    index.samples = a
    write_split(tmp_path / "split.csv", index)
    assert read_split(tmp_path / "split.csv", index.classes) == a
