"""Micro-batching: concurrent requests share one model call.

The first image waits at most ``max_wait`` for others (or until ``max_batch`` are queued);
while the model runs one batch, the next one fills up, so under load batches grow by
themselves and at concurrency 1 an image waits only ``max_wait``. The queue is bounded:
``submit`` raises QueueFull at once instead of letting latency pile up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class QueueFull(Exception):
    """More images are waiting than the queue holds."""


class MicroBatcher:
    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float, queue_size: int) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.batches = 0
        self.images = 0
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._more: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # One model call at a time, off the event loop: /health answers while it runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headstart-model")

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._more = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit_many(self, inputs: list[np.ndarray]) -> list[asyncio.Future]:
        """Queue all of ``inputs`` or none of them (QueueFull)."""
        if len(self._pending) + len(inputs) > self.queue_size:
            raise QueueFull(f"{len(self._pending)} images waiting (queue holds {self.queue_size})")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in inputs]
        self._pending.extend(zip(inputs, futures))
        assert self._more is not None, "start() first"
        self._more.set()
        return futures

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        assert self._more is not None
        while not self._pending:
            self._more.clear()
            await self._more.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._more.clear()
            try:
                await asyncio.wait_for(self._more.wait(), remaining)
            except asyncio.TimeoutError:
                break
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        return [(x, f) for x, f in batch if not f.done()]  # a timed-out request cancelled its futures

    def _call(self, inputs: list[np.ndarray]) -> np.ndarray:
        return self.fn(np.stack(inputs))  # the copy happens off the event loop too

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            try:
                probs = await loop.run_in_executor(self._executor, self._call, [x for x, _ in batch])
            except Exception as exc:  # the model failed: every waiting request gets a 500
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            for i, (_, f) in enumerate(batch):
                if not f.done():
                    f.set_result(probs[i])
