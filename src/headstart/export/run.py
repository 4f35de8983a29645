"""``headstart export``: write, verify by parity, keep only what passed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from headstart.artifact import Artifact
from headstart.errors import ConfigError, DiskFullError, ExportError
from headstart.export import FORMATS, parity
from headstart.export.exporters import EXPORTERS, reference, remove
from headstart.files import create_temporary, out_of_space, sweep_orphans


@dataclass
class ExportResult:
    path: Path
    format: str
    parity: parity.ParityReport


def default_path(run_dir: Path, fmt: str) -> Path:
    return run_dir / "export" / f"model{EXPORTERS[fmt][1]}"


def export(artifact: Artifact, run_dir: Path, fmt: str = "onnx", out: str | os.PathLike | None = None) -> ExportResult:
    """Export ``artifact`` to ``out`` (default RUN/export/model.onnx|.pt) and check parity.

    Example:
        >>> export(load_artifact("runs/pets"), Path("runs/pets"), "onnx").path   # doctest: +SKIP
        PosixPath('runs/pets/export/model.onnx')
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose one of {list(FORMATS)}.")
    path = Path(out) if out is not None else default_path(run_dir, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_orphans(path.parent)  # an export killed here before left its temporary file
    tmp, fd = create_temporary(path, suffix=path.suffix)  # per process, created exclusively: never a planted link
    os.close(fd)
    remove(path)  # a stale export must not survive a failed one
    writer = EXPORTERS[fmt][0]
    try:
        run_exported = writer(artifact, tmp)
        inputs, held_out = parity.parity_inputs(run_dir, artifact.classes, artifact.preprocess)
        report = parity.check(reference(artifact), run_exported, inputs, held_out)
    except BaseException as exc:
        full = isinstance(exc, Exception) and out_of_space(exc, path.parent)  # checked while the partial file is there
        remove(tmp)
        if full:
            raise DiskFullError(path) from exc
        raise
    if not report.ok:
        remove(tmp)
        raise ExportError(f"{fmt} export of {run_dir} failed the parity check ({'; '.join(report.failures)}); nothing was kept at {path}.")
    os.replace(tmp, path)
    return ExportResult(path, fmt, report)
