"""One upload into a workspace: a Parquet file written to a temp name, renamed when complete.

Batches stream into ``home/<owner>/.tmp-<id>.parquet`` (zstd), bounded in memory by one row
group; ``commit`` fsyncs, renames and registers the file with its workspace, ``abort`` removes
everything (safe from another thread: the stream slots' reaper ends idle uploads).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arrowroot.catalog.models import WorkspaceRecord

from arrowroot.flight_server.core.errors import Cancelled, InvalidRequest, ResourceExhausted

ENTRY = "entry"
OVERLAY_KEY = b"arrowroot.overlay"
ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 32 << 20


class QuotaExceeded(ResourceExhausted):
    """The upload would take the owner over their byte quota or the per-request limit."""


class Home(Protocol):
    """What an upload needs from its workspace (``store.Workspace``)."""

    @property
    def limits(self) -> Any: ...

    def owner_dir(self, owner: str) -> Path: ...

    def reserve(self, up: Upload, size: int) -> None: ...

    def release(self, up: Upload) -> None: ...

    def register(self, up: Upload, size: int, provenance: dict[str, Any]) -> WorkspaceRecord: ...


class Upload:
    """One Parquet file being written; ``commit`` makes it a dataset, ``abort`` removes it."""

    def __init__(self, ws: Home, name: str, owner: str, mode: str, schema: pa.Schema, kind: str,
                 budget: int, parent: str | None = None, extra: dict[str, Any] | None = None,
                 overlay: dict[str, Any] | None = None, lock: threading.Lock | None = None,
                 encodings: dict[str, str] | None = None, row_group_rows: int = ROW_GROUP_ROWS):
        self.ws, self.name, self.owner, self.mode, self.kind = ws, name, owner, mode, kind
        self.parent, self.extra, self.overlay = parent, dict(extra or {}), overlay
        self.budget = budget
        self.rows = 0
        self.copied = 0            # rows carried over from the dataset appended to
        self.received = 0
        self.lock = lock
        self._rg_rows = row_group_rows
        self.dir = ws.owner_dir(owner)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4().hex
        self.dataset_id = self.id      # the dataset's identity; an append or replace keeps the old one
        self.parent_id: str | None = None
        self.tmp = self.dir / f".tmp-{self.id}.parquet"
        self.final = self.dir / f"{self.id}.parquet"
        meta = dict(schema.metadata or {})
        if overlay is not None:
            meta[OVERLAY_KEY] = json.dumps(overlay).encode()
        self.schema = schema.with_metadata(meta)
        kwargs: dict[str, Any] = {"compression": "zstd"}
        if encodings:
            kwargs.update(use_dictionary=False, column_encoding=encodings)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(str(self.tmp), self.schema, **kwargs)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._last_entry = -1
        self.done = False
        #: the slots' reaper may abort an idle upload from its own thread
        self._guard = threading.RLock()

    # -------------------------------------------------------- writing

    def write(self, batch: pa.RecordBatch) -> None:
        """Add one batch (its schema must be the upload's); flushes a row group when full."""
        with self._guard:
            if self.done:
                raise Cancelled("upload: it was ended (idle past the timeout); nothing was stored")
            self._write(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        batch = self._conform(batch)
        self.received += batch.nbytes
        if self.received > self.ws.limits.max_upload_bytes:
            raise QuotaExceeded(f"upload: more than the {self.ws.limits.max_upload_bytes}-byte limit per request; "
                                "split it and append")
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self._pending_rows >= self._rg_rows or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch in the upload's column order and types; ValueError names a mismatch."""
        if batch.schema.equals(self.schema, check_metadata=False):
            return batch
        extra = [n for n in batch.schema.names if n not in self.schema.names]
        if extra:
            raise InvalidRequest(f"schema: column {extra[0]!r} is not in the dataset")
        arrays = []
        for f in self.schema:
            if f.name not in batch.schema.names:
                raise InvalidRequest(f"schema: column {f.name!r} is missing from the batch")
            arr = batch.column(f.name)
            if not arr.type.equals(f.type):
                try:
                    arr = arr.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise InvalidRequest(f"schema: column {f.name!r} is {arr.type}, the dataset has {f.type}") from None
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def write_table(self, table: pa.Table) -> None:
        for b in table.to_batches(max_chunksize=self._rg_rows):
            self.write(b)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.ws.reserve(self, self.tmp.stat().st_size)

    def check_entries(self, entries: np.ndarray, limit: int) -> None:
        """Overlay entry numbers: sorted, unique, inside the base (across batches too)."""
        if len(entries) == 0:
            return
        if entries[0] <= self._last_entry or (len(entries) > 1 and np.any(np.diff(entries) <= 0)):
            raise InvalidRequest(f"columns: {ENTRY!r} must hold strictly increasing entry numbers of the parent")
        if entries[0] < 0 or entries[-1] >= limit:
            raise InvalidRequest(f"columns: {ENTRY!r} holds entry {int(entries[-1] if entries[-1] >= limit else entries[0])}"
                             f", outside the parent's 0..{limit - 1}")
        self._last_entry = int(entries[-1])

    # -------------------------------------------------------- finishing

    def commit(self, provenance: dict[str, Any] | None = None) -> WorkspaceRecord:
        """Close, fsync and rename the file, then register it; the name may be taken meanwhile
        (Conflict for 'create')."""
        with self._guard:
            if self.done:
                raise Cancelled("upload: it was ended (idle past the timeout); nothing was stored")
            return self._commit(provenance)

    def _commit(self, provenance: dict[str, Any] | None) -> WorkspaceRecord:
        try:
            self._flush()
            assert self._writer is not None
            self._writer.close()
            self._writer = None
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            size = self.tmp.stat().st_size
            self.ws.reserve(self, size)
            os.replace(self.tmp, self.final)
            _fsync_dir(self.dir)
        except BaseException:
            self.abort()
            raise
        try:
            entry = self.ws.register(self, size, provenance or {})
        except BaseException:
            self.final.unlink(missing_ok=True)
            self.done = True
            self._release()
            raise
        self.done = True
        self._release()
        return entry

    def abort(self) -> None:
        """Remove everything written; safe to call twice, and from another thread."""
        with self._guard:
            self._abort()

    def _abort(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:
            pass
        self._writer = None
        self.tmp.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        self.ws.release(self)
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
