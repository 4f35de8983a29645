"""Writing files so that a reader never sees half of one, and telling files apart.

Every file headstart writes for a user (run folder, exports, reports, caches' indexes)
goes through ``atomic_write`` or ``atomic_target``: the bytes land in a hidden temporary
file beside the target, which is renamed over it only once complete. A crash, a kill or a
full disk leaves the old file (or none), never a truncated one.

Temporary files are created exclusively (``create_exclusive``: O_CREAT | O_EXCL |
O_NOFOLLOW) under a name that holds the process id and a random part: a file or symlink
planted at a predictable name is never followed, truncated or overwritten; the writer
picks another name instead. Files only ever read from a user's data go through
``open_regular``: regular files only (a FIFO, a device or a socket is refused before a
byte is read, so nothing blocks), at most ``MAX_FILE_BYTES``, hashed in chunks
(``file_digest``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import stat
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


# A temporary file of ours: "<stem>.<pid>[.<random>].tmp" with an optional suffix after it.
_TEMPORARY = re.compile(r"\.(\d+)(?:\.[0-9a-f]{8})?\.tmp(\.[^.]+)?$")

# No image (or CSV) headstart reads is larger: an uncompressed 179 MP RGBA TIFF, Pillow's
# decompression-bomb limit, is 716 MB. Checked from fstat before a byte is read.
MAX_FILE_BYTES = 1 << 30
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class NotRegularFile(OSError):
    """A path that is not a regular file (FIFO, device, socket, folder) or is over the size cap."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a socket" if stat.S_ISSOCK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"


def open_regular(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES):
    """Open ``path`` for reading in binary mode if it is a regular file of at most
    ``max_bytes``; else ``NotRegularFile``. The open itself cannot block (O_NONBLOCK: a
    FIFO with no writer returns at once and is then refused by its fstat); symlinks are
    followed to a regular file only.

    Example:
        >>> with open_regular("cat.png") as handle:             # doctest: +SKIP
        ...     head = handle.read(16)
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC | _BINARY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"{os.fspath(path)} is {_kind(info.st_mode)}, not a regular file; only regular files are read")
        if info.st_size > max_bytes:
            raise NotRegularFile(f"{os.fspath(path)} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit for one file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (or links to) a regular file; never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def file_digest(path: str | os.PathLike, digest_size: int = 16, chunk: int = 1 << 20) -> str:
    """blake2b of a regular file's bytes, read ``chunk`` bytes at a time (memory stays at
    one chunk whatever the file's size).

    Example:
        >>> file_digest("cat.png")                               # doctest: +SKIP
        '5d41402abc4b2a76b9719d911017c592'
    """
    digest = hashlib.blake2b(digest_size=digest_size)
    with open_regular(path) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def create_exclusive(path: str | os.PathLike, mode: int = 0o666) -> int:
    """Create ``path`` for reading and writing, exclusively: an existing file or symlink there is an
    error (FileExistsError), never followed or truncated. ``mode`` is masked by the umask
    (0o600: only the owner can read). Returns the file descriptor.

    Example:
        >>> fd = create_exclusive("cache/.entry.1234.tmp", 0o600)   # doctest: +SKIP
    """
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY, mode)


def temporary_name(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside ``path``: hidden, with this process's id (for
    ``sweep_orphans``) and a random part (not guessable in advance), then ``suffix``
    (for writers that go by the extension)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


def create_temporary(path: str | os.PathLike, mode: int = 0o666, suffix: str = "", attempts: int = 8) -> tuple[Path, int]:
    """An exclusively created temporary file beside ``path``: (its path, an open fd).

    Example:
        >>> tmp, fd = create_temporary("cache/images/0123.npy", 0o600)   # doctest: +SKIP
    """
    for _ in range(attempts):
        tmp = temporary_name(Path(path), suffix)
        try:
            return tmp, create_exclusive(tmp, mode)
        except FileExistsError:
            continue  # planted, or an unlucky draw: another name
    raise FileExistsError(f"cannot create a temporary file beside {path}: every name tried exists")


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
def atomic_target(path: str | os.PathLike, then: str = "run the command again", mode: int = 0o666) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` on success,
    removed on any failure. A failure on a full disk becomes a DiskFullError naming
    ``path`` and saying what to do ``then``. The temporary file exists (created
    exclusively, ``mode`` masked by the umask) before the writer opens it by name.

    Example:
        >>> with atomic_target("model.onnx") as tmp:            # doctest: +SKIP
        ...     torch.onnx.export(net, x, tmp)
    """
    path = Path(path)
    tmp, fd = create_temporary(path, mode)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        if out_of_space(exc, path.parent):  # checked while the partial file still fills the disk
            raise DiskFullError(path, then) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes, then: str = "run the command again", mode: int = 0o666) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (``then``, ``mode``: see ``atomic_target``)."""
    with atomic_target(path, then, mode) as tmp, open(tmp, "r+b") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
