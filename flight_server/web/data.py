"""The one place the web layer touches the Flight server: visibility, search, planning,
reading and error messages, all through the server's own code paths.

Pages and the HTTP API call only these functions, so when the server's plan/execute API
changes only this adapter changes. A ``Caller`` stands in for a Flight call context: the
server's access rules (``Access.visible_datasets``/``dataset``) see the same user either way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.execute.executor import Execution, StreamStats, stream_task
from arrowroot.flight_server.plan.planner import Plan
from arrowroot.flight_server.server.auth import MIDDLEWARE_KEY, AuthMiddleware
from arrowroot.flight_server.server.codec import decode_command
from arrowroot.flight_server.server.errors import status_of

log = logging.getLogger("arrowroot.http")


class Caller:
    """A Flight ``ServerCallContext`` look-alike for one HTTP request (user None = anonymous)."""

    def __init__(self, user: str | None, peer: str = "http"):
        self.user = user
        self._peer = peer
        self._mw = AuthMiddleware(user)

    def get_middleware(self, key: str) -> AuthMiddleware | None:
        return self._mw if key == MIDDLEWARE_KEY else None

    def peer_identity(self) -> bytes:
        return b""

    def peer(self) -> str:
        return f"{self._peer} {self.user or 'anonymous'}"

    def is_cancelled(self) -> bool:
        return False


def datasets(server: Any, caller: Caller, criteria: dict[str, Any] | None = None) -> list[Any]:
    """The datasets the caller may see that match list_flights criteria (validated the same way)."""
    body = json.dumps(criteria).encode() if criteria else b""
    return server._search(body, caller)


def all_visible(server: Any, caller: Caller) -> list[Any]:
    return server.visible_datasets(caller)


def dataset(server: Any, caller: Caller, name: str) -> Any:
    """The record, or the NotFound a missing dataset gets (hidden ones answer the same)."""
    return server.dataset(name, caller)


def schema_of(rec: Any) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(rec.schema))


def spec(request: dict[str, Any]) -> ReadSpec:
    """A ReadRequest given as its JSON fields → the validated spec, through Flight's own parser."""
    return decode_command(json.dumps(request).encode())


def plan(server: Any, caller: Caller, read: ReadSpec) -> Plan:
    return server.plan(read, caller)


def read_batches(server: Any, read: Plan | ReadSpec, caller: Caller) -> Iterator[pa.RecordBatch]:
    """Every batch of a read, in entry order, through the executor Flight's DoGet uses (the
    plan's self-contained tasks, one after another; bounded memory: one chunk read ahead).
    Empty batches and cut metadata are dropped."""
    p = read if isinstance(read, Plan) else plan(server, caller, read)
    stats = StreamStats()
    t0 = time.perf_counter()
    status = "error"
    cut = False
    try:
        for task in p.tasks:
            for part in task.parts:  # what DoGet's open_ticket checks: the files are unchanged
                server.readers.check(part)
            ex = Execution(task)
            cut = ex.cut is not None
            for item in stream_task(task, server.readers, stats, ex):
                batch = item[0] if isinstance(item, tuple) else item
                if batch.num_rows:
                    yield batch
        status = "ok"
    except GeneratorExit:
        status = "closed"
        raise
    finally:
        server._count(p.dataset.name, stats, cut)
        log.info("%s http read %s cols=%d rows=%d bytes=%d %.3fs %s", caller.peer(), p.dataset.name,
                 len(p.columns), stats.rows, stats.bytes, time.perf_counter() - t0, status)


def files(server: Any, caller: Caller, name: str) -> pa.Table:
    """The files of a dataset with their keys (the ``files`` action)."""
    return server._action("files", json.dumps({"dataset": name}).encode(), caller)


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    kind: str


_FLIGHT = [  # Flight errors raised as such (auth): HTTP status, short name
    (fl.FlightUnauthenticatedError, 401, "unauthenticated"),
    (fl.FlightUnauthorizedError, 403, "forbidden"),
    (fl.FlightUnavailableError, 503, "unavailable"),
    (fl.FlightTimedOutError, 504, "timeout"),
    (fl.FlightCancelledError, 499, "cancelled"),
]


def failure(server: Any, what: str, exc: BaseException) -> Failure:
    """The HTTP answer to a failure: the message a Flight client gets (the server's own mapping,
    which also logs internal errors and re-indexes changed files; never a path or traceback),
    with the HTTP status of server/errors.py's table."""
    mapped = server._map_error("http", what, exc)
    message = str(mapped).split(". Detail:")[0]
    source = exc if not isinstance(exc, fl.FlightError) else None
    if source is None:
        for cls, status, kind in _FLIGHT:
            if isinstance(exc, cls):
                return Failure(status, message, kind)
        return Failure(500, message, "internal")
    status, name = status_of(source)
    if status == 500 and isinstance(source, ValueError) and not isinstance(mapped, fl.FlightError):
        status, name = 400, "INVALID_ARGUMENT"  # plain ValueError: INVALID_ARGUMENT, as to_flight says
    return Failure(status, message, name.lower())
