"""What a report is made from, and the guard that turns a failed figure into a note."""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.artifact import Artifact
from headstart.data.prepare import Prepared
from headstart.errors import describe
from headstart.metrics import Metrics

log = logging.getLogger("headstart.report")


@dataclass
class ReportInputs:
    """Everything ``write_report`` reads; the api fills it at the end of fit/evaluate.

    ``probs[split]`` are the (N, K) probabilities behind ``metrics[split]``, row i being
    ``prepared.samples[split][i]``. With TTA, ``without_tta`` holds the plain centre-crop
    metrics and probabilities of the same images.
    """

    folder: Path  # where report.html goes
    kind: str  # "train" | "evaluate"
    artifact: Artifact
    prepared: Prepared
    metrics: dict[str, Metrics]
    probs: dict[str, np.ndarray]
    run_dir: Path | None = None  # the training run: epochs.csv (per-phase best scores too)
    data: str | None = None  # the data source, as the user named it
    tta: tuple[str, ...] = ()
    without_tta: dict[str, tuple[Metrics, np.ndarray]] = field(default_factory=dict)
    seconds: float | None = None  # how long the run or evaluation took
    label_issues: Any = None  # headstart.label_issues.LabelIssues of a training run, when checked


@dataclass
class Figure:
    """An inline image, or why it is missing."""

    title: str
    uri: str | None = None
    error: str | None = None
    width: int | None = None  # CSS max width in px (None: the page width)


def data_uri(payload: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


class Problems:
    """Collects what could not be made, for the banner at the top of the report."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def figure(
        self, title: str, make: Callable[..., bytes], *args: Any, width: int | None = None, mime: str = "image/png", **kw: Any
    ) -> Figure:
        """``make(*args, **kw)`` -> PNG bytes as a Figure; an exception becomes a note."""
        try:
            return Figure(title, data_uri(make(*args, **kw), mime), width=width)
        except Exception as exc:  # a figure must never fail a run
            self.note(f"figure '{title}'", exc)
            return Figure(title, error=describe(exc), width=width)

    def section(self, title: str, make: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``make(...)`` or ``{"error": why}`` when it raises."""
        try:
            return make(*args, **kw)
        except Exception as exc:
            self.note(f"section '{title}'", exc)
            return {"error": describe(exc)}

    def note(self, what: str, exc: BaseException) -> None:
        self.items.append(f"{what} could not be made ({describe(exc)})")
        log.debug("report: %s failed\n%s", what, "".join(traceback.format_exception(exc)))
