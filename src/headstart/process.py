"""The process guards every heavy entry point runs under, from the CLI and from Python alike.

``guarded()`` is one context (and decorator) for three guarantees:

- **memory**: under a cgroup memory limit, a watcher stops the run with one clear line
  before the kernel's OOM killer ends it silently (``headstart.memory_guard``);
- **clean SIGTERM**: ``kill``, ``docker stop`` or a batch scheduler unwind the run like
  Ctrl+C (temporary files removed, writers closed) and exit 143, instead of the process
  vanishing mid-write. The handler is installed only from the main thread and only when
  the host program has none of its own (``SIG_DFL``), and restored on the way out;
- **thread policy**: ``OMP_WAIT_POLICY=PASSIVE`` on a busy machine (see ``thread_policy``).

It is re-entrant: a ``Classifier`` method called inside ``cli.main``'s context (or inside
another method's) adds nothing; the outermost context decides.

Example:
    >>> from headstart.process import guarded
    >>> with guarded("lower the batch size"):     # doctest: +SKIP
    ...     train()
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from headstart.errors import HeadstartError
from headstart.memory_guard import address_space_too_small, memory_guard

# What lowers memory in a Classifier method, named in the one line when it runs out.
PYTHON_HINT = "lower TrainConfig.batch_size (activations grow with it) or image_size, or give fewer num_workers"

_depth = threading.local()  # per thread: how many guarded() contexts are open in it


class ThreadPolicyWarning(RuntimeWarning):
    """The OpenMP wait policy was chosen after OpenMP had already started: it has no effect."""


class AddressSpaceError(HeadstartError):
    """``ulimit -v`` is below what torch needs to start: it would abort or hang, not raise."""


def openmp_started() -> bool:
    """True when an OpenMP runtime is already loaded in this process (it reads its
    environment once, when it loads: torch brings it in on import)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: torch imported is the best sign there is
        return "torch" in sys.modules
    return any(name in maps for name in ("libgomp", "libiomp", "libomp"))


def thread_policy() -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when other work already keeps the cores busy; returns
    what it set (None: nothing). An explicit ``OMP_WAIT_POLICY`` is always left alone.

    Spinning threads that compete with other processes are ruinous (2 cores, load ~8: a
    28-px convnet step at 30-70 img/s spinning, 600-800 passive; lite0 fine-tuning 17 vs
    29.6 img/s with one core busy) while passive waiting costs ~15 % on a quiet machine, so
    it is chosen by the load at start. OpenMP reads the variable once, when it loads: set
    later, it changes nothing in this process (a ``ThreadPolicyWarning`` says so) but still
    reaches the worker processes it starts.

    Example:
        >>> thread_policy() in (None, "PASSIVE")
        True
    """
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return None
    if os.getloadavg()[0] < 0.75 * (os.cpu_count() or 1):
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if openmp_started():
        warnings.warn(
            "the machine is busy, but OMP_WAIT_POLICY=PASSIVE came too late for this process: OpenMP had already started "
            "(torch was imported before headstart); set OMP_WAIT_POLICY=PASSIVE in the environment before Python starts, "
            "or import headstart's Classifier before torch",
            ThreadPolicyWarning,
            stacklevel=2,
        )
    return "PASSIVE"


# After a SIGTERM the process unwinds (temporary files removed, writers closed); a thread
# blocked in a system call (a read from a hung network disk) would hold that unwinding up
# forever, as a FIFO once held `predict` for 563 s. It gets this long, then the process ends.
TERM_GRACE_S = 5.0


_deadline: list[threading.Timer] = []  # armed by a SIGTERM; disarmed once the unwinding leaves the guard


def _terminated(signum: int, _frame: object) -> None:
    deadline = threading.Timer(TERM_GRACE_S, os._exit, args=(128 + signum,))
    deadline.daemon = True
    deadline.start()
    _deadline.append(deadline)
    raise SystemExit(128 + signum)


def _disarm() -> None:
    """The unwinding got out of the guarded block (every pool in it joined): no forced exit.
    A host that catches the SystemExit (a test) then goes on."""
    while _deadline:
        _deadline.pop().cancel()


@contextmanager
def sigterm_unwinds() -> Iterator[bool]:
    """SIGTERM raises ``SystemExit(143)`` in the main thread while the block runs; yields
    whether the handler was installed (not off the main thread, nor over a host's own)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield False
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield True
    finally:
        _disarm()
        if signal.getsignal(signal.SIGTERM) is _terminated:  # the block may have installed its own: leave that
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def active() -> bool:
    """True inside a ``guarded()`` context of this thread."""
    return getattr(_depth, "n", 0) > 0


@contextmanager
def guarded(hint: str = PYTHON_HINT, *, memory: bool = True, address_space: bool = False) -> Iterator[None]:
    """Run the block under headstart's process guards (memory, SIGTERM, thread policy).

    Args:
        hint: what lowers memory, named in the one line when the memory guard stops the run.
        memory: watch the cgroup memory limit (a server answers 503 instead: it must not stop itself).
        address_space: first refuse, with ``AddressSpaceError``, a ``ulimit -v`` too small
            for torch to start (it would abort in C++ or hang instead of raising).

    Nested inside another ``guarded()`` of the same thread, it adds nothing.

    Example:
        >>> with guarded("lower --batch-size"):
        ...     pass
    """
    if active():
        yield
        return
    thread_policy()
    cramped = address_space_too_small() if address_space else None
    if cramped:
        raise AddressSpaceError(cramped)
    _depth.n = 1
    try:
        with ExitStack() as stack:
            stack.enter_context(sigterm_unwinds())
            if memory:
                stack.enter_context(memory_guard(hint))
            yield
    finally:
        _depth.n = 0
