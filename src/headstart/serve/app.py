"""The HTTP API and its page: POST /predict, GET /health, GET /info, GET / (web page).

Layers, outermost first: who may talk (``access``: Host, Origin, token), then the body,
time and head limits (``limits``), then these routes.

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
from headstart.serve.access import AccessMiddleware, AccessPolicy
from headstart.serve.backend import describe_backend
from headstart.serve.batcher import MicroBatcher, QueueFull
from headstart.serve.config import ServeConfig
from headstart.serve.limits import FORMATS, MAX_HEAD_BYTES, LimitsMiddleware, UploadError, decode_image, open_upload
from headstart.serve.page import PAGE

LARGE_PIXELS = 4_000_000  # uploads above this decode one per core at a time


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _info(predictor: BatchPredictor, cfg: ServeConfig) -> dict[str, Any]:
    """What GET /info answers: the backend's facts and the server's limits."""
    limits = ("max_batch", "max_wait_ms", "queue_size", "max_body_bytes", "max_files", "max_pixels", "max_request_pixels")
    return {
        **describe_backend(predictor),
        "headstart": __version__,
        "limits": {
            **{name: getattr(cfg, name) for name in limits},
            "request_timeout_s": cfg.request_timeout_s,
            "head_timeout_s": cfg.head_timeout_s,
            "max_head_bytes": MAX_HEAD_BYTES,
            "max_connections": cfg.max_connections,
            "formats": list(FORMATS),
        },
    }


class _Work:
    """Decoding and batching for POST /predict, within the server's limits."""

    def __init__(self, predictor: BatchPredictor, cfg: ServeConfig) -> None:
        self.predictor, self.cfg = predictor, cfg
        self.batcher = MicroBatcher(predictor.probabilities, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.queue_size)
        # A 40 MP upload takes about 170 MB while it decodes (four at once: 706 MB), and
        # Starlette's thread pool runs 40 at once: uploads over LARGE_PIXELS decode one per
        # core at a time. Smaller ones (normal traffic) never wait behind them: with every
        # decode queued, normal requests' p99 was 2.5 s next to two 40 MP uploads at a time (92 ms now).
        self.large = asyncio.Semaphore(cpu_count())

    def busy(self) -> str | None:
        if self.batcher.waiting >= self.cfg.queue_size:
            return f"server busy: {self.batcher.waiting} images waiting (queue holds {self.cfg.queue_size}); retry shortly"
        return None

    def busy_response(self) -> JSONResponse:
        message = f"server busy: {self.batcher.waiting} images waiting (queue holds {self.cfg.queue_size}); retry shortly"
        return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "1"})

    async def headers(self, uploads: list[tuple[str, bytes]]) -> list[Any]:
        """Every upload's header read and checked, the request's pixels within its budget (413)."""
        images, total = [], 0
        for name, data in uploads:
            image = await run_in_threadpool(open_upload, data, name, self.cfg.max_pixels)
            total += image.width * image.height
            if total > self.cfg.max_request_pixels:
                raise UploadError(413, f"{name}: the request's images hold over {self.cfg.max_request_pixels} pixels, its limit.")
            images.append(image)
        return images

    async def decode(self, image: Any, name: str) -> Any:
        if image.width * image.height <= LARGE_PIXELS:
            return await run_in_threadpool(decode_image, image, name, self.predictor.preprocess)
        async with self.large:
            return await run_in_threadpool(decode_image, image, name, self.predictor.preprocess)

    async def run(self, inputs: list[Any]) -> list[Any]:
        futures = self.batcher.submit_many(inputs)
        try:
            return await asyncio.gather(*futures)
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise

    async def predict(self, files: list[UploadFile], top_k: int) -> Any:
        if len(files) > self.cfg.max_files:
            return _error(413, f"{len(files)} files in one request; the limit is {self.cfg.max_files}.")
        if self.batcher.waiting + len(files) > self.cfg.queue_size:
            return self.busy_response()  # before decoding: a full server must not spend CPU on work it will refuse
        start = time.perf_counter()
        names = [(upload.filename or f"file {i + 1}")[:200] for i, upload in enumerate(files)]
        try:
            images = await self.headers([(name, await upload.read()) for name, upload in zip(names, files)])
            inputs = [await self.decode(image, name) for image, name in zip(images, names)]
            rows = await self.run(inputs)
        except UploadError as exc:
            return _error(exc.status, exc.message)
        except QueueFull:
            return self.busy_response()
        results = []
        for name, p in zip(names, rows):
            pred = self.predictor.describe(name, p, top_k)
            top = [{"class": c, "probability": round(v, 6)} for c, v in pred.top]
            results.append({"file": pred.source, "labels": pred.labels, "top": top})
        return {"predictions": results, "ms": round((time.perf_counter() - start) * 1000, 2)}


def _errors(app: FastAPI) -> None:
    """Every error as JSON ``{"error": ...}``, validation errors naming the field."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')} (send images as multipart field 'file')")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))


def _routes(app: FastAPI, work: _Work, info: dict[str, Any]) -> None:
    batcher, cfg = work.batcher, work.cfg

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
        return await work.predict(file, top_k)


def create_app(predictor: BatchPredictor, config: ServeConfig | None = None) -> Any:
    """A FastAPI app serving ``predictor``, wrapped in the access checks and the body/time limits."""
    cfg = config or ServeConfig()
    work = _Work(predictor, cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        work.batcher.start()
        yield
        await work.batcher.stop()

    shown = ", ".join(predictor.classes[:10]) + (", ..." if len(predictor.classes) > 10 else "")
    # No /docs or /redoc: their pages load scripts from a CDN. The schema stays at /openapi.json.
    app = FastAPI(
        title="headstart", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, description=f"Image classifier ({shown})."
    )
    app.state.batcher = work.batcher
    _errors(app)
    _routes(app, work, _info(predictor, cfg))
    limited = LimitsMiddleware(app, cfg.max_body_bytes, cfg.request_timeout_s, busy=work.busy)
    return AccessMiddleware(limited, AccessPolicy.for_bind(cfg.host, cfg.token, cfg.allow_hosts))
