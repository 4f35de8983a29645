"""The predictions CSV: streamed as results come, and an interrupted job continued without
losing or repeating a row.

Inputs (files, folders walked lazily in sorted order, CSVs with a ``path`` column; see
``headstart.predict.inputs``) are read one at a time; rows are appended in input order and
every chunk is flushed and fsynced, so after a crash the file holds whole chunks plus
perhaps one torn line. ``resume`` cuts
the torn line, counts the rows, checks that the last one is the input at that position
(the same inputs in the same order), and skips that many inputs: memory stays constant
however many files there are. ``shard=(k, n)`` keeps every n-th input from the k-th, so n
processes (one per device) split a job into n files. One file has one writer at a time: a
second ``predict --out`` into a file being written is refused (an advisory lock, released
when the writer ends, however it ends), since two writers would interleave their rows.
Text cells (paths, class names, errors) that a spreadsheet would run as a formula (a leading
= + - @ tab or CR) are written after a single quote (``headstart.text.cell``).
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from headstart.errors import DataError, DiskFullError, disk_full
from headstart.files import lock_exclusively
from headstart.predict.base import BatchPredictor, Prediction
from headstart.predict.inputs import iter_sources, shard_of
from headstart.text import cell, from_cell


def header(top_k: int) -> list[str]:
    return ["path", "prediction"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("class", "prob")] + ["error"]


def row(pred: Prediction, top_k: int) -> list[str]:
    cells: list[str] = []
    for name, prob in pred.top[:top_k]:
        cells += [cell(name), f"{prob:.6f}"]
    cells += [""] * (2 * top_k - len(cells))
    return [cell(pred.source), cell(";".join(pred.labels)), *cells, cell(pred.error or "")]


def _written(path: Path, top_k: int) -> tuple[int, str | None]:
    """(rows already in ``path``, the last row's source), after cutting a torn last line."""
    with path.open("rb+") as handle:
        data_end = handle.seek(0, os.SEEK_END)
        # find the last newline from the end, in blocks
        pos = data_end
        while pos > 0:
            step = min(1 << 16, pos)
            handle.seek(pos - step)
            block = handle.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                pos = pos - step + cut + 1
                break
            pos -= step
        if pos != data_end:
            handle.truncate(pos)
    count, last = -1, None
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None:
            return 0, None
        if first != header(top_k):
            raise DataError(f"{path} is not a predictions file with top-k {top_k}; use another --out or the same --top-k.")
        count = 0
        for r in reader:
            count, last = count + 1, from_cell(r[0])
    return count, last


@contextmanager
def _sole_writer(path: Path) -> Iterator[int]:
    """``path`` opened for appending (created, never truncated here) under an exclusive lock:
    the lock is taken before a byte changes, so a refused second writer harms nothing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        if not lock_exclusively(fd):
            raise DataError(
                f"{path} is being written by another process (a predict --out still running); "
                "wait for it to end (then --resume if it was stopped), or write to another --out."
            )
        yield fd
    finally:
        os.close(fd)  # releases the lock


def predict_to_file(
    predictor: BatchPredictor,
    inputs: Iterable[str | os.PathLike],
    out: Path,
    top_k: int = 5,
    resume: bool = False,
    shard: tuple[int, int] = (0, 1),
    chunk: int = 64,
) -> tuple[int, int]:
    """Predict every input into ``out``; returns (rows written now, rows already there).

    Example:
        >>> predict_to_file(Predictor(load_artifact("runs/pets")), ["photos/"], Path("p.csv"))  # doctest: +SKIP
    """
    sources: Iterator[str] = shard_of(iter_sources(inputs), shard)
    existed = out.exists()
    with _sole_writer(out) as fd:
        done, last = _written(out, top_k) if resume and existed else (0, None)
        if done:
            skipped = list(itertools.islice(sources, done - 1))
            at = next(sources, None)
            if at != last:
                raise DataError(
                    f"{out} holds {done} predictions ending with {last!r}, but input {done} is {at!r}: "
                    "resume with the same inputs (and --shard), or write to another --out."
                )
            del skipped
        if not resume:
            os.ftruncate(fd, 0)
        written = 0
        try:
            with os.fdopen(fd, "a", newline="", encoding="utf-8", closefd=False) as handle:
                writer = csv.writer(handle)
                if os.fstat(fd).st_size == 0:
                    writer.writerow(header(top_k))
                    handle.flush()
                predictions = predictor.iter_predict(sources, top_k)
                while True:
                    rows = [row(p, top_k) for p in itertools.islice(predictions, chunk)]
                    if not rows:
                        break
                    writer.writerows(rows)
                    handle.flush()
                    os.fsync(handle.fileno())  # a chunk on disk survives a crash or a kill
                    written += len(rows)
        except OSError as exc:  # a full disk: the rows written so far stay, a torn last one is cut by --resume
            if disk_full(exc) is None:
                raise
            raise DiskFullError(out, then="add --resume to the same command to continue the file") from exc
    return written, done
