"""The outputs of a run: what a run folder holds and what a run prints.

    RUN/config.json      the options, classes, task and data facts (headstart.runfolder)
    RUN/split.csv        every image and its split; RUN/skipped.csv the unreadable ones
    RUN/metrics.json     per-split metrics (read back by headstart.runfolder.read_metrics);
                         confusion_matrix_<split>.png, learning_curves.png
    RUN/lr_find.*        the learning-rate range test, when one ran

The artifact itself (model.safetensors + headstart.json) is headstart.artifact's; both
descriptions are read and written by headstart.runfolder alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table

from headstart.errors import ConfigError, describe
from headstart.files import atomic_write, lock_exclusively, safe_name
from headstart.runfolder import METRICS
from headstart.text import shown

if TYPE_CHECKING:
    from headstart.data.prepare import Prepared
    from headstart.engine.lr_find import LRFinding
    from headstart.metrics import Metrics
    from headstart.report import ReportInputs


def default_run_dir(data: str | os.PathLike) -> Path:
    """runs/<data name>, or runs/<data name>-N: never an existing folder."""
    name = safe_name(data) or "run"
    candidate = Path("runs") / name
    n = 2
    while candidate.exists():
        candidate = Path("runs") / f"{name}-{n}"
        n += 1
    return candidate


def _missing(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def _new_default(data: str | os.PathLike) -> tuple[Path, list[Path]]:
    """``default_run_dir``, created here atomically, and the folders made for it: of trains
    started together on the same data without --out, each gets its own (runs/pets, runs/pets-2)."""
    for _ in range(10_000):
        candidate = default_run_dir(data)
        made = _missing(candidate)
        try:
            candidate.mkdir(parents=True)
            return candidate, made
        except FileExistsError:
            continue  # another train took it between the look and the mkdir
    raise ConfigError(f"cannot find a free run folder like {default_run_dir(data)}; give --out RUN.")


@contextmanager
def claimed(run_dir: Path, *, default_for: str | os.PathLike | None = None) -> Iterator[Path]:
    """Hold ``run_dir`` for this process, or with ``default_for`` (the data of a run without
    --out) a fresh default folder, and yield it. The hold is an advisory lock on the folder,
    released when the process ends however it ends: two trains, or a train and a --resume,
    writing one run folder at once would mix their checkpoints and results. Folders made
    here are removed again when the run fails while they are still empty.

    Example:
        >>> with claimed(Path("runs/pets")) as run_dir:   # doctest: +SKIP
        ...     train_into(run_dir)
    """
    if default_for is not None:
        run_dir, made = _new_default(default_for)
    else:
        made = _missing(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        if not lock_exclusively(fd):
            raise ConfigError(
                f"{run_dir} is being written by another headstart train still running; choose another --out, "
                f"or wait for it to end (then --resume {run_dir} if it was stopped)."
            )
        yield run_dir
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()  # only when empty: a run that wrote anything keeps it for --resume
            except OSError:
                break
        raise
    finally:
        os.close(fd)


def write_lr_finding(folder: Path, finding: LRFinding, console: Console) -> None:
    from headstart.report import figures

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "lr_find.json", json.dumps(finding.to_dict(), indent=1))
    figures.save(figures.lr_find(finding.lrs, finding.losses, finding.smoothed, finding.suggestion), folder / "lr_find.png")
    console.print(f"Range test plot: [bold]{shown(folder / 'lr_find.png')}[/]")


def write_metrics(folder: Path, metrics: dict[str, Metrics], console: Console, monitor: str | None = None) -> None:
    """metrics.json, a confusion matrix per split and, after training (``monitor`` given),
    the learning curves from RUN/epochs.csv. A figure that fails is a warning: the
    metrics are what matters, and the run has succeeded."""
    from headstart.engine.callbacks import read_epochs
    from headstart.report import figures

    atomic_write(folder / METRICS, json.dumps({split: m.to_dict() for split, m in metrics.items()}, indent=2, ensure_ascii=False))
    drawings: dict[str, Callable[[], bytes]] = {}
    for split, m in metrics.items():
        if m.task != "multilabel":
            title = f"{split}: confusion matrix (counts)"
            drawings[f"confusion_matrix_{split}.png"] = partial(
                figures.confusion_matrix, np.asarray(m.confusion), m.classes, False, title=title
            )
    rows = read_epochs(folder / "epochs.csv") if monitor is not None else []
    if rows:
        drawings["learning_curves.png"] = partial(figures.learning_curves, rows, monitor or "", None)
    for name, draw in drawings.items():
        try:
            figures.save(draw(), folder / name)
        except Exception as exc:  # a figure must never fail a finished run
            console.print(f"[yellow]warning:[/] {shown(name)} could not be drawn ({shown(describe(exc))})", highlight=False)


def print_model(
    console: Console,
    arch: str,
    pretrained: bool,
    head_name: str,
    network: Any,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    task: str,
) -> None:
    total = sum(p.numel() for p in network.parameters())
    head = sum(p.numel() for p in network.head.parameters())
    console.print(
        f"[bold]Model[/] {shown(arch)} ({'pretrained' if pretrained else 'random init'}) + "
        f"{head_name} head, task {task}: {total:,} parameters ({head:,} in the head); input "
        f"{input_size}px, mean {mean}, std {std}"
    )


def print_data(console: Console, prepared: Prepared, classes: list[str], run_dir: Path) -> None:
    table = Table(title="Images per class", title_justify="left")
    table.add_column("class")
    splits = list(prepared.samples)
    for split in splits:
        table.add_column(split, justify="right")
    counts = {s: np.bincount([i for x in v for i in x.labels], minlength=len(classes)) for s, v in prepared.samples.items()}
    for i, name in enumerate(classes):
        table.add_row(shown(name), *(str(counts[s][i]) for s in splits))
    console.print(table)
    if prepared.skipped:
        console.print(f"[yellow]Skipped {len(prepared.skipped)} unreadable files[/] (listed in {shown(run_dir / 'skipped.csv')}):")
        for s in prepared.skipped[:5]:
            console.print(f"  {shown(s.path)}: {shown(s.reason)}", highlight=False)


def print_summary(console: Console, folder: Path, results: dict[str, Metrics]) -> None:
    for split, m in results.items():
        console.print(
            f"[bold]{split}[/]: accuracy {m.accuracy:.4f}  balanced accuracy {m.balanced_accuracy:.4f}  "
            f"macro F1 {m.macro_f1:.4f}  ({m.count} images)"
        )
    console.print(f"Results in [bold]{shown(folder)}[/]")


def write_report(inputs: ReportInputs, console: Console) -> Path | None:
    """``report.html`` in ``inputs.folder``; a failure only warns (see ``headstart.report``)."""
    from headstart.report import write_report_safely

    return write_report_safely(inputs, console)
