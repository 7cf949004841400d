"""One executing query: the single owner of its sandbox job, from the first frame to close.

The worker runs DuckDB; this side answers its scan requests from the provider (the server's read
path: every batch a query reads comes through ``TableProvider.scan``) and hands out the result
batches. :meth:`QueryRun.close` ends it exactly once — after the last batch, on an error, when
the stream is dropped before or during reading (``__del__``), or by its owner — closing the open
scans and releasing the worker slot; :meth:`QueryRun.cancel` may be called from any thread and
only kills the worker, so the reading thread ends the run itself.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator

import pyarrow as pa

from arrowroot.flight_server.core.batches import halve_until_small
from arrowroot.flight_server.sql.errors import failure
from arrowroot.flight_server.sql.sandbox import Job, SandboxError, WorkerGone
from arrowroot.flight_server.sql.sandbox_worker import SCAN_ID
from arrowroot.flight_server.sql.screen import dataset_of

__all__ = ["QueryRun", "conform"]

#: outcomes that say why the query stopped, whatever a scan reported meanwhile
_DECISIVE = ("timeout", "cancel", "shutdown", "memory")


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A provider's batch in the column order and types DuckDB was promised."""
    arrays = [batch.column(f.name).cast(f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class QueryRun:
    """The result batches of one query (at most ``max_batch_bytes`` each), as an iterator."""

    def __init__(self, job: Job | None, provider: object, sources: list[tuple[str, pa.Schema, str]],
                 schema: pa.Schema, *,
                 query_id: str, timeout_s: float, memory: str, max_batch_bytes: int,
                 on_close: Callable[[QueryRun], None] | None = None) -> None:
        self.job = job
        self.query_id = query_id
        self.provider = provider
        self.sources = sources            # table index → (table key, the columns promised, pushed cut)
        self.schema = schema
        self.timeout_s, self.memory, self.max_batch_bytes = timeout_s, memory, max_batch_bytes
        self.on_close = on_close
        self.rows = 0
        #: errors raised while reading the datasets: reported instead of DuckDB's wrapper of them
        self.failures: list[BaseException] = []
        self._scans: dict[int, tuple[pa.RecordBatchReader, pa.Schema]] = {}
        self._ready: deque[pa.RecordBatch] = deque()
        self._done = False
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def of_table(cls, table: pa.Table, query_id: str) -> QueryRun:
        """A query answered without running it (count/min/max from zone statistics)."""
        run = cls(None, None, [], table.schema, query_id=query_id, timeout_s=0.0, memory="", max_batch_bytes=1 << 30)
        run._ready.extend(b for b in table.to_batches() if b.num_rows)
        run.rows = table.num_rows
        run._done = True
        return run

    # ------------------------------------------------------------ the owner's side

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._ready:
            return self._ready.popleft()
        if self._done or self._closed:
            self.close(reusable=True)
            raise StopIteration
        try:
            batch = self._next_result()
        except BaseException as exc:
            error = self._error(exc)
            self.close()
            if error is exc:
                raise
            raise error from None
        if batch is None:
            self._done = True
            self.close(reusable=True)
            raise StopIteration
        self.rows += batch.num_rows
        parts = list(halve_until_small(batch, self.max_batch_bytes))
        self._ready.extend(parts[1:])
        return parts[0]

    def read_next_batch(self) -> pa.RecordBatch:
        return next(self)

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self), schema=self.schema)

    def cancel(self, reason: str = "cancel") -> None:
        """Stop the query from any thread: the worker is killed; the reader then ends the run."""
        if not self._closed and self.job is not None:
            self.job.stop(reason)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, reusable: bool = False) -> None:
        """End the run (idempotent): close its scans, give the worker slot back."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        for reader, _ in self._scans.values():
            _close_quietly(reader)
        self._scans.clear()
        if self.job is not None:
            self.job.close(reusable=reusable and self._done)
        if self.on_close is not None:
            self.on_close(self)

    def __enter__(self) -> QueryRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # dropped unread (a client gone before the first batch)
        self.close()

    # ------------------------------------------------------------ the worker's requests

    def _next_result(self) -> pa.RecordBatch | None:
        while True:
            kind, data = self.job.receive()
            if kind == b"B":
                return pa.ipc.read_record_batch(pa.py_buffer(data), self.schema)
            if kind == b"R":
                return None
            if kind == b"N":
                self._serve(SCAN_ID.unpack(data)[0])
            elif kind == b"O":
                self._open(json.loads(data))
            elif kind == b"C":
                for scan in json.loads(data):
                    entry = self._scans.pop(int(scan), None)
                    if entry is not None:
                        _close_quietly(entry[0])
            # b"S": the worker started executing; the schema is the planned one

    def _open(self, request: dict) -> None:
        scan, table = int(request["scan"]), int(request["table"])
        key, schema, where = self.sources[table]
        name, allow_missing = dataset_of(key)
        try:
            kwargs: dict = {"allow_missing": True} if allow_missing else {}
            if where and _takes_where(self.provider):
                kwargs["where"] = where
            reader = self.provider.scan(name, list(schema.names), **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the worker, raised by us at the end
            self._refuse(exc)
            return
        self._scans[scan] = (reader, schema)
        self.job.reply(b"A")

    def _serve(self, scan: int) -> None:
        entry = self._scans.get(scan)
        if entry is None:
            self.job.reply(b"Z")
            return
        reader, schema = entry
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            self._scans.pop(scan, None)
            _close_quietly(reader)
            self.job.reply(b"Z")
            return
        except Exception as exc:  # noqa: BLE001 - a file that changed, a source error...
            self._scans.pop(scan, None)
            _close_quietly(reader)
            self._refuse(exc)
            return
        if not batch.schema.equals(schema):
            batch = conform(batch, schema)
        self.job.reply(b"D", batch.serialize())

    def _refuse(self, exc: BaseException) -> None:
        self.failures.append(exc)
        self.job.reply(b"X", json.dumps({"message": str(exc)[:500]}).encode())

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, WorkerGone) and exc.reason in _DECISIVE:
            return failure(exc, timeout_s=self.timeout_s, memory=self.memory)
        if self.failures and isinstance(exc, (SandboxError, WorkerGone)):
            return self.failures[0]
        return failure(exc, timeout_s=self.timeout_s, memory=self.memory)


def _takes_where(provider: object) -> bool:
    """Whether the provider's ``scan`` takes a pushed-down ``where`` (an optional capability)."""
    try:
        return "where" in inspect.signature(provider.scan).parameters
    except (TypeError, ValueError):
        return False


def _close_quietly(reader: pa.RecordBatchReader) -> None:
    try:
        reader.close()
    except Exception:  # noqa: BLE001 - closing a read that failed or was cut short
        pass
