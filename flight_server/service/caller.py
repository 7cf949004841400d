"""Who is calling, as every door hands it to the service layer.

A door (Flight, Flight SQL, HTTP, a data node, the workspace API) authenticates its call its own
way (headers, a cookie, a ticket) and describes the caller with this one value; the service layer
never sees a gRPC call context or an HTTP request. ``user`` None means anonymous (or
authentication off); tickets are bound to ``principal``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def new_request_id() -> str:
    """A short random id that links a call's log line to its client's error message."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Caller:
    user: str | None = None                 # authenticated user name; None = anonymous / auth off
    door: str = "flight"                    # flight, flight_sql, http, node, workspace
    peer: str = ""                          # client address as the door knows it
    groups: frozenset[str] = frozenset()    # groups an identity provider vouched for (tokens)
    scopes: tuple[str, ...] | None = None   # dataset-name prefixes a token may read (None = no restriction)
    request_id: str = field(default_factory=new_request_id)

    @property
    def principal(self) -> str:
        """What tickets and stream limits are bound to: the user name, '' for anonymous callers."""
        return self.user or ""


ANONYMOUS = Caller()

__all__ = ["Caller", "ANONYMOUS", "new_request_id"]
