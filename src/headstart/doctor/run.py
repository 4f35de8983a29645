"""``headstart doctor DATA``: read every file once in a thread pool, run the checks, write
``doctor.json`` and ``doctor.html`` (self-contained) outside DATA, and summarise."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from headstart.data.index import NOT_REGULAR, OUTSIDE, Skipped, scan
from headstart.doctor.findings import SEVERITIES, Finding, class_name_clashes, duplicate_checks, entries_of, file_checks, imbalance
from headstart.doctor.inspect import FileFacts, inspect_file
from headstart.errors import ConfigError
from headstart.files import atomic_write, safe_name
from headstart.text import shown
from headstart.thumbnails import thumbnail_uri

if TYPE_CHECKING:
    from headstart.label_issues import LabelIssues, LabelSearch

# Pillow's own warning limit: above it, Image.open warns of a decompression bomb.
MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


@dataclass
class Diagnosis:
    """Everything ``doctor`` found; ``to_dict`` is what doctor.json holds."""

    data: str
    layout: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images
    files: int
    ignored: int  # files without an image extension
    findings: list[Finding]
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0
    label_issues: LabelIssues | None = None  # with --labels (headstart.label_issues)

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    def to_dict(self) -> dict:
        out = {**dataclasses.asdict(dataclasses.replace(self, label_issues=None)), "files_per_second": round(self.files_per_second, 1)}
        out.pop("label_issues")
        if self.label_issues is not None:  # paths relative to the data's root, as in label_issues.csv
            out["label_issues"] = self.label_issues.to_dict()
        return out


def default_out(data: str | os.PathLike) -> Path:
    name = safe_name(data) or "data"
    return Path(f"doctor-{name}")


def check_out(out: str | os.PathLike, data: str | os.PathLike) -> None:
    """Refuse an output folder inside the data folder (a CSV's folder counts as the data's)."""
    root = Path(data).resolve()
    root = root.parent if root.is_file() else root
    target = Path(out).resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"--out {out} is inside the data folder {root}; the doctor never writes there. Choose a folder outside it.")


def inspect_all(paths: list[str], max_pixels: int, workers: int, show: bool) -> dict[str, FileFacts]:
    """Read every file in a thread pool (Pillow and hashlib release the GIL while working)."""
    facts: dict[str, FileFacts] = {}
    columns = (TextColumn("Checking files"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, disable=not show) as progress, ThreadPoolExecutor(workers) as pool:
        task = progress.add_task("files", total=len(paths))
        for f in pool.map(lambda p: inspect_file(p, max_pixels), paths):
            facts[f.path] = f
            progress.advance(task)
    return facts


def _stats(facts: dict[str, FileFacts]) -> dict:
    ok = [f for f in facts.values() if not f.error and not f.bomb]
    if not ok:
        return {}
    w = np.array([f.width for f in ok])
    h = np.array([f.height for f in ok])
    q = lambda a: {k: int(np.percentile(a, p)) for k, p in (("min", 0), ("median", 50), ("max", 100))}  # noqa: E731
    return {
        "width": q(w),
        "height": q(h),
        "formats": dict(Counter(f.sniffed for f in facts.values()).most_common()),
        "modes": dict(Counter(f.mode for f in ok).most_common()),
        "megabytes": round(sum(f.bytes for f in facts.values()) / 1e6, 1),
    }


def diagnose(
    data: str | os.PathLike,
    *,
    near_threshold: int = 5,
    min_side: int = 32,
    max_pixels: int = MAX_PIXELS,
    workers: int | None = None,
    show: bool = False,
    labels: LabelSearch | None = None,
) -> Diagnosis:
    """Check a data set without changing it.

    Args:
        data: a folder or CSV in any layout ``headstart train`` accepts.
        near_threshold: Hamming distance (of 256 bits) under which perceptual hashes count
            as near-duplicates; -1 skips the near-duplicate search.
        min_side: images with a side below this many pixels are reported as tiny.
        max_pixels: images above this (read from the header, never decoded) are reported.
        labels: also look for images whose label is probably wrong (needs the training
            stack; see ``headstart.label_issues``).

    Example:
        >>> d = diagnose("pets/")                      # doctest: +SKIP
        >>> [f.message for f in d.findings]
    """
    if not -1 <= near_threshold <= 64:
        raise ConfigError(f"near_threshold={near_threshold} must be between -1 (off) and 64 bits of 256.")
    start = time.perf_counter()
    index = scan(data)
    entries = entries_of(index)
    paths = sorted({e.path for e in entries})
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    facts = inspect_all(paths, max_pixels, workers, show)
    findings = (
        file_checks(facts, min_side, max_pixels)
        + duplicate_checks(entries, facts, near_threshold)
        + class_name_clashes(index.classes)
        + imbalance(index)
    )
    findings += _skipped_findings(index.skipped)
    found = None
    if labels is not None:
        from headstart.label_issues import find_in_data

        found = find_in_data(data, labels, Console(stderr=True) if show else None)
        findings.append(
            Finding(
                "labels",
                "warning" if found.issues else "info",
                f"{len(found.issues)} of {found.images} images may be mislabelled (label_issues.csv; see 'Possible label issues').",
            )
        )
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    order = ("train", "val", "test", "all")
    counts = {split: dict(sorted(index.class_counts(split).items())) for split in sorted(index.samples, key=order.index)}
    return Diagnosis(
        str(Path(data).resolve()),
        index.layout,
        index.classes,
        counts,
        len(paths),
        index.ignored,
        findings,
        _stats(facts),
        time.perf_counter() - start,
        found,
    )


def _skipped_findings(skipped: list[Skipped]) -> list[Finding]:
    """The files indexing did not read: missing CSV rows, special files, symlinks out of DATA."""
    kinds = {
        "missing": "listed in the CSV do not exist",
        "special": "are not regular files (FIFO, device, socket) and were never read",
        "outside": "are symlinks leading outside the data folder and were not read",
    }
    findings = []
    for check, what in kinds.items():
        reason = {"special": NOT_REGULAR, "outside": OUTSIDE}.get(check)
        found = [s for s in skipped if (s.reason == reason if reason else s.reason not in (NOT_REGULAR, OUTSIDE))]
        if found:
            rows = [{"path": s.path, "reason": s.reason} for s in found]
            findings.append(Finding(check, "warning", f"{len(found)} files {what}.", rows))
    return findings


# -- output --------------------------------------------------------------------------------
def render_html(diagnosis: Diagnosis, max_groups: int = 30) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("headstart.doctor", "templates"), autoescape=select_autoescape(["html"]))
    thumbs: dict[str, str] = {}
    for f in diagnosis.findings:
        for group in f.items[:max_groups] if isinstance(f.items, list) else []:
            if isinstance(group, list):
                for member in group[:6]:
                    thumbs.setdefault(member["path"], thumbnail_uri(member["path"]))
    labels = None
    if diagnosis.label_issues is not None:
        from headstart.label_issues.html import render_section

        labels = render_section(diagnosis.label_issues)
    return env.get_template("doctor.html").render(d=diagnosis, thumbs=thumbs, max_groups=max_groups, labels=labels)


def write_outputs(diagnosis: Diagnosis, out: str | os.PathLike) -> Path:
    """doctor.json and doctor.html in ``out`` (created; never inside the data folder)."""
    folder = Path(out)
    check_out(folder, diagnosis.data)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "doctor.json", json.dumps(diagnosis.to_dict(), indent=1, ensure_ascii=False))
    atomic_write(folder / "doctor.html", render_html(diagnosis))
    if diagnosis.label_issues is not None:
        from headstart.label_issues import write_outputs as write_label_issues

        write_label_issues(diagnosis.label_issues, folder)
    return folder


def print_summary(diagnosis: Diagnosis, console: Console) -> None:
    from rich.table import Table

    d = diagnosis
    console.print(
        f"[bold]{shown(d.data)}[/] ({d.layout}): {d.files} images in {len(d.classes)} classes"
        + (f", {d.ignored} non-image files ignored" if d.ignored else "")
        + f"; checked in {d.seconds:.1f}s ({d.files_per_second:.0f} files/s)"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("severity")
    table.add_column("check")
    table.add_column("finding")
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}
    for f in d.findings:
        table.add_row(f"[{colour[f.severity]}]{f.severity}[/]", shown(f.check), shown(f.message))
    if d.findings:
        console.print(table)
    else:
        console.print("[green]No problems found.[/]")
