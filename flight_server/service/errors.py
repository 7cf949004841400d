"""The one error table: each error of ``core/errors.py`` → the gRPC status a Flight client sees,
the HTTP status, and a short name (JSON ``error`` field, log lines). Every door uses it: the Flight
and Flight SQL front ends (``server/errors.py`` turns a row into the exception pyarrow sends), the
HTTP app (one Starlette handler per row) and the access log; ``clients/errors.py`` maps the same
rows back to the client's exception types (``tests/test_error_table.py`` runs the round trip).

    error               gRPC status          HTTP  sent as
    NotFound            NOT_FOUND             404
    AlreadyExists       INVALID_ARGUMENT      409  "already exists: ..."
    InvalidRequest      INVALID_ARGUMENT      400
    Unauthenticated     UNAUTHENTICATED       401
    PermissionDenied    PERMISSION_DENIED     403
    ResourceExhausted   UNAVAILABLE           429  "resource exhausted: ..."
    FileChanged         UNAVAILABLE           503  (and the file is re-indexed)
    Unavailable         UNAVAILABLE           503
    Cancelled           CANCELLED             499
    TimedOut            DEADLINE_EXCEEDED     504
    Unimplemented       UNIMPLEMENTED         501
    SourceError         INTERNAL              500  "cannot read the data: ..."
    anything else       INTERNAL              500  "internal error (request <id>)"; traceback in the log only

Two rows carry their status in a message prefix: a Python Flight server (pyarrow) can send neither
RESOURCE_EXHAUSTED nor ALREADY_EXISTS — a Python exception maps only to INVALID_ARGUMENT,
NOT_FOUND, UNIMPLEMENTED, the Flight error classes or UNKNOWN (checked: a bare
``FlightServerBase`` raising ``MemoryError`` answers UNKNOWN). The prefix is part of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from arrowroot.flight_server.core import errors as E


@dataclass(frozen=True)
class Status:
    error: type[BaseException]
    grpc: str        # gRPC status name a Flight client receives
    http: int        # HTTP status of the same failure
    name: str        # short name: the HTTP API's "error" field and the access log's status
    prefix: str = ""  # put in front of the message when the gRPC status cannot carry the error's kind


TABLE: tuple[Status, ...] = (  # most specific first
    Status(E.NotFound, "NOT_FOUND", 404, "not_found"),
    Status(E.AlreadyExists, "INVALID_ARGUMENT", 409, "already_exists", "already exists: "),
    Status(E.InvalidRequest, "INVALID_ARGUMENT", 400, "invalid_argument"),
    Status(E.Unauthenticated, "UNAUTHENTICATED", 401, "unauthenticated"),
    Status(E.PermissionDenied, "PERMISSION_DENIED", 403, "permission_denied"),
    Status(E.ResourceExhausted, "UNAVAILABLE", 429, "resource_exhausted", "resource exhausted: "),
    Status(E.FileChanged, "UNAVAILABLE", 503, "unavailable"),
    Status(E.Unavailable, "UNAVAILABLE", 503, "unavailable"),
    Status(E.Cancelled, "CANCELLED", 499, "cancelled"),
    Status(E.TimedOut, "DEADLINE_EXCEEDED", 504, "deadline_exceeded"),
    Status(E.Unimplemented, "UNIMPLEMENTED", 501, "unimplemented"),
    Status(E.SourceError, "INTERNAL", 500, "internal", "cannot read the data: "),
)
INTERNAL = Status(Exception, "INTERNAL", 500, "internal")


def status_of(exc: BaseException) -> Status:
    """The row of an error; INTERNAL for anything that is not one of ours."""
    for row in TABLE:
        if isinstance(exc, row.error):
            return row
    return INTERNAL


def message_of(exc: BaseException, row: Status | None = None) -> str:
    """What the caller reads: the row's prefix and the error's own text."""
    row = row or status_of(exc)
    return row.prefix + str(exc)


__all__ = ["Status", "TABLE", "INTERNAL", "status_of", "message_of"]
