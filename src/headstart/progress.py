"""One progress display for long work: decoding, feature extraction, epochs, prediction.

On a terminal: a rich bar that disappears when the work ends (nothing stale on screen);
lines printed on the same Console meanwhile appear above it. In a log (no TTY): a plain
line every ``EVERY`` seconds, and a closing line only when at least one was written, so
short work leaves the log as it was. Training epochs use the Lightning callback built on
this, ``headstart.engine.progress.EpochProgress``.

Example:
    >>> with track(len(paths), f"Decoding {len(paths)} images") as advance:  # doctest: +SKIP
    ...     for path in paths:
    ...         decode(path)
    ...         advance()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from headstart.text import shown as shown_text  # descriptions are markup: user text escaped

EVERY = 15.0  # seconds between plain progress lines in a log
T = TypeVar("T")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def bar(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True)


class PlainLines:
    """Progress as a plain line every ``every`` seconds (for logs and pipes)."""

    def __init__(self, what: str, total: int, console: Console, every: float = EVERY) -> None:
        self.what, self.total, self.console, self.every = shown_text(what), total, console, every
        self.done = 0
        self.start = self.last = time.monotonic()
        self.wrote = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.write(now)

    def write(self, now: float) -> None:
        spent = now - self.start
        share = self.done / self.total if self.total else 1.0
        left = f", about {_duration(spent / share - spent)} left" if 0 < share < 1 else ""
        self.console.print(f"{self.what}: {self.done}/{self.total} ({share:.0%}) in {_duration(spent)}{left}", highlight=False)
        self.wrote = True

    def close(self) -> None:
        if self.wrote:
            now = time.monotonic()
            self.console.print(f"{self.what}: {self.done}/{self.total} done in {_duration(now - self.start)}", highlight=False)


def _console(console: Console | None) -> Console:
    return console or Console(stderr=True, soft_wrap=True)


@contextmanager
def track(
    total: int, what: str, *, show: bool | None = None, console: Console | None = None, every: float = EVERY
) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1)`` for ``total`` steps of ``what``.

    Args:
        total: steps in all (images, batches).
        what: what is being done, e.g. "Decoding 60000 images".
        show: False: nothing at all; None or True: a bar on a terminal, plain lines in a log.
        console: where to show it (default: standard error); a quiet Console shows nothing.
        every: seconds between plain lines.
    """
    out = _console(console)
    if show is False or out.quiet or total <= 0:
        yield lambda n=1: None
        return
    if out.is_terminal:
        with bar(out) as shown:
            task = shown.add_task(shown_text(what), total=total)  # a description is markup
            yield lambda n=1: shown.advance(task, n)
        return
    plain = PlainLines(what, total, out, every)
    try:
        yield plain.advance
    finally:
        plain.close()


def iterate(items: Iterable[T], total: int, what: str, **kwargs: Any) -> Iterator[T]:
    """``items``, advancing a ``track`` display by one per item (e.g. predictions over files)."""
    with track(total, what, **kwargs) as advance:
        for item in items:
            yield item
            advance()
