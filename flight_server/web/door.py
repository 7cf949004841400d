"""What every handler of the HTTP door shares: the service, the settings, who is calling, the
error boundaries (API → JSON, page → error page) and the page renderer."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import ArrowrootError, Unauthenticated
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.errors import status_of
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web import data
from arrowroot.flight_server.web.middleware import record_of
from arrowroot.flight_server.web.present import human, quote, short
from arrowroot.flight_server.web.query import safe_next
from arrowroot.flight_server.web.sso import web_sso
from arrowroot.flight_server.web.workers import Workers

COOKIE = "arrowroot_session"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@dataclass(frozen=True)
class WebOptions:
    """Settings of the HTTP side (``arrowroot serve --http ...``)."""

    max_bytes: int = 0             # largest download (bytes written); 0 = no limit
    plot_entries: int = 1_000_000  # entries a histogram or scatter reads at most
    workers: int = 0               # threads for pages, plots, views and downloads (0: the machine's cores)
    secure_cookie: bool = False    # Secure flag on the session cookie (on with TLS)
    flight_location: str = ""      # what snippets connect to (grpc://host:port)


class Door:
    """The HTTP door's shared state and boundaries, handed to every handler."""

    def __init__(self, service: Service, options: WebOptions, workers: Workers | None = None):
        self.service = service
        self.options = options
        #: the bounded pool every page, view and download piece runs in (health stays outside it)
        self.workers = workers or Workers(options.workers)
        assert service.ctx.auth is not None
        self.auth = service.ctx.auth
        #: login through an OIDC issuer or the JupyterHub instead of the password form ([auth.web])
        self.sso = web_sso(self.auth, COOKIE, options.secure_cookie, safe_next)

    @property
    def auth_on(self) -> bool:
        return bool(self.auth.enabled)

    @staticmethod
    def anonymous(request: Request) -> bool:
        """No credentials of any kind ``caller`` reads: nothing to verify (health answers these on
        the event loop)."""
        return not (request.headers.get("authorization") or request.headers.get("x-api-key")
                    or request.cookies.get(COOKIE))

    def caller(self, request: Request) -> Caller:
        """Who is calling: Authorization (Bearer token/API key, Basic), X-API-Key or the
        session cookie; Unauthenticated when that is required and missing/wrong."""
        record = record_of(request)
        record.peer = request.client.host if request.client else "?"
        auth = request.headers.getlist("authorization")
        key = request.headers.get("x-api-key")
        if key and not auth:
            auth = [f"Bearer {key}"]
        if auth:
            login = self.auth.authenticate(auth, issue=False, address=record.peer)
        else:
            login = self.auth.session_login(request.cookies.get(COOKIE))
        record.user = login.user
        return Caller(user=login.user, door="http", peer=record.peer, request_id=record.request_id,
                      groups=login.groups, scopes=login.scopes)

    def api(self, what: str, fn: Callable[[Request], Response], light: bool = False) -> Callable:
        """An API endpoint: our errors go to the table's exception handlers (``create_app``);
        anything else is answered here as an internal error (logged with the request id).
        It runs in the bounded pool (``workers.py``) unless ``light`` (health): a light endpoint is
        a coroutine on the event loop, which moves any blocking part to a thread of its own."""
        if light:
            async def on_loop(request: Request) -> Response:
                try:
                    return await fn(request)  # type: ignore[misc]
                except ArrowrootError:
                    raise
                except Exception as exc:
                    return self.json_error(what, exc, record_of(request))
            return on_loop

        def call(request: Request) -> Response:
            try:
                return fn(request)
            except ArrowrootError:
                raise
            except Exception as exc:
                return self.json_error(what, exc, record_of(request))
        return self.heavy(call)

    def heavy(self, fn: Callable[[Request], Response]) -> Callable:
        """A synchronous endpoint run in the bounded pool."""
        async def endpoint(request: Request) -> Response:
            return await self.workers.run(fn, request)
        return endpoint

    def json_error(self, what: str, exc: BaseException, record: CallRecord | None = None) -> JSONResponse:
        f = data.failure(what, exc, record.request_id if record is not None else "")
        if record is not None:
            record.status = status_of(exc).grpc
        headers = {"www-authenticate": 'Bearer realm="arrowroot", Basic realm="arrowroot"'} if f.status == 401 else None
        return JSONResponse({"error": f.kind, "status": f.status, "message": f.message}, f.status, headers=headers)

    def page(self, what: str, fn: Callable[[Request, Caller], Response]) -> Callable:
        """A page: no session → the login form; a failure → the error page with its status."""
        def endpoint(request: Request) -> Response:
            try:
                caller = self.caller(request)
            except Unauthenticated:
                return self.to_login(request)
            try:
                return fn(request, caller)
            except Exception as exc:
                record = record_of(request)
                record.status = status_of(exc).grpc
                f = data.failure(what, exc, record.request_id)
                return self.render(request, caller, "error.html", {"failure": f}, f.status)
        return self.heavy(endpoint)

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        resp = RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), 303)
        if request.cookies.get(COOKIE):
            resp.delete_cookie(COOKIE, path="/")
        return resp

    def render(self, request: Request, caller: Caller | None, template: str, ctx: dict, status: int = 200) -> Response:
        base = {"user": caller.user if caller else None, "auth_on": self.auth_on, "version": __version__,
                "quote": quote, "human": human, "short": short}
        return TEMPLATES.TemplateResponse(request, template, {**base, **ctx}, status_code=status)


__all__ = ["Door", "WebOptions", "COOKIE", "TEMPLATES"]
