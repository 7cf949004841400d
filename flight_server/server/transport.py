"""What the Flight doors share about moving data over gRPC: IPC write options per codec, the
error boundary of a call, a stream whose errors leave as their Flight status, and a DoPut's
batches with the check that the client really finished sending them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server.core.errors import Cancelled
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.server.auth import record_of
from arrowroot.flight_server.server.errors import fail

#: IPC body options per codec a task may name ("" = the server's default, set per process)
CODECS = ("none", "lz4", "zstd")


def ipc_options(default: str | None) -> dict[str, pa.ipc.IpcWriteOptions]:
    out = {c: pa.ipc.IpcWriteOptions(compression=None if c == "none" else c) for c in CODECS}
    out[""] = pa.ipc.IpcWriteOptions(compression=default)
    return out


def guarded(context: fl.ServerCallContext, fn: Callable[[], Any], what: str = "") -> Any:
    """Run a door's work; our errors leave as their Flight status (and the record notes it)."""
    try:
        return fn()
    except Exception as exc:
        raise fail(exc, record_of(context), what) from None


def mapped(batches: Iterator[Any], record: CallRecord, context: fl.ServerCallContext) -> Iterator[Any]:
    """A stream's batches, its errors leaving as their Flight status (cancelled when the client left)."""
    try:
        yield from batches
    except Exception as exc:
        err = fail(exc, record)
        if context.is_cancelled():
            record.status = "CANCELLED"
        raise err from None
    finally:
        batches.close()  # type: ignore[attr-defined]


def batches_of(reader: fl.MetadataRecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The record batches of a DoPut (metadata-only messages skipped)."""
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is not None:
            yield chunk.data


def completed(context: fl.ServerCallContext) -> None:
    """Raise unless the client finished its upload (a cancelled call ends its reader early too)."""
    if context.is_cancelled():
        raise Cancelled("the upload was interrupted before the client finished it; nothing was stored")


__all__ = ["CODECS", "ipc_options", "guarded", "mapped", "batches_of", "completed"]
