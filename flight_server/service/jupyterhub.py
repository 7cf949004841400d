"""JupyterHub users, no extra account: arrowroot as a hub service.

Inside a single-user notebook server ``$JUPYTERHUB_API_TOKEN`` is the user's hub token; the
Python client sends it as a bearer token and this module asks the hub who it belongs to
(``GET <api_url>/user``, the hub's own "whoami", with the token). The answer is cached for
``cache_ttl`` seconds (default 60, at most 3600), so a token revoked at the hub stops working
within that time; refusals are cached for a few seconds so a flood of bad tokens costs the hub
little. The token must carry the scope that lets it reach this service
(``access:services!service=<service_name>``, or unfiltered ``access:services``) — the same rule
the hub's own ``HubAuth`` applies — unless ``required_scope = ""``.

Group names come from the hub's model when the token may read them (``read:users:groups!user``),
else from ``GET <api_url>/users/<name>`` with the service's own token (role scope
``read:users:groups``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arrowroot.flight_server.core.errors import Unavailable
from arrowroot.flight_server.service.claims import Identity, TokenRefused, group_names, user_name
from arrowroot.flight_server.service.httpjson import HttpStatus, check_url, get_json

log = logging.getLogger("arrowroot.auth")

CACHE_SIZE = 10_000
REFUSED_TTL = 5.0


@dataclass(frozen=True)
class HubConfig:
    """``[auth.jupyterhub]`` in arrowroot.toml."""

    api_url: str                         # e.g. http://hub:8081/hub/api ($JUPYTERHUB_API_URL)
    service_name: str = "arrowroot"
    api_token: str = ""                  # the service's token ($JUPYTERHUB_API_TOKEN or api_token_file)
    cache_ttl: float = 60.0
    required_scope: str | None = None    # None: access:services!service=<service_name>
    public_url: str = ""                 # the hub as browsers see it (OAuth login); '' = api_url's host
    ca_file: str | None = None
    allow_http: bool = False

    KEYS = ("api_url", "service_name", "api_token_file", "cache_ttl", "required_scope", "public_url",
            "ca_file", "allow_http")

    @property
    def scope(self) -> str:
        return f"access:services!service={self.service_name}" if self.required_scope is None else self.required_scope

    @property
    def client_id(self) -> str:
        """The hub's OAuth client id of this service (JupyterHub's convention)."""
        return f"service-{self.service_name}"

    @classmethod
    def from_table(cls, table: dict[str, Any], environ: dict[str, str] | None = None,
                   where: str = "[auth.jupyterhub]") -> "HubConfig":
        """Validate the TOML table; the hub's usual environment fills what it leaves out."""
        env = os.environ if environ is None else environ
        extra = set(table) - set(cls.KEYS)
        if extra:
            raise ValueError(f"{where}: unknown keys {sorted(extra)}; known: {', '.join(cls.KEYS)}")
        for key in ("api_url", "service_name", "api_token_file", "required_scope", "public_url", "ca_file"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}.{key}: a string")
        allow_http = table.get("allow_http", False)
        if not isinstance(allow_http, bool):
            raise ValueError(f"{where}.allow_http: true or false")
        api_url = table.get("api_url") or env.get("JUPYTERHUB_API_URL", "")
        if not api_url:
            raise ValueError(f"{where}.api_url: the hub's API URL (http://HUB:8081/hub/api) is required "
                             "(or $JUPYTERHUB_API_URL)")
        check_url(api_url, f"{where}.api_url", allow_http)
        token = ""
        if table.get("api_token_file"):
            try:
                token = Path(table["api_token_file"]).expanduser().read_text().strip()
            except OSError as exc:
                raise ValueError(f"{where}.api_token_file: {exc.strerror}") from None
        else:
            token = env.get("JUPYTERHUB_API_TOKEN", "")
        ttl = table.get("cache_ttl", 60.0)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl <= 3600:
            raise ValueError(f"{where}.cache_ttl: seconds, 0 to 3600 (how long a revoked hub token may still work)")
        public = table.get("public_url", "")
        if public:
            check_url(public, f"{where}.public_url", allow_http)
        return cls(api_url=api_url.rstrip("/"), service_name=table.get("service_name") or
                   env.get("JUPYTERHUB_SERVICE_NAME", "arrowroot"), api_token=token, cache_ttl=float(ttl),
                   required_scope=table.get("required_scope"), public_url=public.rstrip("/"),
                   ca_file=table.get("ca_file"), allow_http=allow_http)


def has_scope(held: list[str], wanted: str) -> bool:
    """Whether ``held`` (the hub's expanded scopes) includes ``wanted`` or its unfiltered base."""
    if not wanted:
        return True
    base = wanted.split("!", 1)[0]
    return wanted in held or base in held


class HubVerifier:
    """Hub tokens → :class:`Identity`, cached for ``cache_ttl`` seconds."""

    def __init__(self, config: HubConfig):
        self.config = config
        self._seen: OrderedDict[str, tuple[float, Identity | str]] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0          # requests made to the hub (tests, bench)

    def verify(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        hit = self._seen.get(digest)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], str):
                raise TokenRefused(hit[1])
            return hit[1]
        try:
            ident: Identity | str = self._ask(token)
            ttl = self.config.cache_ttl
        except TokenRefused as exc:
            ident, ttl = str(exc), min(REFUSED_TTL, self.config.cache_ttl)
        with self._lock:
            self._seen[digest] = (now + ttl, ident)
            self._seen.move_to_end(digest)
            while len(self._seen) > CACHE_SIZE:
                self._seen.popitem(last=False)
        if isinstance(ident, str):
            raise TokenRefused(ident)
        return ident

    def _ask(self, token: str) -> Identity:
        cfg = self.config
        self.calls += 1
        try:
            model = get_json(cfg.api_url + "/user", {"authorization": f"token {token}"}, ca_file=cfg.ca_file)
        except HttpStatus as exc:
            if exc.status in (401, 403, 404):
                raise TokenRefused(f"JupyterHub at {cfg.api_url} does not accept this token "
                                   "(revoked or expired); restart the notebook server or create a new token") from None
            raise Unavailable(f"JupyterHub at {cfg.api_url} answered HTTP {exc.status}") from None
        if not isinstance(model, dict) or model.get("kind", "user") != "user":
            raise TokenRefused(f"JupyterHub at {cfg.api_url}: this token belongs to a service, not a user")
        if not has_scope(model.get("scopes") or [], cfg.scope):
            raise TokenRefused(f"this JupyterHub token lacks the scope {cfg.scope!r}; the hub admin grants it "
                               "(c.Spawner.server_token_scopes, or the token's scopes when it is created)")
        name = user_name(model.get("name"), "name", f"JupyterHub at {cfg.api_url}")
        groups = model.get("groups")
        if groups is None and cfg.api_token:
            groups = self._groups(name)
        return Identity(user=name, groups=group_names(groups or []), issuer=cfg.api_url, source="jupyterhub")

    def _groups(self, name: str) -> list[str]:
        cfg = self.config
        url = f"{cfg.api_url}/users/{urllib.parse.quote(name, safe='')}"
        try:
            model = get_json(url, {"authorization": f"token {cfg.api_token}"}, ca_file=cfg.ca_file)
        except HttpStatus as exc:
            log.warning("cannot read the groups of hub user %s (HTTP %s): the service's role needs "
                        "read:users:groups", name, exc.status)
            return []
        groups = model.get("groups") if isinstance(model, dict) else None
        return groups if isinstance(groups, list) else []
