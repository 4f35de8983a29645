"""``headstart export``: write, verify by parity, keep only what passed, time what was kept.

With ``int8=True`` (ONNX only) the fp32 export is written and checked first, then quantized
beside it as ``model.int8.onnx`` (``quantize.py``) and kept only when its decisions agree
with fp32 (``agreement.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.artifact import Artifact
from headstart.errors import ConfigError, DiskFullError, ExportError
from headstart.export import FORMATS, parity
from headstart.export.agreement import MIN_AGREEMENT, AgreementReport, agreement_images, measure
from headstart.export.exporters import EXPORTERS, reference, remove
from headstart.export.quantize import add_to_description, calibration_images, int8_path, quantize_int8
from headstart.export.speed import Speed, measure_speed
from headstart.files import create_temporary, out_of_space, sweep_orphans


@dataclass(frozen=True)
class Int8Result:
    path: Path
    agreement: AgreementReport
    speed: Speed | None


@dataclass
class ExportResult:
    path: Path
    format: str
    parity: parity.ParityReport
    speed: Speed | None = None  # measured on this machine after the export (None: not timed)
    int8: Int8Result | None = None  # with int8=True


def default_path(run_dir: Path, fmt: str) -> Path:
    return run_dir / "export" / f"model{EXPORTERS[fmt][1]}"


def _temporary(path: Path) -> Path:
    tmp, fd = create_temporary(path, suffix=path.suffix)  # per process, created exclusively: never a planted link
    os.close(fd)
    return tmp


def _cleaning_up(tmp: Path, folder: Path, exc: BaseException) -> BaseException:
    """Remove ``tmp``; the exception to raise (a full disk named as such)."""
    full = isinstance(exc, Exception) and out_of_space(exc, folder)  # checked while the partial file is there
    remove(tmp)
    return DiskFullError(folder) if full else exc


def export(
    artifact: Artifact,
    run_dir: Path,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    int8: bool = False,
    min_agreement: float = MIN_AGREEMENT,
    timed: bool = True,
) -> ExportResult:
    """Export ``artifact`` to ``out`` (default RUN/export/model.onnx|.pt) and check parity;
    ``int8``: also ``model.int8.onnx`` beside it, checked by agreement; ``timed``: measure speed.

    Example:
        >>> export(load_artifact("runs/pets"), Path("runs/pets"), "onnx", int8=True).int8.path   # doctest: +SKIP
        PosixPath('runs/pets/export/model.int8.onnx')
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose one of {list(FORMATS)}.")
    if int8 and fmt != "onnx":
        raise ConfigError(f"int8 quantizes the ONNX export; use format 'onnx' (got {fmt!r}).")
    if not 0 < min_agreement <= 1:
        raise ConfigError(f"min_agreement={min_agreement}: give a share in (0, 1], e.g. 0.98.")
    path = Path(out) if out is not None else default_path(run_dir, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_orphans(path.parent)  # an export killed here before left its temporary file
    if int8:
        remove(int8_path(path))  # a stale int8 model must not survive a new fp32 one
    report, run_exported = _write_checked(artifact, run_dir, fmt, path)
    side = artifact.preprocess.input_size
    result = ExportResult(path, fmt, report, measure_speed(run_exported, side) if timed else None)
    if int8:
        result.int8 = export_int8(artifact, run_dir, path, run_exported, min_agreement, timed)
    return result


def _write_checked(
    artifact: Artifact, run_dir: Path, fmt: str, path: Path
) -> tuple[parity.ParityReport, Callable[[np.ndarray], np.ndarray]]:
    tmp = _temporary(path)
    remove(path)  # a stale export must not survive a failed one
    try:
        run_exported = EXPORTERS[fmt][0](artifact, tmp)
        inputs, held_out = parity.parity_inputs(run_dir, artifact.classes, artifact.preprocess)
        report = parity.check(reference(artifact), run_exported, inputs, held_out)
    except BaseException as exc:
        raise _cleaning_up(tmp, path.parent, exc) from exc
    if not report.ok:
        remove(tmp)
        raise ExportError(f"{fmt} export of {run_dir} failed the parity check ({'; '.join(report.failures)}); nothing was kept at {path}.")
    os.replace(tmp, path)
    return report, run_exported


def export_int8(
    artifact: Artifact,
    run_dir: Path,
    fp32: Path,
    run_fp32: Callable[[np.ndarray], np.ndarray],
    min_agreement: float = MIN_AGREEMENT,
    timed: bool = True,
) -> Int8Result:
    """Quantize the checked fp32 export ``fp32``; keep ``model.int8.onnx`` only if it agrees."""
    from headstart.predict.runtime import RuntimePredictor

    out = int8_path(fp32)
    tmp = _temporary(out)
    try:
        calibration = calibration_images(run_dir, artifact.classes, artifact.preprocess)
        quantize_int8(fp32, tmp, calibration.arrays)
        images, val_count, held_out = agreement_images(run_dir, artifact.classes, artifact.preprocess, calibration)
        run_int8 = RuntimePredictor.load(tmp).probabilities
        args = (val_count, held_out, artifact.task, artifact.threshold, len(artifact.classes), len(calibration.arrays))
        report = measure(run_fp32, run_int8, images, *args, min_agreement)
        if report.ok:
            add_to_description(tmp, "agreement", _agreement_fields(report))
    except BaseException as exc:
        raise _cleaning_up(tmp, out.parent, exc) from exc
    if not report.ok:
        remove(tmp)
        raise ExportError(
            f"int8 export of {run_dir} refused: {report.summary()}; the fp32 export is kept at {fp32}. Try: more validation "
            f"images (a larger --val-fraction), or accept it with --min-agreement {max(0.5, report.lower_bound - 0.005):.3f}."
        )
    os.replace(tmp, out)
    speed = measure_speed(RuntimePredictor.load(out).probabilities, artifact.preprocess.input_size) if timed else None
    return Int8Result(out, report, speed)


def _agreement_fields(report: AgreementReport) -> dict[str, float | int | None]:
    return {
        "images": report.images,
        "agree": report.agree,
        "lower_bound": round(report.lower_bound, 5),
        "val_images": report.val_images,
        "fp32_val_accuracy": report.fp32_accuracy,
        "int8_val_accuracy": report.int8_accuracy,
    }
