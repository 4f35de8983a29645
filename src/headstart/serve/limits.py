"""Hardening: body cap and timeout while reading, image checks before decoding.

Everything here treats the request as hostile: the body is counted as it arrives (a
Content-Length that lies, or chunked uploads, cannot get past the cap), the image type is
read from its first bytes (the file name and the declared content type are ignored), only
common formats are decoded, and the pixel count is checked from the header before a
single pixel is decompressed.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from headstart.files import sniff
from headstart.preprocess import Preprocess

# Pillow format name for each signature; nothing else is ever handed to a decoder.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")


class UploadError(Exception):
    """A bad upload: answered with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# The formats an upload may be (from its bytes), as Pillow names them.
UPLOAD_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


def open_upload(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Bytes of one upload -> the image with only its header read (type from its bytes,
    pixel count checked), or UploadError (415/413/422). No pixel is decoded yet."""
    kind = UPLOAD_FORMATS.get(sniff(data[:16]))
    if kind is None:
        raise UploadError(415, f"{name}: not a JPEG, PNG, GIF, BMP or WebP image (checked from its bytes).")
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])  # reads the header only
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"{name}: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(422, f"{name}: cannot read the {kind} header ({str(exc)[:120]}).") from None
    w, h = image.size
    if w * h > max_pixels:
        raise UploadError(413, f"{name}: {w}x{h} = {w * h} pixels, over the limit of {max_pixels}.")
    return image


def decode_image(image: Image.Image, name: str, preprocess: Preprocess) -> np.ndarray:
    """An image from ``open_upload`` -> the model input (3, S, S), or UploadError (413/422)."""
    try:
        return preprocess(image)  # the same code as training and evaluation
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"{name}: {exc}") from None
    except Exception as exc:  # truncated or corrupt pixel data; Pillow raises several types
        raise UploadError(422, f"{name}: cannot decode the {image.format} image ({type(exc).__name__}: {str(exc)[:120]}).") from None


def decode_upload(data: bytes, name: str, preprocess: Preprocess, max_pixels: int) -> np.ndarray:
    """Bytes of one upload -> the model input (3, S, S), or UploadError (415/413/422)."""
    return decode_image(open_upload(data, name, max_pixels), name, preprocess)


# A request head (line and headers) over this is refused with 431. h11 refuses a head this
# large only while it is incomplete, so one arriving in a single read (uvicorn reads 256 KiB)
# went through: the soak's 100 KB header line got 200 or 400 depending on how it was split.
MAX_HEAD_BYTES = 16 * 1024


def head_bytes(scope: MutableMapping[str, Any]) -> int:
    """The size of a request's line and headers, as sent (near enough: separators counted)."""
    line = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
    return line + sum(len(name) + len(value) + 4 for name, value in scope.get("headers") or [])


class _BodyTooLarge(Exception):
    pass


# The ASGI callables, typed as Starlette types them (FastAPI is one of these apps).
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


async def send_json(send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class LimitsMiddleware:
    """Caps the request head's size, the body while it is read, and the whole request's time (pure ASGI).

    ``busy()`` (a message while the prediction queue is full, else None) is asked before a
    POST /predict body is read: a refused upload then costs no multipart parsing in the
    event loop, which at twice saturation had delayed /health by up to 218 ms.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, timeout_s: float, busy: Callable[[], str | None] | None = None) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.timeout_s = timeout_s
        self.busy = busy

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:  # noqa: C901  # hostile helper shortens this
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if head_bytes(scope) > MAX_HEAD_BYTES:
            await send_json(send, 431, {"error": f"request line and headers over {MAX_HEAD_BYTES} bytes"})
            return
        if self.busy is not None and scope.get("method") == "POST" and scope.get("path") == "/predict":
            message = self.busy()
            if message is not None:
                await send_json(send, 503, {"error": message}, [(b"retry-after", b"1")])
                return
        too_large = f"request body over the limit of {self.max_body} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await send_json(send, 400, {"error": "invalid Content-Length"})
                return
            if int(length) > self.max_body:
                await send_json(send, 413, {"error": too_large})
                return
        state = {"received": 0, "over": False, "started": False, "body_done": False, "replaced": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    state["over"] = True
                    raise _BodyTooLarge()
                state["body_done"] = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if state["replaced"]:
                return
            if message["type"] == "http.response.start":
                if state["over"]:  # the app turned our exception into its own error: ours is the truth
                    state["replaced"] = state["started"] = True
                    await send_json(send, 413, {"error": too_large})
                    return
                state["started"] = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, limited_receive, guarded_send), self.timeout_s)
        except _BodyTooLarge:
            if not state["started"]:
                await send_json(send, 413, {"error": too_large})
        except asyncio.TimeoutError:
            if not state["started"]:
                status = 504 if state["body_done"] else 408
                await send_json(send, status, {"error": f"request not done within {self.timeout_s:g} s"})
        except Exception:
            if not state["over"]:
                raise
            # Over the cap: the app's own error (already replaced by our 413) is expected.
            if not state["started"]:
                await send_json(send, 413, {"error": too_large})
