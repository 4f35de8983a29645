"""What a prediction is, and batched prediction over any model backend. numpy + Pillow only.

Both backends share this: the eager PyTorch ``Predictor`` (eager.py) and the torch-free
ONNX ``RuntimePredictor`` (runtime.py). A backend supplies ``probabilities(batch)`` for
(B, 3, S, S) float32 inputs plus its classes, task, threshold and preprocessing; decoding,
batching, the decision rule and the output format are this one piece of code.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headstart.machine import cpu_count
from headstart.metrics import predict_labels
from headstart.preprocess import ImageSource, Preprocess
from headstart.tta import iter_views


@dataclass
class Prediction:
    source: str
    probs: dict[str, float] = field(default_factory=dict)  # every class, model order
    top: list[tuple[str, float]] = field(default_factory=list)  # the k most probable
    labels: list[str] = field(default_factory=list)  # the decision (threshold for sigmoid tasks)
    error: str | None = None  # why the file could not be read


def describe(name: str, p: np.ndarray, classes: list[str], task: str, threshold: float, top_k: int) -> Prediction:
    """One row of probabilities -> a Prediction (top k, and the decision)."""
    order = np.argsort(-p, kind="stable")[: max(1, top_k)]
    decided = predict_labels(p[None], task, threshold)[0]
    if task == "multilabel":
        labels = [c for c, on in zip(classes, decided) if on]
    else:
        labels = [classes[int(decided)]]
    return Prediction(
        source=name,
        probs={c: float(v) for c, v in zip(classes, p)},
        top=[(classes[i], float(p[i])) for i in order],
        labels=labels,
    )


class BatchPredictor:
    """Decode in background threads while the model runs; subclasses supply the model."""

    backend: str  # which runtime answers: "torch", "onnxruntime"
    classes: list[str]
    task: str
    threshold: float
    preprocess: Preprocess
    batch_size: int = 32
    tta: tuple[str, ...] = ()  # test-time augmentation views (headstart.tta); () = the centre crop only
    choice: Any = None  # the resolve.ModelChoice that picked this model's file (typed there: resolve imports this module)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """(B, 3, S, S) float32 model inputs -> (B, K) probabilities."""
        raise NotImplementedError

    def probabilities_of_square_batch(self, squares: np.ndarray) -> np.ndarray:
        """(B, R, R, 3) uint8 decoded squares -> (B, K), averaged over the TTA views."""
        views = [self.probabilities(x) for x in iter_views(squares, self.preprocess, self.tta)]
        return views[0] if len(views) == 1 else np.mean(views, axis=0)

    def _decode(self, source: ImageSource) -> np.ndarray | str:
        try:
            return self.preprocess.square(source)  # normalised per batch, TTA views included
        except Exception as exc:  # an unreadable input is reported, never fatal
            return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]

    def iter_predict(self, sources: Iterable[ImageSource], top_k: int = 5) -> Iterator[Prediction]:
        """Predictions in input order; unreadable inputs come back with ``error`` set.

        ``sources`` may be any iterable (a generator over millions of files): it is read
        one batch at a time."""
        items = iter(sources)
        start = 0
        with ThreadPoolExecutor(max_workers=cpu_count()) as pool:

            def submit() -> tuple[list[ImageSource], list]:
                batch = list(itertools.islice(items, self.batch_size))
                return batch, [pool.submit(self._decode, s) for s in batch]

            # The next batch decodes (Pillow releases the GIL) while the model runs on this one.
            chunk, pending = submit()
            while chunk:
                decoded = [f.result() for f in pending]
                following = submit()
                good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
                probs = self.probabilities_of_square_batch(np.stack([decoded[i] for i in good])) if good else None
                row = {i: n for n, i in enumerate(good)}
                for i, source in enumerate(chunk):
                    name = source if isinstance(source, str) else getattr(source, "filename", f"input {start + i}")
                    if i not in row:
                        yield Prediction(str(name), error=str(decoded[i]))
                    else:
                        yield self.describe(str(name), probs[row[i]], top_k)  # type: ignore[index]
                start += len(chunk)
                chunk, pending = following

    def predict(self, sources: list[ImageSource], top_k: int = 5) -> list[Prediction]:
        return list(self.iter_predict(sources, top_k))

    def describe(self, name: str, p: np.ndarray, top_k: int) -> Prediction:
        return describe(name, p, self.classes, self.task, self.threshold, top_k)


__all__ = ["BatchPredictor", "Prediction", "describe"]
