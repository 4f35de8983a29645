"""The report's figures: matplotlib (Agg) -> PNG bytes, inlined later as data: URIs.

Every function takes plain arrays and returns PNG bytes; ``build`` wraps each call so a
figure that fails becomes a note in the report, never a failed run. Sizes and fonts
scale with the number of classes so 50+ classes stay legible.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from headstart.files import atomic_write  # noqa: E402
from headstart.report.analysis import Calibration, Curve  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 100
SPLIT_COLOURS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868", "data": "#8172B3"}
STYLE: dict[RcKeyType, Any] = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "font.size": 9,
    "legend.frameon": False,
}


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def save(png_bytes: bytes, path: Path) -> None:
    """Write a figure into a run folder atomically (a reader never sees half a PNG)."""
    atomic_write(path, png_bytes)


def image_png(rgb: np.ndarray, side: int | None = None, fmt: str = "JPEG") -> bytes:
    """(H, W, 3) uint8 -> encoded bytes, optionally downscaled to ``side`` pixels wide."""
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if side and image.width > side:
        image = image.resize((side, round(image.height * side / image.width)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=85) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return buffer.getvalue()


def _label_size(k: int) -> float:
    """Tick-label font size for k class names: 10 pt for a few, 7 pt from 37 on (the
    figures grow with k instead, so names stay readable at the page's natural size)."""
    return float(np.clip(260 / max(k, 1), 7, 10))


def _cell_inches(k: int) -> float:
    """Side of one confusion-matrix cell: roomy for a few classes, 0.2 in (20 px) from 40 on."""
    return 0.42 if k <= 20 else max(0.2, 0.42 - 0.011 * (k - 20))


def class_counts(counts: dict[str, np.ndarray], classes: list[str]) -> bytes:
    """Horizontal bars, one row per class, stacked by split."""
    k = len(classes)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, min(2.0 + 0.24 * k, 40)))
        y = np.arange(k)
        left = np.zeros(k)
        for split, values in counts.items():
            ax.barh(y, values, left=left, height=0.75, label=split, color=SPLIT_COLOURS.get(split))
            left = left + values
        ax.set_yticks(y, classes, fontsize=_label_size(k))
        ax.invert_yaxis()
        ax.set_xlabel("images")
        ax.grid(axis="y", visible=False)
        if len(counts) > 1:
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(counts), fontsize=8)
        ax.set_title("Images per class and split", pad=22 if len(counts) > 1 else 6)
        return png(fig)


