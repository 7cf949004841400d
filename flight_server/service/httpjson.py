"""Small, bounded JSON requests to identity services (an OIDC issuer, a JupyterHub).

Why not a client library: the server makes a handful of these calls (discovery, JWKS, a hub's
``/user``), all cached, so the standard library's ``urllib`` is enough. Every call has a timeout
and a size cap, and errors name the URL but never a header (headers carry tokens).
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from arrowroot.flight_server.core.errors import Unavailable

MAX_BYTES = 1 << 20       # a discovery document or JWKS is a few KiB
TIMEOUT = 5.0             # seconds; a call runs while a client waits


class HttpStatus(Exception):
    """The service answered with an HTTP error status (``status``)."""

    def __init__(self, url: str, status: int):
        super().__init__(f"{url}: HTTP {status}")
        self.status = status


def is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, allow_http: bool = False) -> str:
    """``url`` if it is http(s) with a host; plain http only on loopback or when allowed."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{what} {url!r}: an https:// URL is required")
    if parts.scheme == "http" and not allow_http and not is_loopback_url(url):
        raise ValueError(f"{what} {url!r}: plain http:// is allowed only on loopback; use https:// "
                         "(or allow_http = true for a private network you trust)")
    return url


def get_json(url: str, headers: dict[str, str] | None = None, *, data: bytes | None = None,
             ca_file: str | None = None, timeout: float = TIMEOUT, max_bytes: int = MAX_BYTES) -> Any:
    """GET (or POST ``data``) ``url`` and parse its JSON body.

    HttpStatus for an HTTP error answer, Unavailable when the service cannot be reached or
    answers something that is not JSON.
    """
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
    req = urllib.request.Request(url, data=data, headers={"accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310 (checked scheme)
            body = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise HttpStatus(url, exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Unavailable(f"cannot reach {url}: {reason}") from None
    if len(body) > max_bytes:
        raise Unavailable(f"{url}: answer larger than {max_bytes} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Unavailable(f"{url}: the answer is not JSON") from None
