"""Label issues as rows a person can edit: label_issues.csv (and .json), read back by
``train --exclude``.

label_issues.csv columns, one row per flagged image (multi-label: per image and label):

    path                 relative to the data's root (the folder, or the CSV's folder)
    given, suggested     label names (multi-label: the ';'-joined label set, before / after)
    issue                mislabelled | missing | spurious
    p_given, p_suggested out-of-fold probability of the given / suggested labelling
    score                1 - p_given: rows are sorted by it, most suspicious first
    neighbour_i, neighbour_i_label, neighbour_i_similarity   the i-th nearest image in
                         feature space (cosine similarity), its labels
    p_wrong              probability that the given label is wrong (multi-class: the
                         calibrated noise posterior of label_issues/calibrate.py; the
                         list's expected precision is its mean); empty for multi-label
    exclude              true/false: ``train --exclude`` leaves out the images of the rows
                         marked true. Written true: set it to false for a label that is right.

Paths and label names that a spreadsheet would run as a formula (a leading = + - @ tab or
CR) are written after a single quote (``headstart.text.cell``) and read back without it.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from headstart.errors import DataError
from headstart.text import cell, from_cell

TRUE = {"true", "1", "yes", "y", "x"}
FALSE = {"false", "0", "no", "n", ""}
BASE_COLUMNS = ["path", "given", "suggested", "issue", "p_given", "p_suggested", "score"]


@dataclass(frozen=True)
class Neighbour:
    path: str  # absolute
    labels: str  # ';'-joined label names
    similarity: float  # cosine, 3 decimals


@dataclass(frozen=True)
class LabelIssue:
    """One image (and, multi-label, one of its labels) whose given label looks wrong."""

    path: str  # absolute
    given: str
    suggested: str
    issue: str
    p_given: float  # 4 decimals, as written
    p_suggested: float
    neighbours: tuple[Neighbour, ...] = ()
    exclude: bool = True
    p_wrong: float | None = None  # probability that the given label is wrong (calibrated; multi-class)

    @property
    def score(self) -> float:
        return round(1.0 - self.p_given, 4)

    def to_dict(self, root: str | os.PathLike) -> dict:
        return {
            "path": relative(self.path, root),
            "given": self.given,
            "suggested": self.suggested,
            "issue": self.issue,
            "p_given": self.p_given,
            "p_suggested": self.p_suggested,
            "score": self.score,
            "p_wrong": self.p_wrong,
            "neighbours": [{"path": relative(n.path, root), "labels": n.labels, "similarity": n.similarity} for n in self.neighbours],
            "exclude": self.exclude,
        }


@dataclass
class LabelIssues:
    """What a label-issue search found, with what it was found from."""

    root: str  # the data's root: paths in the files are relative to it
    task: str  # multiclass | binary | multilabel
    classes: list[str]
    issues: list[LabelIssue]
    images: int  # how many labelled images were checked
    summary: dict = field(default_factory=dict)  # folds, thresholds, out-of-fold accuracy, seconds...

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "task": self.task,
            "classes": self.classes,
            "images": self.images,
            "flagged": len(self.issues),
            **self.summary,
            "issues": [i.to_dict(self.root) for i in self.issues],
        }


def relative(path: str, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` with '/' separators, or as given when outside it."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:  # another drive
        return path
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def resolve(path: str, root: str | os.PathLike) -> str:
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(root, path))


def to_csv(issues: list[LabelIssue], root: str | os.PathLike) -> str:
    """The CSV text of ``issues`` (paths relative to ``root``)."""
    k = max((len(i.neighbours) for i in issues), default=0)
    header = BASE_COLUMNS + [c for n in range(1, k + 1) for c in (f"neighbour_{n}", f"neighbour_{n}_label", f"neighbour_{n}_similarity")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header + ["p_wrong", "exclude"])
    for i in issues:
        row = [
            cell(relative(i.path, root)),
            cell(i.given),
            cell(i.suggested),
            i.issue,
            f"{i.p_given:.4f}",
            f"{i.p_suggested:.4f}",
            f"{i.score:.4f}",
        ]
        for n in range(k):
            nb = i.neighbours[n] if n < len(i.neighbours) else None
            row += [cell(relative(nb.path, root)), cell(nb.labels), f"{nb.similarity:.3f}"] if nb else ["", "", ""]
        writer.writerow(row + ["" if i.p_wrong is None else f"{i.p_wrong:.4f}", "true" if i.exclude else "false"])
    return buffer.getvalue()


def _flag(value: str, where: str) -> bool:
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise DataError(f"{where}: exclude={value!r}; write true or false (also yes/no, 1/0, x/empty).")


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror}.") from exc
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "path" not in header:
        raise DataError(f"{path} has columns {header}; it needs a 'path' column (as label_issues.csv from 'headstart doctor --labels').")
    return header, [r for r in rows[1:] if any(c.strip() for c in r)]


def read_csv(path: str | os.PathLike, root: str | os.PathLike) -> list[LabelIssue]:
    """label_issues.csv back into LabelIssues (paths resolved against ``root``)."""
    header, rows = _rows(Path(path))
    col = {name: i for i, name in enumerate(header)}
    k = sum(1 for name in header if name.startswith("neighbour_") and name.count("_") == 1)
    issues = []
    for line, raw in enumerate(rows, start=2):
        r = raw + [""] * (len(header) - len(raw))

        def get(name: str, r: list[str] = r) -> str:
            return from_cell(r[col[name]]) if name in col else ""

        neighbours = tuple(
            Neighbour(resolve(get(f"neighbour_{n}"), root), get(f"neighbour_{n}_label"), float(get(f"neighbour_{n}_similarity")))
            for n in range(1, k + 1)
            if get(f"neighbour_{n}")
        )
        issues.append(
            LabelIssue(
                resolve(get("path"), root),
                get("given"),
                get("suggested"),
                get("issue"),
                float(get("p_given") or "nan"),
                float(get("p_suggested") or "nan"),
                neighbours,
                _flag(get("exclude"), f"{path} line {line}") if "exclude" in col else True,
                float(get("p_wrong")) if get("p_wrong") else None,
            )
        )
    return issues


def excluded_paths(path: str | os.PathLike, root: str | os.PathLike) -> tuple[set[str], str]:
    """The files ``train --exclude`` leaves out, and which rule chose them: the rows whose
    ``exclude`` column is true, or, in a CSV without that column, every listed path."""
    header, rows = _rows(Path(path))
    at_path = header.index("path")
    if "exclude" in header:
        at = header.index("exclude")
        chosen = {
            resolve(from_cell(r[at_path].strip()), root)
            for line, r in enumerate(rows, start=2)
            if _flag(r[at] if at < len(r) else "", f"{path} line {line}")
        }
        return chosen, "rows with exclude = true"
    return {resolve(from_cell(r[at_path].strip()), root) for r in rows}, "every listed path (no exclude column)"
