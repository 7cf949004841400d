"""The HTTP door's bounded pool for CPU-heavy work: pages, previews, plots, planning, and each piece
of a download (reading, cutting, encoding).

Why: Starlette runs every synchronous endpoint and every synchronous response body in one shared
thread pool of 40 tokens; 45 in-flight heavy-cut downloads held them all, and ``/api/health`` went
unanswered for 60 s. Here the heavy work queues for a few workers of its own (by default as many as
the machine has cores, at least 2), so the event loop and the light endpoints (health, OpenAPI,
login) are never behind it, and fewer threads fight for the GIL. A download holds a worker only
while one piece is being made, not while its client reads. At most ``max_waiting`` jobs wait; past
that the request is refused at once (429, resource exhausted) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from arrowroot.flight_server.core.errors import ResourceExhausted

__all__ = ["Workers", "default_workers"]

T = TypeVar("T")
_END = object()


def default_workers() -> int:
    return max(2, os.cpu_count() or 2)


class Workers:
    """``await workers.run(fn, *args)``: ``fn`` runs in the pool; a cancelled caller's job that has
    not started never runs."""

    def __init__(self, workers: int = 0, max_waiting: int = 0):
        self.workers = workers or default_workers()
        self.max_waiting = max_waiting or 16 * self.workers
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="http-work")
        self._pending = 0          # submitted and not finished
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def submit(self, fn: Callable[..., T], *args: Any) -> Future:
        with self._lock:
            if self._pending >= self.workers + self.max_waiting:
                raise ResourceExhausted(f"the HTTP server is busy ({self._pending} jobs in hand); retry shortly")
            self._pending += 1
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future | None) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future = self.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # not started yet: it never will
            raise

    async def iterate(self, items: Iterator[T], on_close: Callable[[], None] | None = None) -> AsyncIterator[T]:
        """The items of a synchronous iterator, each ``next()`` a job of the pool. When the consumer
        stops early (its client went away), the iterator is closed in the pool once the job in
        hand has finished (a generator cannot be closed while it runs)."""
        future: Future | None = None
        try:
            while True:
                future = self.submit(next, items, _END)
                item = await asyncio.wrap_future(future)
                future = None
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(items, "close", None)

            def finish(_: Any = None) -> None:
                try:
                    if close is not None:
                        close()
                finally:
                    if on_close is not None:
                        on_close()

            if future is not None and not future.done():
                future.add_done_callback(lambda f: self._pool.submit(finish))
            else:
                self._pool.submit(finish)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
