"""Decode every image once into an (N, R, R, 3) uint8 array of centred squares.

Decoding, orientation, mode conversion and resizing then cost nothing in later epochs,
and an image that cannot be decoded is found before training starts (it is skipped and
listed), so no epoch can crash on it. With the cache on, the array lives in a ``.npy``
file under the cache folder, memory-mapped, keyed by (store version, square side,
interpolation, every file's path, size and modification time): a changed, added or
removed file gives a new key. Files are written under a temporary name and renamed, so
two runs sharing the cache never see a half-written store; the user's folder is only read.
Each row's CRC-32 is kept beside the store and checked when it is read back (about 0.1 s
per GB), so a damaged file is rebuilt rather than trained on.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.preprocess import Preprocess
from headstart.progress import track

STORE_VERSION = 2  # 2: per-row CRC-32 in the metadata


def cache_root() -> Path:
    """``HEADSTART_CACHE_DIR`` when set, else the user's cache folder."""
    if os.environ.get("HEADSTART_CACHE_DIR"):
        return Path(os.environ["HEADSTART_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "headstart"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class DecodedImages:
    array: np.ndarray  # (N, R, R, 3) uint8, row i = paths[i]
    failed: dict[int, str]  # row -> reason the file could not be decoded
    cached: bool  # True when read back from the cache without decoding


def _key(paths: list[str], preprocess: Preprocess) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([STORE_VERSION, preprocess.resize_size, preprocess.interpolation]).encode())
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:32]


def _load_cached(npy: Path, meta: Path, shape: tuple[int, ...]) -> DecodedImages | None:
    try:
        info = json.loads(meta.read_text())
        array = np.load(npy, mmap_mode="r")
        if info.get("version") != STORE_VERSION or tuple(array.shape) != shape or array.dtype != np.uint8:
            return None
        if info["crc32"] != _row_crcs(array):
            return None  # bytes changed after the store was written: a damaged disk or file
        return DecodedImages(array, {int(k): str(v) for k, v in info["failed"].items()}, cached=True)
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None  # unreadable, truncated, or another version's entry: rebuilt by the caller


def _row_crcs(array: np.ndarray) -> list[int]:
    return [zlib.crc32(row) for row in array]


def _reserve(path: Path, nbytes: int) -> None:
    """Allocate the store's blocks now: writing into a memory map on a full disk would
    kill the process with SIGBUS mid-decode; this raises ENOSPC before anything starts."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # file systems without fallocate
            raise
    finally:
        os.close(fd)


def _sweep_orphans(folder: Path) -> None:
    """Remove temporary files left by runs that were killed while writing (their pid is gone)."""
    for leftover in folder.glob("*.tmp*"):
        try:
            pid = int(leftover.name.split(".")[1])
            os.kill(pid, 0)
        except (IndexError, ValueError):
            continue  # not one of ours
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except OSError:
            continue  # alive under another user, or not ours to judge


def _decode_into(array: np.ndarray, paths: list[str], preprocess: Preprocess, show: bool | None) -> dict[int, str]:
    failed: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            array[i] = preprocess.square(paths[i])
        except Exception as exc:  # any decoder failure: skip this file, never the run
            failed[i] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            array[i] = 0

    # Pillow releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=cpu_count()) as pool, track(len(paths), f"Decoding {len(paths)} images", show=show) as advance:
        for _ in pool.map(work, range(len(paths))):
            advance()
    return failed


def decode_all(
    paths: list[str], preprocess: Preprocess, cache: bool = True, show: bool | None = None
) -> DecodedImages:
    """Decode ``paths`` to squares of ``preprocess.resize_size``, through the cache if on.

    Example:
        >>> images = decode_all(["a.jpg", "b.png"], preprocess)   # doctest: +SKIP
        >>> images.array.shape                                    # (2, 256, 256, 3)
    """
    side = preprocess.resize_size
    shape = (len(paths), side, side, 3)
    if not cache:
        array = np.empty(shape, np.uint8)
        return DecodedImages(array, _decode_into(array, paths, preprocess, show), cached=False)

    folder = cache_root() / "images"
    key = _key(paths, preprocess)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    if npy.exists() and meta.exists():
        found = _load_cached(npy, meta, shape)
        if found is not None:
            return found
        print(f"headstart: cache entry {npy} is unreadable or stale; rebuilding it.", file=sys.stderr)
    tmp = folder / f"{key}.{os.getpid()}.tmp.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep_orphans(folder)
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _reserve(tmp, array.offset + array.nbytes)
        failed = _decode_into(array, paths, preprocess, show)
        array.flush()
        crcs = _row_crcs(array)
        del array
        meta_tmp = meta.with_suffix(f".{os.getpid()}.tmp")
        meta_tmp.write_text(json.dumps({"version": STORE_VERSION, "failed": failed, "count": len(paths), "crc32": crcs}))
        os.replace(tmp, npy)
        os.replace(meta_tmp, meta)
    except OSError as exc:
        for leftover in (tmp, meta.with_suffix(f".{os.getpid()}.tmp")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass  # the folder itself is unusable; nothing was written
        print(
            f"headstart: cannot write the image cache in {folder} ({exc.strerror}); "
            "continuing without it (set HEADSTART_CACHE_DIR or use --no-cache).",
            file=sys.stderr,
        )
        return decode_all(paths, preprocess, cache=False, show=show)
    found = _load_cached(npy, meta, shape)
    if found is None:  # replaced by a concurrent run between our rename and this read
        return decode_all(paths, preprocess, cache=False, show=show)
    return DecodedImages(found.array, found.failed, cached=False)
