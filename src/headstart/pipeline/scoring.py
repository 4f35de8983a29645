"""Metrics of a decoded split from a predictor's probabilities."""

from __future__ import annotations

import numpy as np

from headstart.data.prepare import Prepared
from headstart.metrics import Metrics, compute_metrics
from headstart.predict.eager import Predictor


def score(predictor: Predictor, prepared: Prepared, split: str, threshold: float) -> tuple[Metrics, np.ndarray]:
    """Metrics of one split, and the (N, K) probabilities behind them."""
    probs = predictor.probabilities_of_squares(prepared.images.array, prepared.rows[split])
    labels = [s.labels for s in prepared.samples[split]]
    artifact = predictor.artifact
    return compute_metrics(probs, labels, artifact.classes, artifact.task, threshold), probs
