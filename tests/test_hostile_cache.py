"""Issue 20, caches: one user's, private modes, exclusive temporary files, owner checks, a
`cache clear` that deletes only what headstart wrote. CI runs as root: modes and owners are
asserted with os.stat, never a denied access."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
from conftest import colour_image

from headstart import cli
from headstart.cache import TAG_NAME, cache_root, clear_cache
from headstart.data import store
from headstart.data.store import decode_all
from headstart.preprocess import Preprocess

PRE = Preprocess(input_size=24, resize_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)
root_only = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def files(tmp_path) -> list[str]:
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        colour_image("red", i, size=32).save(tmp_path / "imgs" / f"{i}.png")
    return sorted(str(p) for p in (tmp_path / "imgs").iterdir())


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_cache_folders_are_0700_and_entries_0600(files):
    decode_all(files, PRE, show=False)
    folder = cache_root() / "images"
    assert mode(cache_root()) == 0o700 and mode(folder) == 0o700
    entries = list(folder.iterdir())
    assert len(entries) == 2 and {mode(p) for p in entries} == {0o600}
    assert (cache_root() / TAG_NAME).read_bytes().startswith(b"Signature: 8a477f597d28d172789f06886806bc55")


def test_a_planted_symlink_at_a_temporary_name_is_never_followed(files, tmp_path, monkeypatch):
    """Found by the review: `<key>.<pid>.tmp.npy` was opened with a plain open: the symlink's
    target was overwritten with array bytes and the entry became the symlink."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = cache_root() / "images"
    folder.mkdir(parents=True)
    key = store._key(files, PRE)
    monkeypatch.setattr("secrets.token_hex", lambda n: "deadbeef")  # the name a planter would guess
    for name in (f"{key}.{os.getpid()}.tmp.npy", f".{key}.npy.{os.getpid()}.deadbeef.tmp", f"{key}.{os.getpid()}.tmp"):
        (folder / name).symlink_to(victim)
    out = decode_all(files, PRE, show=False)
    np.testing.assert_array_equal(out.array, np.stack([PRE.square(p) for p in files]))
    assert victim.read_text() == "precious"
    assert not (folder / f"{key}.npy").is_symlink() and not (folder / f"{key}.json").is_symlink()


def test_an_entry_writable_by_others_is_refused_with_one_line(files, capsys):
    decode_all(files, PRE, show=False)
    (npy,) = (cache_root() / "images").glob("*.npy")
    os.chmod(npy, 0o666)
    capsys.readouterr()
    assert decode_all(files, PRE, show=False).cached is False
    err = capsys.readouterr().err
    assert "writable by others" in err and len(err.strip().splitlines()) == 1
    assert mode(npy) == 0o600  # rebuilt as the user's own


def test_an_older_release_entry_readable_by_others_is_tightened_and_used(files):
    decode_all(files, PRE, show=False)
    folder = cache_root() / "images"
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    os.chmod(folder, 0o755)
    assert decode_all(files, PRE, show=False).cached is True
    assert mode(folder) == 0o700 and {mode(p) for p in folder.iterdir()} == {0o600}


@root_only
def test_an_entry_owned_by_another_user_is_refused(files, capsys):
    """Found by the review: pixels rewritten to zero with recomputed CRCs trained another user's run."""
    first = np.asarray(decode_all(files, PRE, show=False).array)
    (npy,) = (cache_root() / "images").glob("*.npy")
    os.chown(npy, 4321, 4321)
    capsys.readouterr()
    again = decode_all(files, PRE, show=False)
    assert again.cached is False and "belongs to user id 4321" in capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(again.array), first)
    assert os.stat(npy).st_uid == os.getuid()


@root_only
def test_a_cache_folder_owned_by_another_user_is_not_used(files, capsys):
    folder = cache_root() / "images"
    folder.mkdir(parents=True)
    os.chown(folder, 4321, 4321)
    out = decode_all(files, PRE, show=False)
    err = capsys.readouterr().err
    assert out.cached is False and "belongs to user id 4321" in err and len(err.strip().splitlines()) == 1
    assert list(folder.iterdir()) == []


def run_main(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code, capsys.readouterr().err


def test_cache_clear_refuses_a_project_folder_and_deletes_nothing(tmp_path, monkeypatch, capsys):
    """Found by the review: with HEADSTART_CACHE_DIR set to a project, `cache clear` removed its images/."""
    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    (project / "images" / "holiday.jpg").write_bytes(b"the user's photo")
    (project / "features").mkdir()
    (project / "features" / ("a" * 32 + ".npy")).write_bytes(b"looks like ours")
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(project))
    code, err = run_main(monkeypatch, capsys, ["cache", "clear"])
    assert code == 2 and "not a headstart cache" in err and "holiday.jpg" in err and len(err.strip().splitlines()) == 1
    assert (project / "images" / "holiday.jpg").exists() and (project / "features" / ("a" * 32 + ".npy")).exists()


def test_cache_clear_of_a_tagged_cache_keeps_files_it_did_not_write(files):
    decode_all(files, PRE, show=False)
    stranger = cache_root() / "images" / "notes.txt"
    stranger.write_text("mine")
    done = clear_cache()
    assert done.removed_bytes["images"] > 0 and done.left == [stranger]
    assert [p.name for p in (cache_root() / "images").iterdir()] == ["notes.txt"]


def test_cache_clear_of_an_untagged_cache_of_todays_release_removes_its_entries(tmp_path):
    """A cache written before the marker: only entry names headstart writes, then the folders."""
    root = tmp_path / "old"
    (root / "images").mkdir(parents=True)
    for name in (
        "0123456789abcdef0123456789abcdef.npy",
        "0123456789abcdef0123456789abcdef.json",
        "0123456789abcdef0123456789abcdef.77.tmp",
    ):
        (root / "images" / name).write_bytes(b"x")
    assert clear_cache(root).removed_bytes == {"images": 3} and not (root / "images").exists()
