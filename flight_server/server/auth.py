"""Authentication, per-dataset read grants and TLS for the Flight server.

The rule "what you cannot read does not exist" lives in one place, :class:`Access`: the Flight
hooks ``dataset`` / ``visible_datasets`` / ``principal`` of ``server.flight.ArrowrootServer`` and the
Flight SQL front end all ask it, so a dataset hidden from ``list_flights`` is hidden everywhere,
and the NOT_FOUND message for it is the one a truly missing dataset gets (its closest-name hints
are computed over the caller's visible datasets only).

How a call is authenticated (:class:`AuthMiddlewareFactory`, one ``start_call`` per call):

* ``authorization: Basic base64(user:password)`` on any call, including the Handshake that
  pyarrow's ``authenticate_basic_token`` and ADBC's ``username``/``password`` send (padded or
  unpadded base64): the password is checked with scrypt (the only place a password is hashed;
  at most two at a time, so a burst of logins cannot exhaust memory) and a bearer token is
  returned in the ``authorization`` response header.
* ``authorization: Bearer <token>``: a session token issued above, or an API key created with
  ``arrowroot keys create``. A dict lookup by sha256; no hashing of passwords, no query.
* no header: anonymous, allowed only while a ``public`` grant exists (or auth is off).

Session tokens are random (``secrets``), kept in memory only, keyed by their sha256, expire after
``Settings.token_ttl`` (12 h) and die with the process, when the password changes or when the
user is removed. API keys are stored hashed in the catalog, may expire and can be revoked.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.flight as fl

from arrowroot.catalog import identities
from arrowroot.catalog.errors import NotFound, not_found
from arrowroot.catalog.models import DatasetRecord
from arrowroot.catalog.store import Catalog

from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.request import dataset_name
from arrowroot.flight_server.workspace.names import HOME
from arrowroot.flight_server.lang import glob
from arrowroot.flight_server.server.logins import LockedOut, LoginLimiter

log = logging.getLogger("arrowroot.auth")

MIDDLEWARE_KEY = "arrowroot.auth"
MAX_AUTH_HEADER = 4096       # bytes; gRPC itself refuses metadata over 8 KiB before we see it
MAX_SESSIONS = 100_000
HOW_TO = ("send 'authorization: Basic <base64 user:password>' (pyarrow: client.authenticate_basic_token; "
          "ADBC: username/password) or 'authorization: Bearer <token or API key>'")


class AuthConfigError(InvalidRequest):
    """The server cannot start with this authentication setup; the message says what to do."""


def _unauthenticated(message: str) -> fl.FlightUnauthenticatedError:
    return fl.FlightUnauthenticatedError(message)


@dataclass(frozen=True)
class _Session:
    user: str
    issued_at: float
    expires_at: float


class AuthMiddleware(fl.ServerMiddleware):
    """The authenticated caller of one call (``user`` None = anonymous)."""

    __slots__ = ("user", "_issued")

    def __init__(self, user: str | None, issued: str | None = None):
        self.user = user
        self._issued = issued

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._issued}"} if self._issued else {}


class AuthMiddlewareFactory(fl.ServerMiddlewareFactory):
    def __init__(self, access: "Access"):
        self.access = access

    def start_call(self, info: fl.CallInfo, headers: dict[str, list]) -> AuthMiddleware | None:
        return self.access.authenticate(headers)


class _NoOpHandshake(fl.ServerAuthHandler):
    """Lets the Handshake RPC through: the middleware has already authenticated it.

    Without an auth handler pyarrow answers Handshake with UNIMPLEMENTED, and pyarrow's
    ``authenticate_basic_token`` / ADBC's login need the Handshake to return our header.
    """

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Access:
    """Who is calling and what they may read, for one server."""

    def __init__(self, catalog: Catalog, settings: Settings):
        self.catalog = catalog
        self.token_ttl = float(settings.token_ttl)
        self._lock = threading.Lock()
        self._login_slots = threading.BoundedSemaphore(2)
        self.logins = LoginLimiter()
        self._sessions: dict[str, _Session] = {}
        self._ident = identities.snapshot(catalog)
        self._visible: dict[str | None, frozenset[str]] = {}
        self._visible_generation = -1
        mode = settings.auth
        configured = self._ident.configured
        if mode is True and not configured:
            raise AuthConfigError(
                f"--auth: the catalog {catalog.path} has no users and no public grant, so nobody could "
                "read anything. Add a user (`arrowroot users add DIR NAME`) and a grant "
                "(`arrowroot grant DIR 'PATTERN' --to user:NAME`), or publish data "
                "(`arrowroot grant DIR 'PATTERN' --to public`).")
        self.enabled = configured if mode is None else bool(mode)
        if mode is False and configured:
            log.warning("authentication is off (--no-auth) although %s has users or grants: "
                        "every dataset is readable by everyone", catalog.path)
        if self.enabled:
            if not self._ident.grants:
                log.warning("authentication is on but there are no grants: users can log in and see no dataset")
            if not settings.tls_cert and not _is_loopback(settings.host):
                log.warning("authentication is on but TLS is off on %s: passwords and tokens cross the "
                            "network in clear text; use --tls-cert/--tls-key", settings.host)

    # ------------------------------------------------------------ Flight wiring

    def flight_kwargs(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """FlightServerBase arguments ``given`` plus the auth middleware (merged with any other
        middleware) and a handshake that lets logins through."""
        out = dict(given or {})
        if self.enabled:
            out["middleware"] = {**(out.get("middleware") or {}), MIDDLEWARE_KEY: AuthMiddlewareFactory(self)}
            out.setdefault("auth_handler", _NoOpHandshake())
        return out

    # ------------------------------------------------------------ identities

    def identities(self) -> identities.Identities:
        """The identity snapshot of the catalog's current generation (rebuilt after any write)."""
        ident = self._ident
        if ident.generation != self.catalog.generation:
            with self._lock:
                if self._ident.generation != self.catalog.generation:
                    self._ident = identities.snapshot(self.catalog)
                ident = self._ident
        return ident

    # ------------------------------------------------------------ authentication

    def authenticate(self, headers: dict[str, list]) -> AuthMiddleware | None:
        """The caller of one call, from its headers; FlightUnauthenticatedError otherwise."""
        if not self.enabled:
            return None
        values = headers.get("authorization")
        if not values:
            if self.identities().has_public:
                return AuthMiddleware(None)
            raise _unauthenticated(f"authentication required: {HOW_TO}")
        if len(values) != 1:
            raise _unauthenticated("send one authorization header, not several")
        value = values[0]
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                raise _unauthenticated("authorization header: not ASCII") from None
        if len(value) > MAX_AUTH_HEADER:
            raise _unauthenticated(f"authorization header: {len(value)} bytes, at most {MAX_AUTH_HEADER}")
        scheme, _, cred = value.strip().partition(" ")
        scheme = scheme.lower()
        cred = cred.strip()
        if scheme == "bearer":
            return AuthMiddleware(self._bearer(cred))
        if scheme == "basic":
            user = self._basic(cred)
            return AuthMiddleware(user, self.issue_token(user))
        raise _unauthenticated(f"authorization header: unsupported scheme {scheme[:20]!r}; {HOW_TO}")

    def http_user(self, authorization: str | None, session: str | None = None) -> str | None:
        """The caller of one HTTP request (web/): an ``Authorization`` header value (Bearer token or
        API key, Basic) or a session-cookie token; None = anonymous or auth off. The same rules as
        ``authenticate`` (FlightUnauthenticatedError otherwise), but Basic issues no token."""
        if not self.enabled:
            return None
        if not authorization and not session:
            if self.identities().has_public:
                return None
            raise _unauthenticated(f"authentication required: {HOW_TO}")
        if not authorization:
            return self._bearer(session or "")
        if len(authorization) > MAX_AUTH_HEADER:
            raise _unauthenticated(f"authorization header: {len(authorization)} bytes, at most {MAX_AUTH_HEADER}")
        scheme, _, cred = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self._bearer(cred.strip())
        if scheme == "basic":
            return self._basic(cred.strip())
        raise _unauthenticated(f"authorization header: unsupported scheme {scheme[:20]!r}; {HOW_TO}")

    def login(self, name: str, password: str) -> str:
        """A session token for a user name and password (the web login form)."""
        raw = base64.b64encode(f"{name}:{password}".encode()).decode()
        return self.issue_token(self._basic(raw))

    def _bearer(self, token: str) -> str:
        if not token:
            raise _unauthenticated(f"authorization header: Bearer without a token; {HOW_TO}")
        ident = self.identities()
        digest = identities.token_hash(token)
        now = time.time()
        session = self._sessions.get(digest)
        if session is not None:
            if session.expires_at <= now:
                self._sessions.pop(digest, None)
                raise _unauthenticated("token expired; log in again (Basic credentials return a new token)")
            user = ident.users.get(session.user)
            if user is None or user.password_at > session.issued_at:
                self._sessions.pop(digest, None)
                raise _unauthenticated("token revoked (user removed or password changed); log in again")
            return session.user
        key = ident.keys.get(digest)
        if key is not None:
            if key.revoked or key.user not in ident.users:
                raise _unauthenticated(f"API key {key.key_id} has been revoked")
            if key.expires_at is not None and key.expires_at <= now:
                raise _unauthenticated(f"API key {key.key_id} has expired; create a new one")
            return key.user
        raise _unauthenticated("unknown or expired token; log in again "
                               "(session tokens do not survive a server restart)")

    def _basic(self, cred: str) -> str:
        try:
            raw = base64.b64decode(cred + "=" * (-len(cred) % 4), validate=True)
            text = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise _unauthenticated("authorization header: Basic credentials are not base64 of UTF-8 "
                                   "'user:password'") from None
        name, sep, password = text.partition(":")
        if not sep or not name:
            raise _unauthenticated("authorization header: Basic credentials must be 'user:password'")
        try:
            self.logins.check(name)
        except LockedOut as exc:
            raise _unauthenticated(str(exc)) from None
        user = self.identities().users.get(name)
        with self._login_slots:
            if user is None or len(password) > identities.MAX_PASSWORD:
                identities.burn_password_time(password)
                ok = False
            else:
                ok = identities.verify_password(password, user.password_hash)
        if not ok:
            self.logins.failed(name)
            log.warning("failed login for %r", name[:64])
            raise _unauthenticated("wrong user name or password")
        self.logins.succeeded(name)
        return name

    def issue_token(self, user: str) -> str:
        """A new session token for ``user`` (kept in memory as its sha256)."""
        token = "ars_" + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
                while len(self._sessions) >= MAX_SESSIONS:  # still full: drop the oldest
                    self._sessions.pop(next(iter(self._sessions)))
            self._sessions[identities.token_hash(token)] = _Session(user, now, now + self.token_ttl)
        return token

    def revoke_token(self, token: str) -> bool:
        """Forget one session token (the web view's logout); True if it was known."""
        with self._lock:
            return self._sessions.pop(identities.token_hash(token), None) is not None

    # ------------------------------------------------------------ authorization

    def user(self, context: fl.ServerCallContext | None) -> str | None:
        """The caller's user name (None: anonymous, or auth off)."""
        if context is None or not self.enabled:
            return None
        mw = context.get_middleware(MIDDLEWARE_KEY)
        return mw.user if mw is not None else None

    def principal(self, context: fl.ServerCallContext | None) -> str:
        """What tickets are bound to: the user name, '' for anonymous callers."""
        return self.user(context) or ""

    def is_admin(self, context: fl.ServerCallContext | None) -> bool:
        """True if the caller holds the admin permission (always False for anonymous callers)."""
        return self.identities().is_admin(self.user(context))

    def visible_names(self, user: str | None) -> frozenset[str] | None:
        """Names of the datasets ``user`` may read; None means all (auth off)."""
        if not self.enabled:
            return None
        generation = self.catalog.generation
        if self._visible_generation != generation:
            with self._lock:
                if self._visible_generation != generation:
                    self._visible = {}
                    self._visible_generation = generation
        found = self._visible.get(user)
        if found is None:
            patterns = self.identities().patterns(user)
            # workspace datasets (home/<user>/...): the owner's own, and others' only through a
            # grant whose pattern itself starts with 'home/' (a '*' grant publishes no one's home)
            home = f"{HOME}/{user}/" if user else None
            globs = [glob.Glob(p) for p in patterns]  # admin-written: no length limit; linear matching
            home_globs = [g for g in globs if g.pattern.startswith(HOME + "/")]
            names_: set[str] = set()
            for d in self.catalog.datasets():
                if d.origin == "workspace" and d.name.startswith(HOME + "/"):
                    if (home and d.name.startswith(home)) or any(g.match(d.name) for g in home_globs):
                        names_.add(d.name)
                elif any(g.match(d.name) for g in globs):
                    names_.add(d.name)
            found = frozenset(names_)
            with self._lock:
                if self._visible_generation == generation:
                    self._visible[user] = found
        return found

    def could_read(self, name: str, context: fl.ServerCallContext | None) -> bool:
        """Whether a grant of the caller covers ``name`` (so telling them about it reveals nothing)."""
        if not self.enabled:
            return True
        patterns = self.identities().patterns(self.user(context))
        return any(glob.Glob(p).match(name[:4096]) for p in patterns)

    def visible_datasets(self, context: fl.ServerCallContext | None) -> list[DatasetRecord]:
        """The datasets the caller may read: the single rule, for Flight and Flight SQL alike."""
        names = self.visible_names(self.user(context))
        datasets = self.catalog.datasets()
        return datasets if names is None else [d for d in datasets if d.name in names]

    def dataset(self, name: str, context: fl.ServerCallContext | None) -> DatasetRecord:
        """The dataset if the caller may read it; otherwise the NotFound a missing dataset gets.
        Names are tried as given, then in the catalog's spelling (``dataset_name``)."""
        try:
            return self._dataset(name, context)
        except NotFound:
            alias = dataset_name(name)
            if alias == name:
                raise
            return self._dataset(alias, context)

    def _dataset(self, name: str, context: fl.ServerCallContext | None) -> DatasetRecord:
        names = self.visible_names(self.user(context))
        if names is None:
            return self.catalog.dataset(name)
        if name in names:
            try:
                return self.catalog.dataset(name)
            except NotFound:
                pass  # removed meanwhile: answer with the caller's names, never the whole catalog's
        raise not_found("dataset", name, sorted(names))


# ---------------------------------------------------------------- TLS


def tls_kwargs(settings: Settings) -> dict[str, Any]:
    """FlightServerBase TLS arguments from the settings' PEM files (empty without TLS)."""
    cert = settings.tls_cert
    key = settings.tls_key
    client_ca = settings.tls_client_ca
    if not cert and not key and not client_ca:
        return {}
    if not cert or not key:
        raise AuthConfigError("TLS needs both --tls-cert and --tls-key (PEM files)")
    out: dict[str, Any] = {"tls_certificates": [fl.CertKeyPair(_read_pem(cert, "--tls-cert"),
                                                                _read_pem(key, "--tls-key"))]}
    if client_ca:
        out["verify_client"] = True
        out["root_certificates"] = _read_pem(client_ca, "--tls-client-ca")
    return out


def _read_pem(path: str | Path, option: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"{option} {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise AuthConfigError(f"{option} {path}: not a PEM file")
    return data
