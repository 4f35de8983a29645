"""Parquet and WebDataset shards: indexed without unpacking, read by address, and trained to
the same split, weights and metrics as the same images in folders."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import colour_image  # noqa: E402

from headstart import shards  # noqa: E402
from headstart.cli import app  # noqa: E402
from headstart.data.index import scan  # noqa: E402
from headstart.errors import DataError  # noqa: E402
from headstart.preprocess import open_image  # noqa: E402

CLASSES = ("blue", "green", "red")  # sorted: folder order is class order
FAST = ["--arch", "convnet_tiny", "--no-pretrained", "--image-size", "32", "--frozen-epochs", "1", "--finetune-epochs", "1"]
FAST += ["--batch-size", "8", "--patience", "0", "--seed", "3", "--no-augment"]


def _png(colour: str, i: int) -> bytes:
    buffer = io.BytesIO()
    colour_image(colour, 1000 * CLASSES.index(colour) + i).save(buffer, "PNG")
    return buffer.getvalue()


def _images(per_class: int) -> list[tuple[str, str, bytes]]:
    """(class, key, png bytes), class by class, keys in sorted order: the folder walk's order."""
    return [(c, f"{c}_{i:02d}", _png(c, i)) for c in CLASSES for i in range(per_class)]


def write_folder(root: Path, images) -> Path:
    for c, key, data in images:
        (root / c).mkdir(parents=True, exist_ok=True)
        (root / c / f"{key}.png").write_bytes(data)
    return root


