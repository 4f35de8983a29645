"""The report's sections as plain dicts for the template: data, training, run facts.

The results section, which needs the model, lives in ``results.py``.
"""

from __future__ import annotations

import csv
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np

from headstart.report import datainfo, figures
from headstart.report.inputs import Problems, ReportInputs
from headstart.runfolder import FitSummary, PlanRecord

SKIPPED_SHOWN = 50
IMBALANCE_WARN = 3.0  # largest / smallest class: above this, say what to do


def _rel(path: str, root: str | None) -> str:
    if root:
        try:
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                return rel
        except ValueError:  # another drive on Windows
            pass
    return path


def data_section(inp: ReportInputs, problems: Problems) -> dict[str, Any]:
    classes = inp.artifact.classes
    samples = inp.prepared.samples
    root = inp.data if inp.data and Path(inp.data).is_dir() else (str(Path(inp.data).parent) if inp.data else None)
    counts = datainfo.class_counts(samples, len(classes))
    splits = list(counts)
    total = cast(np.ndarray, sum(counts.values()))  # (K,): there is always a split
    rows = [{"name": c, "counts": [int(counts[s][i]) for s in splits], "total": int(total[i])} for i, c in enumerate(classes)]
    basis = counts.get("train", total)
    has = basis[basis > 0]
    ratio = float(has.max() / has.min()) if len(has) else float("nan")
    imbalance = {
        "ratio": ratio,
        "largest": classes[int(np.argmax(basis))],
        "smallest": classes[int(np.argmin(np.where(basis > 0, basis, basis.max() + 1)))] if len(has) else "",
        "basis": "training" if "train" in counts else "evaluated",
        "warn": ratio >= IMBALANCE_WARN,
    }
    skipped = [{"path": _rel(s.path, root), "reason": s.reason} for s in inp.prepared.skipped]
    paths = [s.path for items in samples.values() for s in items]
    stats = problems.section("image sizes", datainfo.image_stats, paths)
    size_rows, size_fig = [], None
    if isinstance(stats, datainfo.ImageStats):
        size_rows = stats.summary(inp.artifact.preprocess.input_size)
        if len(stats.widths):
            size_fig = problems.figure(
                "Image sizes", figures.image_sizes, stats.widths, stats.heights, inp.artifact.preprocess.input_size, width=520
            )
    source = inp.artifact.meta.data if inp.kind == "train" else None
    return {
        "source": inp.data,
        "layout": source.layout if source else None,
        "ignored": source.ignored_files if source else None,
        "splits": splits,
        "split_totals": [int(counts[s].sum()) for s in splits],
        "images": len(paths),
        "rows": rows,
        "multilabel": inp.artifact.task == "multilabel",
        "imbalance": imbalance,
        "counts_figure": problems.figure(
            "Images per class", figures.class_counts, counts, classes, width=760 if len(classes) <= 20 else None
        ),
        "skipped": skipped[:SKIPPED_SHOWN],
        "skipped_total": len(skipped),
        "size_rows": size_rows,
        "size_figure": size_fig,
        "fingerprint": problems.section("fingerprint", datainfo.fingerprint, samples, classes, root),
    }


