"""Static int8 quantization of an ONNX export, calibrated on the run's own training images.

``quantize_int8`` turns the fp32 ``model.onnx`` into ``model.int8.onnx``: weights int8 per
output channel, activations uint8 with ranges observed (MinMax) on up to
``CALIBRATION_IMAGES`` training images sampled round-robin over the classes and preprocessed
by the same code as prediction (``Preprocess.__call__``). The graph keeps float32 inputs and
probability outputs, so every consumer of the fp32 export runs it unchanged.

QDQ (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into integer kernels) is
the format: on this project's AVX-512 VNNI machine it ran EfficientNet-Lite0 as fast as
QOperator (bench/int8.py) and it is the one onnxruntime recommends for CPUs.

Example:
    >>> images = calibration_images(Path("runs/pets"), ["cat", "dog"], pre)   # doctest: +SKIP
    >>> quantize_int8(Path("model.onnx"), Path("model.int8.onnx"), images.arrays)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.errors import ExportError
from headstart.export.static_shapes import fold_static_shapes
from headstart.machine import cpu_count
from headstart.predict import metadata
from headstart.preprocess import Preprocess

CALIBRATION_IMAGES = 300  # ranges settle after ~100 images; 300 cover small classes too
CALIBRATION_BATCH = 16
INT8_SUFFIX = ".int8.onnx"


def int8_path(fp32: Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``, beside it."""
    return fp32.with_name(fp32.name.removesuffix(".onnx") + INT8_SUFFIX)


@dataclass(frozen=True)
class Images:
    """Preprocessed images (N, 3, S, S) float32, where they came from, and their labels."""

    arrays: np.ndarray
    paths: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    listed: int  # how many the run's split.csv named (some may be gone)


def split_rows(run_dir: Path, classes: list[str], split: str) -> list[tuple[str, tuple[int, ...]]]:
    """(path, labels) of one split of ``RUN/split.csv``; [] when the file is unreadable."""
    from headstart.data.split import read_split
    from headstart.errors import ArtifactError

    try:
        samples = read_split(run_dir / "split.csv", classes).get(split, [])
    except (ArtifactError, KeyError, OSError):
        return []
    return [(s.path, s.labels) for s in samples]


def per_class_sample(rows: list[tuple[str, tuple[int, ...]]], count: int, seed: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """Up to ``count`` rows, round-robin over the classes (first label), shuffled within each."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[tuple[str, tuple[int, ...]]]] = defaultdict(list)
    for row in rows:
        by_class[row[1][0] if row[1] else -1].append(row)
    queues = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(by_class.items())]
    out: list[tuple[str, tuple[int, ...]]] = []
    while len(out) < count and any(queues):
        for queue in queues:
            if queue and len(out) < count:
                out.append(queue.pop())
    return out


def load_images(rows: list[tuple[str, tuple[int, ...]]], preprocess: Preprocess) -> Images:
    """Decode and preprocess ``rows`` (threads; files gone or unreadable are skipped)."""

    def one(path: str) -> np.ndarray | None:
        try:
            return preprocess(path)
        except Exception:  # moved, deleted or unreadable since training: skipped, counted by the caller
            return None

    with ThreadPoolExecutor(max_workers=cpu_count()) as pool:
        arrays = list(pool.map(one, [p for p, _ in rows]))
    kept = [(row, a) for row, a in zip(rows, arrays) if a is not None]
    side = preprocess.input_size
    stacked = np.stack([a for _, a in kept]).astype(np.float32) if kept else np.zeros((0, 3, side, side), np.float32)
    return Images(stacked, tuple(r[0] for r, _ in kept), tuple(r[1] for r, _ in kept), len(rows))


def calibration_images(run_dir: Path, classes: list[str], preprocess: Preprocess, count: int = CALIBRATION_IMAGES) -> Images:
    """Training images of the run, sampled per class; ExportError when none can be read."""
    rows = split_rows(run_dir, classes, "train")
    chosen = per_class_sample([r for r in rows if Path(r[0]).is_file()], count)
    images = load_images(chosen, preprocess)
    if len(images.arrays) == 0:
        raise ExportError(
            f"int8 export of {run_dir} calibrates on the run's training images, but none of the {len(rows)} listed in "
            f"{run_dir / 'split.csv'} can be read (moved or deleted?): restore them at those paths, or export without --int8."
        )
    return images


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an array of inputs."""

    def __init__(self, input_name: str, arrays: np.ndarray) -> None:
        self.input_name = input_name
        self.batches: Iterator[np.ndarray] = iter(arrays[i : i + CALIBRATION_BATCH] for i in range(0, len(arrays), CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def _describe_int8(fp32_description: str, extra: dict[str, Any]) -> str:
    description = json.loads(fp32_description)
    description["precision"] = "int8"
    description["quantization"] = extra
    return json.dumps(description, ensure_ascii=False)


def add_to_description(path: Path, section: str, values: dict[str, Any]) -> None:
    """Store ``values`` under ``section`` of the headstart description inside ``path``."""
    import onnx

    model = onnx.load(str(path))
    for entry in model.metadata_props:
        if entry.key == metadata.KEY:
            description = json.loads(entry.value)
            description[section] = values
            entry.value = json.dumps(description, ensure_ascii=False)
    onnx.save(model, str(path))


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray, quant_format: str = "qdq") -> None:
    """Write ``out``: ``fp32`` statically quantized (per-channel int8 weights, uint8 activations).

    The headstart description is copied from ``fp32`` with ``precision: int8`` added."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(fp32))
    props = {p.key: p.value for p in source.metadata_props}
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="headstart-int8-") as tmp:
        folded, prepared = Path(tmp) / "folded.onnx", Path(tmp) / "prepared.onnx"
        fold_static_shapes(fp32, folded)  # run-time "same" padding -> constants (static_shapes.py)
        quant_pre_process(str(folded), str(prepared), skip_symbolic_shape=True)  # shapes for the quantizer
        reader = _Batches(input_name, calibration)
        quantize_static(
            str(prepared),
            str(out),
            reader,  # the CalibrationDataReader protocol: get_next() only
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    model = onnx.load(str(out))
    del model.metadata_props[:]
    extra = {"format": quant_format, "per_channel": True, "calibration_images": int(len(calibration)), "method": "minmax"}
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, _describe_int8(value, extra) if key == metadata.KEY else value
    model.producer_name = "headstart"
    onnx.save(model, str(out))
