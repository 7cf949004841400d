"""The web view's login through an outside issuer, instead of the password form.

``[auth.web] login = "oidc"``: the OpenID Connect authorization-code flow with PKCE (S256) and a
nonce; the ID token is verified with the issuer's published keys (``service/tokens.py``).
``login = "jupyterhub"``: the hub's own OAuth (arrowroot is a hub service, its OAuth client is
``service-<name>``); the hub's access token is kept server-side with the session and checked
against the hub again on use (cached), so revoking it at the hub ends the web session too.

``GET /login/sso?next=/path`` starts a login: a random ``state`` (also set as a short-lived
cookie, so a callback only completes in the browser that started it), the PKCE verifier and the
nonce are kept in memory for ten minutes. ``GET /auth/callback`` exchanges the code and sets the
same session cookie the password form sets.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from arrowroot.flight_server.core.errors import Unauthenticated, Unavailable
from arrowroot.flight_server.service.claims import TokenRefused
from arrowroot.flight_server.service.httpjson import HttpStatus, get_json
from arrowroot.flight_server.service.identity import Authenticator

STATE_COOKIE = "arrowroot_sso_state"
PENDING_TTL = 600.0
MAX_PENDING = 10_000


@dataclass(frozen=True)
class _Pending:
    verifier: str
    nonce: str
    target: str
    redirect_uri: str
    created: float


class WebSso:
    """Login routes for one server whose ``[auth.web]`` names an outside issuer."""

    def __init__(self, auth: Authenticator, cookie: str, secure: bool, safe_next: Any):
        assert auth.external is not None
        self.auth = auth
        self.external = auth.external
        self.web = self.external.web
        self.cookie = cookie
        self.secure = secure
        self.safe_next = safe_next
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self.web.login

    # ------------------------------------------------------------ endpoints of the issuer

    def _oidc_endpoints(self) -> tuple[str, str]:
        oidc = self.external.oidc
        issuer = next(iter(oidc.issuers))
        doc = oidc.keys[issuer].discovery()
        auth, token = doc.get("authorization_endpoint"), doc.get("token_endpoint")
        if not isinstance(auth, str) or not isinstance(token, str):
            raise Unavailable(f"{issuer}: the discovery document lacks the authorization or token endpoint")
        return auth, token

    def _hub_endpoints(self) -> tuple[str, str]:
        hub = self.external.hub.config
        public = hub.public_url or hub.api_url.rsplit("/hub/api", 1)[0]
        return f"{public}/hub/api/oauth2/authorize", f"{hub.api_url}/oauth2/token"

    # ------------------------------------------------------------ routes

    async def start(self, request: Request) -> Response:
        target = self.safe_next(request.query_params.get("next"))
        try:
            authorize, _ = await run_in_threadpool(
                self._oidc_endpoints if self.kind == "oidc" else self._hub_endpoints)
        except Unavailable as exc:
            return Response(f"the login service cannot be reached now: {exc}", 503, media_type="text/plain")
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        redirect_uri = str(request.base_url).rstrip("/") + "/auth/callback"
        now = time.monotonic()
        with self._lock:
            while self._pending and (len(self._pending) >= MAX_PENDING
                                     or now - next(iter(self._pending.values())).created > PENDING_TTL):
                self._pending.popitem(last=False)
            self._pending[state] = _Pending(verifier, nonce, target, redirect_uri, now)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {"response_type": "code", "client_id": self.web.client_id, "redirect_uri": redirect_uri,
                 "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
        if self.kind == "oidc":
            query.update(scope=" ".join(self.web.scopes), nonce=nonce)
        resp = RedirectResponse(f"{authorize}?{urllib.parse.urlencode(query)}", 303)
        resp.set_cookie(STATE_COOKIE, state, max_age=int(PENDING_TTL), path="/auth/callback", httponly=True,
                        secure=self.secure, samesite="lax")
        return resp

    async def callback(self, request: Request) -> Response:
        q = request.query_params
        state = q.get("state") or ""
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or request.cookies.get(STATE_COOKIE) != state or \
                time.monotonic() - pending.created > PENDING_TTL:
            return Response("this login link is unknown, used or expired (or was opened in another browser); "
                            "start again from /login", 400, media_type="text/plain")
        if q.get("error"):
            return Response(f"the login service refused: {q.get('error')[:100]}", 401, media_type="text/plain")
        code = q.get("code") or ""
        try:
            session = await run_in_threadpool(self._finish, code, pending)
        except Unauthenticated as exc:
            return Response(f"login refused: {exc}", 401, media_type="text/plain")
        except Unavailable as exc:
            return Response(f"the login service cannot be reached now: {exc}", 503, media_type="text/plain")
        resp = RedirectResponse(pending.target, 303)
        resp.set_cookie(self.cookie, session, max_age=int(self.auth.token_ttl), path="/", httponly=True,
                        secure=self.secure, samesite="lax")
        resp.delete_cookie(STATE_COOKIE, path="/auth/callback")
        return resp

    def _finish(self, code: str, pending: _Pending) -> str:
        """Exchange the code, verify what comes back, and open a session (its cookie value)."""
        if self.kind == "oidc":
            _, token_url = self._oidc_endpoints()
        else:
            _, token_url = self._hub_endpoints()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri,
                "code_verifier": pending.verifier, "client_id": self.web.client_id}
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if self.web.client_secret:
            if self.kind == "oidc":  # client_secret_basic, the OIDC default
                pair = f"{urllib.parse.quote(self.web.client_id)}:{urllib.parse.quote(self.web.client_secret)}"
                headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:                    # JupyterHub reads the secret from the form
                form["client_secret"] = self.web.client_secret
        try:
            answer = get_json(token_url, headers, data=urllib.parse.urlencode(form).encode(),
                              ca_file=self._ca_file())
        except HttpStatus as exc:
            raise TokenRefused(f"the login service did not accept the authorization code (HTTP {exc.status})") from None
        if not isinstance(answer, dict):
            raise TokenRefused("the login service answered no token")
        if self.kind == "oidc":
            id_token = answer.get("id_token")
            if not isinstance(id_token, str):
                raise TokenRefused("the login service answered no ID token (is 'openid' among [auth.web] scopes?)")
            ident = self.external.oidc.verify_id_token(id_token, self.web.client_id, pending.nonce)
            return self.auth.issue_token(ident.user, identity=ident)
        access_token = answer.get("access_token")
        if not isinstance(access_token, str):
            raise TokenRefused("the hub answered no access token")
        ident = self.auth.verify_external(access_token)
        return self.auth.issue_token(ident.user, identity=ident, external=access_token)

    def _ca_file(self) -> str | None:
        if self.kind == "oidc":
            return next(iter(self.external.oidc.issuers.values())).ca_file
        return self.external.hub.config.ca_file


def web_sso(auth: Authenticator, cookie: str, secure: bool, safe_next: Any) -> WebSso | None:
    """The outside login when ``[auth.web]`` asks for one, else None (the password form)."""
    if auth.external is None or auth.external.web.login == "password":
        return None
    return WebSso(auth, cookie, secure, safe_next)
