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

    def refusal(self, scope: MutableMapping[str, Any]) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, message, extra headers) for a request refused before its body is read, else None."""
        if head_bytes(scope) > MAX_HEAD_BYTES:
            return 431, f"request line and headers over {MAX_HEAD_BYTES} bytes", []
        if self.busy is not None and scope.get("method") == "POST" and scope.get("path") == "/predict":
            message = self.busy()
            if message is not None:
                return 503, message, [(b"retry-after", b"1")]
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.isdigit():
            return 400, "invalid Content-Length", []
        if length is not None and int(length) > self.max_body:
            return 413, self.too_large, []
        return None

    @property
    def too_large(self) -> str:
        return f"request body over the limit of {self.max_body} bytes"

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            await send_json(send, refused[0], {"error": refused[1]}, refused[2])
            return
        guard = _Guarded(receive, send, self.max_body, self.too_large)
        try:
            await asyncio.wait_for(self.app(scope, guard.receive, guard.send), self.timeout_s)
        except _BodyTooLarge:
            await guard.fail(413, self.too_large)
        except asyncio.TimeoutError:
            await guard.fail(504 if guard.body_done else 408, f"request not done within {self.timeout_s:g} s")
        except Exception:
            if not guard.over:
                raise
            # Over the cap: the app's own error (already replaced by our 413) is expected.
            await guard.fail(413, self.too_large)


class _Guarded:
    """One request's body counted as it is read (over ``max_body``: _BodyTooLarge), and its
    response replaced by our 413 when the app answered an over-long body its own way."""

    def __init__(self, receive: Receive, send: Send, max_body: int, too_large: str) -> None:
        self._receive, self._send, self.max_body, self.too_large = receive, send, max_body, too_large
        self.received, self.over, self.started, self.body_done, self.replaced = 0, False, False, False, False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_body:
                self.over = True
                raise _BodyTooLarge()
            self.body_done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            if self.over:  # the app turned our exception into its own error: ours is the truth
                self.replaced = self.started = True
                await send_json(self._send, 413, {"error": self.too_large})
                return
            self.started = True
        await self._send(message)

    async def fail(self, status: int, message: str) -> None:
        """Answer ``status`` unless a response has begun (then the connection just ends)."""
        if not self.started:
            await send_json(self._send, status, {"error": message})
