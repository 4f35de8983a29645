"""Decode every image once into compact centred squares (``Squares``), read as (R, R, 3).

Each image is kept at min(its shorter side, R) px, grey ones in one channel, and only
upscaled to R when read (a batch at a time), so the store is sized by the data, not by
the model: a 28 px image is not stored as a 256 px square.
Decoding, orientation, mode conversion and downscaling then cost nothing in later epochs,
and an image that cannot be decoded is found before training starts (it is skipped and
listed), so no epoch can crash on it. With the cache on, the rows live back to back in one
(total,) uint8 ``.npy`` file under the cache folder, memory-mapped, their sides and
channels in the JSON beside it, keyed by (store version, square side,
interpolation, every file's path, size and modification time): a changed, added or
removed file gives a new key. Files are written under a temporary name and renamed, so
two runs sharing the cache never see a half-written store; the user's folder is only read.
Each row's CRC-32 is kept beside the store and checked when it is read back (about 0.1 s
per GB), so a damaged file is rebuilt rather than trained on. The CRC detects damage only:
integrity against other users comes from the cache's owner and mode checks
(``headstart.cache``: folders 0700, entries 0600, anything another user owns or could
write refused with one line), and temporary files are created exclusively.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart import shards
from headstart.cache import GO_ON, UnsafeCache, cache_folder, cache_root, check_entry
from headstart.files import create_temporary, sweep_orphans
from headstart.machine import cpu_count
from headstart.preprocess import Preprocess
from headstart.progress import track

STORE_VERSION = 3  # 3: compact rows (min(native, resize_size) px, grey in one channel); 2: per-row CRC-32

# Images decoded per write: bounds the memory a decode holds (<= 256 x R x R x 3 bytes,
# 50 MB at R = 256) whatever the number of files.
_CHUNK = 256


class Squares:
    """The decoded images, compact on disk and full-size when read.

    Row i is stored as ``Preprocess.stored`` keeps it: the centred square at min(its
    shorter side, R) px, one channel when grey, so 70,000 28-px greyscale images take
    55 MB where (N, 256, 256, 3) squares took 13.8 GB. Indexing expands rows to the
    (R, R, 3) uint8 squares that ``Preprocess.square`` gives for the same file, per
    request: ``squares[i]`` -> (R, R, 3), ``squares[rows]`` -> (B, R, R, 3).

    Example:
        >>> images = decode_all(paths, preprocess)            # doctest: +SKIP
        >>> images.array[[0, 5]].shape                        # (2, R, R, 3), R = preprocess.resize_size
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, data: np.ndarray, sides: np.ndarray, channels: np.ndarray, preprocess: Preprocess) -> None:
        self.data = data  # (total,) uint8, rows back to back; memory-mapped when cached
        self.sides = np.asarray(sides, dtype=np.int64)  # (N,) stored side per row; 0 for a failed row
        self.channels = np.asarray(channels, dtype=np.int64)  # (N,) 1 (grey) or 3
        self.offsets = np.concatenate([[0], np.cumsum(self.sides**2 * self.channels)]).astype(np.int64)
        self.preprocess = preprocess
        self.side = preprocess.resize_size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.sides), self.side, self.side, 3)

    @property
    def nbytes(self) -> int:
        """Bytes stored (not the expanded size)."""
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.sides)

    def stored(self, i: int) -> np.ndarray:
        """Row i as stored: (s, s, 1 or 3) uint8, a read-only view."""
        s, c = int(self.sides[i]), int(self.channels[i])
        return self.data[self.offsets[i] : self.offsets[i + 1]].reshape(s, s, c)

    def _expand(self, i: int, out: np.ndarray) -> None:
        if self.sides[i] == 0:
            out[...] = 0  # an undecodable file: dropped from every split, never read for training
        else:
            out[...] = self.preprocess.expand(self.stored(i))

    def __getitem__(self, key):
        if isinstance(key, tuple):  # squares[i, y, x] and the like: rows first, then the rest
            head = self[key[0]]
            return head[key[1:]] if np.ndim(head) == 3 else head[(slice(None),) + key[1:]]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} images")
            out = np.empty((self.side, self.side, 3), np.uint8)
            self._expand(i, out)
            return out
        rows = np.arange(len(self))[key]  # slices, lists, integer and boolean arrays, as numpy reads them
        out = np.empty((len(rows), self.side, self.side, 3), np.uint8)
        for j, i in enumerate(rows):
            self._expand(int(i), out[j])
        return out

    def uniform(self) -> np.ndarray | None:
        """All rows as one (N, R, R, C) view of the stored bytes when every row is stored at
        the full side R with the same channels (28-px Fashion-MNIST at a 28-px input); else
        None. No copy: batches are gathered from it directly, with no per-image resize."""
        n = len(self.sides)
        if n == 0 or not (self.sides == self.side).all() or not (self.channels == self.channels[0]).all():
            return None
        return self.data[: self.offsets[-1]].reshape(n, self.side, self.side, int(self.channels[0]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = self[:]
        return full if dtype is None else full.astype(dtype)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


@dataclass
class DecodedImages:
    array: Squares  # row i = paths[i]; indexing gives (R, R, 3) uint8 squares
    failed: dict[int, str]  # row -> reason the file could not be decoded
    cached: bool  # True when read back from the cache without decoding


def _key(paths: list[str], preprocess: Preprocess) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([STORE_VERSION, preprocess.resize_size, preprocess.interpolation]).encode())
    for path in paths:
        try:
            st = os.stat(shards.shard_file(path))  # an image inside a shard: the shard's identity
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:32]


