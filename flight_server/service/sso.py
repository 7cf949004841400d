"""Which outside identities the server trusts: the ``[auth]`` section of ``arrowroot.toml``.

::

    [[auth.oidc]]                 # or [auth.oidc] for one issuer; see tokens.py
    issuer = "https://sso.example.org/realms/l200"
    audience = "arrowroot"
    user_claim = "preferred_username"
    groups_claim = "groups"

    [auth.jupyterhub]             # see jupyterhub.py
    api_url = "http://hub:8081/hub/api"

    [auth.web]                    # how the web view logs in (web/sso.py); default: its password form
    login = "oidc"                # or "jupyterhub"
    client_id = "arrowroot-web"
    client_secret_file = "/run/secrets/oidc-client-secret"   # optional: PKCE alone for a public client

:meth:`External.verify` routes a bearer token the server did not issue itself: a JWT to the OIDC
verifier, anything else to the hub (when configured).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arrowroot.flight_server.service.claims import Identity, TokenRefused
from arrowroot.flight_server.service.jupyterhub import HubConfig, HubVerifier
from arrowroot.flight_server.service.tokens import OidcIssuer, OidcVerifier

CONFIG_NAME = "arrowroot.toml"
WEB_LOGINS = ("password", "oidc", "jupyterhub")


@dataclass(frozen=True)
class WebLogin:
    """``[auth.web]``: the browser login (authorization code flow with PKCE)."""

    login: str = "password"
    client_id: str = ""
    client_secret: str = ""
    scopes: tuple[str, ...] = ("openid", "profile")
    KEYS = ("login", "client_id", "client_secret_file", "scopes")

    @classmethod
    def from_table(cls, table: dict[str, Any], hub: HubConfig | None, where: str = "[auth.web]") -> "WebLogin":
        extra = set(table) - set(cls.KEYS)
        if extra:
            raise ValueError(f"{where}: unknown keys {sorted(extra)}; known: {', '.join(cls.KEYS)}")
        login = table.get("login", "password")
        if login not in WEB_LOGINS:
            raise ValueError(f"{where}.login: one of {', '.join(WEB_LOGINS)}")
        secret = ""
        if table.get("client_secret_file"):
            try:
                secret = Path(str(table["client_secret_file"])).expanduser().read_text().strip()
            except OSError as exc:
                raise ValueError(f"{where}.client_secret_file: {exc.strerror}") from None
        client_id = table.get("client_id", "")
        if not isinstance(client_id, str):
            raise ValueError(f"{where}.client_id: a string")
        if login == "oidc" and not client_id:
            raise ValueError(f"{where}.client_id: the OIDC client registered for the web view is required")
        if login == "jupyterhub":
            if hub is None:
                raise ValueError(f"{where}.login = 'jupyterhub' needs [auth.jupyterhub]")
            client_id = client_id or hub.client_id
            secret = secret or hub.api_token
            if not secret:
                raise ValueError(f"{where}: the hub login needs the service's API token "
                                 "([auth.jupyterhub] api_token_file or $JUPYTERHUB_API_TOKEN)")
        scopes = table.get("scopes", list(cls.scopes))
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError(f"{where}.scopes: a list of strings")
        return cls(login, client_id, secret, tuple(scopes))


@dataclass
class External:
    """The verifiers of outside tokens, and the web login; built once per server."""

    oidc: OidcVerifier | None = None
    hub: HubVerifier | None = None
    web: WebLogin = field(default_factory=WebLogin)

    def verify(self, token: str) -> Identity:
        """The identity of a bearer token from a trusted issuer; TokenRefused otherwise."""
        if looks_like_jwt(token):
            if self.oidc is None:
                raise TokenRefused("JWT bearer tokens are not accepted here: the server has no [auth.oidc] issuer")
            return self.oidc.verify(token)
        if self.hub is not None:
            return self.hub.verify(token)
        raise TokenRefused("unknown or expired token; log in again (session tokens do not survive a server restart)")


def looks_like_jwt(token: str) -> bool:
    """A JWS compact serialisation: three base64url parts, a JSON header ('eyJ')."""
    return token.startswith("eyJ") and token.count(".") == 2


def load(root: Path, config: Path | None = None, environ: dict[str, str] | None = None) -> External | None:
    """The ``[auth]`` section of ``config`` (``Settings.auth_config``, which must exist) or else of
    ``<root>/arrowroot.toml``; None without one. ValueError names the faulty key."""
    path = Path(config) if config else Path(root) / CONFIG_NAME
    if not path.is_file():
        if config:
            raise ValueError(f"auth config {path}: no such file")
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    return from_table(data.get("auth"), environ)


def from_table(auth: Any, environ: dict[str, str] | None = None) -> External | None:
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise ValueError(f"{CONFIG_NAME}: [auth] must be a table")
    extra = set(auth) - {"oidc", "jupyterhub", "web"}
    if extra:
        raise ValueError(f"{CONFIG_NAME}: unknown keys in [auth]: {sorted(extra)}; known: oidc, jupyterhub, web")
    oidc = auth.get("oidc")
    tables = [oidc] if isinstance(oidc, dict) else oidc if isinstance(oidc, list) else []
    if oidc is not None and (not tables or not all(isinstance(t, dict) for t in tables)):
        raise ValueError(f"{CONFIG_NAME}: [auth.oidc] must be a table (or [[auth.oidc]] tables)")
    issuers = [OidcIssuer.from_table(t, f"[auth.oidc][{i}]" if isinstance(oidc, list) else "[auth.oidc]")
               for i, t in enumerate(tables)]
    if len({i.issuer for i in issuers}) != len(issuers):
        raise ValueError(f"{CONFIG_NAME}: [[auth.oidc]] names the same issuer twice")
    hub_table = auth.get("jupyterhub")
    if hub_table is not None and not isinstance(hub_table, dict):
        raise ValueError(f"{CONFIG_NAME}: [auth.jupyterhub] must be a table")
    hub = HubConfig.from_table(hub_table, environ) if hub_table is not None else None
    web_table = auth.get("web", {})
    if not isinstance(web_table, dict):
        raise ValueError(f"{CONFIG_NAME}: [auth.web] must be a table")
    web = WebLogin.from_table(web_table, hub)
    if web.login == "oidc" and not issuers:
        raise ValueError(f"{CONFIG_NAME}: [auth.web] login = 'oidc' needs an [auth.oidc] issuer")
    if not issuers and hub is None:
        return None
    return External(OidcVerifier(issuers) if issuers else None, HubVerifier(hub) if hub else None, web)
