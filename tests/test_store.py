"""The decoded-image store: cache hits, invalidation, corruption, failures, cache off."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import colour_image

from headstart.data.store import cache_root, decode_all
from headstart.preprocess import Preprocess

PRE = Preprocess(input_size=24, resize_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.fixture
def files(tmp_path) -> list[str]:
    paths = []
    for i, colour in enumerate(("red", "green", "blue", "yellow", "black")):
        path = tmp_path / "imgs" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        colour_image(colour, i, size=32 + 4 * i).save(path)  # different sizes: all become 28x28 squares
        paths.append(str(path))
    return paths


def fresh(paths: list[str]) -> np.ndarray:
    return np.stack([PRE.square(p) for p in paths])


def store_files() -> list[Path]:
    return sorted((cache_root() / "images").glob("*.npy"))


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("HEADSTART_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "headstart"


def test_second_decode_hits_the_cache_with_identical_pixels(files):
    first = decode_all(files, PRE, show=False)
    assert first.cached is False
    assert first.array.shape == (5, 28, 28, 3) and first.array.dtype == np.uint8
    assert first.failed == {}
    np.testing.assert_array_equal(first.array, fresh(files))
    assert len(store_files()) == 1 and str(store_files()[0]).startswith(os.environ["HEADSTART_CACHE_DIR"])
    second = decode_all(files, PRE, show=False)
    assert second.cached is True
    np.testing.assert_array_equal(np.asarray(second.array), np.asarray(first.array))
    assert len(store_files()) == 1


def test_another_square_size_or_file_list_is_another_store(files):
    decode_all(files, PRE, show=False)
    other = Preprocess(input_size=16, resize_size=20, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert decode_all(files, other, show=False).cached is False
    assert decode_all(files[:3], PRE, show=False).cached is False
    assert len(store_files()) == 3


def test_changed_file_content_rebuilds(files):
    decode_all(files, PRE, show=False)
    colour_image("white", 99, size=40).save(files[2])  # new content, new size
    after = decode_all(files, PRE, show=False)
    assert after.cached is False
    np.testing.assert_array_equal(after.array, fresh(files))
    assert after.array[2].mean() > 200  # the white image, not the stored blue one


def test_touched_file_rebuilds(files):
    decode_all(files, PRE, show=False)
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert decode_all(files, PRE, show=False).cached is False
    assert decode_all(files, PRE, show=False).cached is True


def test_same_size_replacement_rebuilds(tmp_path):
    """Same byte size, different pixels, a later mtime: the stale pixels must not be served."""
    paths = [str(tmp_path / f"{i}.bmp") for i in range(2)]
    colour_image("red", 0).save(paths[0])
    colour_image("blue", 1).save(paths[1])
    decode_all(paths, PRE, show=False)
    size = os.path.getsize(paths[1])
    colour_image("yellow", 2).save(paths[1])
    assert os.path.getsize(paths[1]) == size  # BMP of the same dimensions: same byte size
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    after = decode_all(paths, PRE, show=False)
    assert after.cached is False
    np.testing.assert_array_equal(after.array, fresh(paths))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "empty", "bad_meta"])
def test_corrupt_store_is_detected_and_rebuilt(files, damage, capsys):
    decode_all(files, PRE, show=False)
    (npy,) = store_files()
    meta = npy.with_suffix(".json")
    if damage == "garbage":
        npy.write_bytes(np.random.default_rng(0).bytes(npy.stat().st_size))
    elif damage == "truncated":
        npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    elif damage == "wrong_shape":
        np.save(npy, np.zeros((2, 28, 28, 3), np.uint8))
    elif damage == "empty":
        npy.write_bytes(b"")
    else:
        meta.write_text("{ not json")
    rebuilt = decode_all(files, PRE, show=False)
    assert rebuilt.cached is False
    np.testing.assert_array_equal(rebuilt.array, fresh(files))
    assert "rebuilding" in capsys.readouterr().err
    again = decode_all(files, PRE, show=False)  # and the rebuilt store is good
    assert again.cached is True
    np.testing.assert_array_equal(np.asarray(again.array), fresh(files))


def test_unreadable_files_are_failed_rows_with_reasons(files, tmp_path):
    bad = tmp_path / "imgs" / "bad.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(800))
    good = Path(files[0]).read_bytes()
    cut = tmp_path / "imgs" / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    paths = [files[0], str(bad), files[1], str(cut)]
    first = decode_all(paths, PRE, show=False)
    assert set(first.failed) == {1, 3}
    assert all(isinstance(r, str) and r for r in first.failed.values())
    assert "truncated" in first.failed[3].lower()
    np.testing.assert_array_equal(first.array[[0, 2]], fresh([files[0], files[1]]))
    second = decode_all(paths, PRE, show=False)
    assert second.cached is True
    assert second.failed == first.failed  # the failures are remembered with the store


def test_cache_off_writes_nothing(files):
    off = decode_all(files, PRE, cache=False, show=False)
    assert off.cached is False
    np.testing.assert_array_equal(off.array, fresh(files))
    assert not (cache_root() / "images").exists() or not any((cache_root() / "images").iterdir())
    assert decode_all(files, PRE, cache=False, show=False).cached is False


def test_unwritable_cache_falls_back_to_no_cache(files, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(blocker))
    out = decode_all(files, PRE, show=False)
    assert out.cached is False
    np.testing.assert_array_equal(out.array, fresh(files))
    assert "cannot write the image cache" in capsys.readouterr().err


def test_empty_path_list(files):
    out = decode_all([], PRE, show=False)
    assert out.array.shape == (0, 28, 28, 3) and out.failed == {}


def test_flipped_pixel_bytes_with_an_intact_header_are_detected(files, capsys):
    decode_all(files, PRE, show=False)
    (npy,) = store_files()
    data = bytearray(npy.read_bytes())
    data[-5] ^= 0xFF  # one pixel of the last image; the .npy header still parses
    npy.write_bytes(bytes(data))
    rebuilt = decode_all(files, PRE, show=False)
    assert rebuilt.cached is False
    np.testing.assert_array_equal(rebuilt.array, fresh(files))
    assert "rebuilding" in capsys.readouterr().err


def test_store_from_another_version_is_rebuilt(files):
    decode_all(files, PRE, show=False)
    (npy,) = store_files()
    meta = npy.with_suffix(".json")
    info = json.loads(meta.read_text())
    meta.write_text(json.dumps({**info, "version": info["version"] - 1}))
    assert decode_all(files, PRE, show=False).cached is False
    assert decode_all(files, PRE, show=False).cached is True


def test_disk_full_goes_on_uncached_and_leaves_nothing(files, monkeypatch, capsys):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    out = decode_all(files, PRE, show=False)
    assert out.cached is False
    np.testing.assert_array_equal(out.array, fresh(files))
    assert "No space left on device" in capsys.readouterr().err
    assert not any((cache_root() / "images").iterdir())  # no half-written store or temp file


@pytest.mark.slow
def test_a_killed_writer_leaves_no_orphan_after_the_next_run(files):
    folder = cache_root() / "images"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = folder / f"0123abcd.{dead.pid}.tmp.npy"
    orphan.write_bytes(b"half a store")
    alive = folder / f"4567ef.{os.getpid()}.tmp.npy"  # a writer still running: left alone
    alive.write_bytes(b"in progress")
    decode_all(files, PRE, show=False)
    assert not orphan.exists() and alive.exists()


@pytest.mark.slow
def test_two_processes_filling_the_same_entry_at_once_both_get_correct_pixels(files, tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from headstart.data.store import decode_all\n"
        "from headstart.preprocess import Preprocess\n"
        "pre = Preprocess(input_size=24, resize_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)\n"
        "paths = sys.argv[2:]\n"
        "np.save(sys.argv[1], np.asarray(decode_all(paths, pre, show=False).array))\n"
    )
    env = {**os.environ, "HEADSTART_CACHE_DIR": str(cache_root())}
    outs = [tmp_path / f"out{i}.npy" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(o), *files], env=env) for o in outs]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for out in outs:
        np.testing.assert_array_equal(np.load(out), fresh(files))
    folder = cache_root() / "images"
    assert len(list(folder.glob("*.npy"))) == 1 and len(list(folder.glob("*.json"))) == 1
    assert not list(folder.glob("*.tmp*"))  # whoever lost the rename left nothing behind
    assert decode_all(files, PRE, show=False).cached is True


@pytest.mark.parametrize("moment", ["rows written", "entry published"])
def test_a_cache_clear_while_writing_costs_no_second_decode(files, monkeypatch, capsys, moment):
    """Found by bench/faults.py crowd (a train paused mid-decode while `cache clear` ran): the
    run decoded everything a second time, uncached, and told the user to move the cache."""
    import shutil

    from headstart.data import store

    folder, decodes = cache_root() / "images", []
    decode, write, replace = store._decode, store._decode_to_file, os.replace
    monkeypatch.setattr(store, "_decode", lambda *a: decodes.append(1) or decode(*a))
    if moment == "rows written":
        monkeypatch.setattr(store, "_decode_to_file", lambda *a: (write(*a), shutil.rmtree(folder))[0])
    else:
        monkeypatch.setattr(os, "replace", lambda src, dst: (replace(src, dst), str(dst).endswith(".json") and shutil.rmtree(folder))[0])
    out = decode_all(files, PRE, show=False)
    np.testing.assert_array_equal(out.array, fresh(files))
    assert len(decodes) == 1
    assert "cannot write" not in capsys.readouterr().err
    assert not folder.exists()  # the clear won: nothing written back behind it


# -- moved from the former tests/test_decode.py -------------------------------------------------
def test_cache_hit_invalidation_and_corruption_end_to_end(tmp_path, make_images):
    pre = Preprocess(input_size=16, resize_size=20, mean=(0.5,) * 3, std=(0.5,) * 3)
    make_images(tmp_path / "d", per_class=3, nested=False)
    paths = sorted(str(p) for p in (tmp_path / "d").rglob("*.png"))
    first = decode_all(paths, pre)
    assert not first.cached and first.array.shape == (9, 20, 20, 3)
    second = decode_all(paths, pre)
    assert second.cached
    np.testing.assert_array_equal(first.array, second.array)
    np.testing.assert_array_equal(second.array[0], pre.square(paths[0]))

    colour_image((1, 2, 3), 0, size=30, noise=0.0).save(paths[0])  # a changed file, with an older mtime
    os.utime(paths[0], ns=(1, 1))
    third = decode_all(paths, pre)
    assert not third.cached and tuple(third.array[0, 5, 5]) == (1, 2, 3)

    expected = np.array(third.array)  # a private copy: the cache files are memory-mapped
    del first, second, third
    for npy in (cache_root() / "images").glob("*.npy"):
        npy.unlink()
        npy.write_bytes(b"garbage")  # corrupt or half-written entries (a new inode, as a writer would)
    fourth = decode_all(paths, pre)
    assert not fourth.cached
    np.testing.assert_array_equal(fourth.array, expected)
    np.testing.assert_array_equal(decode_all(paths, pre, cache=False).array, expected)
