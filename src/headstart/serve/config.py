"""Server limits and access, one typed place (defaults sized for a laptop CPU).

Decoded pixels are budgeted twice: ``max_pixels`` per image (40 MP) and
``max_request_pixels`` per request (64 MP), both read from the headers before a pixel is
decoded. A 39 KB PNG of 6300 x 6300 px costs 0.4 s of CPU to decode; sixteen of them in one
request (635 MP) are now refused with 413, at most one and a half fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from headstart.errors import ConfigError


@dataclass(frozen=True)
class ServeConfig:
    # Most images in one model call. On CPU, onnxruntime's cost per image does not fall
    # with batch size (EfficientNet-Lite0, 2 cores: 26 ms at 1, 34 at 4, 43 at 32, measured
    # on a loaded machine), so bigger batches only add latency; on a GPU ask for 32 or more.
    max_batch: int = 8
    max_wait_ms: float = 2.0  # how long the first image of a batch waits for company
    queue_size: int = 256  # images waiting for the model; beyond this: 503
    max_body_bytes: int = 20 * 1024 * 1024  # whole request, counted while it is read
    max_files: int = 16  # images in one request
    max_pixels: int = 40_000_000  # width * height of one image, checked before decoding
    request_timeout_s: float = 30.0  # whole request, reading included
    head_timeout_s: float = 10.0  # a request head (line and headers) must arrive within this
    max_connections: int = 2048  # open connections, idle ones included; beyond this: 503 and closed
    max_request_pixels: int = 64_000_000  # width * height summed over one request's images, checked before decoding
    top_k: int = 5
    threads: int | None = None  # model threads; None: the backend's default (all cores)
    host: str = "127.0.0.1"  # the address bound: judges the Host header (headstart.serve.access)
    token: str | None = None  # required from every client but /health when set
    allow_hosts: tuple[str, ...] = ()  # Host names accepted besides loopback and the bound address ('*': any)

    def __post_init__(self) -> None:
        counts = ("max_batch", "queue_size", "max_body_bytes", "max_files", "max_pixels", "max_request_pixels", "top_k", "max_connections")
        low = next((name for name in counts if int(getattr(self, name)) < 1), None)
        if low is not None:
            raise ConfigError(f"{low}={getattr(self, low)} must be at least 1.")
        if self.max_wait_ms < 0 or min(self.request_timeout_s, self.head_timeout_s) <= 0:
            raise ConfigError("max_wait_ms must be >= 0, request_timeout_s and head_timeout_s > 0.")
        if self.token is not None and not self.token.strip():
            raise ConfigError("--token is empty; give a token, or --no-token to serve without one.")