def _epochs(run_dir: Path) -> list[dict[str, str]]:
    """epochs.csv as written by ``engine.callbacks.EpochLog`` (read here without importing Lightning)."""
    with (run_dir / "epochs.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _best_epoch(rows: list[dict[str, str]], result: FitSummary | None) -> int | None:
    """The row (1-based, over both phases) whose monitored value is the kept checkpoint's."""
    if result is None or not result.monitor or result.best_score is None:
        return None
    monitor, phase, score = result.monitor, result.best_phase, result.best_score
    candidates = [(abs(float(r[monitor]) - score), i) for i, r in enumerate(rows) if int(r["phase"]) == phase and r.get(monitor)]
    return min(candidates)[1] + 1 if candidates else None


def _phase_best(rows: list[dict[str, str]], monitor: str) -> float | None:
    """A phase's best monitored value over its epochs: the score its best checkpoint kept."""
    values = [float(r[monitor]) for r in rows if r.get(monitor)]
    values = [v for v in values if v == v]  # NaN never wins
    return (min if monitor.endswith("loss") else max)(values) if values else None


def training_section(inp: ReportInputs, problems: Problems) -> dict[str, Any] | None:
    if inp.run_dir is None or not (inp.run_dir / "epochs.csv").exists():
        return None
    rows = _epochs(inp.run_dir)
    if not rows:
        return None
    meta = inp.artifact.meta
    result = meta.result
    monitor = (result.monitor if result else "") or (meta.train.monitor if meta.train else "val_loss")
    phases = []
    for number in sorted({int(r["phase"]) for r in rows}):
        mine = [r for r in rows if int(r["phase"]) == number]
        lr_head = [float(r["lr_head"]) for r in mine if r.get("lr_head")]
        lr_base = [float(r["lr_base"]) for r in mine if r.get("lr_base")]
        phases.append(
            {
                "number": number,
                "what": "frozen base, head only" if number == 1 else "fine-tuning the base and head",
                "epochs": len(mine),
                "lr_head": f"{max(lr_head):.2g} → {min(lr_head):.2g}" if lr_head else "",
                "lr_base": f"{max(lr_base):.2g} → {min(lr_base):.2g}" if lr_base else "—",
                "seconds": sum(float(r["seconds"] or 0) for r in mine),
                "best": _phase_best(mine, monitor),
                "kept": result is not None and result.best_phase == number,
            }
        )
    best = _best_epoch(rows, result)
    return {
        "monitor": monitor,
        "best_epoch": best,
        "phases": phases,
        "figure": problems.figure("Learning curves", figures.learning_curves, rows, monitor, best),
        "rows": rows,
    }


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """{"augment": {"hflip": True}} -> [("augment.hflip", "True")]"""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}{k}.")]
    shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else ("—" if value is None else str(value))
    return [(prefix[:-1], shown)]


def _installed(names: list[str]) -> dict[str, str]:
    """Installed versions by distribution name, without importing the packages."""
    found = {"python": platform.python_version()}
    for name in names:
        module = sys.modules.get(name)
        try:
            found[name] = getattr(module, "__version__", None) or metadata.version(name)  # torch: "2.x+cu130", as recorded
        except metadata.PackageNotFoundError:
            pass
    return found


