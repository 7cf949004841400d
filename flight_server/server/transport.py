"""What the Flight doors share about moving data over gRPC: IPC write options per codec, the
error boundary of a call, a stream whose errors leave as their Flight status, and a DoPut's
batches with the check that the client really finished sending them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server.core.errors import Cancelled, InvalidRequest
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.server.auth import record_of
from arrowroot.flight_server.server.errors import fail
from arrowroot.protos import PUT_COMMIT

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


class PutStream:
    """The record batches of a DoPut, and whether the client said it sent them all.

    A stream that simply ends is not proof of a finished upload: a Python client interrupted with
    Ctrl-C (or whose data source raised) closes its writer on the way out, which ends the stream
    normally after 5 of 1,000 batches. So the workspace API keeps an upload only when the client
    sent the commit message (``PUT_COMMIT`` as the app_metadata of its last message, after the
    last batch), the stream then ended normally, and the call was not cancelled.
    """

    def __init__(self, reader: fl.MetadataRecordBatchReader):
        self.reader = reader
        self.committed = False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                chunk = self.reader.read_chunk()
            except StopIteration:
                return
            meta = chunk.app_metadata
            if chunk.data is not None:
                if self.committed:
                    raise InvalidRequest("upload: a batch came after the commit message; nothing was stored")
                yield chunk.data
            if meta is not None and meta.to_pybytes() == PUT_COMMIT:
                self.committed = True

    def complete(self, context: fl.ServerCallContext, require_commit: bool = True) -> None:
        """Raise unless the client finished its upload (Cancelled) and, with ``require_commit``,
        said so (InvalidRequest: a client that does not know the contract learns it)."""
        if context.is_cancelled():
            raise Cancelled("the upload was interrupted before the client finished it; nothing was stored")
        if require_commit and not self.committed:
            raise InvalidRequest("upload: the stream ended without the commit message, so nothing was stored "
                                 f"(an interrupted client ends it so too): after the last batch send "
                                 f"app_metadata {PUT_COMMIT!r} (pyarrow: writer.write_metadata(...)); "
                                 "arrowroot's Client does")


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
    """Raise unless the call ended without being cancelled (Flight SQL ingest: ADBC sends no
    commit message; an ADBC client stopped mid-ingest cancels its call)."""
    if context.is_cancelled():
        raise Cancelled("the upload was interrupted before the client finished it; nothing was stored")


__all__ = ["CODECS", "ipc_options", "guarded", "mapped", "PutStream", "batches_of", "completed"]