def image_sizes(widths: np.ndarray, heights: np.ndarray, input_size: int) -> bytes:
    """Width vs height of every examined file, log scales; the model input marked."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        ax.scatter(widths, heights, s=10, alpha=0.5, color="#4C72B0", edgecolors="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axvline(input_size, color="grey", linestyle="--", linewidth=1)
        ax.axhline(input_size, color="grey", linestyle="--", linewidth=1)
        ax.text(input_size, ax.get_ylim()[1], f" model input {input_size} px", va="top", fontsize=8, color="grey")
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        ax.set_title("Image sizes")
        return png(fig)


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])


def _phase_boundaries(ax: plt.Axes, phases: list[int]) -> None:
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
            ax.annotate(
                "fine-tuning →",
                (i + 0.5, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                va="top",
                fontsize=8,
                color="grey",
            )


METRIC_NAMES = {"loss": "loss", "acc": "accuracy", "f1": "macro F1"}


def learning_curves(rows: list[dict[str, str]], monitor: str, best_epoch: int | None) -> bytes:
    """Loss, the monitored (or accuracy) metric, and the learning rates, per epoch."""
    x = np.arange(1, len(rows) + 1)
    phases = [int(r["phase"]) for r in rows]
    metric = monitor.removeprefix("val_")
    metric = metric if metric != "loss" else "acc"
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        for ax, name in zip(axes[:2], ("loss", metric)):
            for split, colour in (("train", SPLIT_COLOURS["train"]), ("val", SPLIT_COLOURS["val"])):
                values = _column(rows, f"{split}_{name}")
                if np.isfinite(values).any():
                    ax.plot(x, values, "o-", markersize=3, color=colour, label="validation" if split == "val" else split)
            title = METRIC_NAMES.get(name, name)
            ax.set_title(title + (" (monitored)" if f"val_{name}" == monitor else ""))
            ax.set_xlabel("epoch (both phases)")
            if best_epoch is not None:
                best = _column(rows, f"val_{name}")[best_epoch - 1]
                ax.plot([best_epoch], [best], marker="*", markersize=13, color="#C44E52", linestyle="none", label="kept checkpoint")
            ax.legend()
            _phase_boundaries(ax, phases)
        ax = axes[2]
        for name, label, colour in (("lr_head", "head", "#4C72B0"), ("lr_base", "base", "#C44E52")):
            values = _column(rows, name)
            if np.isfinite(values).any():
                shown = False
                for number in sorted(set(phases)):  # one line per phase: the rates jump at the switch
                    mine = np.array(phases) == number
                    if np.isfinite(values[mine]).any():
                        ax.plot(x[mine], values[mine], "o-", markersize=3, color=colour, label=None if shown else label)
                        shown = True
        ax.set_yscale("log")
        ax.set_title("learning rate (at each epoch's start)")
        ax.set_xlabel("epoch (both phases)")
        ax.legend()
        _phase_boundaries(ax, phases)
        fig.tight_layout()
        return png(fig)


def confusion_matrix(matrix: np.ndarray, classes: list[str], normalised: bool, numbers_up_to: int = 20, title: str | None = None) -> bytes:
    """Rows = true class. Counts or row-normalised rates; per-cell numbers only up to
    ``numbers_up_to`` classes, beyond that a plain heat map whose size grows with k."""
    m = np.asarray(matrix, dtype=float)
    k = len(classes)
    rates = m / np.maximum(m.sum(1, keepdims=True), 1)
    values = rates if normalised else m
    side = float(np.clip(2.5 + _cell_inches(k) * k, 4.5, 40))
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(side + 1.2, side))
        shown = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalised else max(1.0, m.max()), interpolation="nearest")
        fs = _label_size(k)
        ax.set_xticks(
            range(k), classes, rotation=60 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=fs, rotation_mode="anchor"
        )
        ax.set_yticks(range(k), classes, fontsize=fs)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= numbers_up_to:
            cell_fs = float(np.clip(120 / k, 6, 11))
            for i in range(k):
                for j in range(k):
                    if m[i, j]:
                        text = f"{rates[i, j]:.2f}" if normalised else str(int(m[i, j]))
                        ax.text(j, i, text, ha="center", va="center", fontsize=cell_fs, color="white" if rates[i, j] > 0.5 else "black")
        fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02, label="share of the true class" if normalised else "images")
        ax.set_title(title or ("row-normalised (recall on the diagonal)" if normalised else "counts"))
        return png(fig)


def reliability(cal: Calibration) -> bytes:
    """Accuracy per confidence bin against the diagonal, with the bin counts below."""
    centres = (cal.edges[:-1] + cal.edges[1:]) / 2
    width = cal.edges[1] - cal.edges[0]
    with plt.rc_context(STYLE):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        has = cal.count > 0
        top.bar(centres[has], cal.accuracy[has], width=width * 0.9, color="#4C72B0", label="observed frequency")
        top.scatter(
            centres[has],
            cal.confidence[has],
            marker="_",
            s=180,
            linewidths=2.5,
            color="#C44E52",
            zorder=3,
            label="mean predicted probability",
        )
        top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfectly calibrated")
        top.set_ylim(0, 1)
        per_label = cal.what.startswith("each label")
        top.set_ylabel("fraction present" if per_label else "fraction correct")
        top.set_title(f"Reliability (ECE {cal.ece:.3f})")
        top.legend(loc="upper left")
        bottom.bar(centres, cal.count, width=width * 0.9, color="#8C8C8C")
        bottom.set_ylabel("(image, label) pairs" if per_label else "images")
        bottom.set_xlabel("predicted probability")
        bottom.set_xlim(0, 1)
        fig.tight_layout()
        return png(fig)


def pr_roc(curves: list[Curve], threshold: float, limit: int = 12) -> bytes:
    """Precision-recall and ROC curves; the operating point at the threshold is a dot."""
    shown = sorted(curves, key=lambda c: -c.positives)[:limit]
    with plt.rc_context(STYLE):
        fig, (pr, roc) = plt.subplots(1, 2, figsize=(11, 4.4))
        for c in shown:
            (line,) = pr.plot(c.recall, c.precision, drawstyle="steps-post", label=f"{c.name} (AP {c.average_precision:.2f})")
            roc.plot(c.fpr, c.tpr, label=f"{c.name} (AUC {c.roc_auc:.2f})", color=line.get_color())
            p_at, r_at, f_at = c.at_threshold
            pr.plot([r_at], [p_at], "o", color=line.get_color(), markersize=7, markeredgecolor="black")
            roc.plot([f_at], [r_at], "o", color=line.get_color(), markersize=7, markeredgecolor="black")
        roc.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision-recall")
        roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1.02), ylim=(0, 1.02), title="ROC")
        fontsize = 8 if len(shown) <= 6 else 6.5
        pr.legend(loc="lower left", fontsize=fontsize)
        roc.legend(loc="lower right", fontsize=fontsize)
        fig.suptitle(f"dots: the decision threshold {threshold:g}", fontsize=9, color="#555555", y=0.02)
        fig.tight_layout()
        return png(fig)


def lr_find(lrs: list[float], losses: list[float], smoothed: list[float], suggestion: float) -> bytes:
    """The learning-rate range test: loss against learning rate (log scale), suggestion marked."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(lrs, losses, color="0.75", lw=1, label="loss per step")
        ax.plot(lrs, smoothed, color="C0", lw=2, label="smoothed")
        ax.axvline(suggestion, color="C3", ls="--", label=f"suggested {suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        finite = [v for v in smoothed if np.isfinite(v)]
        if finite:  # keep the divergence from flattening the useful part of the curve
            ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1)
        ax.legend()
        ax.set_title("Learning-rate range test (head on the frozen base)")
        return png(fig)
