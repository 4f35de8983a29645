"""``headstart serve``: a hardened, micro-batching prediction server with a web page.

Needs ``pip install 'headstart[serve]'`` (FastAPI, uvicorn, python-multipart) and either an
ONNX export (``[runtime]``) or the training stack to run the eager model.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from headstart.allocator import release_freed_memory
from headstart.predict.base import BatchPredictor
from headstart.serve.access import TOKEN_ENV, is_loopback, new_token
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


def resolve_token(host: str, token: str | None, no_token: bool) -> tuple[str | None, bool]:
    """The token to require and whether it was generated here: ``token``, else
    HEADSTART_SERVE_TOKEN, else (off loopback, unless ``no_token``) a new one; on loopback
    none unless given.

    Example:
        >>> resolve_token("127.0.0.1", None, False)
        (None, False)
    """
    if no_token:
        return None, False
    given = token or os.environ.get(TOKEN_ENV) or None
    if given is not None or is_loopback(host):
        return given, False
    return new_token(), True


def page_url(host: str, port: int, token: str | None) -> str:
    """The page's address as printed (a wildcard bind shown as loopback), carrying the token."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _announce(console: Console, run: str | Path, predictor: BatchPredictor, cfg: ServeConfig, port: int, generated: bool) -> None:
    console.print(
        f"Serving {run} ({predictor.backend}, {len(predictor.classes)} classes) at {page_url(cfg.host, port, cfg.token)}  (Ctrl+C stops)",
        highlight=False,
        markup=False,
    )
    if is_loopback(cfg.host):
        return
    console.print(
        f"Warning: bound to {cfg.host}, reachable from other machines, over plain HTTP (no TLS): anyone on the network "
        + ("can use it (--no-token)." if cfg.token is None else "who has the token can use it."),
        highlight=False,
        markup=False,
    )
    if generated:
        console.print(
            f"A token was generated (set --token or {TOKEN_ENV} to choose one); clients send 'Authorization: Bearer <token>'.", markup=False
        )
    if cfg.host in ("0.0.0.0", "::") and not cfg.allow_hosts:
        console.print("Clients may use this machine's IP address; for a host name, add --allow-host NAME.", markup=False)


def run_server(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    config: ServeConfig | None = None,
    console: Console | None = None,
    no_token: bool = False,
) -> None:
    """Load the model, then serve it with uvicorn until interrupted. Off loopback a token is
    required (``config.token``, HEADSTART_SERVE_TOKEN, or one generated and printed) unless
    ``no_token``; see ``headstart.serve.access`` for the Host and Origin checks."""
    import uvicorn

    cfg = config or ServeConfig()
    token, generated = resolve_token(host, cfg.token, no_token)
    cfg = replace(cfg, host=host, token=token)
    release_freed_memory()  # before the model's threads start: see transport.py
    predictor = load_backend(run, backend, cfg.threads)
    warm_up(predictor, cfg.max_batch)
    app = create_app(predictor, cfg)
    choice = getattr(predictor, "choice", None)
    if console is not None and choice is not None:
        console.print(choice.summary(), markup=False, highlight=False)  # which file answers, and what else the run holds
    if console is not None:
        _announce(console, run, predictor, cfg, port, generated)
    # Connection limits (head deadline, connection cap): see transport.py for what the
    # hostile-client soak found without them.
    files = raise_open_file_limit(cfg.max_connections + 256)  # + model files, threads' pipes, the listener
    if files < cfg.max_connections + 64 and console is not None:
        console.print(f"Note: this process may open {files} files; connections beyond about {files - 64} will fail (ulimit -n).")
    uvicorn.run(app, host=host, port=port, log_level="warning", **uvicorn_settings(cfg))


__all__ = ["ServeConfig", "create_app", "load_backend", "page_url", "resolve_token", "run_server", "warm_up"]
