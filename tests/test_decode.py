"""Decoding: EXIF orientation, every mode to RGB, and the decoded-image cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _imagegen import class_folders, image
from PIL import Image

from headstart.data.store import cache_root, decode_all
from headstart.preprocess import Preprocess, load_rgb

PRE = Preprocess(input_size=16, resize_size=20, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    if mode == "I;16":
        img = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    else:
        img = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (8, 8)
    if mode == "I;16":
        assert np.asarray(out).min() == 255  # 16-bit white stays white, not clipped garbage


def test_transparency_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    img.save(tmp_path / "t.png")
    arr = np.asarray(load_rgb(tmp_path / "t.png"))
    assert tuple(arr[0, 0]) == (0, 0, 255)
    assert tuple(arr[3, 3]) == (255, 255, 255)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert tuple(np.asarray(load_rgb(tmp_path / "p.png"))[1, 1]) == (255, 255, 255)


def test_cache_hit_invalidation_and_corruption(tmp_path):
    class_folders(tmp_path / "d", per_class=3, nested=False)
    paths = sorted(str(p) for p in (tmp_path / "d").rglob("*.png"))
    first = decode_all(paths, PRE)
    assert not first.cached and first.array.shape == (9, 20, 20, 3)
    second = decode_all(paths, PRE)
    assert second.cached
    np.testing.assert_array_equal(first.array, second.array)
    np.testing.assert_array_equal(second.array[0], PRE.square(paths[0]))

    Image.new("RGB", (30, 30), (1, 2, 3)).save(paths[0])  # a changed file
    os.utime(paths[0], ns=(1, 1))
    third = decode_all(paths, PRE)
    assert not third.cached and tuple(third.array[0, 5, 5]) == (1, 2, 3)

    expected = np.array(third.array)  # a private copy: the cache files are memory-mapped
    del first, second, third
    for npy in (cache_root() / "images").glob("*.npy"):
        npy.unlink()
        npy.write_bytes(b"garbage")  # corrupt or half-written entries (a new inode, as a writer would)
    fourth = decode_all(paths, PRE)
    assert not fourth.cached
    np.testing.assert_array_equal(fourth.array, expected)
    np.testing.assert_array_equal(decode_all(paths, PRE, cache=False).array, expected)


def test_undecodable_files_are_reported_not_fatal(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (10, 10), (0, 255, 0)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(os.urandom(500))
    noisy = tmp_path / "noisy.png"
    image((90, 90, 90), seed=0, size=64).save(noisy)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 2])
    out = decode_all([str(good), str(bad), str(truncated)], PRE)
    assert set(out.failed) == {1, 2}
    assert all(reason for reason in out.failed.values())
    assert tuple(out.array[0, 0, 0]) == (0, 255, 0)
