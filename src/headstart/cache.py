"""The on-disk cache's folder: whose it is, what is in it, and how it is cleared.

Policy (the README's "Cache" paragraph says the same):

* A cache belongs to one user. Runs of that user share it (``HEADSTART_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/headstart``, else ``~/.cache/headstart``); sharing one between users is
  not offered. Folders are made 0700 and entries 0600, so decoded private images are not
  readable by anyone else on the machine.
* A folder or entry owned by another user, or writable by group or others, is refused with
  one line and not used (the run goes on without the cache; a refused entry is rebuilt).
  Folders and entries of older releases (0755 / 0644, but the user's own and writable only
  by them) are tightened to 0700 / 0600 in place.
* Integrity comes from those owner and mode checks, not from a checksum: the image cache is
  keyed by path, size and mtime, and its per-row CRC-32 only detects damage (anyone able to
  write the folder could recompute it). An HMAC with a per-user secret was not chosen: the
  secret would live under the same home folder with the same 0600 protection, so it would
  add a per-row cost and a key to manage without stopping anyone the modes do not.
* ``cache clear`` deletes only what headstart wrote: entry names it recognises (a 32-hex-digit
  key with .npy/.json, and their temporary files) in ``images/`` and ``features/``. A folder
  marked by headstart's ``CACHEDIR.TAG`` keeps whatever else it holds (and says so); an
  unmarked one (a cache written before the marker, or a folder that is not a cache at all)
  is refused as a whole if it holds anything else, and nothing is deleted.

Example:
    >>> folder = cache_folder("images")         # doctest: +SKIP
    >>> clear_cache().removed_bytes             # doctest: +SKIP
    1250000
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from headstart.errors import CacheError
from headstart.files import create_exclusive

PARTS = {"images": "decoded images", "features": "frozen-base features"}
TAG_NAME = "CACHEDIR.TAG"
TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"  # https://bford.info/cachedir/
TAG = TAG_SIGNATURE + b"\n# This file is a cache directory tag created by headstart (headstart cache clear removes its entries).\n"

# Every name headstart writes in a part folder: "<key>.npy|json", this release's temporary
# files ".<key>.npy.<pid>.<random>.tmp", and older ones ("<key>.<pid>.tmp[.npy|.json]").
_KEY = r"[0-9a-f]{32}"
ENTRY_NAME = re.compile(rf"^(?:{_KEY}\.(?:npy|json)|\.{_KEY}\.(?:npy|json)\.\d+\.[0-9a-f]{{8}}\.tmp|{_KEY}\.\d+\.tmp(?:\.npy|\.json)?)$")


class UnsafeCache(CacheError):
    """A cache folder or entry that another user owns or could have written."""


# What a run does when its cache folder is refused.
GO_ON = "continuing without the cache (use a cache folder of your own with HEADSTART_CACHE_DIR, or --no-cache)"


def cache_root() -> Path:
    """``HEADSTART_CACHE_DIR`` when set, else the user's cache folder."""
    if os.environ.get("HEADSTART_CACHE_DIR"):
        return Path(os.environ["HEADSTART_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "headstart"


def _owner() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None  # no owners to check on Windows


def check_private(path: Path, info: os.stat_result, what: str, private_mode: int) -> None:
    """Refuse ``path`` (UnsafeCache) unless it is the user's and writable by them alone;
    tighten a readable-by-others one (an older release's) to ``private_mode``."""
    me = _owner()
    if me is None:
        return
    if info.st_uid != me:
        raise UnsafeCache(f"cache {what} {path} belongs to user id {info.st_uid}, not you ({me}); not used")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCache(f"cache {what} {path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}); not used")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, private_mode)


def _private_folder(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.stat(path)  # a symlinked cache folder (another disk) is fine if its target is private
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    check_private(path, info, "folder", 0o700)


def _write_tag(root: Path) -> None:
    try:
        fd = create_exclusive(root / TAG_NAME, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(TAG)


def cache_folder(part: str) -> Path:
    """``cache_root() / part``, made private (0700) and checked, the root marked with
    ``CACHEDIR.TAG``. Raises UnsafeCache for a folder that is not the user's alone, OSError
    when it cannot be made."""
    root = cache_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    _private_folder(root)
    _write_tag(root)
    folder = root / part
    _private_folder(folder)
    return folder


def check_entry(path: Path) -> None:
    """Refuse (UnsafeCache) an entry that is not a regular file of the user's, writable by
    them alone; a symlink is refused too (lstat). FileNotFoundError when there is none."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeCache(f"cache entry {path} is not a regular file; not used")
    check_private(path, info, "entry", 0o600)


def is_tagged(root: Path) -> bool:
    """Whether ``root`` holds headstart's CACHEDIR.TAG (a regular file with the signature)."""
    try:
        with open(root / TAG_NAME, "rb") as handle:
            return stat.S_ISREG(os.fstat(handle.fileno()).st_mode) and handle.read(len(TAG_SIGNATURE)) == TAG_SIGNATURE
    except OSError:
        return False


@dataclass
class Cleared:
    """What ``clear_cache`` did: bytes removed per part folder, files it left alone."""

    removed_bytes: dict[str, int] = field(default_factory=dict)
    left: list[Path] = field(default_factory=list)  # names headstart never writes (tagged caches only)


def _listing(folder: Path) -> tuple[list[os.DirEntry], list[Path]]:
    """(entries headstart wrote, anything else) in ``folder``; a folder or link is never ours."""
    ours: list[os.DirEntry] = []
    others: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and ENTRY_NAME.match(entry.name):
                    ours.append(entry)
                else:
                    others.append(Path(entry.path))
    except FileNotFoundError:
        pass
    return ours, others


def _remove_entries(folder: Path, attempts: int) -> tuple[int, list[Path]]:
    """Unlink the recognised entries of ``folder``, then the folder if that empties it.
    A run adding an entry meanwhile: removal goes round again, up to ``attempts`` times."""
    size, others = 0, list[Path]()
    for _ in range(attempts):
        ours, others = _listing(folder)
        for entry in ours:
            try:
                size += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
            except FileNotFoundError:
                pass  # renamed or removed meanwhile by another run
        if others:
            return size, others
        try:
            os.rmdir(folder)
            return size, []
        except FileNotFoundError:
            return size, []
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise CacheError(f"cannot remove {folder}: {exc.strerror}. Fix its permissions and clear it again.") from None
    raise CacheError(f"cannot remove {folder}: files keep appearing in it. Stop the runs using the cache and clear it again.")


def clear_cache(root: Path | None = None, attempts: int = 5) -> Cleared:
    """Delete headstart's entries under ``root`` (default ``cache_root()``); see the module
    docstring for what is deleted and what is refused. Nothing is deleted when refused."""
    root = cache_root() if root is None else root
    folders = {part: root / part for part in PARTS if (root / part).is_dir()}
    tagged = is_tagged(root)
    if not tagged:
        for part, folder in folders.items():
            strangers = _listing(folder)[1]
            if strangers:
                raise CacheError(
                    f"{root} is not a headstart cache: {part}/ holds {strangers[0].name!r}, which headstart never writes; "
                    "nothing was deleted. Point HEADSTART_CACHE_DIR at headstart's cache folder, or delete the files yourself."
                )
    done = Cleared()
    for part, folder in folders.items():
        done.removed_bytes[part], left = _remove_entries(folder, attempts)
        done.left += left
    return done
