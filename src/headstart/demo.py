"""The bundled demo: where its data lives and what its run prints at the end.

``headstart demo`` trains with every default on 1,594 public-domain OpenClipart drawings in
six classes (``demo_data/openclipart``, built by ``scripts/make_demo_data.py``), so its
validation split holds about 320 images and its accuracy is worth quoting, interval and all.

Example:
    >>> from headstart.demo import data_folder
    >>> (data_folder() / "LICENSE.md").is_file()
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from headstart.intervals import accuracy_interval


def data_folder() -> Path:
    """The bundled sample: one sub-folder per class, and its LICENSE.md."""
    return Path(str(resources.files("headstart") / "demo_data" / "openclipart"))


def one_per_class(paths_and_labels: Sequence[tuple[str, int]], classes: Sequence[str]) -> list[str]:
    """The first path of each class, in class order: a held-out image to show per class.

    Example:
        >>> one_per_class([("a1", 0), ("a2", 0), ("b1", 1)], ["a", "b", "c"])
        ['a1', 'b1']
    """
    first: dict[int, str] = {}
    for path, label in paths_and_labels:
        first.setdefault(label, path)
    return [first[i] for i in range(len(classes)) if i in first]


def summary(accuracy: float, count: int, report: Path | None, opened: bool | None = None) -> list[str]:
    """The demo's last lines: the accuracy with its 95 % interval, then the report as the next step.

    ``report``: the run's report.html, or None when it could not be written. ``opened``: None
    when ``--open`` was not asked, else whether a browser took the page.

    Example:
        >>> print("\\n".join(summary(0.714, 318, Path("runs/demo/report.html"))))
        Validation accuracy 0.714 (95% interval 0.662-0.761, 318 images), on drawings it never trained on.
        next: open runs/demo/report.html   (or run the demo with --open)
        then: headstart train YOUR_FOLDER   (one sub-folder of images per class)
    """
    lines = [f"Validation accuracy {accuracy_interval(accuracy, count)}, on drawings it never trained on."]
    if report is not None:
        lines.append(
            f"next: the report is open in your browser ({report})"
            if opened
            else f"next: open {report}"
            + ("   (no browser to open it from here)" if opened is False else "   (or run the demo with --open)")
        )
    lines.append("then: headstart train YOUR_FOLDER   (one sub-folder of images per class)")
    return lines
