"""Client-side errors: each Flight status arrives as one arrowroot type that also
inherits the builtin a Python user would catch.

    ArrowrootError
    ├── NotFound(KeyError)              unknown dataset, column, action
    ├── InvalidRequest(ValueError)      a field of the request is wrong (the message names it)
    ├── Unauthenticated(PermissionError) no or bad credentials
    ├── PermissionDenied(PermissionError) authenticated but not allowed
    ├── Unavailable(ConnectionError)    server unreachable, or a file changed (retry)
    └── ServerError(RuntimeError)       the server failed; the message has a request id
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


_DETAIL = re.compile(r"\. Detail: .*$", re.S)
_LOST = re.compile(r"^Flight returned unavailable error", re.I)
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
        raise Unavailable(message(exc)) from exc
    except (fl.FlightInternalError, fl.FlightServerError) as exc:
        raise ServerError(message(exc)) from exc
    except pa.ArrowKeyError as exc:
        raise NotFound(message(exc)) from exc
    except pa.ArrowInvalid as exc:
        raise InvalidRequest(message(exc)) from exc
    except OSError as exc:
        # a connection lost mid-stream arrives as a plain OSError carrying the gRPC status
        if _LOST.match(str(exc)):
            raise Unavailable(message(exc)) from exc
        raise