def facts_section(inp: ReportInputs, data: dict[str, Any], training: dict[str, Any] | None) -> dict[str, Any]:
    art = inp.artifact
    meta = art.meta
    model = art.model
    network = art.network
    total = sum(p.numel() for p in network.parameters())
    head = sum(p.numel() for p in network.head.parameters())
    pre = art.preprocess
    train = {**(meta.train.to_dict() if meta.train else {}), **meta.train_extra}
    model_rows = [
        (
            "architecture",
            f"{model.arch} ({'pretrained' + (f', weights {model.weights}' if model.weights else '') if model.pretrained else 'random init'})",
        ),
        (
            "head",
            model.head
            + (f", hidden {', '.join(map(str, model.hidden))}" if model.hidden else "")
            + (f", dropout {model.dropout}" if model.dropout else ""),
        ),
        ("parameters", f"{total:,} ({head:,} in the head)"),
        ("task", art.task + ("" if art.task == "multiclass" else f", threshold {art.threshold:g}")),
        ("classes", f"{len(art.classes)}: " + ", ".join(art.classes[:30]) + (" …" if len(art.classes) > 30 else "")),
        (
            "preprocessing",
            f"{pre.input_size} px input from a {pre.resize_size} px square, {pre.interpolation}, mean {list(pre.mean)}, std {list(pre.std)}",
        ),
    ]
    if inp.tta:
        model_rows.append(
            ("test-time augmentation", "centre crop + " + ", ".join(inp.tta) + f" (evaluate --tta-views {','.join(inp.tta)})")
        )
    run_rows = [
        ("report", f"{'training run' if inp.kind == 'train' else 'evaluation'}, written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"),
        ("data", str(inp.data or "")),
        ("data fingerprint", f"{data.get('fingerprint', '')} (sha256 of split, relative path, size and labels of every image)"),
    ]
    if training and "phases" in training:
        run_rows.append(
            ("phases", "; ".join(f"{p['number']}: {p['what']}, {p['epochs']} epochs in {p['seconds']:.1f} s" for p in training["phases"]))
        )
    plan = meta.plan
    if plan is not None:
        budget = f" of a {plan.budget_seconds:.0f} s budget" if plan.budget_seconds else ""
        run_rows.append(
            (
                "recipe",
                f"planned from the data and this machine: {plan.arch} at {plan.input_size} px, "
                f"estimated {plan.estimated_seconds:.0f} s{budget}",
            )
        )
        run_rows.extend(("why", reason) for reason in plan.reasons)
        run_rows.extend(plan_rows(plan))
    elif train:
        run_rows.append(("recipe", "the options as given (see Training options)"))
    if meta.train:
        run_rows.append(("seed", str(meta.train.seed)))
    if meta.seconds is not None:
        run_rows.append(("training took", f"{meta.seconds:.1f} s"))
    if inp.kind == "evaluate" and inp.seconds is not None:
        run_rows.append(("evaluation took", f"{inp.seconds:.1f} s"))
    result = meta.result
    if result is not None and result.best_score is not None:
        run_rows.append(("kept checkpoint", f"phase {result.best_phase}, {result.monitor} {result.best_score:.4f}"))
    trained_with = meta.versions
    now = {**_installed(["headstart", "torch", "timm", "lightning", "numpy", "pillow", "matplotlib"]), "os": platform.platform(terse=True)}
    version_rows = [(k, now.get(k, ""), trained_with.get(k, "")) for k in dict.fromkeys([*trained_with, *now])]
    return {
        "model": model_rows,
        "run": run_rows,
        "options": _flatten(train) if train else [],
        "versions": version_rows,
    }


def plan_rows(plan: PlanRecord) -> list[tuple[str, str]]:
    """The pilot's evidence as report rows: how it measured, then every candidate (side,
    base, cross-validated metric +- standard error, gap to the best, probe seconds)."""
    evidence = plan.evidence
    rows = evidence.get("rows") if evidence is not None else None
    if evidence is None or not isinstance(rows, list) or not rows:
        return []
    metric = str(evidence.get("metric", "")).replace("_", " ")
    chosen = evidence.get("chosen")
    cells = []
    for i, r in enumerate(rows):
        gap = "" if str(r.get("verdict", "")).startswith("best") else f", gap {r['gap']:+.3f} ± {r['gap_se']:.3f}"
        mark = " (chosen)" if i == chosen else ""
        cells.append(f"{r['side']} px {r['arch']}: {r['score']:.3f} ± {r['se']:.3f}{gap}, {r['seconds']:.1f} s, {r['verdict']}{mark}")
    how = f"{evidence.get('folds')}-fold cross-validated {metric} of a linear probe on {evidence.get('images')} training images"
    return [("pilot", f"{how}; chosen: {evidence.get('rule', '')}"), ("candidates", "; ".join(cells))]


def label_issues_section(inp: ReportInputs) -> dict[str, Any]:
    """The run's possible label issues, each image beside its nearest neighbours."""
    from headstart.label_issues.html import render_section

    return {"html": render_section(inp.label_issues)}


def layers_section(inp: ReportInputs) -> dict[str, Any]:
    """The layer summary (``headstart summary RUN``): each layer group's output shape and parameters."""
    from headstart.summary import run_summary

    rows = run_summary(inp.artifact)
    return {
        "input_size": inp.artifact.preprocess.input_size,
        "rows": rows,
        "params": sum(r.params for r in rows),
        "trainable": sum(r.trainable for r in rows),
    }
