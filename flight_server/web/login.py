"""The browser login: a form, a session cookie holding a session token (the same kind and
lifetime as a Flight login), and logout revoking it. Cross-site form posts are refused. When
``[auth.web]`` names an outside issuer the form redirects to its flow (``sso.py``)."""

from __future__ import annotations

import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from arrowroot.flight_server.core.errors import Unauthenticated
from arrowroot.flight_server.web import data
from arrowroot.flight_server.web.door import COOKIE, Door
from arrowroot.flight_server.web.query import safe_next


class Login:
    def __init__(self, door: Door):
        self.door = door

    async def form(self, request: Request) -> Response:
        if self.door.sso is not None:   # [auth.web] names an outside issuer: no password form
            return RedirectResponse("/login/sso?" + urllib.parse.urlencode(
                {"next": safe_next(request.query_params.get("next"))}), 303)
        return self.door.render(request, None, "login.html",
                                {"next": safe_next(request.query_params.get("next")), "error": None})

    def cross_site(self, request: Request) -> Response | None:
        """403 for a form posted from another site (login CSRF): browsers send Origin on POST."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != request.url.netloc:
            return self.door.render(request, None, "error.html", {"failure": data.Failure(
                403, "cross-site form post refused: log in from this server's own page", "permission_denied")}, 403)
        return None

    async def login(self, request: Request) -> Response:
        refused = self.cross_site(request)
        if refused is not None:
            return refused
        form = await request.form()
        user = str(form.get("username") or "")
        password = str(form.get("password") or "")
        target = safe_next(str(form.get("next") or "/"))
        auth = self.door.auth
        try:
            token = await run_in_threadpool(auth.login, user, password)
        except Unauthenticated as exc:
            return self.door.render(request, None, "login.html",
                                    {"next": target, "error": str(exc).split(". Detail")[0]}, 401)
        resp = RedirectResponse(target, 303)
        resp.set_cookie(COOKIE, token, max_age=int(auth.token_ttl), path="/", httponly=True,
                        secure=self.door.options.secure_cookie, samesite="lax")
        return resp

    async def logout(self, request: Request) -> Response:
        refused = self.cross_site(request)
        if refused is not None:
            return refused
        token = request.cookies.get(COOKIE)
        if token:
            self.door.auth.revoke_token(token)
        resp = RedirectResponse("/login" if self.door.auth_on else "/", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp
