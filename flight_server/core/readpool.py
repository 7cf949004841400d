"""A thread pool for source reads in which small reads go first (no head-of-line blocking).

Why: every ROOT read (and every gzip HDF5 / encoded LH5 read) hands its decompression jobs to one
process-wide pool. With one FIFO queue a tiny read's two jobs wait behind every job that the large
reads in flight queued before it — seconds with 16 large streams. Here a read whose estimated
size is at most ``small_bytes`` queues in a lane of its own that free workers serve first; large
reads keep first come, first served among themselves (taking turns between them instead would
make every large stream finish its chunks late, all at once). So that a flood of small reads cannot
starve the large ones, every ``large_every``-th pick takes a large job when one waits.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from arrowroot.flight_server.core.settings import default

SMALL_BYTES = 1 << 20   # a read of at most this many (uncompressed) bytes is "small"
LARGE_EVERY = 8         # with both lanes waiting, one pick in this many takes a large job


class ReadPool:
    """``submit``/``map`` like ThreadPoolExecutor, with a priority lane for small reads."""

    def __init__(self, workers: int, name: str = "read", small_bytes: int = SMALL_BYTES,
                 large_every: int = LARGE_EVERY) -> None:
        self.workers = max(1, workers)
        self.name = name
        self.small_bytes = small_bytes
        self.large_every = max(1, large_every)
        self._cond = threading.Condition()
        self._small: deque = deque()
        self._large: deque = deque()
        self._small_run = 0   # small jobs picked in a row while large ones waited
        self._threads: list[threading.Thread] = []
        _POOLS.add(self)

    def _forget(self) -> None:
        """In a forked child: the parent's threads and jobs are not here; start afresh."""
        self._cond = threading.Condition()
        self._small, self._large = deque(), deque()
        self._small_run = 0
        self._threads = []

    def is_small(self, nbytes: float) -> bool:
        return nbytes <= self.small_bytes

    def submit(self, fn: Callable[..., Any], /, *args: Any, nbytes: float = float("inf"), **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)``; ``nbytes`` is the estimated size of the whole read the
        job belongs to (unknown = large)."""
        future: Future = Future()
        with self._cond:
            (self._small if self.is_small(nbytes) else self._large).append((future, fn, args, kwargs))
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            self._cond.notify()
        return future

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], nbytes: float = float("inf")) -> Iterator[Any]:
        """Results of ``fn`` over ``items`` in order (all submitted at once)."""
        futures = [self.submit(fn, x, nbytes=nbytes) for x in items]
        return (f.result() for f in futures)

    def pending(self) -> tuple[int, int]:
        """(small, large) jobs queued and not yet started."""
        with self._cond:
            return len(self._small), len(self._large)

    def _next(self) -> tuple:
        with self._cond:
            while not self._small and not self._large:
                self._cond.wait()
            if self._small and not (self._large and self._small_run >= self.large_every - 1):
                self._small_run = self._small_run + 1 if self._large else 0
                return self._small.popleft()
            self._small_run = 0
            return self._large.popleft()

    def _work(self) -> None:
        while True:
            future, fn, args, kwargs = self._next()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


_POOLS: weakref.WeakSet[ReadPool] = weakref.WeakSet()


def _after_fork() -> None:
    for pool in list(_POOLS):
        pool._forget()


os.register_at_fork(after_in_child=_after_fork)


# ---------------------------------------------------------------- the process-wide pools

_SHARED: dict[str, ReadPool] = {}
_shared_lock = threading.Lock()
_read_threads: int = default("read_threads")


def threads_for(read_threads: int) -> int:
    """Workers of one pool for the setting ``read_threads`` (0: one per core, at least 2)."""
    return read_threads if read_threads > 0 else max(2, os.cpu_count() or 2)


def shared(name: str) -> ReadPool:
    """The process-wide pool ``name`` (sources share decompression work through it), sized by
    ``Settings.read_threads``; :func:`configure` sets that at start."""
    with _shared_lock:
        pool = _SHARED.get(name)
        if pool is None:
            pool = _SHARED[name] = ReadPool(threads_for(_read_threads), name=name)
        return pool


def configure(read_threads: int) -> None:
    """Size every shared pool from ``Settings.read_threads`` (a process's composition root calls it)."""
    global _read_threads
    with _shared_lock:
        _read_threads = read_threads
        for pool in _SHARED.values():
            pool.workers = threads_for(read_threads)

