"""Which model file answers: the one resolver of ``predict``, ``serve`` and ``headstart.load``.

A run folder may hold three models of the same network: ``model.safetensors`` (eager
PyTorch), ``export/model.onnx`` (ONNX fp32, parity-checked to 1e-3) and
``export/model.int8.onnx`` (statically quantized, agreement-checked). ``backend``:

    auto       a CUDA device and torch: torch; else ONNX fp32 when exported (onnxruntime runs
               it as fast as eager PyTorch batched, faster at batch 1, and needs no torch);
               else torch; else the int8 model when it is the only one
    torch      model.safetensors, eager            onnx       export/model.onnx
    onnx-int8  export/model.int8.onnx (never picked by auto: its decisions may differ from the
               evaluated model on up to 2 % of images; choose it by measurement)

A path to an ``.onnx`` file is that file. The choice says which file it picked and what else
the run holds, in one line. Importing this module imports no torch.

Example:
    >>> choice = resolve("runs/pets", "onnx-int8")          # doctest: +SKIP
    >>> choice.summary()                                   # doctest: +SKIP
    'model: runs/pets/export/model.int8.onnx (onnx-int8); also here: ... (--backend onnx), ... (--backend torch)'
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from headstart.errors import ArtifactError, ConfigError, MissingExtraError
from headstart.predict.base import BatchPredictor

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
WEIGHTS = "model.safetensors"
INT8_SUFFIX = ".int8.onnx"
RUNTIMES = {"torch": "eager PyTorch", "onnx": "onnxruntime, fp32", "onnx-int8": "onnxruntime, int8"}


@dataclass(frozen=True)
class ModelChoice:
    """The model file that answers, its backend, and the other model files beside it."""

    backend: str  # torch | onnx | onnx-int8
    path: Path  # the file: model.safetensors, model.onnx or model.int8.onnx
    run_dir: Path | None  # the run folder (None for a bare .onnx file)
    others: tuple[tuple[str, Path], ...] = ()  # (backend, file) not picked

    def summary(self) -> str:
        also = "; also here: " + ", ".join(f"{p} (--backend {b})" for b, p in self.others) if self.others else ""
        return f"model: {self.path} ({RUNTIMES[self.backend]}){also}"


def backend_of_file(path: Path) -> str:
    return "onnx-int8" if path.name.endswith(INT8_SUFFIX) else "onnx"


def available(run: Path) -> dict[str, Path]:
    """{backend: file} of the models in a run folder (RUN/export/ first, then RUN/)."""
    found: dict[str, Path] = {}
    if (run / WEIGHTS).is_file():
        found["torch"] = run / WEIGHTS
    for backend, name in (("onnx", "model.onnx"), ("onnx-int8", "model" + INT8_SUFFIX)):
        for candidate in (run / "export" / name, run / name):
            if candidate.is_file():
                found[backend] = candidate
                break
    return found


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # a finder that refuses it (or a broken install): not usable either
        return False


def _cuda() -> bool:
    if not _torch_installed():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _auto(found: dict[str, Path]) -> str | None:
    if "torch" in found and _cuda():
        return "torch"
    if "onnx" in found:
        return "onnx"
    if "torch" in found and _torch_installed():
        return "torch"
    return "onnx-int8" if "onnx-int8" in found else None


def _missing(run: Path, backend: str, found: dict[str, Path]) -> ArtifactError:
    how = {
        "torch": f"no {WEIGHTS}: give a run folder from 'headstart train'",
        "onnx": f"no ONNX export: run 'headstart export {run} --format onnx'",
        "onnx-int8": f"no int8 export: run 'headstart export {run} --format onnx --int8'",
    }[backend]
    have = ", ".join(f"{b} ({p.name})" for b, p in found.items()) or "none"
    return ArtifactError(f"--backend {backend}: {run} has {how}; models there: {have}.")


def resolve(target: str | os.PathLike, backend: str = "auto") -> ModelChoice:
    """The model file for ``target`` (a run folder or an .onnx file) and ``backend``."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: choose one of {list(BACKENDS)}.")
    path = Path(target)
    if path.is_file() or path.suffix == ".onnx":
        if path.suffix != ".onnx" or not path.is_file():
            raise ArtifactError(f"{path} is not an exported model.onnx nor a run folder: give a run folder from 'headstart train'.")
        picked = backend_of_file(path)
        if backend not in ("auto", picked, "onnx"):
            raise ConfigError(f"--backend {backend} does not apply to the file {path} ({picked}); give the run folder instead.")
        return ModelChoice(picked, path, None)
    if not path.is_dir():
        raise ArtifactError(
            f"{path} is not a finished headstart run (it does not exist): give a run folder from 'headstart train' or an exported .onnx file."
        )
    found = available(path)
    picked_backend = _auto(found) if backend == "auto" else backend
    if not found:
        raise ArtifactError(
            f"{path} is not a finished headstart run (no {WEIGHTS}, no export/model.onnx): give a run folder from 'headstart train'."
        )
    if picked_backend is None or picked_backend not in found:
        if picked_backend is None and "torch" in found:
            raise MissingExtraError(
                f"{path} has no exported model and torch is not installed: export it where training is installed "
                f"('headstart export {path} --format onnx'), or pip install 'headstart[train]'."
            )
        raise _missing(path, picked_backend or "onnx", found)
    others = tuple((b, p) for b, p in found.items() if b != picked_backend)
    return ModelChoice(picked_backend, found[picked_backend], path, others)


def load_predictor(
    choice: ModelChoice, threads: int | None = None, batch_size: int = 32, tta: tuple[str, ...] = (), device: str | None = None
) -> BatchPredictor:
    """The predictor for ``choice`` (kept as its ``choice``): onnxruntime for .onnx files, the eager network for torch."""
    if choice.backend != "torch":
        from headstart.predict.runtime import RuntimePredictor

        runtime = RuntimePredictor.load(choice.path, threads=threads, batch_size=batch_size, tta=tta)
        runtime.choice = choice
        return runtime
    try:
        import torch

        from headstart.artifact import load_artifact
        from headstart.predict.eager import Predictor
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"--backend torch needs the training stack ({exc.name} is not installed): pip install 'headstart[train]', "
            f"or export the run where it is installed ('headstart export {choice.run_dir} --format onnx')."
        ) from None
    if threads:
        torch.set_num_threads(threads)
    eager = Predictor(load_artifact(choice.run_dir or choice.path.parent), device=device, batch_size=batch_size, tta=tta)
    eager.choice = choice
    return eager


__all__ = ["BACKENDS", "ModelChoice", "available", "load_predictor", "resolve"]