def _load_cached(npy: Path, meta: Path, count: int, preprocess: Preprocess) -> DecodedImages | None:
    try:
        info = json.loads(meta.read_text())
        if info.get("version") != STORE_VERSION or info["count"] != count or len(info["sides"]) != count:
            return None
        data = np.load(npy, mmap_mode="r")
        squares = Squares(data, np.asarray(info["sides"]), np.asarray(info["channels"]), preprocess)
        if data.ndim != 1 or data.dtype != np.uint8 or data.shape[0] != squares.nbytes:
            return None
        if info["crc32"] != _row_crcs(squares):
            return None  # bytes changed after the store was written: a damaged disk or file
        return DecodedImages(squares, {int(k): str(v) for k, v in info["failed"].items()}, cached=True)
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None  # unreadable, truncated, or another version's entry: rebuilt by the caller


def _row_crcs(squares: Squares) -> list[int]:
    return [zlib.crc32(squares.stored(i).data) for i in range(len(squares))]


def _reserve(fd: int, offset: int, nbytes: int) -> None:
    """Allocate the next chunk's blocks before writing it, so a full disk raises ENOSPC
    here, cleanly, rather than part-way through a row."""
    if not hasattr(os, "posix_fallocate") or nbytes == 0:
        return
    try:
        os.posix_fallocate(fd, offset, nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # file systems without fallocate
            raise


@dataclass
class _Decoded:
    sides: list[int]
    channels: list[int]
    failed: dict[int, str]


def _decode(paths: list[str], preprocess: Preprocess, show: bool | None, write) -> _Decoded:
    """Decode ``paths`` to compact rows, handing them to ``write`` in order, a chunk at a time."""
    out = _Decoded([], [], {})

    def work(i: int) -> np.ndarray | str:
        try:
            return preprocess.stored(paths[i])
        except Exception as exc:  # any decoder failure: skip this file, never the run
            return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]

    # Pillow releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=cpu_count()) as pool, track(len(paths), f"Decoding {len(paths)} images", show=show) as advance:
        for start in range(0, len(paths), _CHUNK):
            rows = list(pool.map(work, range(start, min(len(paths), start + _CHUNK))))
            for i, row in enumerate(rows, start):
                if isinstance(row, str):
                    out.failed[i] = row
                out.sides.append(0 if isinstance(row, str) else row.shape[0])
                out.channels.append(3 if isinstance(row, str) else row.shape[-1])
            write([row for row in rows if not isinstance(row, str)])
            advance(len(rows))
    return out


def _npy_header(length: int) -> bytes:
    """The .npy header of a (length,) uint8 array; numpy pads it to the same size for any length."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (length,)})
    return buffer.getvalue()


def _decode_to_file(fd: int, paths: list[str], preprocess: Preprocess, show: bool | None) -> tuple[_Decoded, np.ndarray]:
    """Write the store as a (total,) uint8 .npy: a placeholder header, the rows appended
    chunk by chunk (memory bounded by a chunk), then the real header once the length is known.
    Returns the rows too, (total,) memory-mapped through the open file: valid even if the
    file's name is gone by then (a ``cache clear`` meanwhile), as an unlinked file lives on."""
    header = len(_npy_header(0))
    with os.fdopen(fd, "w+b") as handle:  # created exclusively by the caller (``create_temporary``)
        handle.write(b"\0" * header)

        def write(rows: list[np.ndarray]) -> None:
            _reserve(handle.fileno(), handle.tell(), sum(r.nbytes for r in rows))
            handle.writelines(row.tobytes() for row in rows)

        decoded = _decode(paths, preprocess, show, write)
        total = handle.tell() - header
        final = _npy_header(total)
        if len(final) != header:
            raise OSError(errno.EIO, f"unexpected .npy header size {len(final)} != {header}")
        handle.seek(0)
        handle.write(final)
        handle.flush()
        rows = np.memmap(handle, np.uint8, mode="r", offset=header, shape=(total,)) if total else np.zeros(0, np.uint8)
    return decoded, rows


