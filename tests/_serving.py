"""Run an ASGI app with uvicorn on a free loopback port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from headstart.predict.base import BatchPredictor
from headstart.preprocess import Preprocess
from headstart.serve.config import ServeConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app, config: ServeConfig | None = None) -> Iterator[str]:
    """The app behind uvicorn as ``headstart serve`` runs it (its connection limits from ``config``)."""
    import uvicorn

    from headstart.serve.transport import uvicorn_settings

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **uvicorn_settings(config or ServeConfig()))
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class FakePredictor(BatchPredictor):
    """Two classes, fixed probabilities, optional delay per model call; records batch sizes."""

    backend = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.classes = ["cat", "dog"]
        self.task = "multiclass"
        self.threshold = 0.5
        self.preprocess = Preprocess(8, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
        self.delay = delay
        self.batch_sizes: list[int] = []

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        time.sleep(self.delay)
        return np.tile(np.array([[0.25, 0.75]], np.float32), (len(batch), 1))

    def info(self) -> dict:
        return {"backend": self.backend, "arch": "fake", "classes": self.classes, "task": self.task}
