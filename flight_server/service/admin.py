"""The identity and grant operations of ``arrowroot users|groups|keys|grant|revoke|grants``, by name.

One table for both ways the CLI reaches a catalog: directly, when no server holds the file, and
through a running server's local admin socket (``server/admin_socket.py``), which DuckDB's
one-writer rule makes necessary while ``arrowroot serve`` runs. Arguments and results are plain
JSON values, so the same call works in-process and over the socket; an unknown operation or
argument is refused before anything runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.lang import glob

__all__ = ["OPS", "run"]


def _grants(catalog: Catalog) -> list[dict[str, Any]]:
    """Each grant with the number of datasets its pattern matches now."""
    names = [d.name for d in catalog.datasets()]
    out = []
    for g in identities.list_grants(catalog):
        match = glob.Glob(g.pattern).match
        out.append({"permission": g.permission, "pattern": g.pattern, "to": g.to,
                    "datasets": sum(1 for name in names if match(name))})
    return out


def _create_key(catalog: Catalog, user: str, label: str = "", expires_at: float | None = None) -> list[str]:
    key_id, token = identities.create_key(catalog, user, label, expires_at)
    return [key_id, token]


#: operation → function of (catalog, **arguments); every result is JSON
OPS: dict[str, Callable[..., Any]] = {
    "add_user": identities.add_user,
    "set_password": identities.set_password,
    "remove_user": identities.remove_user,
    "list_users": identities.list_users,
    "add_group": identities.add_group,
    "remove_group": identities.remove_group,
    "group_members": identities.group_members,
    "create_key": _create_key,
    "revoke_key": identities.revoke_key,
    "list_keys": identities.list_keys,
    "grant": identities.grant,
    "revoke": identities.revoke,
    "grants": _grants,
}


def run(catalog: Catalog, op: str, args: dict[str, Any]) -> Any:
    """Run one operation on ``catalog``; unknown operations and arguments are an InvalidRequest."""
    fn = OPS.get(op) if isinstance(op, str) else None
    if fn is None:
        raise InvalidRequest(f"unknown admin operation {str(op)[:40]!r}; known: {', '.join(sorted(OPS))}")
    if not isinstance(args, dict):
        raise InvalidRequest("admin arguments: a JSON object")
    params = list(inspect.signature(fn).parameters)[1:]
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise InvalidRequest(f"{op}: unknown arguments {', '.join(map(str, unknown))[:200]}")
    return fn(catalog, **args)
