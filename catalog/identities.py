"""Users, groups, API keys and read grants, stored in the catalog next to the datasets.

Why here: the catalog file is already the one durable thing a served directory has, so who may
read which dataset travels with it. Only stdlib + duckdb (the catalog's import rule); the Flight
side (``flight_server/auth.py``) reads an immutable :class:`Identities` snapshot, so a call costs
dictionary lookups and never a query or a password hash.

Secrets are never stored:

* passwords: ``hashlib.scrypt`` with a random 16-byte salt; the parameters are stored with the
  hash (``scrypt$n$r$p$salt$hash``) so they can be raised later without breaking old hashes;
* API keys: 256-bit random tokens from ``secrets``, stored as their sha256 (a slow hash buys
  nothing for a token with that much entropy, and a fast one keeps the per-call lookup cheap).

Every write calls ``catalog._changed()``, which bumps ``catalog.generation``; readers rebuild their
snapshot when the generation moves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .errors import Conflict, NotFound
from .store import Catalog
from arrowroot.flight_server.core.errors import InvalidRequest

SCRYPT_N = 2**15          # 32 MiB, ~0.2 s on a 2-core machine: only ever paid at login
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
KEY_PREFIX = "ark_"       # API keys look like ark_<key id>_<secret>; easy to spot in a leaked log
MAX_PASSWORD = 1024

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: groups may also be named as an OIDC issuer names them: a path (``/l200/analysis``) or a URN
GROUP_RE = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$")
PERMISSIONS = ("read", "admin")  # admin: server operations (rescan); its pattern is not used
KINDS = ("user", "group", "public")


# ---------------------------------------------------------------- hashing


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """An scrypt hash with a fresh salt, self-describing so parameters can change later."""
    _check_password(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password.encode("utf-8"), salt, n, r, p)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (constant-time compare; False on any malformed input)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password.encode("utf-8"), base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError, UnicodeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH: str | None = None


def burn_password_time(password: str) -> None:
    """Spend the time of one verification, so an unknown user answers as slowly as a wrong password."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password("x")
    verify_password(password[:MAX_PASSWORD], _DUMMY_HASH)


def _scrypt(data: bytes, salt: bytes, n: int, r: int, p: int, dklen: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=dklen)


