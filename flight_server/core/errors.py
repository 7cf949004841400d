"""The one error tree of arrowroot. Every layer raises these; the front ends map each to one
status through one table (``server/errors.py``); ``clients/errors.py`` mirrors it.

    ArrowrootError
    ├── NotFound (KeyError)              NOT_FOUND         no such dataset/column/action; lists closest names
    ├── InvalidRequest (ValueError)      INVALID_ARGUMENT  the client can fix it; the message names the field
    ├── Unauthenticated                  UNAUTHENTICATED   log in first / bad credentials
    ├── PermissionDenied                 PERMISSION_DENIED logged in, but not allowed
    ├── AlreadyExists                    ALREADY_EXISTS    a name that is taken
    ├── Unavailable                      UNAVAILABLE       try again later (or elsewhere)
    │   └── FileChanged                                    the file differs from the catalog; it is re-indexed
    ├── ResourceExhausted                RESOURCE_EXHAUSTED a bound was hit (streams, memory, quota)
    ├── Cancelled                        CANCELLED         the client went away or asked to stop
    ├── TimedOut                         DEADLINE_EXCEEDED a time bound was hit
    ├── Unimplemented (NotImplementedError) UNIMPLEMENTED
    └── SourceError (RuntimeError)       INTERNAL          a file cannot be read; names the file and column
        └── ColumnUnreadable                               one column cannot be interpreted

Only these are "ours": a ``KeyError`` raised inside uproot or h5py is an internal error, never
"not found". Builtin mixins keep ``except KeyError`` / ``except ValueError`` working for callers.
Stdlib only: every layer may import this module.
"""

from __future__ import annotations


class ArrowrootError(Exception):
    """Base of every error arrowroot raises on purpose."""

    def __str__(self) -> str:  # KeyError would repr() its argument: keep the message readable
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class NotFound(ArrowrootError, KeyError):
    """A dataset, column, file or action that does not exist (or that the caller may not see)."""


class InvalidRequest(ArrowrootError, ValueError):
    """A request the client can fix: the message names the field and how."""


class Unauthenticated(ArrowrootError):
    """No, wrong or expired credentials."""


class PermissionDenied(ArrowrootError):
    """Authenticated, but the operation is not allowed for this user."""


class AlreadyExists(ArrowrootError):
    """The name is taken (a concurrent create won)."""


class Unavailable(ArrowrootError):
    """Not now: the client may retry (here, later, or at another location)."""


class FileChanged(Unavailable):
    """A file differs from what the catalog recorded (modified or deleted)."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{path}: {why} since it was indexed; it is being re-indexed, ask for a new FlightInfo")
        self.path = path


class ResourceExhausted(ArrowrootError):
    """A bound was reached: concurrent streams, memory, upload size, quota."""


class Cancelled(ArrowrootError):
    """The client cancelled the call or went away."""


class TimedOut(ArrowrootError):
    """A time bound was reached (query timeout, idle stream)."""


class Unimplemented(ArrowrootError, NotImplementedError):
    """A call or option this server does not serve."""


class SourceError(ArrowrootError, RuntimeError):
    """A file could not be read; the message names the file (relative path) and the cause."""


class ColumnUnreadable(SourceError):
    """One column's bytes cannot be interpreted as Arrow; others still can."""


MAX_QUOTED = 200


def quote(text: str, limit: int = MAX_QUOTED) -> str:
    """``repr`` of user text, cut to a bounded prefix so messages stay small."""
    text = str(text)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text)} characters)"
