"""The one error table (``service/errors.py``) as pyarrow Flight exceptions, for the Flight doors.

pyarrow turns what a handler raises into a gRPC status: ``KeyError`` → NOT_FOUND,
``ValueError`` → INVALID_ARGUMENT, ``NotImplementedError`` → UNIMPLEMENTED and the ``Flight*Error``
classes → their statuses; :func:`to_flight` picks the one for each row of the table. Anything that
is not ours becomes INTERNAL "internal error (request <id>)", with the traceback in the log only.
"""

from __future__ import annotations

import logging

import pyarrow.flight as fl

from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.errors import Status, message_of, status_of

log = logging.getLogger("arrowroot.errors")


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


_FLIGHT = {
    "UNAUTHENTICATED": fl.FlightUnauthenticatedError,
    "PERMISSION_DENIED": fl.FlightUnauthorizedError,
    "UNAVAILABLE": fl.FlightUnavailableError,
    "CANCELLED": fl.FlightCancelledError,
    "DEADLINE_EXCEEDED": fl.FlightTimedOutError,
    "INTERNAL": fl.FlightInternalError,
}


def to_flight(exc: BaseException, what: str = "", request_id: str = "") -> BaseException:
    """The exception to raise to pyarrow for ``exc`` (see the table), logging internal errors."""
    if isinstance(exc, fl.FlightError):
        return exc
    row = status_of(exc)
    if row.grpc == "INTERNAL" and not row.prefix:  # not one of ours
        rid = request_id or "-"
        log.error("%s failed (request %s)", what or "call", rid, exc_info=exc)
        return fl.FlightInternalError(f"internal error (request {rid}); the server log has the details")
    return flight_error(row, message_of(exc, row))


def fail(exc: BaseException, record: CallRecord, what: str = "") -> BaseException:
    """A door's error boundary: note the status on the call's record, then map ``exc``."""
    if isinstance(exc, fl.FlightError):
        record.status = grpc_status_of_raised(exc)
        return exc
    record.status = status_of(exc).grpc
    return to_flight(exc, what or f"{record.door} {record.method} {record.dataset}".strip(), record.request_id)


def flight_error(row: Status, message: str) -> BaseException:
    """The pyarrow exception that sends ``row``'s gRPC status with ``message``."""
    if row.grpc == "NOT_FOUND":
        return bare(_NotFoundError(message))
    if row.grpc == "INVALID_ARGUMENT":
        return bare(ValueError(message))
    if row.grpc == "UNIMPLEMENTED":
        return bare(NotImplementedError(message))
    return _FLIGHT[row.grpc](message)


def grpc_status_of_raised(exc: BaseException | None) -> str:
    """The gRPC status a raised exception (as pyarrow will send it) stands for: the access log's
    view of a call that ended with ``exc``."""
    if exc is None:
        return "OK"
    for name, cls in _FLIGHT.items():
        if isinstance(exc, cls):
            return name
    if isinstance(exc, fl.FlightServerError):
        return "UNKNOWN"
    if isinstance(exc, KeyError):
        return "NOT_FOUND"
    if isinstance(exc, NotImplementedError):
        return "UNIMPLEMENTED"
    if isinstance(exc, (ValueError, TypeError)):
        return "INVALID_ARGUMENT"
    return status_of(exc).grpc if status_of(exc).grpc != "INTERNAL" else "UNKNOWN"


__all__ = ["fail", "to_flight", "flight_error", "bare", "grpc_status_of_raised"]