def hub_metadata(names: list[str]) -> dict[bytes, bytes]:
    features = {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def write_parquet(root: Path, images, shards_n: int = 2, split: str = "train", row_group: int = 4) -> Path:
    """The Hub's layout: data/{split}-0000k-of-0000n.parquet, {bytes, path} images, ClassLabel ints."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    per = -(-len(images) // shards_n)
    for k in range(shards_n):
        part = images[k * per : (k + 1) * per]
        table = pa.table(
            {"image": [{"bytes": d, "path": f"{key}.png"} for _, key, d in part], "label": [CLASSES.index(c) for c, _, _ in part]}
        ).replace_schema_metadata(hub_metadata(list(CLASSES)))
        pq.write_table(table, root / "data" / f"{split}-{k:05d}-of-{shards_n:05d}.parquet", row_group_size=row_group)
    return root


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_webdataset(root: Path, images, shards_n: int = 2, label: str = "cls") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    per = -(-len(images) // shards_n)
    for k in range(shards_n):
        with tarfile.open(root / f"shard-{k:06d}.tar", "w") as archive:
            for c, key, data in images[k * per : (k + 1) * per]:
                _add(archive, f"{key}.png", data)
                _add(archive, f"{key}.{label}", c.encode() if label == "cls" else json.dumps({"label": c}).encode())
    return root


def test_parquet_index_reads_labels_from_hub_metadata_and_images_by_row(tmp_path):
    images = _images(5)
    index = scan(write_parquet(tmp_path / "pq", images))
    assert index.layout == "parquet" and index.classes == list(CLASSES)
    assert [index.classes[s.labels[0]] for s in index.samples["all"]] == [c for c, _, _ in images]
    first = index.samples["all"][0].path
    assert first.endswith("train-00000-of-00002.parquet#row=0") and shards.read_bytes(first) == images[0][2]
    row = index.samples["all"][9].path  # second shard, in its second row group
    assert open_image(row).size == (32, 32) and shards.read_bytes(row) == images[9][2]


def test_parquet_splits_from_file_names_and_string_and_list_labels(tmp_path):
    images = _images(4)
    write_parquet(tmp_path / "pq", images[:9], shards_n=1, split="train")
    write_parquet(tmp_path / "pq", images[9:], shards_n=1, split="validation")
    assert {k: len(v) for k, v in scan(tmp_path / "pq").samples.items()} == {"train": 9, "val": 3}
    tags = pa.table({"image": [d for _, _, d in images], "labels": [[c, "x"] if i % 2 else [c] for i, (c, _, _) in enumerate(images)]})
    pq.write_table(tags, tmp_path / "tags.parquet")
    index = scan(tmp_path / "tags.parquet")
    assert index.multilabel and index.classes == [*CLASSES, "x"] and index.samples["all"][1].labels == (0, 3)


def test_webdataset_index_json_labels_and_hostile_members(tmp_path):
    images = _images(3)
    root = write_webdataset(tmp_path / "wds", images, shards_n=1, label="json")
    with tarfile.open(root / "shard-000001.tar", "w") as archive:
        _add(archive, "../evil.png", images[0][2])
        _add(archive, "/abs.png", images[0][2])
        _add(archive, "nolabel.png", images[0][2])
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    index = scan(root)
    assert index.layout == "webdataset" and len(index.samples["all"]) == 9
    assert {s.reason.split(" ")[0] for s in index.skipped} == {"unsafe", "no"} and len(index.skipped) == 3
    assert shards.read_bytes(index.samples["all"][4].path) == images[4][2]
    with pytest.raises(OSError, match="no such regular member"):
        shards.read_bytes(str(root / "shard-000001.tar") + "#link.png")


def test_hub_name_fetches_parquet_into_the_hub_cache_and_offline_says_so(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def offline(**kwargs):
        calls.append(kwargs)
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DataError, match="needs the network and it failed"):
        scan("hf:/datasets/user/pets")  # as pathlib leaves hf://datasets/user/pets
    assert calls == [{"repo_id": "user/pets", "repo_type": "dataset", "allow_patterns": ["*.parquet", "**/*.parquet"]}]
    local = write_parquet(tmp_path / "snapshot", _images(2), shards_n=1)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: str(local))
    assert scan("hf://datasets/user/pets").layout == "parquet"
    with pytest.raises(DataError, match="USER/NAME"):
        scan("hf://datasets/../etc")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet"):
        scan(bad)


def _key_of(path: str, images) -> str:
    """The image's key from a file path, a tar member or a parquet row (2 shards, as written)."""
    shard, _, member = path.rpartition("#")
    if not member.startswith("row="):
        return Path(member or path).stem
    return images[int(shard.split("train-")[1][:5]) * (len(images) // 2) + int(member[4:])][1]


@pytest.mark.slow
def test_same_split_weights_and_metrics_as_folders(tmp_path):
    from safetensors.numpy import load_file

    images = _images(8)
    sources = {
        "folder": write_folder(tmp_path / "folder", images),
        "parquet": write_parquet(tmp_path / "parquet", images),
        "webdataset": write_webdataset(tmp_path / "wds", images),
    }
    runner = CliRunner()
    runs = {}
    for name, data in sources.items():
        runs[name] = tmp_path / f"run-{name}"
        result = runner.invoke(app, ["train", str(data), "--out", str(runs[name]), *FAST])
        assert result.exit_code == 0, (name, result.output, result.exception)
    base = runs["folder"]
    weights = load_file(str(base / "model.safetensors"))
    metrics = json.loads((base / "metrics.json").read_text())
    for name in ("parquet", "webdataset"):
        run = runs[name]
        with (run / "split.csv").open() as a, (base / "split.csv").open() as b:
            ours = [(r["split"], _key_of(r["path"], images), r["labels"]) for r in csv.DictReader(a)]
            theirs = [(r["split"], _key_of(r["path"], images), r["labels"]) for r in csv.DictReader(b)]
        assert ours == theirs, name
        other = load_file(str(run / "model.safetensors"))
        assert other.keys() == weights.keys() and all((other[k] == weights[k]).all() for k in weights), name
        assert json.loads((run / "metrics.json").read_text()) == metrics, name
        assert (run / "report.html").is_file()


def test_predict_inputs_and_doctor_read_images_inside_shards(tmp_path):
    from headstart.doctor import diagnose
    from headstart.predict.inputs import iter_sources

    images = _images(2)
    pq_root = write_parquet(tmp_path / "pq", images, shards_n=1, row_group=2)
    wds = write_webdataset(tmp_path / "wds", images, shards_n=1)
    parquet_file = pq_root / "data" / "train-00000-of-00001.parquet"
    member = f"{wds / 'shard-000000.tar'}#red_01.png"
    found = list(iter_sources([parquet_file, wds, member]))
    assert found[0] == f"{parquet_file}#row=0" and len(found) == 2 * len(images) + 1 and found[-1] == member
    assert [shards.read_bytes(a) for a in found[:6]] == [d for _, _, d in images]
    for root in (pq_root, wds):
        checks = {f.check for f in diagnose(root).findings}
        assert not {"unreadable", "wrong_extension"} & checks, (root, checks)


def test_export_parity_uses_held_out_images_inside_shards(tmp_path):
    from headstart.export.parity import held_out_paths

    wds = write_webdataset(tmp_path / "wds", _images(2), shards_n=1)
    rows = [("val", f"{wds / 'shard-000000.tar'}#red_01.png", "red"), ("val", f"{tmp_path / 'gone.tar'}#x.png", "red")]
    with (tmp_path / "split.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("split", "path", "labels"), *rows])
    assert held_out_paths(tmp_path, list(CLASSES)) == [rows[0][1]]


def test_webdataset_multilabel_json_and_integer_cls(tmp_path):
    images = _images(2)
    with tarfile.open(tmp_path / "tags.tar", "w") as archive:
        for i, (c, key, data) in enumerate(images):
            _add(archive, f"sub/{key}.v1.png", data)  # key: up to the first dot of the last part
            _add(archive, f"sub/{key}.json", json.dumps({"label": [c, "x"] if i % 2 else [c]}).encode())
    index = scan(tmp_path / "tags.tar")
    assert index.multilabel and index.classes == [*CLASSES, "x"]
    assert index.samples["all"][1].labels == (0, 3) and index.samples["all"][1].path.endswith("tags.tar#sub/blue_01.v1.png")
    with tarfile.open(tmp_path / "n.tar", "w") as archive:
        for i, (_, key, data) in enumerate(images):
            _add(archive, f"{key}.jpg", data)  # a PNG named .jpg: decoders pinned, JPEG tried first, PNG still read
            _add(archive, f"{key}.cls", str(i % 2).encode())
    index = scan(tmp_path / "n.tar")
    assert index.classes == ["0", "1"] and open_image(index.samples["all"][0].path).format == "PNG"


def test_an_undecodable_image_inside_a_shard_is_named_by_its_address(tmp_path):
    from PIL import UnidentifiedImageError

    with tarfile.open(tmp_path / "bad.tar", "w") as archive:
        _add(archive, "k.png", b"not a png")
    with pytest.raises(UnidentifiedImageError, match=r"bad\.tar#k\.png"):
        open_image(f"{tmp_path / 'bad.tar'}#k.png")
