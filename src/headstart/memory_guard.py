"""Stop with a clear error before the kernel's OOM killer stops the process without one.

Under a cgroup memory limit (a container, a batch job, systemd's MemoryMax) the kernel
kills a process that goes over it: no message, no traceback, exit status 137. A watcher
thread reads the cgroup's working set a few dozen times a second; at THRESHOLD of the limit
it first hands freed-but-kept memory back to the OS (``allocator.trim``: training keeps
freed buffers for speed), and only if that is not enough raises ``MemoryLimitError`` in
the main thread. The run unwinds like any error:
atomic writes leave no half-written file, the last checkpoint stays resumable, and the
CLI prints one line naming the option that lowers memory.

A single allocation bigger than the remaining headroom can still beat the watcher; the
threshold leaves a tenth of the limit for that. Without a cgroup limit nothing is watched
(``ulimit -v`` makes allocations fail instead: the CLI turns that MemoryError into the
same one line).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from headstart.allocator import trim
from headstart.errors import HeadstartError
from headstart.machine import MemoryLimit, memory_limit

THRESHOLD = 0.9  # share of the limit at which the run stops itself
POLL_S = 0.02  # fine-tuning at 224 px grows by a few hundred MB within one step


class MemoryLimitError(HeadstartError):
    """The process came close to its memory limit and stopped itself."""

    message = "memory limit reached"  # set by the watcher before it raises the class

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (MemoryLimitError.message,)))


def out_of_memory(used: int | None, limit: MemoryLimit | None, hint: str) -> str:
    """The one line for a run that ran out of memory, with what lowers it."""
    if used is not None and limit is not None:
        where = f"{used / 2**30:.2f} GiB in use, {used / limit.limit:.0%} of the limit of {limit.describe}"
    elif limit is not None:
        where = f"an allocation failed under the limit of {limit.describe}"
    else:
        where = "an allocation failed (ulimit -v, or the machine is out of memory)"
    return f"out of memory: {where}; {hint}"


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failed: Python, numpy and torch's CPU allocator each say it their way."""
    if isinstance(exc, (MemoryError, MemoryLimitError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(s in text for s in ("can't allocate memory", "not enough memory", "out of memory"))


# Address space (``ulimit -v``) torch needs to start and train; below it the process aborts in
# C++ or hangs instead of raising. Measured on a 2-core machine (demo data, 96 px): 3.3 GiB
# failed while importing, 3.6 GiB hung at start, 4 GiB trained until an allocation failed
# cleanly. Threads reserve address space (stacks, malloc arenas), so many-core machines need more.
ADDRESS_SPACE_FLOOR = 4 * 2**30


def address_space_too_small() -> str | None:
    """A one-line reason when ``ulimit -v`` is below what torch needs to start, else None."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft >= ADDRESS_SPACE_FLOOR:
        return None
    return (
        f"address space limited to {soft / 2**30:.1f} GiB (ulimit -v), below the {ADDRESS_SPACE_FLOOR / 2**30:.0f} GiB torch needs "
        "to start (address space is not memory in use); raise it with 'ulimit -v unlimited', and cap real memory with a cgroup "
        "(systemd-run -p MemoryMax=..., docker --memory) instead"
    )


def _raise_in(thread_id: int, message: str) -> None:
    MemoryLimitError.message = message
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(MemoryLimitError))


@contextmanager
def memory_guard(hint: str, limit: MemoryLimit | None = None) -> Iterator[MemoryLimit | None]:
    """Watch the memory limit over this process while the block runs (the calling thread
    receives the error); yields the limit found, or None when there is nothing to watch.

    Example:
        >>> with memory_guard("lower --batch-size"):   # doctest: +SKIP
        ...     train()
    """
    limit = limit or memory_limit()
    if limit is None:
        yield None
        return
    target = threading.get_ident()
    done, tripped = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            used = limit.working_set()
            if used is not None and used >= THRESHOLD * limit.limit and trim():  # freed-but-kept memory goes back first
                used = limit.working_set()
            if used is not None and used >= THRESHOLD * limit.limit:
                tripped.set()
                _raise_in(target, out_of_memory(used, limit, hint))
                return

    watcher = threading.Thread(target=watch, name="headstart-memory-guard", daemon=True)
    watcher.start()
    try:
        yield limit
    finally:
        done.set()
        watcher.join()
        if tripped.is_set():  # raised too late for the block: it has finished, drop the error
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)
