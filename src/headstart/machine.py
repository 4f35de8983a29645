"""Facts about this machine that several parts size themselves by."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cpu_count() -> int:
    """The cores this process may use (its affinity mask on Linux, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class MemoryLimit:
    """The tightest cgroup memory limit over this process, and how to read its usage."""

    limit: int  # bytes
    folder: Path  # the cgroup folder that holds the limit (its usage is what counts)
    version: int  # 1 or 2

    @property
    def describe(self) -> str:
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        return f"{self.limit / 2**30:.2f} GiB ({name} of cgroup {self.folder})"

    def working_set(self) -> int | None:
        """Bytes the kernel cannot simply drop: usage less inactive file pages (None: unreadable).

        This is what an OOM kill is decided on; clean page cache (images read, a memory-mapped
        store) is reclaimed first, so raw usage would cry wolf.
        """
        usage_file = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        inactive = "inactive_file" if self.version == 2 else "total_inactive_file"
        try:
            usage = int((self.folder / usage_file).read_text())
            stat = (self.folder / "memory.stat").read_text().split()
        except (OSError, ValueError):
            return None
        pairs = dict(zip(stat[::2], stat[1::2]))
        return usage - int(pairs.get(inactive, 0))


_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_folders(root: Path, membership: str) -> list[tuple[Path, int]]:
    """This process's memory cgroup and its ancestors, innermost first (v1 and v2), from
    the text of /proc/self/cgroup and the cgroup file system mounted at ``root``."""
    lines = membership.splitlines()
    found: list[tuple[Path, int]] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / "cgroup.controllers").exists():
            base, version = root, 2
        elif "memory" in controllers.split(","):
            base, version = root / "memory", 1
        else:
            continue
        here = base / path.lstrip("/")
        while True:
            if here.is_dir():
                found.append((here, version))
            if here == base:
                break
            here = here.parent
    return found


def memory_limit(root: Path = _CGROUP_ROOT, membership: str | None = None) -> MemoryLimit | None:
    """The tightest cgroup memory limit over this process; None when there is none.

    Example:
        >>> lim = memory_limit()      # doctest: +SKIP
        >>> lim.describe              # doctest: +SKIP
        '1.00 GiB (memory.limit_in_bytes of cgroup /sys/fs/cgroup/memory/job)'
    """
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    best: MemoryLimit | None = None
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    for folder, version in _cgroup_folders(root, membership):
        try:
            text = (folder / ("memory.max" if version == 2 else "memory.limit_in_bytes")).read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit():
            continue
        limit = int(text)
        if physical and limit >= physical:  # v1 writes "no limit" as a huge number
            continue
        if best is None or limit < best.limit:
            best = MemoryLimit(limit, folder, version)
    return best


def available_memory() -> int | None:
    """Bytes this process could still take: the smaller of the kernel's MemAvailable and
    the headroom under the cgroup limit (None when neither can be read)."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    limit = memory_limit()
    used = limit.working_set() if limit is not None else None
    if limit is not None and used is not None:
        found.append(max(0, limit.limit - used))
    return min(found) if found else None