def token_hash(token: str) -> str:
    """How API keys are stored and looked up (hex sha256)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise InvalidRequest("password: must not be empty")
    if len(password) > MAX_PASSWORD:
        raise InvalidRequest(f"password: at most {MAX_PASSWORD} characters")


def _check_name(what: str, name: str) -> str:
    if what == "group":
        if not isinstance(name, str) or not GROUP_RE.match(name):
            raise InvalidRequest(f"group name {name!r}: use 1-128 letters, digits, '.', '_', '@', ':', '/', '-' "
                                 "(starting with a letter, digit or '/': '/l200/analysis' as a token names it)")
        return name
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(f"{what} name {name!r}: use 1-64 letters, digits, '.', '_', '@', '-' "
                         "(starting with a letter or digit)")
    return name


# ---------------------------------------------------------------- snapshot for the server


@dataclass(frozen=True)
class UserRow:
    name: str
    password_hash: str
    password_at: float


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    user: str
    expires_at: float | None
    revoked: bool


@dataclass(frozen=True)
class Grant:
    pattern: str
    kind: str          # 'user' | 'group' | 'public'
    principal: str     # '' for public
    permission: str = "read"

    @property
    def to(self) -> str:
        return "public" if self.kind == "public" else f"{self.kind}:{self.principal}"


@dataclass(frozen=True)
class Identities:
    """Everything the server needs to authenticate and authorise, read once per catalog generation."""

    generation: int
    users: Mapping[str, UserRow] = field(default_factory=dict)
    groups_of: Mapping[str, frozenset[str]] = field(default_factory=dict)
    keys: Mapping[str, KeyRow] = field(default_factory=dict)     # token hash -> key
    grants: tuple[Grant, ...] = ()

    @property
    def configured(self) -> bool:
        """True when anyone has been set up: then the server must not serve everything to everybody."""
        return bool(self.users or self.grants)

    @property
    def has_public(self) -> bool:
        return any(g.kind == "public" for g in self.grants)

    def is_admin(self, user: str | None, token_groups: frozenset[str] = frozenset()) -> bool:
        """True if ``user`` (never anonymous, never via public) holds an admin grant; ``token_groups``:
        groups an outside token (OIDC, JupyterHub) says the user is in, besides the catalog's."""
        if not user:
            return False
        groups = self.groups_of.get(user, frozenset()) | token_groups
        return any(g.permission == "admin" and ((g.kind == "user" and g.principal == user)
                                                or (g.kind == "group" and g.principal in groups))
                   for g in self.grants)

    def patterns(self, user: str | None, token_groups: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """Read patterns for ``user`` (None = anonymous: public grants only), a member of the catalog's
        groups and of ``token_groups`` (from an outside token)."""
        groups = (self.groups_of.get(user, frozenset()) | token_groups) if user else frozenset()
        return tuple(
            g.pattern for g in self.grants
            if g.permission == "read" and (
                g.kind == "public"
                or (user is not None and g.kind == "user" and g.principal == user)
                or (user is not None and g.kind == "group" and g.principal in groups))
        )


def snapshot(catalog: Catalog) -> Identities:
    """Read all identities at the catalog's current generation."""
    generation = catalog.generation
    cur = catalog.cursor()
    try:
        cur.execute("SELECT 1 FROM users LIMIT 0")
    except duckdb.CatalogException:  # an old catalog opened read-only: nobody configured
        return Identities(generation)
    users = {r[0]: UserRow(r[0], r[1], r[2] or 0.0)
             for r in cur.execute("SELECT name, password_hash, password_at FROM users").fetchall()}
    groups_of: dict[str, set[str]] = {}
    for g, u in cur.execute("SELECT group_name, user_name FROM group_members").fetchall():
        groups_of.setdefault(u, set()).add(g)
    keys = {r[0]: KeyRow(r[1], r[2], r[3], r[4] is not None) for r in cur.execute(
        "SELECT token_hash, key_id, user_name, expires_at, revoked_at FROM api_keys").fetchall()}
    grants = tuple(Grant(*r) for r in cur.execute(
        "SELECT pattern, kind, principal, permission FROM grants ORDER BY created_at, pattern").fetchall())
    return Identities(generation, users, {u: frozenset(g) for u, g in groups_of.items()}, keys, grants)


# ---------------------------------------------------------------- writes


class _Tx:
    """One write transaction under the catalog's write lock; invalidates caches on commit."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def __enter__(self):
        self.catalog._write_lock.acquire()
        self.cur = self.catalog.cursor()
        self.cur.execute("BEGIN TRANSACTION")
        return self.cur

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.cur.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.catalog._write_lock.release()
        if exc_type is None:
            self.catalog._changed()


def _exists(cur: Any, sql: str, params: list) -> bool:
    return cur.execute(sql, params).fetchone() is not None


def _require_user(cur: Any, name: str) -> None:
    if not _exists(cur, "SELECT 1 FROM users WHERE name = ?", [name]):
        raise NotFound(f"no user named {name!r}")


def add_user(catalog: Catalog, name: str, password: str, groups: Iterable[str] = ()) -> None:
    """Create a user (and join the given groups, creating them if needed)."""
    _check_name("user", name)
    hashed = hash_password(password)  # before the lock: it takes a while
    now = time.time()
    with _Tx(catalog) as cur:
        if _exists(cur, "SELECT 1 FROM users WHERE name = ?", [name]):
            raise Conflict(f"user {name!r} exists; use `arrowroot users passwd` to change the password")
        cur.execute("INSERT INTO users VALUES (?, ?, ?, ?)", [name, hashed, now, now])
        for g in groups:
            _add_member(cur, _check_name("group", g), name, now)


def set_password(catalog: Catalog, name: str, password: str) -> None:
    """Change a password; bearer tokens issued before the change stop working."""
    hashed = hash_password(password)
    with _Tx(catalog) as cur:
        _require_user(cur, name)
        cur.execute("UPDATE users SET password_hash = ?, password_at = ? WHERE name = ?", [hashed, time.time(), name])


def remove_user(catalog: Catalog, name: str) -> None:
    """Delete a user with their memberships, API keys and personal grants."""
    with _Tx(catalog) as cur:
        _require_user(cur, name)
        cur.execute("DELETE FROM users WHERE name = ?", [name])
        cur.execute("DELETE FROM group_members WHERE user_name = ?", [name])
        cur.execute("DELETE FROM api_keys WHERE user_name = ?", [name])
        cur.execute("DELETE FROM grants WHERE kind = 'user' AND principal = ?", [name])


def list_users(catalog: Catalog) -> list[dict[str, Any]]:
    """Users with their groups and number of valid API keys (never any secret)."""
    now = time.time()
    cur = catalog.cursor()
    groups: dict[str, list[str]] = {}
    for g, u in cur.execute("SELECT group_name, user_name FROM group_members ORDER BY group_name").fetchall():
        groups.setdefault(u, []).append(g)
    keys = dict(cur.execute(
        "SELECT user_name, count(*) FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
        " GROUP BY user_name", [now]).fetchall())
    return [{"name": n, "groups": groups.get(n, []), "keys": int(keys.get(n, 0)), "created_at": c}
            for n, c in cur.execute("SELECT name, created_at FROM users ORDER BY name").fetchall()]


def _add_member(cur: Any, group: str, user: str, now: float) -> None:
    if not _exists(cur, "SELECT 1 FROM groups WHERE name = ?", [group]):
        cur.execute("INSERT INTO groups VALUES (?, ?)", [group, now])
    if not _exists(cur, "SELECT 1 FROM group_members WHERE group_name = ? AND user_name = ?", [group, user]):
        cur.execute("INSERT INTO group_members VALUES (?, ?)", [group, user])


def add_group(catalog: Catalog, group: str, members: Iterable[str] = ()) -> None:
    """Create a group if needed and add existing users to it."""
    _check_name("group", group)
    now = time.time()
    with _Tx(catalog) as cur:
        if not _exists(cur, "SELECT 1 FROM groups WHERE name = ?", [group]):
            cur.execute("INSERT INTO groups VALUES (?, ?)", [group, now])
        for u in members:
            _require_user(cur, u)
            _add_member(cur, group, u, now)


def remove_group(catalog: Catalog, group: str, members: Iterable[str] = ()) -> None:
    """Remove members from a group, or (no members given) the group with its grants."""
    members = list(members)
    with _Tx(catalog) as cur:
        if not _exists(cur, "SELECT 1 FROM groups WHERE name = ?", [group]):
            raise NotFound(f"no group named {group!r}")
        if members:
            for u in members:
                cur.execute("DELETE FROM group_members WHERE group_name = ? AND user_name = ?", [group, u])
            return
        cur.execute("DELETE FROM groups WHERE name = ?", [group])
        cur.execute("DELETE FROM group_members WHERE group_name = ?", [group])
        cur.execute("DELETE FROM grants WHERE kind = 'group' AND principal = ?", [group])


def group_members(catalog: Catalog, group: str | None = None) -> dict[str, list[str]]:
    """{group: [users]} for one group or all."""
    cur = catalog.cursor()
    if group is not None and not _exists(cur, "SELECT 1 FROM groups WHERE name = ?", [group]):
        raise NotFound(f"no group named {group!r}")
    out: dict[str, list[str]] = {}
    for (g,) in cur.execute("SELECT name FROM groups ORDER BY name").fetchall():
        if group is None or g == group:
            out[g] = []
    for g, u in cur.execute("SELECT group_name, user_name FROM group_members ORDER BY user_name").fetchall():
        if g in out:
            out[g].append(u)
    return out


def create_key(catalog: Catalog, user: str, label: str = "", expires_at: float | None = None) -> tuple[str, str]:
    """A new API key for ``user``: returns (key id, token). The token is shown once, then only its hash exists."""
    key_id = secrets.token_hex(4)
    token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with _Tx(catalog) as cur:
        _require_user(cur, user)
        cur.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    [key_id, user, token_hash(token), label or "", time.time(), expires_at])
    return key_id, token


def revoke_key(catalog: Catalog, key_id: str) -> None:
    """Revoke an API key by its id (the row stays, marked revoked, for the record)."""
    with _Tx(catalog) as cur:
        if not _exists(cur, "SELECT 1 FROM api_keys WHERE key_id = ? AND revoked_at IS NULL", [key_id]):
            raise NotFound(f"no valid API key with id {key_id!r}; `arrowroot keys list` shows them")
        cur.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", [time.time(), key_id])


def list_keys(catalog: Catalog, user: str | None = None) -> list[dict[str, Any]]:
    """API keys (id, user, label, dates, state); never the token or its hash."""
    now = time.time()
    rows = catalog.cursor().execute(
        "SELECT key_id, user_name, label, created_at, expires_at, revoked_at FROM api_keys"
        " WHERE ? IS NULL OR user_name = ? ORDER BY created_at", [user, user]).fetchall()
    return [{"key_id": k, "user": u, "label": lab, "created_at": c, "expires_at": e,
             "state": "revoked" if r is not None else "expired" if e is not None and e <= now else "valid"}
            for k, u, lab, c, e, r in rows]


def parse_principal(text: str) -> tuple[str, str]:
    """'user:NAME' | 'group:NAME' | 'public' → (kind, name)."""
    if text == "public":
        return "public", ""
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("user", "group"):
        raise InvalidRequest(f"grantee {text!r}: use user:NAME, group:NAME or public")
    return kind, _check_name(kind, name)


def _check_pattern(pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 1024:
        raise InvalidRequest("pattern: a non-empty shell glob on dataset names, e.g. 'cms/*' or 'lab/scan.h5:*'")
    return pattern


def grant(catalog: Catalog, pattern: str, to: str, permission: str = "read") -> bool:
    """Let ``to`` read datasets matching ``pattern``; False if it was already granted."""
    _check_pattern(pattern)
    kind, name = parse_principal(to)
    if permission not in PERMISSIONS:
        raise InvalidRequest(f"permission {permission!r}: one of {', '.join(PERMISSIONS)}")
    if permission == "admin" and to == "public":
        raise InvalidRequest("the admin permission is for users and groups, not public")
    with _Tx(catalog) as cur:
        if kind == "user":
            _require_user(cur, name)
        elif kind == "group" and not _exists(cur, "SELECT 1 FROM groups WHERE name = ?", [name]):
            raise NotFound(f"no group named {name!r}; create it with `arrowroot groups add`")
        if _exists(cur, "SELECT 1 FROM grants WHERE pattern = ? AND kind = ? AND principal = ? AND permission = ?",
                   [pattern, kind, name, permission]):
            return False
        cur.execute("INSERT INTO grants VALUES (?, ?, ?, ?, ?)", [pattern, kind, name, permission, time.time()])
    return True


def revoke(catalog: Catalog, pattern: str, to: str, permission: str = "read") -> None:
    """Remove exactly one grant (same pattern, same grantee)."""
    kind, name = parse_principal(to)
    with _Tx(catalog) as cur:
        if not _exists(cur, "SELECT 1 FROM grants WHERE pattern = ? AND kind = ? AND principal = ? AND permission = ?",
                       [pattern, kind, name, permission]):
            raise NotFound(f"no {permission} grant of {pattern!r} to {to}; `arrowroot grants` lists them")
        cur.execute("DELETE FROM grants WHERE pattern = ? AND kind = ? AND principal = ? AND permission = ?",
                    [pattern, kind, name, permission])


def list_grants(catalog: Catalog) -> list[Grant]:
    return list(snapshot(catalog).grants)
