"""The stratified, seeded train/validation split and its split.csv."""

from __future__ import annotations

from collections import Counter

import pytest

from headstart.data.index import DataIndex, Sample
from headstart.data.split import read_split, stratified_split, write_split
from headstart.errors import ArtifactError


def samples(counts: dict[int, int]) -> list[Sample]:
    return [Sample(f"/data/c{c}/img{i:03d}.png", (c,)) for c, n in counts.items() for i in range(n)]


def per_class(items: list[Sample]) -> Counter:
    return Counter(s.labels[0] for s in items)


def test_deterministic_for_a_seed():
    pool = samples({0: 30, 1: 20, 2: 10})
    a = stratified_split(pool, 0.2, seed=7)
    b = stratified_split(list(reversed(pool)), 0.2, seed=7)  # input order does not matter
    assert a == b
    c = stratified_split(pool, 0.2, seed=8)
    assert {s.path for s in c["val"]} != {s.path for s in a["val"]}


def test_partition_and_proportions():
    counts = {0: 50, 1: 20, 2: 10, 3: 5}
    pool = samples(counts)
    split = stratified_split(pool, 0.2, seed=0)
    train, val = split["train"], split["val"]
    assert sorted(s.path for s in train + val) == sorted(s.path for s in pool)
    assert not {s.path for s in train} & {s.path for s in val}
    got = per_class(val)
    for c, n in counts.items():
        assert got[c] == max(1, round(n * 0.2)), c
        assert per_class(train)[c] == n - got[c]
    assert abs(len(val) / len(pool) - 0.2) < 0.03


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_every_class_with_two_or_more_images_reaches_val(fraction):
    pool = samples({0: 2, 1: 3, 2: 40, 3: 1})
    split = stratified_split(pool, fraction, seed=3)
    got = per_class(split["val"])
    assert got[0] == 1 and got[1] >= 1 and got[2] >= 1
    assert got[3] == 0  # a single image stays in training
    assert per_class(split["train"])[3] == 1
    for c in (0, 1, 2):
        assert per_class(split["train"])[c] >= 1  # never all of a class in val


def test_multilabel_split_stratifies_on_the_rarest_label():
    pool = [Sample(f"/d/{i}.png", (0,) if i % 5 else (0, 1)) for i in range(50)]  # label 1 on 10 images
    split = stratified_split(pool, 0.2, seed=0)
    with_rare = [s for s in split["val"] if 1 in s.labels]
    assert len(with_rare) == 2
    assert len(split["val"]) == 10


def test_split_csv_round_trip(tmp_path):
    classes = ["a", "b", "c"]
    splits = {
        "train": [Sample("/x/1.png", (0,)), Sample("/x/2,comma.png", (2,))],
        "val": [Sample("/x/3.png", (1,))],
        "test": [Sample("/x/ünï 4.png", (0, 2))],
    }
    path = tmp_path / "split.csv"
    write_split(path, DataIndex(tmp_path, "folders", classes, True, splits))
    assert path.read_text(encoding="utf-8").splitlines()[0] == "split,path,labels"
    assert read_split(path, classes) == splits


def test_read_split_errors(tmp_path):
    with pytest.raises(ArtifactError, match="missing"):
        read_split(tmp_path / "split.csv", ["a", "b"])
    path = tmp_path / "split.csv"
    write_split(path, DataIndex(tmp_path, "folders", ["a", "z"], False, {"train": [Sample("/p.png", (1,))]}))
    with pytest.raises(ArtifactError, match="z"):
        read_split(path, ["a", "b"])
