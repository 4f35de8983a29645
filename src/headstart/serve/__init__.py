"""``headstart serve``: a hardened, micro-batching prediction server with a web page.

Needs ``pip install 'headstart[serve]'`` (FastAPI, uvicorn, python-multipart) and either an
ONNX export (``[runtime]``) or the training stack to run the eager model.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from headstart.serve.app import create_app
from headstart.serve.backend import load_backend
from headstart.serve.config import ServeConfig
from headstart.serve.transport import raise_open_file_limit, release_freed_memory, uvicorn_settings


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
    predictor = load_backend(run, backend, cfg.threads)
    app = create_app(predictor, cfg)
    if console is not None:
        console.print(f"Serving {run} ({predictor.backend}, {len(predictor.classes)} classes) at http://{host}:{port}/  (Ctrl+C stops)")
    # Connection limits (head deadline, connection cap) and memory returned to the OS after
    # big decodes: see transport.py for what the hostile-client soak found without them.
    release_freed_memory()
    files = raise_open_file_limit(cfg.max_connections + 256)  # + model files, threads' pipes, the listener
    if files < cfg.max_connections + 64 and console is not None:
        console.print(f"Note: this process may open {files} files; connections beyond about {files - 64} will fail (ulimit -n).")
    uvicorn.run(app, host=host, port=port, log_level="warning", **uvicorn_settings(cfg))


__all__ = ["ServeConfig", "create_app", "load_backend", "run_server"]