def decode_all(paths: list[str], preprocess: Preprocess, cache: bool = True, show: bool | None = None) -> DecodedImages:
    """Decode ``paths`` once to compact squares (``Preprocess.stored``), through the cache if on.

    Example:
        >>> images = decode_all(["a.jpg", "b.png"], preprocess)   # doctest: +SKIP
        >>> images.array.shape                                    # (2, 256, 256, 3) when read
        >>> images.array.nbytes                                   # bytes actually stored
    """
    if not cache or not paths:
        chunks: list[np.ndarray] = []
        decoded = _decode(paths, preprocess, show, lambda rows: chunks.extend(r.reshape(-1) for r in rows))
        data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        return DecodedImages(Squares(data, np.array(decoded.sides), np.array(decoded.channels), preprocess), decoded.failed, cached=False)

    try:
        folder = cache_folder("images")
    except (UnsafeCache, OSError) as exc:
        if isinstance(exc, UnsafeCache):
            print(f"headstart: {exc}; {GO_ON}.", file=sys.stderr)
        else:
            print(f"headstart: cannot write the image cache in {cache_root()} ({exc.strerror}); {GO_ON}.", file=sys.stderr)
        return decode_all(paths, preprocess, cache=False, show=show)
    key = _key(paths, preprocess)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    found = _read_entry(npy, meta, len(paths), preprocess)
    if found is not None:
        return found
    return _write_entry(folder, npy, meta, paths, preprocess, show)


def _read_entry(npy: Path, meta: Path, count: int, preprocess: Preprocess) -> DecodedImages | None:
    """The cached entry if present, the user's own and intact; else None (told when refused or damaged)."""
    try:
        check_entry(npy)
        check_entry(meta)
    except FileNotFoundError:
        return None
    except (UnsafeCache, OSError) as exc:
        print(
            f"headstart: {exc if isinstance(exc, UnsafeCache) else f'cache entry {npy}: {exc.strerror}'}; rebuilding it.", file=sys.stderr
        )
        return None
    found = _load_cached(npy, meta, count, preprocess)
    if found is None:
        print(f"headstart: cache entry {npy} is unreadable or stale; rebuilding it.", file=sys.stderr)
    return found


def _write_entry(folder: Path, npy: Path, meta: Path, paths: list[str], preprocess: Preprocess, show: bool | None) -> DecodedImages:
    """Decode ``paths`` into a new entry (temporary files 0600, created exclusively, renamed into place)."""
    tmp: Path | None = None
    try:
        sweep_orphans(folder)  # temporary files of runs killed while writing
        tmp, fd = create_temporary(npy, 0o600)
        decoded, rows = _decode_to_file(fd, paths, preprocess, show)
    except OSError as exc:
        _remove(*([tmp] if tmp else []))
        print(
            f"headstart: cannot write the image cache in {folder} ({exc.strerror}); "
            "continuing without it (set HEADSTART_CACHE_DIR or use --no-cache).",
            file=sys.stderr,
        )
        return decode_all(paths, preprocess, cache=False, show=show)
    # The rows are decoded and mapped: whatever happens to the names below, they are used as they are.
    written = Squares(rows, np.array(decoded.sides), np.array(decoded.channels), preprocess)
    info = {
        "version": STORE_VERSION,
        "failed": decoded.failed,
        "count": len(paths),
        "sides": decoded.sides,
        "channels": decoded.channels,
        "crc32": _row_crcs(written),
    }
    meta_tmp: Path | None = None
    try:
        meta_tmp, meta_fd = create_temporary(meta, 0o600)
        with os.fdopen(meta_fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(info))
        os.replace(tmp, npy)  # the data first: a reader trusts nothing without its matching metadata
        os.replace(meta_tmp, meta)
    except OSError as exc:
        _remove(tmp, *([meta_tmp] if meta_tmp else []))
        why = "it was cleared meanwhile" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(f"headstart: the decoded images were not kept in the cache ({why}); this run goes on with them.", file=sys.stderr)
    return DecodedImages(written, decoded.failed, cached=False)


def _remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is unusable; nothing was written
