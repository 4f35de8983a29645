"""A trained artifact scored on a folder, a CSV, or its run's own held-out split."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console

from headstart.artifact import Artifact
from headstart.data.index import Sample, Skipped, scan
from headstart.data.prepare import prepare, write_skipped
from headstart.data.split import read_split
from headstart.errors import ConfigError, DataError
from headstart.metrics import Metrics
from headstart.pipeline import outputs
from headstart.pipeline.scoring import score
from headstart.predict.eager import Predictor
from headstart.runfolder import SPLIT


def evaluate(
    artifact: Artifact,
    run_dir: Path | None,
    predictor: Callable[[tuple[str, ...]], Predictor],
    data: str | os.PathLike | None,
    out: str | os.PathLike | None,
    views: tuple[str, ...],
    *,
    cache: bool,
    threshold: float,
    console: Console,
    report: bool,
) -> dict[str, Metrics]:
    """Metrics per split, written with their figures (and report.html) under ``out``.

    ``data`` None: the run's own validation/test split. A folder with train/val/test: its
    test split (else val). Anything else: every image, as split "data". ``predictor(views)``
    gives the predictor for a set of TTA views (() for none)."""
    started = time.time()
    splits, skipped, name = _what_to_score(artifact, run_dir, data)
    prepared = prepare(splits, artifact.preprocess, cache, skipped)
    scored = {split: score(predictor(views), prepared, split, threshold) for split in prepared.rows if len(prepared.rows[split])}
    results = {split: m for split, (m, _) in scored.items()}
    if not results:
        raise DataError(f"No readable images to evaluate in {data}.")
    target = Path(out) if out else (run_dir / f"eval-{name}" if run_dir else Path(f"eval-{name}"))
    target.mkdir(parents=True, exist_ok=True)
    write_skipped(target / "skipped.csv", prepared.skipped)
    outputs.write_metrics(target, results, console)
    outputs.print_summary(console, target, results)
    if report:
        from headstart.report import ReportInputs

        plain: dict[str, tuple[Metrics, np.ndarray]] = (
            {split: score(predictor(()), prepared, split, threshold) for split in scored} if views else {}
        )
        source = str(data) if data is not None else f"{run_dir}/split.csv ({', '.join(scored)})"
        inputs = ReportInputs(
            target,
            "evaluate",
            artifact,
            prepared,
            results,
            {s: p for s, (_, p) in scored.items()},
            run_dir,
            source,
            views,
            plain,
            time.time() - started,
        )
        outputs.write_report(inputs, console)
    return results


def _what_to_score(
    artifact: Artifact, run_dir: Path | None, data: str | os.PathLike | None
) -> tuple[dict[str, list[Sample]], list[Skipped], str]:
    """(splits, skipped files, a name for the output folder) of what ``evaluate`` scores."""
    if data is None:
        if run_dir is None:
            raise ConfigError("evaluate() without data needs a run folder; pass data=FOLDER or CSV.")
        splits = {k: v for k, v in read_split(run_dir / SPLIT, artifact.classes).items() if k != "train"}
        return splits, [], "own-split"
    index = scan(data).remap(artifact.classes)
    if index.layout == "splits" or "all" not in index.samples:  # split folders or split-named shards
        pick = "test" if "test" in index.samples else "val"
        return {pick: index.samples[pick]}, index.skipped, outputs.safe_name(data)
    return {"data": index.all_samples}, index.skipped, outputs.safe_name(data)
