"""Find label issues: from features already at hand (a training run's phase 1), or from a
data folder (``headstart doctor DATA --labels``) through the persistent feature cache."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console

from headstart.data.index import Sample
from headstart.engine.oof import out_of_fold, out_of_fold_logits
from headstart.label_issues.calibrate import LABEL_WEIGHT_DECAY, softmax
from headstart.label_issues.rank import Flag, flag_calibrated, flag_multilabel
from headstart.label_issues.table import LabelIssue, LabelIssues, Neighbour
from headstart.text import shown as escape  # control characters made visible, markup escaped

if TYPE_CHECKING:
    from headstart.data.prepare import Prepared
    from headstart.engine.frozen import FrozenFeatures

FOLDS = 5
NEIGHBOURS = 5


@dataclass(frozen=True)
class LabelSearch:
    """How ``doctor --labels`` looks for label issues.

    Args:
        arch: the frozen base (any timm name); ``weights``: its weights file (default: the
            bundled or timm-resolved pretrained weights, as ``train`` uses).
        image_size: input side; None: the architecture's.
        folds: heads trained, each predicting the images it did not see.
        neighbours: nearest images (cosine, in feature space) listed per finding.
    """

    arch: str = "tf_efficientnet_lite0"
    weights: str | None = None
    image_size: int | None = None
    folds: int = FOLDS
    neighbours: int = NEIGHBOURS
    cache: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        from headstart.errors import ConfigError

        if self.folds < 2:
            raise ConfigError(f"folds={self.folds}: out-of-fold predictions need at least 2 folds (5 is usual).")
        if self.neighbours < 0:
            raise ConfigError(f"neighbours={self.neighbours} must be 0 or more.")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"image_size={self.image_size} is too small; use 16 or more.")


def nearest(features: np.ndarray | torch.Tensor, rows: list[int], k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(len(rows), k) indices and cosine similarities of each row's k nearest other rows."""
    x = torch.nn.functional.normalize(torch.as_tensor(np.asarray(features, dtype=np.float32)), dim=1)  # (N, F)
    k = max(0, min(k, len(x) - 1))
    index, similarity = [], []
    for start in range(0, len(rows), chunk):
        query = torch.as_tensor(rows[start : start + chunk])
        sims = x[query] @ x.T  # (chunk, N)
        sims[torch.arange(len(query)), query] = -2.0  # never its own neighbour
        top = sims.topk(k, dim=1)
        index.append(top.indices.numpy())
        similarity.append(top.values.numpy())
    if not index:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(index), np.concatenate(similarity)


