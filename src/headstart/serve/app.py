"""The HTTP API and its page: POST /predict, GET /health, GET /info, GET / (web page).

Example:
    >>> app = create_app(load_backend("runs/pets"))             # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)           # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from headstart import __version__
from headstart.machine import cpu_count
from headstart.predict.base import BatchPredictor
from headstart.serve.backend import describe_backend
from headstart.serve.batcher import MicroBatcher, QueueFull
from headstart.serve.config import ServeConfig
from headstart.serve.limits import MAX_HEAD_BYTES, LimitsMiddleware, UploadError, decode_image, open_upload
from headstart.serve.page import PAGE

LARGE_PIXELS = 4_000_000  # uploads above this decode one per core at a time


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(predictor: BatchPredictor, config: ServeConfig | None = None) -> Any:  # noqa: C901  # hostile helper shortens this
    """A FastAPI app serving ``predictor``, wrapped in the body/time limits."""
    cfg = config or ServeConfig()
    batcher = MicroBatcher(predictor.probabilities, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.queue_size)
    # A 40 MP upload takes about 170 MB while it decodes (four at once: 706 MB), and
    # Starlette's thread pool runs 40 at once: uploads over LARGE_PIXELS decode one per
    # core at a time. Smaller ones (normal traffic) never wait behind them: with every
    # decode queued, normal requests' p99 was 2.5 s next to two 40 MP uploads at a time (92 ms now).
    large = asyncio.Semaphore(cpu_count())

    async def decode(data: bytes, name: str) -> Any:
        image = await run_in_threadpool(open_upload, data, name, cfg.max_pixels)
        if image.width * image.height <= LARGE_PIXELS:
            return await run_in_threadpool(decode_image, image, name, predictor.preprocess)
        async with large:
            return await run_in_threadpool(decode_image, image, name, predictor.preprocess)

    info = {
        **describe_backend(predictor),
        "headstart": __version__,
        "limits": {
            "max_batch": cfg.max_batch,
            "max_wait_ms": cfg.max_wait_ms,
            "queue_size": cfg.queue_size,
            "max_body_bytes": cfg.max_body_bytes,
            "max_files": cfg.max_files,
            "max_pixels": cfg.max_pixels,
            "request_timeout_s": cfg.request_timeout_s,
            "head_timeout_s": cfg.head_timeout_s,
            "max_head_bytes": MAX_HEAD_BYTES,
            "max_connections": cfg.max_connections,
            "formats": ["JPEG", "PNG", "GIF", "BMP", "WEBP"],
        },
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    # No /docs or /redoc: their pages load scripts from a CDN. The schema stays at /openapi.json.
    app = FastAPI(
        title="headstart",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description=f"Image classifier ({', '.join(predictor.classes[:10])}{', ...' if len(predictor.classes) > 10 else ''}).",
    )
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')} (send images as multipart field 'file')")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: images waiting, batches and images run so far."""
        return {"status": "ok", "waiting": batcher.waiting, "batches": batcher.batches, "images": batcher.images}

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        """Classes, task, threshold, preprocessing, model facts and the server's limits."""
        return info

    @app.post("/predict")
    async def predict(
        file: list[UploadFile] = File(..., description="One or more images (repeat the field)."),
        top_k: int = Query(cfg.top_k, ge=1, le=1000, description="Classes to return per image."),
    ) -> Any:
        """Top-k classes and probabilities for each uploaded image, in upload order."""
        if len(file) > cfg.max_files:
            return _error(413, f"{len(file)} files in one request; the limit is {cfg.max_files}.")
        busy = JSONResponse(
            {"error": f"server busy: {batcher.waiting} images waiting (queue holds {cfg.queue_size}); retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
        if batcher.waiting + len(file) > cfg.queue_size:
            return busy  # before decoding: a full server must not spend CPU on work it will refuse
        start = time.perf_counter()
        inputs = []
        for i, upload in enumerate(file):
            name = (upload.filename or f"file {i + 1}")[:200]
            data = await upload.read()
            try:
                inputs.append(await decode(data, name))
            except UploadError as exc:
                return _error(exc.status, exc.message)
        try:
            futures = batcher.submit_many(inputs)
        except QueueFull:
            return busy
        try:
            rows = await asyncio.gather(*futures)
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise
        results = []
        for upload, i, p in zip(file, range(len(file)), rows):
            pred = predictor.describe((upload.filename or f"file {i + 1}")[:200], p, top_k)
            results.append(
                {"file": pred.source, "labels": pred.labels, "top": [{"class": c, "probability": round(v, 6)} for c, v in pred.top]}
            )
        return {"predictions": results, "ms": round((time.perf_counter() - start) * 1000, 2)}

    def full() -> str | None:
        if batcher.waiting >= cfg.queue_size:
            return f"server busy: {batcher.waiting} images waiting (queue holds {cfg.queue_size}); retry shortly"
        return None

    return LimitsMiddleware(app, cfg.max_body_bytes, cfg.request_timeout_s, busy=full)
