"""Typed errors. User mistakes raise a HeadstartError subclass; the CLI prints one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class HeadstartError(Exception):
    """Base class: the message says what was wrong, where, and how to fix it."""


class DataError(HeadstartError):
    """The data folder or CSV cannot be used as given."""


class ConfigError(HeadstartError):
    """An option or configuration value is invalid."""


class WeightsError(HeadstartError):
    """Pretrained weights are missing or do not fit the architecture."""


class ArtifactError(HeadstartError):
    """A run folder or exported model is missing, incomplete or not trustworthy."""


class ExportError(HeadstartError):
    """An exported model does not predict like the run it came from (parity failed)."""


class CacheError(HeadstartError):
    """The on-disk cache cannot be cleared (or used) as asked."""


class MissingExtraError(HeadstartError):
    """A command needs an optional part of headstart that is not installed."""


class DiskFullError(HeadstartError):
    """A file could not be written because its disk is full (or the user's quota is spent).

    ``path`` is the file that was being written, or None when the failing library did not
    say (then ``folder``, where it was writing, if known); ``then`` says how to carry on
    once there is space again (run the command again, continue with --resume).
    """

    def __init__(
        self, path: str | os.PathLike | None, then: str = "run the command again", folder: str | os.PathLike | None = None
    ) -> None:
        self.path, self.then = (Path(path) if path is not None else None), then
        if self.path is not None:
            where = f"the disk of {self.path.parent} to write {self.path.name}"
        else:
            where = f"the disk of {folder}" if folder is not None else "a disk headstart writes to"
        super().__init__(
            f"No space left on {where}: free some space there (or write elsewhere: another --out, "
            f"HEADSTART_CACHE_DIR for the cache), then {then}."
        )


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException) -> DiskFullError | None:
    """``exc`` as a DiskFullError when it is an OSError saying the disk is full, else None.
    Other OSErrors (permissions, missing folders...) are left for their own handling."""
    if isinstance(exc, DiskFullError):
        return exc
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return DiskFullError(exc.filename if isinstance(exc.filename, str) else None)
    return None


# Where headstart may not write at all: a read-only file system, a folder without write permission.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def unwritable(exc: BaseException) -> HeadstartError | None:
    """``exc`` as a one-line error when it says a path cannot be written (read-only file
    system, no permission) and names the path; else None (the traceback stays)."""
    if not (isinstance(exc, OSError) and exc.errno in UNWRITABLE and isinstance(exc.filename, str)):
        return None
    return HeadstartError(
        f"cannot write {exc.filename}: {exc.strerror}; choose a writable place (another --out, "
        "HEADSTART_CACHE_DIR for the cache) or fix its permissions."
    )


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line for a log or an error message: "TypeName: first line of the message"."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:limit] if first else type(exc).__name__
