"""The arrowroot Python client (depends only on pyarrow and the protos)."""

from .client import Client, IncompleteKeysWarning
from .errors import (AlreadyExists, ArrowrootError, Cancelled, InvalidRequest, NotFound, PermissionDenied,
                     ResourceExhausted, ServerError, TimedOut, Unauthenticated, Unavailable, Unimplemented)

__all__ = ["Client", "IncompleteKeysWarning",
           "AlreadyExists", "ArrowrootError", "Cancelled", "InvalidRequest", "NotFound", "PermissionDenied",
           "ResourceExhausted", "ServerError", "TimedOut", "Unauthenticated", "Unavailable", "Unimplemented"]
