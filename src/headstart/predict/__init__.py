"""Prediction: one batched base, two model backends, one input walker, one CSV writer.

    base.py        Prediction, BatchPredictor (decoding threads, batching, TTA, the decision)
    inputs.py      files, folders, CSVs with a 'path' column -> image paths, lazily
    csvfile.py     the predictions CSV, streamed, with resume and shards
    eager.py       Predictor: the eager PyTorch network of a run's artifact
    runtime.py     RuntimePredictor: an exported ONNX model with onnxruntime (no torch)
    metadata.py    the description an exported model carries; onnx_check.py: its safety check

This package's ``__init__`` and every module but ``eager`` import no torch: the torch-free
runtime install (``pip install 'headstart[runtime]'``) uses them. ``export`` imports from
here, never the other way round.
"""

from __future__ import annotations

from typing import Any

from headstart.predict.base import BatchPredictor, Prediction
from headstart.predict.csvfile import predict_to_file
from headstart.predict.inputs import iter_sources

__all__ = ["BatchPredictor", "Prediction", "Predictor", "RuntimePredictor", "find_onnx", "iter_sources", "predict_to_file"]


def __getattr__(name: str) -> Any:
    # Lazily, so that importing the package (the torch-free runtime) never pulls in torch.
    if name == "Predictor":
        from headstart.predict.eager import Predictor

        return Predictor
    if name in ("RuntimePredictor", "find_onnx"):
        from headstart.predict.runtime import RuntimePredictor, find_onnx

        return {"RuntimePredictor": RuntimePredictor, "find_onnx": find_onnx}[name]
    raise AttributeError(f"module 'headstart.predict' has no attribute {name!r}")
