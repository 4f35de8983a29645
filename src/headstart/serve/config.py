"""Server limits, one typed place (defaults sized for a laptop CPU)."""

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
    top_k: int = 5
    threads: int | None = None  # model threads; None: the backend's default (all cores)

    def __post_init__(self) -> None:
        for name in ("max_batch", "queue_size", "max_body_bytes", "max_files", "max_pixels", "top_k", "max_connections"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0 or self.head_timeout_s <= 0:
            raise ConfigError("max_wait_ms must be >= 0, request_timeout_s and head_timeout_s > 0.")
