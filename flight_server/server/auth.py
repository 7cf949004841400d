"""Every Flight call's start and end: who is calling (authentication) and its one access-log line.

:class:`CallMiddlewareFactory` is the only Flight middleware. For each call it authenticates the
``authorization`` header with the shared :class:`~arrowroot.flight_server.service.identity.Authenticator`
(when authentication is on) and opens a :class:`~arrowroot.flight_server.service.calllog.CallRecord`;
handlers read the caller with :func:`caller_of` and add what they learn to :func:`record_of`; when
the call ends — after the last batch of a stream, or with the error that stopped it, or refused
at the door for bad credentials — the record writes its one line. Also here: the Handshake that
lets pyarrow's and ADBC's logins through, and the TLS arguments of a Flight server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.flight as fl

from arrowroot.flight_server.core.errors import Unauthenticated, Unavailable
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.service.access import AuthConfigError
from arrowroot.flight_server.service.caller import Caller, new_request_id
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.identity import Authenticator, Login
from arrowroot.flight_server.server.errors import grpc_status_of_raised, to_flight

MIDDLEWARE_KEY = "arrowroot"
SHUTTING_DOWN = ("shutting down: this server takes no new calls; retry (another location of the endpoint, or "
                 "this server once it is back)")
#: a data node's registration: authenticated by the shared key's signature in the action body,
#: not by a user, so it passes an --auth coordinator's door; it may call nothing else
NODE_HEADER = "x-arrowroot-node"

METHODS = {
    fl.FlightMethod.HANDSHAKE: "Handshake", fl.FlightMethod.LIST_FLIGHTS: "ListFlights",
    fl.FlightMethod.GET_FLIGHT_INFO: "GetFlightInfo", fl.FlightMethod.GET_SCHEMA: "GetSchema",
    fl.FlightMethod.DO_GET: "DoGet", fl.FlightMethod.DO_PUT: "DoPut", fl.FlightMethod.DO_ACTION: "DoAction",
    fl.FlightMethod.LIST_ACTIONS: "ListActions", fl.FlightMethod.DO_EXCHANGE: "DoExchange",
}


class CallMiddleware(fl.ServerMiddleware):
    """One call: the authenticated user, the session token to send back, the access-log record."""

    def __init__(self, record: CallRecord, user: str | None, issued: str | None = None, node: bool = False,
                 login: Login | None = None):
        self.record = record
        self.user = user
        self._issued = issued
        self.node = node
        self.login = login          # groups and read scopes of an outside token

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._issued}"} if self._issued else {}

    def call_completed(self, exception: BaseException | None) -> None:
        if exception is not None and self.record.status == "OK":  # not mapped by a door (pyarrow's own)
            self.record.status = grpc_status_of_raised(exception)
        self.record.finish()


class CallMiddlewareFactory(fl.ServerMiddlewareFactory):
    """``sink``: this server's metrics (every record, refused ones too); ``draining``: True while
    the server stops, when new calls are refused with UNAVAILABLE "shutting down"."""

    def __init__(self, door: str, auth: Authenticator | None = None,
                 sink: Callable[[CallRecord], None] | None = None, draining: Callable[[], bool] | None = None):
        self.door = door
        self.auth = auth
        self.sink = sink
        self.draining = draining

    def start_call(self, info: fl.CallInfo, headers: dict[str, list]) -> CallMiddleware:
        record = CallRecord(self.door, METHODS.get(info.method, str(info.method)), request_id=new_request_id(),
                            sink=self.sink)
        if self.draining is not None and self.draining():
            record.status = "UNAVAILABLE"
            record.detail = "shutting down"
            record.finish()
            raise to_flight(Unavailable(SHUTTING_DOWN))
        if self.auth is None or not self.auth.enabled:
            return CallMiddleware(record, None)
        if info.method == fl.FlightMethod.DO_ACTION and headers.get(NODE_HEADER):
            record.door = "node"
            return CallMiddleware(record, None, node=True)
        try:
            login = self.auth.authenticate(headers.get("authorization"))
        except (Unauthenticated, Unavailable) as exc:  # refused at the door: still one line, then the status
            record.status = "UNAUTHENTICATED" if isinstance(exc, Unauthenticated) else "UNAVAILABLE"
            record.detail = str(exc)[:120]
            record.finish()
            raise to_flight(exc) from None
        record.user = login.user
        return CallMiddleware(record, login.user, login.issued, login=login)


def _middleware(context: fl.ServerCallContext | None) -> CallMiddleware | None:
    if context is None:
        return None
    mw = context.get_middleware(MIDDLEWARE_KEY)
    return mw if isinstance(mw, CallMiddleware) else None


def record_of(context: fl.ServerCallContext | None) -> CallRecord:
    """The call's access-log record (a detached one when the server runs without the middleware)."""
    mw = _middleware(context)
    return mw.record if mw is not None else CallRecord("flight", "?")


def is_node_call(context: fl.ServerCallContext | None) -> bool:
    """Whether the call claimed to be a data node's registration (checked by its signature)."""
    mw = _middleware(context)
    return mw is not None and mw.node


def caller_of(context: fl.ServerCallContext | None, door: str = "flight") -> Caller:
    """The caller of a Flight call, as the service layer sees it."""
    mw = _middleware(context)
    if mw is None:
        return Caller(door=door)
    record = mw.record
    if not record.peer and context is not None:
        record.peer = context.peer()
    login = mw.login
    return Caller(user=mw.user, door=door, peer=record.peer, request_id=record.request_id,
                  groups=login.groups if login else frozenset(), scopes=login.scopes if login else None)


class NoOpHandshake(fl.ServerAuthHandler):
    """Lets the Handshake RPC through: the middleware has already authenticated it.

    Without an auth handler pyarrow answers Handshake with UNIMPLEMENTED, and pyarrow's
    ``authenticate_basic_token`` / ADBC's login need the Handshake to return our header.
    """

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


def flight_kwargs(door: str, auth: Authenticator | None, given: dict[str, Any] | None = None,
                  sink: Callable[[CallRecord], None] | None = None,
                  draining: Callable[[], bool] | None = None) -> dict[str, Any]:
    """FlightServerBase arguments: ``given`` plus the call middleware and, with authentication on,
    a handshake that lets logins through."""
    out = dict(given or {})
    factory = CallMiddlewareFactory(door, auth, sink, draining)
    out["middleware"] = {**(out.get("middleware") or {}), MIDDLEWARE_KEY: factory}
    if auth is not None and auth.enabled:
        out.setdefault("auth_handler", NoOpHandshake())
    return out


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


__all__ = ["NODE_HEADER", "is_node_call", "CallMiddleware", "CallMiddlewareFactory", "caller_of", "record_of",
           "flight_kwargs", "tls_kwargs", "NoOpHandshake", "MIDDLEWARE_KEY", "AuthConfigError"]
