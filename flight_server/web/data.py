"""The web layer's one view of the service: visibility, search, planning, reading and the HTTP
status of a failure — the same service calls, access rules and error table as every other door.

Pages and the HTTP API call only these functions; a :class:`Caller` describes the HTTP caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from arrowroot.flight_server.core.errors import FileChanged
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.plan.planner import Plan
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.errors import message_of, status_of
from arrowroot.flight_server.service.find import find as _find
from arrowroot.flight_server.service.requests import decode_command
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.service.workspace import WorkspaceService

log = logging.getLogger("arrowroot.http")

__all__ = ["Caller", "datasets", "all_visible", "dataset", "schema_of", "spec", "plan", "read_batches", "files",
           "Failure", "failure", "find", "lineage"]


def datasets(service: Service, caller: Caller, criteria: dict[str, Any] | None = None) -> list[Any]:
    """The datasets the caller may see that match list_flights criteria (validated the same way)."""
    return service.search(caller, criteria or None)


def all_visible(service: Service, caller: Caller) -> list[Any]:
    return service.visible(caller)


def dataset(service: Service, caller: Caller, name: str) -> Any:
    """The record, or the NotFound a missing dataset gets (hidden ones answer the same)."""
    return service.dataset(caller, name)


def schema_of(rec: Any) -> pa.Schema:
    return Service.schema(rec)


def spec(request: dict[str, Any]) -> ReadSpec:
    """A ReadRequest given as its JSON fields → the validated spec, through Flight's own parser."""
    return decode_command(json.dumps(request).encode())


def plan(service: Service, caller: Caller, read: ReadSpec) -> Plan:
    return service.plan(caller, read)


def read_batches(service: Service, read: Plan | ReadSpec, caller: Caller, record: CallRecord | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 on_expired: Callable[[], None] | None = None) -> Iterator[pa.RecordBatch]:
    """Every non-empty batch of a read, in entry order, through the one read path (the stream
    limits and checks of a DoGet; ``on_expired`` cuts the connection of a client that stopped
    reading). The reads happen in the calling thread — a worker of the HTTP door's bounded pool —
    never in a read-ahead thread of their own, so the HTTP door's CPU work stays within its pool."""
    p = read if isinstance(read, Plan) else plan(service, caller, read)
    return service.run(p, record, cancelled, on_expired, read_ahead=False)


def files(service: Service, caller: Caller, name: str) -> pa.Table:
    """The files of a dataset with their keys (the ``files`` action)."""
    return service.action(caller, "files", {"dataset": name})


def find(service: Service, caller: Caller, text: str, criteria: dict[str, Any] | None = None) -> list[Any]:
    """The search box: the datasets matching ``criteria`` whose names, titles or attributes hold
    every word of ``text`` (a glob when it has glob characters), exact matches first."""
    return _find(service.search(caller, criteria or None), text)


def lineage(service: Service, caller: Caller, name: str) -> list[dict[str, Any]]:
    """A workspace dataset's provenance and its ancestors' (nearest first, current names); [] for
    datasets that are not in a workspace."""
    if service.ctx.workspace is None or service.ctx.catalog is None:
        return []
    chain = WorkspaceService(service).action(caller, "lineage", {"dataset": name})["lineage"]
    return chain if chain and chain[0].get("kind") not in ("source", "missing") else []


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    kind: str


def failure(what: str, exc: BaseException, request_id: str = "") -> Failure:
    """The HTTP answer to a failure, from the one error table: the message a Flight client gets
    (never a path or traceback; internal errors are logged with their request id)."""
    row = status_of(exc)
    if row.grpc == "INTERNAL" and not row.prefix:
        rid = request_id or "-"
        log.error("%s failed (request %s)", what, rid, exc_info=exc)
        return Failure(500, f"internal error (request {rid}); the server log has the details", row.name)
    if isinstance(exc, FileChanged):
        log.info("%s: %s", what, exc)
    return Failure(row.http, message_of(exc, row), row.name)
