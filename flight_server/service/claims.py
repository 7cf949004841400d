"""Who a verified external token says its bearer is: :class:`Identity`.

Identities come from outside arrowroot — an OpenID Connect issuer's JWT (``tokens.py``) or a
JupyterHub (``jupyterhub.py``) — and map onto the catalog's own users, groups and grants by name:
a token user needs no local account, and a group the token names (``/l200/analysis``) can be a
grantee. Capability scopes (WLCG ``storage.read:/l200``, SciTokens ``read:/l200``) narrow what the
token may read to dataset-name prefixes, on top of the grants; a token without any such scope is
limited by the grants alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from arrowroot.flight_server.core.errors import Unauthenticated

__all__ = ["Identity", "TokenRefused", "read_prefixes", "user_name", "group_names", "may_read"]

#: the catalog's user-name rule (catalog/identities.py NAME_RE): a token user is a catalog user by name
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: groups from tokens may be paths (``/l200/analysis``, Keycloak's full group path) or URNs
GROUP_RE = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$")
MAX_GROUPS = 256
READ_SCOPES = ("storage.read:", "read:")   # WLCG token profile, SciTokens


class TokenRefused(Unauthenticated):
    """A bearer token that is not (or no longer) good; the message says why, never the token."""


@dataclass(frozen=True)
class Identity:
    """A caller vouched for by an external issuer."""

    user: str
    groups: frozenset[str] = frozenset()
    #: readable dataset-name prefixes from capability scopes; None = no such scope, grants only
    prefixes: tuple[str, ...] | None = None
    issuer: str = ""
    expires: float | None = None       # seconds since the epoch; None = the issuer did not say
    source: str = "oidc"               # "oidc" | "jupyterhub"

    def may_read(self, name: str) -> bool:
        """True if the token's scopes (if any) cover dataset ``name``."""
        return self.prefixes is None or may_read(self.prefixes, name)


def may_read(prefixes: Iterable[str], name: str) -> bool:
    """Whether ``name`` lies under one of ``prefixes``: the prefix itself, a folder below it
    (``p/...``) or an object inside the file it names (``p:...``); '' covers everything."""
    for p in prefixes:
        if not p or name == p or name.startswith(p + "/") or name.startswith(p + ":"):
            return True
    return False


def read_prefixes(scopes: Iterable[str]) -> tuple[str, ...] | None:
    """Dataset-name prefixes from ``storage.read:/path`` and ``read:/path`` scopes.

    None when no such scope is present (the token is an identity, not a capability). A path
    with ``..`` or ``.`` segments counts as a read scope that grants nothing, so a malformed
    capability never widens access.
    """
    found: list[str] = []
    any_read = False
    for scope in scopes:
        for head in READ_SCOPES:
            if scope.startswith(head):
                any_read = True
                path = scope[len(head):]
                if not path.startswith("/"):
                    break
                parts = [p for p in path.split("/") if p]
                if any(p in (".", "..") for p in parts):
                    break
                found.append("/".join(parts))
                break
    if not any_read:
        return None
    return tuple(dict.fromkeys(found))


def scope_list(value: object) -> list[str]:
    """A ``scope`` claim (space-separated string, RFC 8693) or ``scp`` claim (list) as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [s for s in value if isinstance(s, str)]
    return []


def user_name(value: object, claim: str, issuer: str, prefix: str = "") -> str:
    """The catalog user name for a claim value; TokenRefused when it cannot be one."""
    if not isinstance(value, str) or not value:
        raise TokenRefused(f"token from {issuer} has no {claim!r} claim to name its user; "
                           "the server's [auth.oidc] user_claim names it")
    name = prefix + value
    if not USER_RE.match(name):
        raise TokenRefused(f"token from {issuer}: its {claim!r} claim is not usable as a user name "
                           "(1-64 letters, digits, '.', '_', '@', '-'); choose another user_claim")
    return name


def group_names(value: object) -> frozenset[str]:
    """Groups from a claim (list of strings, or one space-separated string); unusable ones dropped."""
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, (list, tuple)):
        return frozenset()
    return frozenset(g for g in value[:MAX_GROUPS] if isinstance(g, str) and GROUP_RE.match(g))
