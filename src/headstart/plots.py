"""PNG figures for the run folder: learning curves and the confusion matrix."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig: "plt.Figure", path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def learning_curves(rows: list[dict[str, str]], path: Path) -> None:
    """Loss and accuracy per epoch, train vs validation, phase boundary dashed."""
    if not rows:
        return
    x = np.arange(1, len(rows) + 1)

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("loss", "acc")):
        ax.plot(x, col(f"train_{metric}"), "o-", label="train")
        ax.plot(x, col(f"val_{metric}"), "o-", label="validation")
        ax.set_xlabel("epoch (both phases)")
        ax.set_title("loss" if metric == "loss" else "accuracy")
        phases = [int(r["phase"]) for r in rows]
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(i + 0.55, ax.get_ylim()[1], " fine-tune", va="top", fontsize=8, color="grey")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path, title: str = "") -> None:
    """Counts, coloured by row-normalised rate (recall), true classes on rows."""
    m = np.asarray(matrix, dtype=float)
    k = len(classes)
    rates = m / np.maximum(m.sum(1, keepdims=True), 1)
    side = min(4 + 0.45 * k, 30)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8 if k > 15 else 10)
    ax.set_yticks(range(k), classes, fontsize=8 if k > 15 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (colour: row-normalised)")
    _save(fig, path)


def lr_find(lrs: list[float], losses: list[float], smoothed: list[float], suggestion: float, path: Path) -> None:
    """The learning-rate range test: loss against learning rate (log scale), suggestion marked."""
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
    _save(fig, path)
