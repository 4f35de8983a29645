"""Which model the server runs: the exported ONNX model (onnxruntime) or the eager network.

``auto`` picks ONNX whenever the run has an export: on CPU onnxruntime's fused kernels run
a batch-1 EfficientNet-Lite0 faster than eager PyTorch (bench/serve_load.py measures both), it
needs no torch, and the export already passed the parity check. Without an export, the
eager model from ``model.safetensors`` is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headstart.errors import ConfigError, MissingExtraError
from headstart.predict.base import BatchPredictor
from headstart.predict.metadata import headline_metrics
from headstart.predict.runtime import RuntimePredictor, find_onnx

BACKENDS = ("auto", "onnx", "torch")


def _torch_predictor(run: Path, threads: int | None) -> BatchPredictor:
    try:
        import torch

        from headstart.artifact import load_artifact
        from headstart.predict.eager import Predictor
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"{run} has no ONNX export and {exc.name} is not installed: run 'headstart export {run}' where "
            "training is installed, or pip install 'headstart[train]'."
        ) from None
    if threads:
        torch.set_num_threads(threads)
    return Predictor(load_artifact(run), device="cpu")  # on CPU, like the ONNX backend


def load_backend(run: str | Path, backend: str = "auto", threads: int | None = None) -> BatchPredictor:
    run = Path(run)
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: choose one of {list(BACKENDS)}.")
    onnx = find_onnx(run)
    if backend == "onnx" or (backend == "auto" and onnx is not None):
        return RuntimePredictor.load(onnx or run, threads=threads)
    return _torch_predictor(run, threads)


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
