"""Indexing: every data layout, the class-order rule, ignored files, and data errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import colour_image, make_images

from headstart.data.index import scan
from headstart.errors import DataError


def by_class(index, split: str | None = None) -> dict[str, set[str]]:
    """{class name: {file names}} of a split (or of all samples)."""
    samples = index.samples[split] if split else index.all_samples
    out: dict[str, set[str]] = {}
    for s in samples:
        assert len(s.labels) == 1
        out.setdefault(index.classes[s.labels[0]], set()).add(Path(s.path).name)
    return out


# -- class folders ---------------------------------------------------------------------------
def test_class_folders_find_images_at_any_depth(tmp_path):
    root = tmp_path / "data"
    for c in ("red", "blue"):
        for depth in range(5):
            folder = root / c / Path(*[f"d{j}" for j in range(depth)]) if depth else root / c
            folder.mkdir(parents=True, exist_ok=True)
            colour_image(c, depth).save(folder / f"{c}{depth}.png")
    index = scan(root)
    assert index.layout == "folders"
    assert index.classes == ["blue", "red"]
    assert list(index.samples) == ["all"]
    assert by_class(index) == {c: {f"{c}{d}.png" for d in range(5)} for c in ("red", "blue")}
    assert all(os.path.isabs(s.path) and Path(s.path).is_file() for s in index.all_samples)
    assert index.ignored == 0 and index.notes == [] and not index.multilabel


def test_class_order_is_sorted_names_not_creation_order(tmp_path):
    root = tmp_path / "data"
    names = ["zebra", "Apple", "mango", "10", "2", "Émile"]
    for i, name in enumerate(names):  # created in this (unsorted) order
        (root / name).mkdir(parents=True)
        colour_image((i * 40, 100, 100), i).save(root / name / "x.png")
    index = scan(root)
    # Python string order (code points): digits < upper case < lower case < accented.
    assert index.classes == ["10", "2", "Apple", "mango", "zebra", "Émile"] == sorted(names)
    for s in index.all_samples:
        assert Path(s.path).parent.name == index.classes[s.labels[0]]


def test_non_image_files_are_ignored_and_counted(tmp_path, make_images):
    root = make_images(tmp_path / "data", classes=("red", "blue"), per_class=3)
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "blue" / "sub").mkdir(exist_ok=True)
    (root / "blue" / "sub" / "data.json").write_text("{}")
    (root / "blue" / "Thumbs.db").write_bytes(b"\0\1")
    (root / "README.md").write_text("loose file at the top: it has no class")
    (root / "red" / ".hidden.png").write_bytes(b"hidden files are skipped entirely")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    index = scan(root)
    assert index.classes == ["blue", "red"]  # .git is not a class
    assert len(index.all_samples) == 6
    assert index.ignored == 4
    assert not any(Path(s.path).name.startswith(".") for s in index.all_samples)


def test_upper_case_and_other_image_extensions_are_images(tmp_path):
    root = tmp_path / "data"
    for c, ext, fmt in (
        ("a", ".JPG", "JPEG"),
        ("a", ".jpeg", "JPEG"),
        ("b", ".BMP", "BMP"),
        ("b", ".webp", "WEBP"),
        ("b", ".TIFF", "TIFF"),
    ):
        (root / c).mkdir(parents=True, exist_ok=True)
        colour_image("red", 0).save(root / c / f"x{ext}", fmt)
    index = scan(root)
    assert index.ignored == 0
    assert sorted(Path(s.path).name for s in index.all_samples) == ["x.BMP", "x.JPG", "x.TIFF", "x.jpeg", "x.webp"]


# -- train/val/test ---------------------------------------------------------------------------
def test_split_layout_matches_classes_by_name(tmp_path, make_images):
    # make_images creates val/ and test/ class folders in reverse order.
    root = make_images(tmp_path / "data", "splits", classes=("red", "green", "blue"), per_class=(4, 2, 3))
    index = scan(root)
    assert index.layout == "splits"
    assert index.classes == ["blue", "green", "red"]
    assert set(index.samples) == {"train", "val", "test"}
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        groups = by_class(index, split)
        assert set(groups) == {"red", "green", "blue"}
        for c, files in groups.items():
            assert files == {f"{c}_{i}.png" for i in range(n)}, (split, c)
    for split, samples in index.samples.items():
        for s in samples:  # the label is the folder's name, whatever the folder order was
            assert Path(s.path).parent.name == index.classes[s.labels[0]]
            assert Path(s.path).parent.parent.name == split
    assert index.notes == []


def test_split_layout_accepts_valid_and_validation_names(tmp_path, make_images):
    root = make_images(tmp_path / "data", "splits", classes=("red", "blue"), per_class=(3, 2, 2))
    (root / "val").rename(root / "validation")
    (root / "test").rename(root / "Valid-not-a-split")  # an unknown folder next to train/validation
    index = scan(root)
    assert index.layout == "splits"
    assert set(index.samples) == {"train", "val"}
    assert len(index.samples["val"]) == 4


def test_class_missing_from_val_is_a_note(tmp_path, make_images):
    root = make_images(tmp_path / "data", "splits", classes=("red", "green", "blue"), per_class=(4, 2, 2))
    for f in (root / "val" / "green").iterdir():
        f.unlink()
    (root / "val" / "green").rmdir()
    index = scan(root)
    assert index.classes == ["blue", "green", "red"]
    assert any("val" in note and "green" in note for note in index.notes), index.notes
    assert "green" not in by_class(index, "val")
    assert not any("test" in note for note in index.notes)


def test_val_class_that_train_lacks_is_an_error(tmp_path, make_images):
    root = make_images(tmp_path / "data", "splits", classes=("red", "blue"), per_class=(3, 2, 2))
    (root / "val" / "purple").mkdir()
    colour_image((128, 0, 128), 0).save(root / "val" / "purple" / "p.png")
    with pytest.raises(DataError, match="purple") as info:
        scan(root)
    assert str((root / "val").resolve()) in str(info.value)


def test_train_folder_without_val_takes_validation_from_train(tmp_path, make_images):
    root = make_images(tmp_path / "data", "splits", classes=("red", "blue"), per_class=(4, 2, 2))
    for f in sorted((root / "val").rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    (root / "val").rmdir()
    index = scan(root)
    assert index.layout == "splits"
    assert set(index.samples) == {"train", "test"}
    assert any("no val" in note for note in index.notes), index.notes


def test_a_class_named_train_in_a_folders_layout_is_a_class(tmp_path, make_images):
    root = make_images(tmp_path / "data", classes=("red", "blue"), per_class=2)
    (root / "red").rename(root / "train")  # 'train' next to another class folder, no val/
    index = scan(root)
    assert index.layout == "folders"
    assert index.classes == ["blue", "train"]


# -- CSV --------------------------------------------------------------------------------------
def test_csv_single_label_with_relative_paths(tmp_path, make_images, monkeypatch):
    csv_path = make_images(tmp_path / "data", "csv", classes=("red", "green", "blue"), per_class=3)
    with csv_path.open("a") as handle:
        handle.write("images/red/missing.png,red\n")
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the CSV's folder, not the working directory
    index = scan(csv_path)
    assert index.layout == "csv" and not index.multilabel
    assert index.classes == ["blue", "green", "red"]
    assert len(index.all_samples) == 9
    for s in index.all_samples:
        assert os.path.isabs(s.path) and Path(s.path).is_file()
        assert Path(s.path).parent.name == index.classes[s.labels[0]]
    assert [Path(s.path).name for s in index.skipped] == ["missing.png"]
    assert "not found" in index.skipped[0].reason


def test_csv_absolute_paths_and_column_case(tmp_path, make_images):
    make_images(tmp_path / "imgs", classes=("red", "blue"), per_class=2, nested=False)
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "list.csv").write_text("Path,Label\n" + "".join(f"{f},{f.parent.name}\n" for f in files))
    index = scan(other / "list.csv")
    assert index.classes == ["blue", "red"]
    assert sorted(s.path for s in index.all_samples) == sorted(str(f.resolve()) for f in files)


def test_csv_multilabel(tmp_path, make_images):
    tags = {"red": "warm", "yellow": "warm;bright", "white": "bright; cold", "blue": "cold"}
    csv_path = make_images(tmp_path / "data", "multilabel", classes=tags, per_class=2)
    index = scan(csv_path)
    assert index.multilabel and index.layout == "csv"
    assert index.classes == ["bright", "cold", "warm"]
    got = {Path(s.path).name: {index.classes[i] for i in s.labels} for s in index.all_samples}
    assert got["yellow_0.png"] == {"warm", "bright"}
    assert got["white_1.png"] == {"bright", "cold"}
    assert got["red_0.png"] == {"warm"}
    assert len(got) == 8


def test_csv_without_the_needed_columns_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("file,class\na.png,red\n")
    with pytest.raises(DataError, match="path"):
        scan(path)


def test_a_non_csv_file_is_an_error(tmp_path):
    path = tmp_path / "image.png"
    colour_image("red", 0).save(path)
    with pytest.raises(DataError, match="not a .csv"):
        scan(path)


# -- errors -----------------------------------------------------------------------------------
def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        scan(missing)
    assert str(missing) in str(info.value)


def test_zero_images(tmp_path):
    root = tmp_path / "data"
    (root / "red").mkdir(parents=True)
    (root / "blue").mkdir()
    (root / "red" / "a.txt").write_text("x")
    (root / "blue" / "b.csv").write_text("x")
    with pytest.raises(DataError, match="No images") as info:
        scan(root)
    assert str(root.resolve()) in str(info.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No images"):
        scan(tmp_path / "empty")


def test_a_single_class(tmp_path, make_images):
    root = make_images(tmp_path / "data", classes=("red",), per_class=3)
    with pytest.raises(DataError, match="one class") as info:
        scan(root)
    assert "red" in str(info.value) and str(root.resolve()) in str(info.value)


def test_an_empty_class_folder(tmp_path, make_images):
    root = make_images(tmp_path / "data", classes=("red", "blue"), per_class=3)
    (root / "green" / "sub").mkdir(parents=True)
    (root / "green" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as info:
        scan(root)
    assert str((root / "green").resolve()) in str(info.value)


def test_an_empty_class_folder_in_train_split(tmp_path, make_images):
    root = make_images(tmp_path / "data", "splits", classes=("red", "blue"), per_class=(3, 2, 2))
    (root / "train" / "green").mkdir()
    with pytest.raises(DataError) as info:
        scan(root)
    assert str((root / "train" / "green").resolve()) in str(info.value)


def test_a_single_class_csv(tmp_path, make_images):
    csv_path = make_images(tmp_path / "data", "csv", classes=("red",), per_class=3)
    with pytest.raises(DataError, match="one class"):
        scan(csv_path)


def test_csv_listing_only_missing_files(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("path,label\nnope1.png,a\nnope2.png,b\n")
    with pytest.raises(DataError, match="No existing image files") as info:
        scan(path)
    assert str(path.resolve()) in str(info.value)


def test_remap_matches_names_and_rejects_unknown_classes(tmp_path, make_images):
    root = make_images(tmp_path / "data", classes=("red", "blue"), per_class=2, nested=False)
    index = scan(root)  # classes ["blue", "red"]
    remapped = index.remap(["green", "red", "blue"])
    assert remapped.classes == ["green", "red", "blue"]
    for s in remapped.all_samples:
        assert remapped.classes[s.labels[0]] == Path(s.path).parent.name
    with pytest.raises(DataError, match="blue"):
        index.remap(["red", "green"])


def test_csv_written_by_excel_with_a_bom_and_crlf(tmp_path, make_images):
    make_images(tmp_path / "d", classes=("red", "blue"), per_class=2, nested=False)
    rows = "".join(f"{c}/{c}_{i}.png,{c}\r\n" for c in ("red", "blue") for i in range(2))
    (tmp_path / "d" / "excel.csv").write_bytes(("\ufeffpath,label\r\n" + rows).encode("utf-8"))
    index = scan(tmp_path / "d" / "excel.csv")
    assert index.classes == ["blue", "red"] and len(index.all_samples) == 4


def test_csv_empty_single_label_is_an_error(tmp_path, make_images):
    csv_path = make_images(tmp_path / "d", "csv", classes=("red", "blue"), per_class=2)
    with csv_path.open("a") as handle:
        handle.write("images/red/red_0.png,\n")
    with pytest.raises(DataError, match="empty label"):
        scan(csv_path)


def test_single_label_csv_never_gives_an_image_two_labels(tmp_path, make_images):
    """A ';' in a single-label 'label' column: either one class named 'red;blue' or an
    error pointing to the 'labels' column, but never a silently multi-labelled image."""
    csv_path = make_images(tmp_path / "d", "csv", classes=("red", "blue"), per_class=2)
    with csv_path.open("a") as handle:
        handle.write("images/red/red_0.png,red;blue\n")
    try:
        index = scan(csv_path)
    except DataError as exc:
        assert "labels" in str(exc)
    else:
        assert not index.multilabel
        assert all(len(s.labels) == 1 for s in index.all_samples), [s for s in index.all_samples if len(s.labels) != 1]


# -- moved from the former tests/test_data.py ---------------------------------------------------
def test_split_layout_with_a_class_missing_from_test_is_a_note(tmp_path, make_images):
    make_images(tmp_path, "splits", classes=("red", "green", "blue"), per_class=(8, 3, 3))
    (tmp_path / "test" / "green").rename(tmp_path / "green_gone")
    index = scan(tmp_path)
    assert index.layout == "splits"
    assert set(index.samples) == {"train", "val", "test"}
    for split, samples in index.samples.items():
        for s in samples:
            folder_class = s.path.split("/")[-2]
            assert index.classes[s.labels[0]] == folder_class, split
    assert any("test" in n and "green" in n for n in index.notes)


def test_csv_single_and_multi_label_with_a_missing_file(tmp_path, make_images):
    make_images(tmp_path / "imgs", per_class=3, nested=False)
    rows = ["path,label"] + [f"imgs/{c}/{c}_{i}.png,{c}" for c in ("red", "green") for i in range(3)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    index = scan(tmp_path / "data.csv")
    assert index.layout == "csv" and not index.multilabel
    assert index.classes == ["green", "red"]
    multi = [
        "path,labels",
        "imgs/red/red_0.png,warm;bright",
        "imgs/blue/blue_0.png,cold",
        "imgs/green/green_0.png,cold;bright",
        "imgs/missing.png,cold",
    ]
    (tmp_path / "multi.csv").write_text("\n".join(multi) + "\n")
    index = scan(tmp_path / "multi.csv")
    assert index.multilabel and index.classes == ["bright", "cold", "warm"]
    assert index.all_samples[0].labels == (0, 2)
    assert [s.reason for s in index.skipped] == ["listed in the CSV but not found"]


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: None, "No images found"),
        (lambda p: make_images(p, classes=("red",), per_class=2), "Only one class"),
        (lambda p: (make_images(p, classes=("red", "green"), per_class=2), (p / "empty").mkdir()), "empty"),
    ],
    ids=["zero-images", "one-class", "empty-class"],
)
def test_bad_layouts_name_the_folder_in_one_line(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(DataError, match=match) as info:
        scan(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)
