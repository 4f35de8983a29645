"""How uvicorn runs the app: the connection limits it lacks, and freed memory given back.

Found by ``bench/faults.py server`` (issue 13), each fixed here:

* uvicorn has no deadline for a request head. A connection that sends nothing, or a
  header a byte a second (slowloris), was held as long as the client liked. Here a
  request head must be complete within ``head_timeout_s`` of the connection opening (or
  of its previous response); then the request's own timeout (LimitsMiddleware) applies.
* uvicorn's ``limit_concurrency`` (1024 here) counts open connections, idle ones included:
  with 1,030 idle connections open, every request was answered 503. Here connections
  are capped on their own (``max_connections``, refused at once with a 503 beyond it) and
  idle ones no longer cost requests their place.
* glibc keeps freed blocks in per-thread arenas: after four concurrent decodes of 40 MP
  uploads the process stayed at 706 MB instead of 31. Allocations of 1 MiB and more are
  made with mmap instead, so they go back to the OS when freed (``allocator.release_freed_memory``).
"""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from headstart.serve.config import ServeConfig


def _raw_response(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request head and a connection cap.

    Built per server by ``guarded_protocol`` (uvicorn constructs one per connection).
    """

    head_timeout_s: float = 10.0
    max_connections: int = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(
                _raw_response(
                    "503 Service Unavailable", f"over {self.max_connections} open connections; retry shortly", "retry-after: 1\r\n"
                )
            )
            transport.close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in: the request timeout takes over
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # a kept-alive connection's next head has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # a request is being served (pipelined): not waiting for a head
        if self.conn.trailing_data[0]:  # part of a head came: say why it ends
            self.transport.write(_raw_response("408 Request Timeout", f"request head not complete within {self.head_timeout_s:g} s"))
        self.transport.close()


def guarded_protocol(cfg: ServeConfig) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn should build for each connection under ``cfg``."""
    limits = {"head_timeout_s": cfg.head_timeout_s, "max_connections": cfg.max_connections}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), limits)


def uvicorn_settings(cfg: ServeConfig) -> dict[str, Any]:
    """uvicorn's settings for serving under ``cfg`` (for ``uvicorn.run`` or ``uvicorn.Config``):
    pinned to h11 (the guarded protocol), idle keep-alive connections closed after 5 s, and
    no ``limit_concurrency`` (it counts idle connections; ``max_connections`` and the queue
    bound the work instead)."""
    return {"http": guarded_protocol(cfg), "ws": "none", "timeout_keep_alive": 5, "limit_concurrency": None}


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (capped by the hard
    limit; many systems start at 1024, fewer than ``max_connections``). Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
