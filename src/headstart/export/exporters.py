"""Write a run's network as ONNX (dynamic batch) or TorchScript, description inside.

Both formats take (B, 3, S, S) float32 inputs, already preprocessed by
``headstart.preprocess``, and return (B, K) probabilities (softmax, or sigmoid per class;
binary models return P(classes[0]), P(classes[1])), so a consumer needs no task logic.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.artifact import Artifact
from headstart.models.network import probabilities
from headstart.predict import metadata

INPUT, OUTPUT = "input", "probabilities"
OPSET = 17


class WithProbabilities(nn.Module):
    """network(x) -> per-class probabilities, the exported graph's output."""

    def __init__(self, network: nn.Module, task: str) -> None:
        super().__init__()
        self.network = network
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.network(x), self.task)


def _example(artifact: Artifact) -> torch.Tensor:
    s = artifact.preprocess.input_size
    # Batch 2, not 1: a size-1 example invites exporters to specialise the batch axis.
    return torch.zeros(2, 3, s, s)


def export_onnx(artifact: Artifact, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Write ``path``; return a function running the written file (onnxruntime)."""
    import onnx

    module = WithProbabilities(artifact.network, artifact.task).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (_example(artifact),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key = metadata.KEY
    entry.value = json.dumps(metadata.build(artifact.meta, "onnx", INPUT, OUTPUT), ensure_ascii=False)
    model.producer_name = "headstart"
    onnx.save(model, str(path))

    from headstart.predict.runtime import RuntimePredictor

    runtime = RuntimePredictor.load(path)  # the torch-free loader, checks included
    return runtime.probabilities


def export_torchscript(artifact: Artifact, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Write ``path`` (traced TorchScript); return a function running the written file."""
    module = WithProbabilities(artifact.network, artifact.task).eval()
    description = json.dumps(metadata.build(artifact.meta, "torchscript", INPUT, OUTPUT), ensure_ascii=False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, _example(artifact), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"headstart.json": description})
        extra = {"headstart.json": ""}
        loaded = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # our own fresh file
    metadata.parse(extra["headstart.json"], str(path))

    def run(batch: np.ndarray) -> np.ndarray:
        # Without the profiling executor's re-optimisation per new batch shape (seconds each).
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            return loaded(torch.from_numpy(batch)).numpy()

    return run


EXPORTERS = {"onnx": (export_onnx, ".onnx"), "torchscript": (export_torchscript, ".pt")}


def reference(artifact: Artifact) -> Callable[[np.ndarray], np.ndarray]:
    """The eager network on CPU in float32, what evaluation measured."""
    module = WithProbabilities(artifact.network.float().cpu().eval(), artifact.task)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()

    return run


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
