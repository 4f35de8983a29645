"""Batched prediction from an artifact alone: class names and probabilities."""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from headstart.artifact import Artifact
from headstart.data.index import walk_images
from headstart.data.store import cpu_count
from headstart.models.network import probabilities, to_channels_last
from headstart.errors import DataError
from headstart.evaluate import predict_labels
from headstart.preprocess import ImageSource
from headstart.tta import iter_views


@dataclass
class Prediction:
    source: str
    probs: dict[str, float] = field(default_factory=dict)  # every class, model order
    top: list[tuple[str, float]] = field(default_factory=list)  # the k most probable
    labels: list[str] = field(default_factory=list)  # the decision (threshold for sigmoid tasks)
    error: str | None = None  # why the file could not be read


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files stay files; folders become their image files (recursively, sorted)."""
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out.extend(walk_images(path)[0])
        elif path.is_file():
            out.append(str(path))
        else:
            raise DataError(f"{path} does not exist; give image files or folders of images.")
    return out


class Predictor:
    """Applies the artifact's preprocessing and network in batches.

    Example:
        >>> p = Predictor(load_artifact("runs/pets"))            # doctest: +SKIP
        >>> p.predict(["cat.jpg"], top_k=3)[0].top
    """

    def __init__(
        self, artifact: Artifact, device: str | None = None, batch_size: int = 32, tta: tuple[str, ...] = ()
    ) -> None:
        self.artifact = artifact
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network = artifact.network.to(self.device).eval().to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.tta = tta  # test-time augmentation views (headstart.tta); () = the centre crop only

    @property
    def classes(self) -> list[str]:
        return self.artifact.classes

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 model inputs -> (B, K) probabilities."""
        with torch.inference_mode():
            logits = self.network(to_channels_last(torch.from_numpy(batch).to(self.device)))
            return probabilities(logits.float(), self.artifact.task).cpu().numpy()

    def probabilities_of_square_batch(self, squares: np.ndarray) -> np.ndarray:
        """(B, R, R, 3) uint8 decoded squares -> (B, K), averaged over the TTA views."""
        views = [self.probabilities(x) for x in iter_views(squares, self.artifact.preprocess, self.tta)]
        return views[0] if len(views) == 1 else np.mean(views, axis=0)

    def probabilities_of_squares(self, squares: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Probabilities for rows of a decoded-square array (the store), in batches."""
        out = [self.probabilities_of_square_batch(squares[rows[i : i + self.batch_size]]) for i in range(0, len(rows), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def _decode(self, source: ImageSource) -> np.ndarray | str:
        try:
            return self.artifact.preprocess.square(source)
        except Exception as exc:  # an unreadable input is reported, never fatal
            return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]

    def iter_predict(self, sources: list[ImageSource], top_k: int = 5) -> Iterator[Prediction]:
        """Decode in background threads while the model runs; yields in input order."""
        with ThreadPoolExecutor(max_workers=cpu_count()) as pool:
            for start in range(0, len(sources), self.batch_size):
                chunk = sources[start : start + self.batch_size]
                decoded = list(pool.map(self._decode, chunk))
                good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
                probs = self.probabilities_of_square_batch(np.stack([decoded[i] for i in good])) if good else None
                row = {i: n for n, i in enumerate(good)}
                for i, source in enumerate(chunk):
                    name = source if isinstance(source, str) else getattr(source, "filename", f"input {start + i}")
                    if i not in row:
                        yield Prediction(str(name), error=str(decoded[i]))
                    else:
                        yield self._describe(str(name), probs[row[i]], top_k)  # type: ignore[index]

    def predict(self, sources: list[ImageSource], top_k: int = 5) -> list[Prediction]:
        return list(self.iter_predict(sources, top_k))

    def _describe(self, name: str, p: np.ndarray, top_k: int) -> Prediction:
        order = np.argsort(-p, kind="stable")[: max(1, top_k)]
        decided = predict_labels(p[None], self.artifact.task, self.artifact.threshold)[0]
        if self.artifact.task == "multilabel":
            labels = [c for c, on in zip(self.classes, decided) if on]
        else:
            labels = [self.classes[int(decided)]]
        return Prediction(
            source=name,
            probs={c: float(v) for c, v in zip(self.classes, p)},
            top=[(self.classes[i], float(p[i])) for i in order],
            labels=labels,
        )


def write_predictions(path: Path, predictions: Iterable[Prediction], top_k: int) -> int:
    """CSV: path, prediction, then (class_i, prob_i) for the top k, then error."""
    header = ["path", "prediction"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("class", "prob")] + ["error"]
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for pred in predictions:
            cells: list[str] = []
            for name, prob in pred.top[:top_k]:
                cells += [name, f"{prob:.6f}"]
            cells += [""] * (2 * top_k - len(cells))
            writer.writerow([pred.source, ";".join(pred.labels), *cells, pred.error or ""])
            n += 1
    os.replace(tmp, path)
    return n


__all__ = ["Prediction", "Predictor", "expand_inputs", "write_predictions"]
