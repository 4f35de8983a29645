"""The data doctor: every check on a crafted bad data set, read-only, outputs, scaling."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import colour_image, make_images
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from headstart.cli import app
from headstart.data.index import scan
from headstart.doctor import diagnose, quick_checks, write_outputs
from headstart.doctor.inspect import inspect_file, sniff
from headstart.doctor.similar import near_groups
from headstart.errors import ConfigError


def _bomb_png(path: Path, width: int = 20_000, height: int = 20_000) -> None:
    """A PNG whose header claims width x height pixels (400 MP) with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def shapes(seed: int, size: int = 96) -> Image.Image:
    """Flat-coloured discs on grey: clip-art-like content (noise has no stable hash)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(8, 30))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def bad_data(root: Path) -> Path:
    """train/val/test with one planted problem of each kind (see the comments)."""
    make_images(root, "splits", classes=("red", "green", "blue"), per_class=(10, 4, 4))
    train, val, test = root / "train", root / "val", root / "test"
    shutil.copy(train / "red" / "red_0.png", train / "red" / "red_copy.png")  # duplicate within a class
    shutil.copy(train / "red" / "red_1.png", val / "red" / "leaked.png")  # leakage train -> val
    shutil.copy(train / "green" / "green_0.png", train / "blue" / "mislabelled.png")  # label conflict
    shapes(1).save(train / "blue" / "near_a.png")
    shapes(1).save(test / "blue" / "near_b.jpg", quality=80)  # near-duplicate leakage (re-encoded)
    shapes(2).save(test / "blue" / "other.png")  # similar style, different picture: not a duplicate
    data = (train / "green" / "green_1.png").read_bytes()
    (train / "green" / "truncated.png").write_bytes(data[: len(data) // 2])  # truncated
    colour_image("green", 3).save(train / "green" / "really_png.jpg", format="PNG")  # wrong extension
    (train / "green" / "notes.png").write_text("<html>not an image</html>")  # not an image at all
    colour_image("red", 9, size=8).save(train / "red" / "tiny.png")  # tiny
    _bomb_png(train / "red" / "bomb.png")  # decompression-bomb sized header
    colour_image("red", 5).convert("L").save(train / "red" / "grey.png")  # mode mix
    (train / "Blue ").mkdir()  # class names that differ only by case and spacing
    for i in range(2):
        colour_image("blue", 100 + i).save(train / "Blue " / f"b{i}.png")
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest()) for p in root.rglob("*") if p.is_file()
    }


def test_every_planted_problem_is_found_and_the_data_is_untouched(tmp_path):
    root = bad_data(tmp_path / "bad")
    before = _snapshot(root)
    d = diagnose(root)
    assert _snapshot(root) == before  # read-only: nothing changed, nothing added
    by_check = {f.check: f for f in d.findings}

    def paths(check: str) -> set[str]:
        items = by_check[check].items
        flat = [m for g in items for m in g] if isinstance(items[0], list) else items
        return {Path(m["path"]).name for m in flat}

    assert {"truncated.png", "notes.png"} <= paths("unreadable")
    reasons = {Path(i["path"]).name: i["reason"] for i in by_check["unreadable"].items}
    assert reasons["truncated.png"].startswith("truncated") and "html" in reasons["notes.png"]
    assert paths("wrong_extension") == {"really_png.jpg"}
    assert paths("tiny") == {"tiny.png"}
    assert paths("huge") == {"bomb.png"} and by_check["huge"].items[0]["pixels"] == 400_000_000
    assert paths("duplicates") == {"red_0.png", "red_copy.png"}
    assert paths("leakage") == {"red_1.png", "leaked.png"}
    assert paths("label_conflict") == {"green_0.png", "mislabelled.png"}
    assert paths("near_leakage") == {"near_a.png", "near_b.jpg"}
    assert by_check["class_names"].items == [{"names": ["Blue ", "blue"]}]
    assert by_check["class_name_spaces"].items == [{"name": "Blue "}]
    unreadable = len(by_check["unreadable"].items)
    assert by_check["mode_mix"].items == {"RGB": d.files - unreadable - 2, "L": 1}  # Pillow refused the bomb: no mode
    severities = [f.severity for f in d.findings]
    assert severities == sorted(severities, key=("error", "warning", "info").index)


def test_outputs_are_written_outside_the_data(tmp_path):
    root = bad_data(tmp_path / "bad")
    d = diagnose(root)
    folder = write_outputs(d, tmp_path / "report")
    saved = json.loads((folder / "doctor.json").read_text(encoding="utf-8"))
    assert saved["files"] == d.files and {f["check"] for f in saved["findings"]} >= {"leakage", "unreadable"}
    html = (folder / "doctor.html").read_text(encoding="utf-8")
    assert "leaked.png" in html and "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    with pytest.raises(ConfigError, match="inside the data folder"):
        write_outputs(d, root / "train" / "doctor")
    assert not (root / "train" / "doctor").exists()


def test_cli_doctor_prints_a_summary(tmp_path, monkeypatch):
    root = bad_data(tmp_path / "bad")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor", str(root)])
    assert result.exit_code == 0, result.output
    assert "leakage" in result.output and "label_conflict" in result.output and "files/s" in result.output
    assert (tmp_path / "doctor-bad" / "doctor.html").is_file()
    inside = CliRunner().invoke(app, ["doctor", str(root), "--out", str(root / "val" / "x")])
    assert inside.exit_code != 0 and isinstance(inside.exception, ConfigError) and not (root / "val" / "x").exists()


def test_a_clean_folder_has_no_errors(tmp_path):
    d = diagnose(make_images(tmp_path / "ok", per_class=6))
    assert [f.check for f in d.findings] == [] and d.files == 18


def test_quick_checks_cover_names_imbalance_leakage_and_conflicts(tmp_path):
    root = bad_data(tmp_path / "bad")
    checks = {f.check for f in quick_checks(scan(root))}
    assert checks == {"class_names", "class_name_spaces", "imbalance", "leakage", "label_conflict"}


@pytest.mark.slow
def test_train_warns_and_still_trains(tmp_path, tiny, capsys):
    from headstart.config import TrainConfig

    root = make_images(tmp_path / "data", "splits", per_class=(6, 2, 2))
    shutil.copy(root / "train" / "red" / "red_0.png", root / "val" / "red" / "leaked.png")
    clf = tiny(pretrained=False, train=TrainConfig(frozen_epochs=0, finetune_epochs=1, batch_size=8, patience=0, num_workers=0))
    clf.fit(root, tmp_path / "run")
    err = capsys.readouterr().err
    assert "doctor error:" in err and "more than one of train/val/test" in err
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_sniff_and_inspect_one_file(tmp_path):
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "png" and sniff(b"\xff\xd8\xff\xe0") == "jpeg" and sniff(b"") == "empty"
    path = tmp_path / "a.png"
    colour_image("red", 1, size=40).convert("RGBA").save(path)
    facts = inspect_file(str(path), max_pixels=10**8)
    assert (facts.width, facts.height, facts.mode, facts.error) == (40, 40, "RGBA", "") and len(facts.dhash) == 64


def _brute(hashes: np.ndarray, t: int) -> set[frozenset[int]]:
    bits = np.unpackbits(hashes, axis=1)
    d = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    return {frozenset((i, j)) for i in range(len(hashes)) for j in range(i + 1, len(hashes)) if d[i, j] <= t}


@pytest.mark.parametrize("threshold", [0, 3, 8])
def test_near_groups_find_every_close_pair(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 256, (60, 32), dtype=np.uint8)
    near = base.copy()
    for row in near:  # flip `threshold` random bits of each copy
        for bit in rng.choice(256, threshold, replace=False):
            row[bit // 8] ^= 1 << (bit % 8)
    hashes = np.concatenate([base, near])
    groups = near_groups(hashes, threshold, min_bits=0)
    together = {frozenset((a, b)) for g in groups for a in g for b in g if a < b}
    assert _brute(hashes, threshold) <= together  # every close pair lands in one group
    assert all(len(g) == 2 for g in groups)  # and nothing else does (random hashes are far apart)


@pytest.mark.slow
def test_near_groups_scale_without_comparing_all_pairs():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (100_000, 32), dtype=np.uint8)
    hashes[1] = hashes[0] ^ np.eye(1, 32, 5, dtype=np.uint8)[0]  # one near pair
    start = time.perf_counter()
    groups = near_groups(hashes, 5)
    assert groups == [[0, 1]]
    assert time.perf_counter() - start < 20  # ~3 s on a busy 2-core machine; n^2 would be ~5e9 comparisons


def test_plain_images_are_not_near_duplicates_of_each_other():
    flat = np.zeros((3, 32), dtype=np.uint8)  # three flat images of any colours hash to all zeros
    flat[2, 0] = 1
    assert near_groups(flat, 5) == []


def test_csv_layout_missing_files_and_conflicting_rows(tmp_path):
    csv_path = make_images(tmp_path / "c", "csv", per_class=4)
    with csv_path.open("a") as handle:
        handle.write("images/red/red_0.png,green\n")  # the same file listed again under another label
        handle.write("images/gone.png,red\n")
    d = diagnose(csv_path)
    by_check = {f.check: f for f in d.findings}
    assert [Path(i["path"]).name for i in by_check["missing"].items] == ["gone.png"]
    assert {tuple(m["labels"]) for m in by_check["label_conflict"].items[0]} == {("red",), ("green",)}
