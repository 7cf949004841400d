"""The DoGet side of a Flight SQL query: its result stream, the client watcher, the running queries.

:class:`ResultStream` is what pyarrow's ``GeneratorStream`` pulls; it ends its
:class:`~arrowroot.flight_server.sql.run.QueryRun` exactly once however the stream ends — the last
batch, an error, or pyarrow dropping a stream it never started (a client gone before the first
batch: a class, not a generator, so ``__del__`` covers it). :class:`ClientWatcher` polls the call
while DuckDB computes (an aggregate sends nothing for a while) and stops the query when the client
goes away. :class:`RunningQueries` finds the runs of a ticket for CancelFlightInfo and remembers
tickets cancelled before they ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server.sql.engine import QueryRun
from arrowroot.flight_server.sql.errors import QueryCancelled
from arrowroot.flight_server.server.auth import record_of
from arrowroot.flight_server.server.errors import fail

__all__ = ["ResultStream", "ClientWatcher", "RunningQueries", "CANCEL_POLL_S"]

CANCEL_POLL_S = 0.2


class ClientWatcher:
    """Polls ``context.is_cancelled()`` while a query runs; cancels it when the client is gone.

    Stopped (and joined) when the stream ends, so the call context is not touched afterwards."""

    def __init__(self, context: fl.ServerCallContext, run: QueryRun) -> None:
        self.context, self.run = context, run
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sql-watch-{run.query_id[:8]}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(CANCEL_POLL_S):
            if self.context.is_cancelled():
                self.run.cancel()
                return

    def stop(self) -> None:
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class RunningQueries:
    """Runs by the digest of their statement ticket, and the digests cancelled (until they expire)."""

    def __init__(self, remember_s: float) -> None:
        self.remember_s = remember_s
        self._runs: dict[bytes, set[QueryRun]] = {}
        self._cancelled: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def add(self, digest: bytes, run: QueryRun) -> None:
        with self._lock:
            self._runs.setdefault(digest, set()).add(run)

    def remove(self, digest: bytes, run: QueryRun) -> None:
        with self._lock:
            runs = self._runs.get(digest)
            if runs is not None:
                runs.discard(run)
                if not runs:
                    del self._runs[digest]

    def cancel(self, digest: bytes) -> int:
        """Stop the ticket's runs and refuse it from now on; how many were running."""
        now = time.monotonic()
        with self._lock:
            self._cancelled = {d: t for d, t in self._cancelled.items() if t > now}
            self._cancelled[digest] = now + self.remember_s
            runs = list(self._runs.get(digest, ()))
        for run in runs:
            run.cancel()
        return len(runs)

    def was_cancelled(self, digest: bytes) -> bool:
        with self._lock:
            until = self._cancelled.get(digest)
        return until is not None and until > time.monotonic()

    def ids(self) -> list[str]:
        with self._lock:
            return [run.query_id for runs in self._runs.values() for run in runs]


class ResultStream:
    """The batches of one query for ``GeneratorStream``; ends its run when exhausted, failed or dropped."""

    def __init__(self, context: fl.ServerCallContext, run: QueryRun,
                 map_error: Callable[[BaseException], BaseException],
                 on_close: Callable[[ResultStream], None] | None = None) -> None:
        self.context, self.run = context, run
        self.map_error, self.on_close = map_error, on_close
        self.watcher = ClientWatcher(context, run)
        self.record = record_of(context)
        self.closed = False
        self._lock = threading.Lock()

    @property
    def schema(self) -> pa.Schema:
        return self.run.schema

    def __iter__(self) -> ResultStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self.closed:
            raise StopIteration
        try:
            if self.context.is_cancelled():
                self.run.cancel()
                raise QueryCancelled("client went away; query cancelled")
            batch = next(self.run)
        except StopIteration:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise fail(self.map_error(exc), self.record) from None
        return batch

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.watcher.stop()
        self.run.close()
        self.record.rows = self.run.rows
        if self.on_close is not None:
            self.on_close(self)

    def __del__(self) -> None:
        self.close()
