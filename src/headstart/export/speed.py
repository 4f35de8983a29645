"""How fast an exported model runs here: batch-1 latency and batched throughput.

Measured on synthetic inputs of the model's size (the model's cost does not depend on the
pixels), after a warm-up call per shape, as the median of repeated timings: what
``headstart export`` prints for each format it wrote, so the user picks by measurement.

Example:
    >>> s = measure_speed(lambda x: x[:, :1, 0, 0], 8, repeats=3)
    >>> s.latency_ms >= 0 and s.throughput > 0
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BATCH = 32


@dataclass(frozen=True)
class Speed:
    latency_ms: float  # one image per call, median
    throughput: float  # images per second at ``batch`` images per call, median
    batch: int

    def summary(self) -> str:
        return f"batch-1 latency {self.latency_ms:.2f} ms, batch-{self.batch} throughput {self.throughput:.0f} images/s"


def _median_seconds(run: Callable[[np.ndarray], object], x: np.ndarray, repeats: int, budget_s: float) -> float:
    run(x)  # warm-up: the first call of a shape allocates and plans
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (spent < budget_s or len(times) < 3):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return statistics.median(times)


def measure_speed(run: Callable[[np.ndarray], object], side: int, batch: int = BATCH, repeats: int = 20, budget_s: float = 1.5) -> Speed:
    """Time ``run`` on (1, 3, side, side) and (batch, 3, side, side) float32 zeros-plus-noise."""
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, side, side)).astype(np.float32)
    many = rng.standard_normal((batch, 3, side, side)).astype(np.float32)
    latency = _median_seconds(run, one, repeats, budget_s)
    batched = _median_seconds(run, many, max(3, repeats // 4), budget_s)
    return Speed(latency * 1e3, batch / batched, batch)