def find_issues(
    features: np.ndarray | torch.Tensor,
    samples: list[Sample],
    classes: list[str],
    task: str,
    root: str | os.PathLike,
    *,
    folds: int = FOLDS,
    neighbours: int = NEIGHBOURS,
    seed: int = 0,
) -> LabelIssues:
    """Label issues of ``samples`` from their (N, F) features (row i = samples[i]).

    Example:
        >>> found = find_issues(features, index.all_samples, index.classes, "multiclass", index.root)  # doctest: +SKIP
        >>> found.issues[0].path, found.issues[0].suggested
    """
    started = time.perf_counter()
    k, multilabel = len(classes), task == "multilabel"
    if multilabel:
        targets = np.zeros((len(samples), k), dtype=np.float32)
        for i, s in enumerate(samples):
            targets[i, list(s.labels)] = 1.0
    else:
        targets = np.array([s.labels[0] for s in samples], dtype=np.int64)
    cutoff = None
    if multilabel:  # per label: the fixed 5 % floor (no calibration yet)
        probs = out_of_fold(features, targets, k, multilabel=True, folds=folds, seed=seed)
        fitted = time.perf_counter()
        flags = flag_multilabel(probs, targets)
    else:
        logits = out_of_fold_logits(features, targets, k, folds=folds, seed=seed, weight_decay=LABEL_WEIGHT_DECAY)
        fitted = time.perf_counter()
        flags, cutoff = flag_calibrated(logits, targets)
        probs = softmax(logits / cutoff.temperature)
    names = [";".join(classes[j] for j in s.labels) for s in samples]
    unique_rows = sorted({f.row for f in flags})
    near_index, near_sim = nearest(features, unique_rows, neighbours if unique_rows else 0)
    near_of = {r: i for i, r in enumerate(unique_rows)}
    issues = []
    for f in flags:
        i = near_of[f.row]
        found = [Neighbour(samples[j].path, names[j], round(float(s), 3)) for j, s in zip(near_index[i], near_sim[i])]
        given, suggested = _label_texts(f, samples[f.row], classes, multilabel)
        issues.append(
            LabelIssue(
                samples[f.row].path,
                given,
                suggested,
                f.issue,
                round(f.p_given, 4),
                round(f.p_suggested, 4),
                tuple(found),
                p_wrong=None if f.p_wrong is None else round(f.p_wrong, 4),
            )
        )
    summary = _summary(probs, targets, classes, multilabel, folds, fitted - started, time.perf_counter() - fitted)
    summary["expected_precision"] = None if cutoff is None or cutoff.expected_precision is None else round(cutoff.expected_precision, 3)
    summary["cutoff"] = cutoff.to_dict() if cutoff else {"p_given_below": 0.05, "calibrated": False}
    return LabelIssues(str(root), task, list(classes), issues, len(samples), summary)


def _label_texts(f: Flag, sample: Sample, classes: list[str], multilabel: bool) -> tuple[str, str]:
    if not multilabel:
        return classes[f.given], classes[f.suggested]
    given = set(sample.labels)
    after = given - {f.given} if f.issue == "spurious" else given | {f.given}
    return ";".join(classes[j] for j in sorted(given)), ";".join(classes[j] for j in sorted(after))


def _summary(
    probs: np.ndarray, targets: np.ndarray, classes: list[str], multilabel: bool, folds: int, fit_seconds: float, rank_seconds: float
) -> dict:
    if multilabel:
        agreement = float(((probs >= 0.5) == (targets > 0)).mean())  # per label
        what = "out-of-fold per-label agreement with the given labels"
    else:
        agreement = float((probs.argmax(1) == targets).mean())
        what = "out-of-fold accuracy against the given labels"
    return {
        "folds": folds,
        "oof_agreement": round(agreement, 4),
        "oof_agreement_is": what,
        "seconds_heads": round(fit_seconds, 2),
        "seconds_rank": round(rank_seconds, 2),
    }


def find_in_data(data: str | os.PathLike, search: LabelSearch = LabelSearch(), console: Console | None = None) -> LabelIssues:
    """Label issues of every labelled image in ``data`` (any layout ``train`` reads; every
    split, test included), from frozen-base features through the feature cache. DATA is
    only read.

    Example:
        >>> found = find_in_data("pets/", LabelSearch(image_size=128))   # doctest: +SKIP
    """
    from headstart.config import ModelConfig, TrainConfig
    from headstart.data.index import scan
    from headstart.data.prepare import prepare
    from headstart.engine.frozen import FrozenFeatures
    from headstart.models import build_network
    from headstart.models.network import data_config
    from headstart.preprocess import Preprocess

    console = console or Console(stderr=True, quiet=True)
    index = scan(data)
    task = "multilabel" if index.multilabel else "multiclass"
    network = build_network(ModelConfig(arch=search.arch, weights=search.weights), len(index.classes))
    preprocess = Preprocess.from_timm_config(data_config(network.backbone), search.image_size)
    prepared = prepare(index.samples, preprocess, search.cache, index.skipped)
    started = time.perf_counter()
    frozen = FrozenFeatures(network, prepared, preprocess, TrainConfig(seed=search.seed), search.cache, console)
    splits = [s for s in prepared.rows if len(prepared.rows[s])]
    features = torch.cat([frozen.get(s) for s in splits])
    samples = [x for s in splits for x in prepared.samples[s]]
    extracted = time.perf_counter() - started
    found = find_issues(
        features, samples, index.classes, task, index.root, folds=search.folds, neighbours=search.neighbours, seed=search.seed
    )
    found.summary.update(
        {
            "arch": search.arch,
            "weights": search.weights,
            "input_size": preprocess.input_size,
            "seconds_features": round(extracted, 1),
            "unreadable": len(prepared.skipped),
        }
    )
    return found


