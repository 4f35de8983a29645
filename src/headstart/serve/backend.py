"""Which model the server runs: the one resolver of ``headstart.predict.resolve``.

``auto`` picks the exported ONNX model whenever the run has one (on CPU onnxruntime's fused
kernels run a batch-1 EfficientNet-Lite0 faster than eager PyTorch, bench/serve_load.py measures
both; it needs no torch, and the export passed the parity check), the eager model from
``model.safetensors`` otherwise or on a CUDA device; ``onnx-int8`` serves the quantized
export. ``predict`` and ``headstart.load`` choose by the same rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headstart.predict.base import BatchPredictor
from headstart.predict.metadata import headline_metrics
from headstart.predict.resolve import BACKENDS, load_predictor, resolve

__all__ = ["BACKENDS", "describe_backend", "load_backend"]


def load_backend(run: str | Path, backend: str = "auto", threads: int | None = None) -> BatchPredictor:
    """The predictor the resolver picks; its ``choice.summary()`` says which file, in one line."""
    return load_predictor(resolve(run, backend), threads=threads)


def describe_backend(predictor: BatchPredictor) -> dict[str, Any]:
    info = getattr(predictor, "info", None)
    if callable(info):
        return info()
    artifact = predictor.artifact  # type: ignore[attr-defined]
    return {
        "backend": "torch",
        "model": "model.safetensors",
        "arch": artifact.model.arch,
        "classes": predictor.classes,
        "task": predictor.task,
        "threshold": predictor.threshold,
        "preprocess": predictor.preprocess.to_dict(),
        "metrics": headline_metrics(artifact.meta.metrics),
    }
