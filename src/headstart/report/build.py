"""Render ``report.html``: one self-contained page (inline CSS, images as data: URIs,
no scripts, nothing fetched) describing the data, the training, the results and the run.

Example:
    >>> path = write_report(ReportInputs(folder, "train", artifact, prepared, metrics, probs))  # doctest: +SKIP
"""

from __future__ import annotations

import time
import traceback
from importlib import resources
from pathlib import Path

import jinja2
from rich.console import Console

from headstart.errors import describe
from headstart.files import atomic_write
from headstart.report import results, sections
from headstart.report.inputs import Problems, ReportInputs
from headstart.text import shown

REPORT = "report.html"
TEMPLATE = "template.html.j2"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["f"] = lambda v, digits=3: "—" if v is None or v != v else f"{v:.{digits}f}"
    env.filters["pct"] = lambda v: "—" if v is None or v != v else f"{100 * v:.1f}%"
    return env


def render(inp: ReportInputs) -> str:
    """The report as an HTML string (each failing part replaced by a note)."""
    started = time.perf_counter()
    problems = Problems()
    data = problems.section("data", sections.data_section, inp, problems)
    training = problems.section("training", sections.training_section, inp, problems)
    layers = problems.section("layers", sections.layers_section, inp) if inp.kind == "train" else None
    splits = [problems.section(f"results ({s})", results.split_results, inp, s, problems) for s in inp.metrics]
    labels = problems.section("label issues", sections.label_issues_section, inp) if inp.label_issues is not None else None
    facts = problems.section("run facts", sections.facts_section, inp, data if "error" not in data else {}, training)
    art = inp.artifact
    main = next((s for s in ("test", "data", "val") if s in inp.metrics), next(iter(inp.metrics), None))
    headline = inp.metrics[main] if main else None
    template = _environment().from_string(resources.files("headstart.report").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    return template.render(
        title=f"{'Training' if inp.kind == 'train' else 'Evaluation'} report: {inp.folder.name}",
        kind=inp.kind,
        folder=str(inp.folder),
        arch=art.model.arch,
        task=art.task,
        classes=art.classes,
        main=main,
        headline=headline,
        data=data,
        training=training,
        layers=layers,
        splits=splits,
        facts=facts,
        labels=labels,
        tta=inp.tta,
        problems=problems.items,
        seconds=time.perf_counter() - started,
    )


def write_report(inp: ReportInputs) -> Path:
    """Write ``inp.folder/report.html`` atomically and return its path."""
    html = render(inp)
    inp.folder.mkdir(parents=True, exist_ok=True)
    path = inp.folder / REPORT
    atomic_write(path, html)
    return path


def write_report_safely(inp: ReportInputs, console: Console) -> Path | None:
    """``write_report`` that never raises: a failure is a warning, the run still succeeds.

    The traceback goes to ``report-error.txt`` beside where the report would have been.
    """
    try:
        path = write_report(inp)
    except Exception as exc:  # the report must never fail a training run
        try:
            (inp.folder / "report-error.txt").write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        except OSError:
            pass
        console.print(
            f"[yellow]warning:[/] the report could not be written ({shown(describe(exc))}); the results above are complete.",
            highlight=False,
        )
        return None
    console.print(f"Report: [bold]{shown(path)}[/]", highlight=False)
    return path
