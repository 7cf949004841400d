"""Client-side errors: each Flight status arrives as one arrowroot type that also
inherits the builtin a Python user would catch.

    ArrowrootError
    ├── NotFound(KeyError)              unknown dataset, column, action
    ├── InvalidRequest(ValueError)      a field of the request is wrong (the message names it)
    │   └── AlreadyExists               the name is taken
    ├── Unauthenticated(PermissionError) no or bad credentials
    ├── PermissionDenied(PermissionError) authenticated but not allowed
    ├── Unavailable(ConnectionError)    server unreachable, or a file changed (retry)
    │   └── ResourceExhausted           a server bound was hit (streams, memory, quota): retry later
    ├── Cancelled                       the call was cancelled
    ├── TimedOut(TimeoutError)          a time limit was hit (e.g. the SQL timeout)
    ├── Unimplemented(NotImplementedError)
    └── ServerError(RuntimeError)       the server failed; the message has a request id

It mirrors the server's tree (``flight_server/core/errors.py``) and its status table
(``flight_server/server/errors.py``), whether the error comes before the first batch or mid-stream.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.flight as fl


class ArrowrootError(Exception):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFound(ArrowrootError, KeyError):
    pass


class InvalidRequest(ArrowrootError, ValueError):
    pass


class Unauthenticated(ArrowrootError, PermissionError):
    pass


class PermissionDenied(ArrowrootError, PermissionError):
    pass


class Unavailable(ArrowrootError, ConnectionError):
    pass


class ServerError(ArrowrootError, RuntimeError):
    pass


class AlreadyExists(InvalidRequest):
    pass


class ResourceExhausted(Unavailable):
    pass


class Cancelled(ArrowrootError):
    pass


class TimedOut(ArrowrootError, TimeoutError):
    pass


class Unimplemented(ArrowrootError, NotImplementedError):
    pass


_DETAIL = re.compile(r"\. Detail: .*$", re.S)
_STATUS = re.compile(r"^Flight returned ([a-z ]+?) error", re.I)
# mid-stream, pyarrow raises a bare OSError whose text ends with the gRPC status name
_GRPC_CODE = re.compile(r"gRPC client debug context: ([A-Z_]+):")
_GRPC_PREFIX = re.compile(r"^Flight returned [a-z ]+ error, with message: ", re.I)


def message(exc: BaseException) -> str:
    """The server's message without pyarrow's transport decorations."""
    text = str(exc)
    text = _GRPC_PREFIX.sub("", text)
    return _DETAIL.sub("", text).strip()


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Re-raise pyarrow Flight errors as arrowroot errors."""
    try:
        yield
    except ArrowrootError:
        raise
    except fl.FlightUnauthenticatedError as exc:
        raise Unauthenticated(message(exc)) from exc
    except fl.FlightUnauthorizedError as exc:
        raise PermissionDenied(message(exc)) from exc
    except fl.FlightUnavailableError as exc:
        raise _unavailable(message(exc)) from exc
    except fl.FlightCancelledError as exc:
        raise Cancelled(message(exc)) from exc
    except fl.FlightTimedOutError as exc:
        raise TimedOut(message(exc)) from exc
    except (fl.FlightInternalError, fl.FlightServerError) as exc:
        raise ServerError(message(exc)) from exc
    except pa.ArrowKeyError as exc:
        raise NotFound(message(exc)) from exc
    except pa.ArrowInvalid as exc:
        raise _invalid(message(exc)) from exc
    except pa.ArrowNotImplementedError as exc:
        raise Unimplemented(message(exc)) from exc
    except OSError as exc:
        # an error in the middle of a stream arrives as a plain OSError carrying the gRPC status
        m = _STATUS.match(str(exc)) or _GRPC_CODE.search(str(exc))
        if not m:
            raise
        kind = _BY_STATUS.get(m.group(1).lower().replace("_", " "), ServerError)
        text = message(exc)
        if kind is Unavailable:
            raise _unavailable(text) from exc
        if kind is InvalidRequest:
            raise _invalid(text) from exc
        raise kind(text) from exc


_BY_STATUS: dict[str, type[ArrowrootError]] = {
    "unavailable": Unavailable, "invalid argument": InvalidRequest, "not found": NotFound,
    "unauthenticated": Unauthenticated, "unauthorized": PermissionDenied, "permission denied": PermissionDenied,
    "cancelled": Cancelled, "timed out": TimedOut, "deadline exceeded": TimedOut, "unimplemented": Unimplemented,
    "internal": ServerError, "unknown": ServerError, "resource exhausted": ResourceExhausted,
    "already exists": AlreadyExists,
}


def _unavailable(text: str) -> Unavailable:
    return ResourceExhausted(text) if text.startswith("resource exhausted:") else Unavailable(text)


def _invalid(text: str) -> InvalidRequest:
    return AlreadyExists(text) if text.startswith("already exists:") else InvalidRequest(text)
