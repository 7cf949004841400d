"""Credentials → a user, for every door (Flight and Flight SQL headers, HTTP headers and cookies).

* ``Basic base64(user:password)``: the password is checked with scrypt (the only place a password
  is hashed; at most two at a time, so a burst of logins cannot exhaust memory); Flight answers a
  Basic login with a session token in its ``authorization`` response header.
* ``Bearer <token>``: a session token issued here, or an API key (``arrowroot keys create``): a
  dict lookup by sha256, no hashing of passwords, no query.
* ``Bearer <token>`` from outside: an OpenID Connect / WLCG JWT or a JupyterHub token, verified by
  the issuer's keys or the hub (``sso.py``); the token's groups and read scopes come with the user.
* nothing: anonymous, allowed only while a ``public`` grant exists (or authentication is off).

Session tokens are random, kept in memory as their sha256, expire after ``Settings.token_ttl``
and die with the process, when the password changes or when the user is removed. API keys are
stored hashed in the catalog, may expire and can be revoked. Failed logins are throttled
per (name, client address) (``logins.py``). Errors are :class:`~arrowroot.flight_server.core.errors.Unauthenticated`; each
door maps them through the one error table.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from arrowroot.catalog import identities
from arrowroot.flight_server.core.errors import Unauthenticated, Unavailable
from arrowroot.flight_server.service.access import Access
from arrowroot.flight_server.service.claims import Identity
from arrowroot.flight_server.service.logins import UNKNOWN, LockedOut, LoginLimiter
from arrowroot.flight_server.service.sso import External

log = logging.getLogger("arrowroot.auth")

MAX_AUTH_HEADER = 4096       # bytes; gRPC itself refuses metadata over 8 KiB before we see it
MAX_SESSIONS = 100_000
HOW_TO = ("send 'authorization: Basic <base64 user:password>' (pyarrow: client.authenticate_basic_token; "
          "ADBC: username/password) or 'authorization: Bearer <token or API key>'")


@dataclass(frozen=True)
class _Session:
    user: str
    issued_at: float
    expires_at: float
    identity: Identity | None = None   # a web login through an outside issuer (web/sso.py)
    external: str | None = None        # ... whose token is checked again on use (hub revocation)


@dataclass(frozen=True)
class Login:
    """The outcome of authenticating one call: the user (None = anonymous) and, for a Basic
    login on Flight, the session token to send back; for an outside token, the groups it names
    and the dataset-name prefixes its read scopes allow (None: no scope restriction)."""

    user: str | None
    issued: str | None = None
    groups: frozenset[str] = frozenset()
    scopes: tuple[str, ...] | None = None

    @classmethod
    def of(cls, identity: Identity) -> "Login":
        return cls(identity.user, None, identity.groups, identity.prefixes)


class Authenticator:
    """Checks credentials against one catalog's users, API keys and this process's sessions."""

    def __init__(self, access: Access, token_ttl: float, external: External | None = None):
        self.access = access
        self.token_ttl = float(token_ttl)
        #: outside identities: OIDC issuers, a JupyterHub ([auth] in arrowroot.toml; sso.py)
        self.external = external
        self._lock = threading.Lock()
        self._login_slots = threading.BoundedSemaphore(2)
        self.logins = LoginLimiter()
        self._sessions: dict[str, _Session] = {}

    @property
    def enabled(self) -> bool:
        return self.access.enabled

    def authenticate(self, values: Sequence[str | bytes] | None, issue: bool = True,
                     address: str = UNKNOWN) -> Login:
        """The caller of one call from its ``authorization`` header values (several identical
        values are one credential: some clients repeat the header the server sent them).
        ``issue``: answer a Basic login with a session token (Flight's login handshake);
        ``address``: the client's, when the door knows it (failed logins are throttled by it)."""
        if not self.enabled:
            return Login(None)
        distinct = {v.decode("latin-1") if isinstance(v, bytes) else v for v in values or ()}
        if not distinct:
            if self.access.identities().has_public:
                return Login(None)
            raise Unauthenticated(f"authentication required: {HOW_TO}")
        if len(distinct) != 1:
            raise Unauthenticated("send one authorization header, not several different ones")
        value = distinct.pop()
        if not value.isascii():
            raise Unauthenticated("authorization header: not ASCII")
        if len(value) > MAX_AUTH_HEADER:
            raise Unauthenticated(f"authorization header: {len(value)} bytes, at most {MAX_AUTH_HEADER}")
        scheme, _, cred = value.strip().partition(" ")
        scheme = scheme.lower()
        cred = cred.strip()
        if scheme == "bearer":
            return self.bearer_login(cred)
        if scheme == "basic":
            user = self._basic(cred, address)
            return Login(user, self.issue_token(user) if issue else None)
        raise Unauthenticated(f"authorization header: unsupported scheme {scheme[:20]!r}; {HOW_TO}")

    def session_user(self, token: str | None) -> str | None:
        """The user of a session cookie's token; anonymous when there is none and that is allowed."""
        return self.session_login(token).user

    def session_login(self, token: str | None) -> Login:
        """:meth:`session_user` with the groups and scopes of a login through an outside issuer."""
        if not self.enabled:
            return Login(None)
        if not token:
            if self.access.identities().has_public:
                return Login(None)
            raise Unauthenticated(f"authentication required: {HOW_TO}")
        return self.bearer_login(token)

    def login(self, name: str, password: str, address: str = UNKNOWN) -> str:
        """A session token for a user name and password (the web login form, from ``address``)."""
        raw = base64.b64encode(f"{name}:{password}".encode()).decode()
        return self.issue_token(self._basic(raw, address))

    def bearer(self, token: str) -> str:
        """The user of a session token, an API key or an outside token."""
        return self.bearer_login(token).user or ""

    def bearer_login(self, token: str) -> Login:
        """A session token, an API key or (sso.py) a token of a trusted outside issuer."""
        if not token:
            raise Unauthenticated(f"authorization header: Bearer without a token; {HOW_TO}")
        ident = self.access.identities()
        digest = identities.token_hash(token)
        now = time.time()
        session = self._sessions.get(digest)
        if session is not None:
            if session.expires_at <= now:
                self._sessions.pop(digest, None)
                raise Unauthenticated("token expired; log in again (Basic credentials return a new token)")
            if session.external is not None:  # a hub login: the hub's token must still be good
                return Login.of(self.verify_external(session.external))
            if session.identity is not None:
                return Login.of(session.identity)
            user = ident.users.get(session.user)
            if user is None or user.password_at > session.issued_at:
                self._sessions.pop(digest, None)
                raise Unauthenticated("token revoked (user removed or password changed); log in again")
            return Login(session.user)
        key = ident.keys.get(digest)
        if key is not None:
            if key.revoked or key.user not in ident.users:
                raise Unauthenticated(f"API key {key.key_id} has been revoked")
            if key.expires_at is not None and key.expires_at <= now:
                raise Unauthenticated(f"API key {key.key_id} has expired; create a new one")
            return Login(key.user)
        if self.external is not None:
            return Login.of(self.verify_external(token))
        raise Unauthenticated("unknown or expired token; log in again "
                              "(session tokens do not survive a server restart)")

    def verify_external(self, token: str) -> Identity:
        """The identity of a token from an OIDC issuer or the JupyterHub: TokenRefused
        (Unauthenticated) when it is not good, Unavailable when the issuer cannot be asked."""
        if self.external is None:
            raise Unauthenticated("this server trusts no outside issuer")
        try:
            return self.external.verify(token)
        except Unavailable as exc:
            log.warning("cannot check a bearer token: %s", exc)
            raise Unavailable(f"cannot check the token now: {exc}") from None

    def _basic(self, cred: str, address: str = UNKNOWN) -> str:
        try:
            raw = base64.b64decode(cred + "=" * (-len(cred) % 4), validate=True)
            text = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise Unauthenticated("authorization header: Basic credentials are not base64 of UTF-8 "
                                  "'user:password'") from None
        name, sep, password = text.partition(":")
        if not sep or not name:
            raise Unauthenticated("authorization header: Basic credentials must be 'user:password'")
        try:
            self.logins.check(name, address)
        except LockedOut as exc:
            raise Unauthenticated(str(exc)) from None
        user = self.access.identities().users.get(name)
        with self._login_slots:
            if user is None or len(password) > identities.MAX_PASSWORD:
                identities.burn_password_time(password)
                ok = False
            else:
                ok = identities.verify_password(password, user.password_hash)
        if not ok:
            self.logins.failed(name, address)
            log.warning("failed login for %r from %s", name[:64], address or "an unknown address")
            raise Unauthenticated("wrong user name or password")
        self.logins.succeeded(name, address)
        return name

    def issue_token(self, user: str, identity: Identity | None = None, external: str | None = None) -> str:
        """A new session token for ``user`` (kept in memory as its sha256); ``identity``/``external``:
        a web login through an outside issuer (the external token is checked again on each use)."""
        token = "ars_" + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
                while len(self._sessions) >= MAX_SESSIONS:  # still full: drop the oldest
                    self._sessions.pop(next(iter(self._sessions)))
            self._sessions[identities.token_hash(token)] = _Session(user, now, now + self.token_ttl, identity, external)
        return token

    def revoke_token(self, token: str) -> bool:
        """Forget one session token (the web view's logout); True if it was known."""
        with self._lock:
            return self._sessions.pop(identities.token_hash(token), None) is not None


__all__ = ["Authenticator", "Login", "HOW_TO", "MAX_AUTH_HEADER"]
