"""The one table from arrowroot's error tree (``core/errors.py``) to Flight statuses, used by
both front ends (Flight and Flight SQL) — and by the web view for its HTTP statuses.

    NotFound           → NOT_FOUND          InvalidRequest   → INVALID_ARGUMENT
    Unauthenticated    → UNAUTHENTICATED    PermissionDenied → PERMISSION_DENIED
    Unavailable        → UNAVAILABLE        FileChanged      → UNAVAILABLE (and the file is re-indexed)
    ResourceExhausted  → UNAVAILABLE with "resource exhausted: ..." (a pyarrow server cannot send
                         RESOURCE_EXHAUSTED: no Flight error class carries it)
    AlreadyExists      → INVALID_ARGUMENT with "already exists: ..." (same reason)
    Cancelled          → CANCELLED          TimedOut         → DEADLINE_EXCEEDED
    Unimplemented      → UNIMPLEMENTED      SourceError      → INTERNAL "cannot read the data: ..."
    Flight*Error       → as raised
    anything else      → INTERNAL "internal error (request <id>)"; the traceback goes to the log only
                         (a KeyError from inside uproot or h5py is "anything else"; a plain
                         ValueError is still INVALID_ARGUMENT, as pyarrow itself maps it)
"""

from __future__ import annotations

import logging
import uuid

import pyarrow.flight as fl

from arrowroot.flight_server.core import errors as E

log = logging.getLogger("arrowroot.requests")

#: error type → (HTTP status, Flight status name), most specific first; the web view uses it too.
STATUS_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (E.NotFound, 404, "NOT_FOUND"),
    (E.InvalidRequest, 400, "INVALID_ARGUMENT"),
    (E.Unauthenticated, 401, "UNAUTHENTICATED"),
    (E.PermissionDenied, 403, "PERMISSION_DENIED"),
    (E.AlreadyExists, 409, "ALREADY_EXISTS"),
    (E.FileChanged, 503, "UNAVAILABLE"),
    (E.Unavailable, 503, "UNAVAILABLE"),
    (E.ResourceExhausted, 429, "RESOURCE_EXHAUSTED"),
    (E.Cancelled, 499, "CANCELLED"),
    (E.TimedOut, 504, "DEADLINE_EXCEEDED"),
    (E.Unimplemented, 501, "UNIMPLEMENTED"),
    (E.SourceError, 500, "INTERNAL"),
)


def status_of(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, status name) for one of our errors; (500, "INTERNAL") for anything else."""
    for kind, http, name in STATUS_TABLE:
        if isinstance(exc, kind):
            return http, name
    return 500, "INTERNAL"


def bare(exc: BaseException) -> BaseException:
    """Keep pyarrow from sending our traceback to the client.

    pyarrow formats a Python exception with ``traceback.format_exception`` into the gRPC
    status detail. A note that cannot be encoded as UTF-8 makes that formatting fail, and
    pyarrow then falls back to the bare exception type. The message (``str(exc)``) is unchanged.
    """
    exc.add_note("\udc80")
    return exc


class _NotFoundError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def to_flight(exc: BaseException, method: str, what: str = "") -> BaseException:
    """The exception to raise to pyarrow for ``exc`` (see the table above)."""
    if isinstance(exc, fl.FlightError):
        return exc
    msg = str(exc)
    if isinstance(exc, E.NotFound):
        return bare(_NotFoundError(msg))
    if isinstance(exc, E.AlreadyExists):
        return bare(ValueError(f"already exists: {msg}"))
    if isinstance(exc, E.InvalidRequest):
        return bare(ValueError(msg))
    if isinstance(exc, E.Unauthenticated):
        return fl.FlightUnauthenticatedError(msg)
    if isinstance(exc, E.PermissionDenied):
        return fl.FlightUnauthorizedError(msg)
    if isinstance(exc, E.ResourceExhausted):
        return fl.FlightUnavailableError(f"resource exhausted: {msg}")
    if isinstance(exc, E.Unavailable):
        return fl.FlightUnavailableError(msg)
    if isinstance(exc, E.Cancelled):
        return fl.FlightCancelledError(msg)
    if isinstance(exc, E.TimedOut):
        return fl.FlightTimedOutError(msg)
    if isinstance(exc, E.Unimplemented):
        return bare(NotImplementedError(msg))
    if isinstance(exc, E.SourceError):
        log.warning("%s %s: %s", method, what, msg)
        return fl.FlightInternalError(f"cannot read the data: {msg}")
    if isinstance(exc, ValueError):  # validation in code that predates the tree (e.g. lang/)
        return bare(ValueError(msg))
    rid = uuid.uuid4().hex[:12]
    log.error("%s %s failed (request %s)", method, what, rid, exc_info=exc)
    return fl.FlightInternalError(f"internal error (request {rid}); the server log has the details")

