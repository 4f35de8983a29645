"""Facts about this machine that several parts size themselves by."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """The cores this process may use (its affinity mask on Linux, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
