"""Typed errors. User mistakes raise a HeadstartError subclass; the CLI prints one line."""

from __future__ import annotations


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


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line for a log or an error message: "TypeName: first line of the message"."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:limit] if first else type(exc).__name__
