"""``GET /api/follow/NAME``: follow a dataset over HTTP, as server-sent events or chunked Arrow IPC.

The same follow stream as Flight's (``service/follow.py``), run here in the coordinator (so the
data always travels in the response, never as node endpoints), with the query parameters of
``/api/data`` (columns, where, files, channels, entry_start, time_start, with_time, ...):

* ``format=sse`` (default; ``text/event-stream``): one ``rows`` event per batch, ``data`` a JSON
  object ``{"rows": [...]}``, its ``id`` the resume token; a ``heartbeat`` event while idle. A
  browser's ``EventSource`` reconnects by itself and sends the last id as ``Last-Event-ID``, which
  resumes the stream with no gap and no duplicate; ``resume=TOKEN`` does the same by hand.
* ``format=arrow`` (``application/vnd.apache.arrow.stream``): one IPC stream; each batch carries
  ``{"resume": ...}`` (heartbeats: empty batches with ``{"heartbeat": ...}``) as its custom metadata.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from starlette.requests import Request
from starlette.responses import StreamingResponse

from arrowroot.flight_server.core.errors import ArrowrootError, InvalidRequest
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.requests import decode_command
from arrowroot.flight_server.service.errors import status_of
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web.middleware import disconnected, record_of
from arrowroot.flight_server.web.query import selection

FORMATS = {"sse": "text/event-stream", "arrow": "application/vnd.apache.arrow.stream"}


def _sse(event: str, data: str, token: str | None) -> bytes:
    lines = [f"event: {event}"]
    if token:
        lines.append(f"id: {token}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


def follow(service: Service, caller: Caller, request: Request, selection: dict[str, Any], record: CallRecord,
           gone: Callable[[], bool]) -> StreamingResponse:
    """The follow stream of ``selection`` (the ReadRequest fields of the query) as the response."""
    q = request.query_params
    fmt = (q.get("format") or "sse").lower()
    if fmt not in FORMATS:
        raise InvalidRequest(f"format: {fmt[:20]!r} is not one of {', '.join(FORMATS)} for a follow")
    resume = (q.get("resume") or request.headers.get("last-event-id") or "").strip()
    fields = {**selection, "follow": True}
    if resume:
        fields["resume"] = resume
    spec = decode_command(json.dumps(fields).encode())
    read = service.follows.open_spec(caller, spec)   # checked and planned now: errors get a JSON status
    record.dataset, record.detail = read.spec.dataset, "follow"
    messages = service.follows.run(caller, read, record, gone, endpoints=False)

    def sse() -> Iterator[bytes]:
        yield b"retry: 1000\n\n"
        try:
            for m in messages:
                token = m.meta.get("resume")
                if m.batch.num_rows:
                    yield _sse("rows", json.dumps({"rows": m.batch.to_pylist()}, default=str), token)
                else:
                    yield _sse("heartbeat", json.dumps({k: v for k, v in m.meta.items() if k != "resume"}), token)
        except ArrowrootError as exc:  # after the headers: the status goes in a last event (no path, no trace)
            row = status_of(exc)
            record.status = row.grpc
            yield _sse("error", json.dumps({"status": row.http, "error": row.grpc.lower(), "message": str(exc)}),
                       None)

    def arrow() -> Iterator[bytes]:
        buf = io.BytesIO()
        writer = pa.ipc.new_stream(buf, read.schema)
        for m in messages:
            meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in m.meta.items()}
            writer.write_batch(m.batch, custom_metadata=meta)
            yield buf.getvalue()   # the schema (first time) and this batch, sent at once
            buf.seek(0)
            buf.truncate()

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(sse() if fmt == "sse" else arrow(), media_type=FORMATS[fmt], headers=headers)


def endpoint(door: Any) -> Callable[[Request], StreamingResponse]:
    """The route's handler over the HTTP door (``web/door.py``: who calls, the error table)."""
    def handler(request: Request) -> StreamingResponse:
        sel = selection(request.path_params["name"], request.query_params)
        return follow(door.service, door.caller(request), request, sel, record_of(request), disconnected(request))
    return handler


__all__ = ["follow", "endpoint", "FORMATS"]
