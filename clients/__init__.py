"""The arrowroot Python client (depends only on pyarrow and the protos)."""

from .client import Client
from .errors import (ArrowrootError, InvalidRequest, NotFound, PermissionDenied, ServerError,
                     Unauthenticated, Unavailable)

__all__ = ["Client", "ArrowrootError", "InvalidRequest", "NotFound", "PermissionDenied", "ServerError",
           "Unauthenticated", "Unavailable"]
