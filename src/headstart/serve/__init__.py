"""``headstart serve``: a hardened, micro-batching prediction server with a web page.

Needs ``pip install 'headstart[serve]'`` (FastAPI, uvicorn, python-multipart) and either an
ONNX export (``[runtime]``) or the training stack to run the eager model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from headstart.allocator import release_freed_memory
from headstart.predict.base import BatchPredictor
from headstart.serve.app import create_app
from headstart.serve.backend import load_backend
from headstart.serve.config import ServeConfig
from headstart.serve.transport import raise_open_file_limit, uvicorn_settings


def warm_up(predictor: BatchPredictor, max_batch: int) -> None:
    """Run one full batch before serving, so memory reaches its working size at start.

    onnxruntime's arena grows to the largest batch it has run and keeps that size (an
    EfficientNet-Lite0 at 96 px: 131 MB after batches of 2, 153 MB after one of 8): without
    this, a server measured at 145 MB after warm-up grew to 165 MB in the hostile-client soak,
    whose queueing fills batches. A memory limit set from the idle size would not hold.
    """
    side = predictor.preprocess.input_size
    predictor.probabilities(np.zeros((max_batch, 3, side, side), np.float32))


def run_server(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    config: ServeConfig | None = None,
    console: Console | None = None,
) -> None:
    """Load the model, then serve it with uvicorn until interrupted."""
    import uvicorn

    cfg = config or ServeConfig()
    release_freed_memory()  # before the model's threads start: see transport.py
    predictor = load_backend(run, backend, cfg.threads)
    warm_up(predictor, cfg.max_batch)
    app = create_app(predictor, cfg)
    choice = getattr(predictor, "choice", None)
    if console is not None and choice is not None:
        console.print(choice.summary(), markup=False, highlight=False)  # which file answers, and what else the run holds
        console.print(f"Serving {run} ({predictor.backend}, {len(predictor.classes)} classes) at http://{host}:{port}/  (Ctrl+C stops)")
    # Connection limits (head deadline, connection cap): see transport.py for what the
    # hostile-client soak found without them.
    files = raise_open_file_limit(cfg.max_connections + 256)  # + model files, threads' pipes, the listener
    if files < cfg.max_connections + 64 and console is not None:
        console.print(f"Note: this process may open {files} files; connections beyond about {files - 64} will fail (ulimit -n).")
    uvicorn.run(app, host=host, port=port, log_level="warning", **uvicorn_settings(cfg))


__all__ = ["ServeConfig", "create_app", "load_backend", "run_server", "warm_up"]