def for_run(
    features: FrozenFeatures,
    prepared: Prepared,
    classes: list[str],
    task: str,
    root: str | os.PathLike,
    folder: Path,
    console: Console,
    seed: int = 0,
) -> LabelIssues | None:
    """Label issues of a training run's train + val images from the phase-1 features it
    already computed; written to ``folder``. Returns None (and costs nothing) when the run
    has no such features (--no-feature-cache, no phase 1); never raises: a failure is a
    warning, the run has succeeded."""
    from headstart.errors import describe

    try:
        train, val = features.ready("train"), features.ready("val")
        if train is None or val is None:
            return None
        found = find_issues(torch.cat([train, val]), prepared.samples["train"] + prepared.samples["val"], classes, task, root, seed=seed)
        write_outputs(found, folder)
        console.print(
            f"Possible label issues: {len(found.issues)} of {found.images} train/val images{expected_text(found)} "
            f"({found.summary['seconds_heads'] + found.summary['seconds_rank']:.1f} s) in [bold]{escape(folder / CSV_NAME)}[/]"
        )
        return found
    except Exception as exc:  # noqa: BLE001 - a label check must never fail a finished run
        console.print(
            f"[yellow]warning:[/] the label-issue check could not run ({escape(describe(exc))}); the run is complete.", highlight=False
        )
        return None


CSV_NAME, JSON_NAME = "label_issues.csv", "label_issues.json"


def write_outputs(found: LabelIssues, folder: str | os.PathLike) -> Path:
    """label_issues.csv and label_issues.json in ``folder``; returns the CSV's path."""
    import json

    from headstart.files import atomic_write
    from headstart.label_issues.table import to_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / CSV_NAME, to_csv(found.issues, found.root))
    atomic_write(folder / JSON_NAME, json.dumps(found.to_dict(), indent=1, ensure_ascii=False))
    return folder / CSV_NAME


def expected_text(found: LabelIssues) -> str:
    """ ", expected precision 0.62 (about 140 label errors in the data)" for a calibrated
    search; empty otherwise."""
    precision, cutoff = found.summary.get("expected_precision"), found.summary.get("cutoff") or {}
    if precision is None:
        return ""
    return f", expected precision {precision:.2f} (about {cutoff.get('expected_errors', 0):.0f} label errors in the data)"


def print_top(found: LabelIssues, console: Console, shown: int = 10) -> None:
    """The most suspicious findings, one line each, most suspicious first."""
    from headstart.label_issues.table import relative

    if found.summary.get("expected_precision") is not None:
        console.print(
            f"{len(found.issues)} listed{expected_text(found)}: the share of listed labels expected to be wrong, "
            "fitted on this data (an underestimate on the benchmark).",
            highlight=False,
        )

    for rank, i in enumerate(found.issues[:shown], 1):
        near = ", ".join(n.labels for n in i.neighbours)
        console.print(
            f"{rank:3d}. {escape(relative(i.path, found.root))}: given {escape(i.given)} ({i.p_given:.2f}) -> "
            f"{escape(i.suggested)} ({i.p_suggested:.2f}){'' if i.issue == 'mislabelled' else ' ' + i.issue}"
            + (f"; neighbours: {escape(near)}" if near else ""),
            highlight=False,
        )
    if len(found.issues) > shown:
        console.print(f"     ... {len(found.issues) - shown} more", highlight=False)
