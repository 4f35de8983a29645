"""Writing files so that a reader never sees half of one, and telling files apart.

Every file headstart writes for a user (run folder, exports, reports, caches' indexes)
goes through ``atomic_write`` or ``atomic_target``: the bytes land in a hidden temporary
file beside the target, which is renamed over it only once complete. A crash, a kill or a
full disk leaves the old file (or none), never a truncated one.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headstart.errors import DISK_FULL, DiskFullError, disk_full

# Leading bytes -> format name (offset, magic). Names are lower case, Pillow's are upper.
MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"WEBP", 8, "webp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"P1", 0, "pnm"),
    (b"P2", 0, "pnm"),
    (b"P3", 0, "pnm"),
    (b"P4", 0, "pnm"),
    (b"P5", 0, "pnm"),
    (b"P6", 0, "pnm"),
    (b"%PDF", 0, "pdf"),
    (b"PK\x03\x04", 0, "zip"),
    (b"ftypheic", 4, "heic"),
    (b"ftypheix", 4, "heic"),
    (b"ftypmif1", 4, "heif"),
    (b"ftypavif", 4, "avif"),
    (b"<svg", 0, "svg"),
    (b"<?xml", 0, "xml"),
    (b"<!DOCTYPE html", 0, "html"),
    (b"<html", 0, "html"),
)


def sniff(head: bytes) -> str:
    """The format the leading bytes announce ("empty", or "unknown" when none matches).

    Example:
        >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n....")
        'png'
    """
    if not head:
        return "empty"
    for magic, offset, name in MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return "unknown"


def safe_name(path: str | os.PathLike) -> str:
    """A folder-name-safe stem of a path: 'My Photos/' -> 'My_Photos'."""
    return re.sub(r"[^\w.-]+", "_", Path(path).resolve().stem)


# A temporary file of ours: "<stem>.<pid>.tmp" with an optional suffix after it.
_TEMPORARY = re.compile(r"\.(\d+)\.tmp(\.[^.]+)?$")


def sweep_orphans(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writer is dead (killed mid-write);
    returns what was removed. A file whose process lives, or is not ours to judge, stays."""
    removed = []
    for leftover in Path(folder).glob("*.tmp*"):
        match = _TEMPORARY.search(leftover.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
        except OSError:
            continue  # alive under another user
    return removed


def lock_exclusively(fd: int) -> bool:
    """Take an exclusive advisory lock on open file ``fd`` without waiting: False when another
    process holds it. Where there are no advisory locks (Windows), True: one writer is then
    the caller's care. The lock lasts until ``fd`` is closed, or its process dies."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


# Below this many free bytes a failed write is put down to the full disk, whichever library
# failed: torch.save raises RuntimeError ("unexpected pos"), numpy an OSError without errno
# ("N requested and M written"), safetensors a SafetensorError quoting the OS's message.
NEARLY_FULL = 64 << 10


def out_of_space(exc: BaseException, folder: Path) -> bool:
    """Whether a write into ``folder`` failed with ``exc`` because its disk is full."""
    if isinstance(exc, DiskFullError) or disk_full(exc) is not None:
        return True
    if any(os.strerror(code) in str(exc) for code in DISK_FULL):  # quoted by safetensors, which removes its partial file
        return True
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


@contextmanager
def atomic_target(path: str | os.PathLike, then: str = "run the command again") -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` on success,
    removed on any failure. A failure on a full disk becomes a DiskFullError naming
    ``path`` and saying what to do ``then``.

    Example:
        >>> with atomic_target("model.onnx") as tmp:            # doctest: +SKIP
        ...     torch.onnx.export(net, x, tmp)
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        if out_of_space(exc, path.parent):  # checked while the partial file still fills the disk
            raise DiskFullError(path, then) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes, then: str = "run the command again") -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (``then``: see ``atomic_target``)."""
    with atomic_target(path, then) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
