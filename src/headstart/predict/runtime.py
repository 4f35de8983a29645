"""The torch-free predictor: an exported ONNX model, onnxruntime, numpy and Pillow.

``pip install 'headstart[runtime]'`` is enough to run this. The preprocessing is the same
code as training and evaluation (``headstart.preprocess``), configured from the description
stored inside the ONNX file, so predictions match the run that exported it.

Example:
    >>> p = RuntimePredictor.load("runs/pets/export/model.onnx")   # doctest: +SKIP
    >>> p.predict(["cat.jpg"], top_k=3)[0].top
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from headstart.errors import ArtifactError, HeadstartError
from headstart.predict import metadata
from headstart.predict.base import BatchPredictor
from headstart.predict.onnx_check import check_external_data

ONNX_NAME = "model.onnx"
MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit for one file


def find_onnx(target: str | os.PathLike) -> Path | None:
    """An .onnx file as given, or RUN/export/model.onnx, or RUN/model.onnx; else None."""
    path = Path(target)
    if path.is_file() and path.suffix == ".onnx":
        return path
    for candidate in (path / "export" / ONNX_NAME, path / ONNX_NAME):
        if candidate.is_file():
            return candidate
    return None


def _onnxruntime():
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise HeadstartError("onnxruntime is not installed: pip install 'headstart[runtime]'.") from None
    return onnxruntime


class RuntimePredictor(BatchPredictor):
    """Runs an exported ONNX model with onnxruntime on CPU."""

    backend = "onnxruntime"

    def __init__(self, session: Any, meta: metadata.ExportDescription, path: Path, batch_size: int = 32, tta: tuple[str, ...] = ()) -> None:
        self.session = session
        self.meta = meta
        self.path = path
        self.classes = list(meta.classes)
        self.task = meta.task
        self.threshold = meta.threshold
        self.preprocess = meta.preprocess
        self.input_name = meta.input_name
        self.batch_size = batch_size
        self.tta = tta
        self.precision = str(meta.extra.get("precision", "fp32"))  # int8: a quantized export (headstart.export.quantize)
        inputs = [i.name for i in session.get_inputs()]
        if self.input_name not in inputs:
            raise ArtifactError(f"{path}: input {self.input_name!r} not in the model's inputs {inputs}.")

    @classmethod
    def load(
        cls, target: str | os.PathLike, threads: int | None = None, batch_size: int = 32, tta: tuple[str, ...] = ()
    ) -> RuntimePredictor:
        """Load ``model.onnx`` (or a run folder holding ``export/model.onnx``), checked first."""
        path = find_onnx(target)
        if path is None:
            raise ArtifactError(
                f"No exported ONNX model at {target}: run 'headstart export {target} --format onnx' where training is installed."
            )
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ArtifactError(f"{path} is larger than 2 GiB: not a headstart export.")
        data = path.read_bytes()
        check_external_data(data, path)  # before onnxruntime opens anything it names
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default (all cores)
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: spinning burns the cores that
        # decoding, the HTTP event loop (and, on a laptop, everything else) need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Loaded from the very bytes just checked, not re-opened by name (which another
        # process could have replaced meanwhile); external data, if any, from the model's folder.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(path.resolve().parent))
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ArtifactError(f"{path} is not a loadable ONNX model: {str(exc).splitlines()[0][:200]}") from None
        meta = metadata.parse(session.get_modelmeta().custom_metadata_map.get(metadata.KEY), str(path))
        return cls(session, meta, path, batch_size=batch_size, tta=tta)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, K) probabilities."""
        (probs,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return probs

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.path.name,
            "precision": self.precision,
            "arch": self.meta.arch,
            "classes": self.classes,
            "task": self.task,
            "threshold": self.threshold,
            "preprocess": self.preprocess.to_dict(),
            "metrics": {split: dict(m) for split, m in self.meta.metrics.items()},
        }


__all__ = ["RuntimePredictor", "find_onnx"]
