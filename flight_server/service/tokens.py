"""Bearer JWTs from OpenID Connect issuers (Keycloak, CILogon, INDIGO IAM, Entra, ...).

``[auth.oidc]`` in ``arrowroot.toml`` names an issuer (or ``[[auth.oidc]]`` several); a token is
routed to its issuer by its ``iss`` claim and then verified by PyJWT against the issuer's
published keys:

* the discovery document (``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must
  match) gives the JWKS URL; the JWKS is cached for ``jwks_ttl`` seconds. A token signed with a
  key id the cache does not know (the issuer rotated its keys) triggers one refetch, at most one
  per ``refetch_interval`` seconds per issuer, so a flood of made-up key ids costs one request;
* only the configured asymmetric algorithms are accepted, and the key's algorithm must be the
  token's: ``none`` and HMAC algorithms are never accepted (a public key is public, so an
  "HS256 signed with the public key" token proves nothing), symmetric JWKS keys are ignored;
* ``exp`` is required; ``exp``/``nbf``/``iat`` are checked with ``leeway`` seconds of clock skew;
  ``aud`` must name one of the configured audiences and ``iss`` the issuer.

Verified tokens are remembered (by sha256, until their expiry, at most ``CACHE_SIZE``), so the
per-call cost after the first call is a dictionary lookup. No token text ever reaches a log or
an error message.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import (ExpiredSignatureError, ImmatureSignatureError, InvalidAudienceError,
                            InvalidIssuedAtError, InvalidIssuerError, InvalidSignatureError,
                            MissingRequiredClaimError, PyJWKError, PyJWTError)

from arrowroot.flight_server.core.errors import Unavailable
from arrowroot.flight_server.service.claims import (Identity, TokenRefused, group_names, read_prefixes,
                                                   scope_list, user_name)
from arrowroot.flight_server.service.httpjson import HttpStatus, check_url, get_json

log = logging.getLogger("arrowroot.auth")

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
CACHE_SIZE = 10_000
MAX_TOKEN = 8192


@dataclass(frozen=True)
class OidcIssuer:
    """One trusted issuer, from an ``[auth.oidc]`` table."""

    issuer: str
    audience: tuple[str, ...]
    user_claim: str = "sub"
    groups_claim: str = "groups"
    user_prefix: str = ""
    algorithms: tuple[str, ...] = ASYMMETRIC
    leeway: float = 30.0
    jwks_uri: str = ""                 # '' = from the discovery document
    jwks_ttl: float = 300.0            # seconds a fetched key set is used before it is fetched again
    refetch_interval: float = 10.0     # at most one refetch per this many seconds for unknown key ids
    ca_file: str | None = None         # PEM bundle for the issuer's TLS (default: the system's)
    allow_http: bool = False           # plain http:// to a non-loopback issuer (a private network)

    KEYS = ("issuer", "audience", "user_claim", "groups_claim", "user_prefix", "algorithms", "leeway",
            "jwks_uri", "jwks_ttl", "refetch_interval", "ca_file", "allow_http")

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str = "[auth.oidc]") -> "OidcIssuer":
        """Validate one TOML table; ValueError names the faulty key."""
        extra = set(table) - set(cls.KEYS)
        if extra:
            raise ValueError(f"{where}: unknown keys {sorted(extra)}; known: {', '.join(cls.KEYS)}")
        issuer = table.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise ValueError(f"{where}.issuer: the issuer URL is required (the token's 'iss')")
        allow_http = table.get("allow_http", False)
        if not isinstance(allow_http, bool):
            raise ValueError(f"{where}.allow_http: true or false")
        check_url(issuer, f"{where}.issuer", allow_http)
        aud = table.get("audience")
        aud = (aud,) if isinstance(aud, str) else tuple(aud) if isinstance(aud, list) else ()
        if not aud or not all(isinstance(a, str) and a for a in aud):
            raise ValueError(f"{where}.audience: required, a string or a list of strings (the token's 'aud' "
                             "must name one; a token meant for another service is refused)")
        algs = table.get("algorithms", list(ASYMMETRIC))
        if not isinstance(algs, list) or not algs or any(a not in ASYMMETRIC for a in algs):
            raise ValueError(f"{where}.algorithms: a list drawn from {', '.join(ASYMMETRIC)} (never none or HS*)")
        out: dict[str, Any] = {"issuer": issuer, "audience": aud, "algorithms": tuple(algs), "allow_http": allow_http}
        for key in ("user_claim", "groups_claim", "user_prefix", "jwks_uri", "ca_file"):
            if key in table:
                if not isinstance(table[key], str):
                    raise ValueError(f"{where}.{key}: a string")
                out[key] = table[key]
        if not out.get("user_claim", "sub"):
            raise ValueError(f"{where}.user_claim: must name a claim")
        if out.get("jwks_uri"):
            check_url(out["jwks_uri"], f"{where}.jwks_uri", allow_http)
        for key in ("leeway", "jwks_ttl", "refetch_interval"):
            if key in table:
                v = table[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v > 86400:
                    raise ValueError(f"{where}.{key}: seconds, 0 to 86400")
                out[key] = float(v)
        return cls(**out)


class KeySet:
    """The issuer's JWKS, fetched lazily and refreshed on rotation (bounded, rate-limited)."""

    def __init__(self, config: OidcIssuer):
        self.config = config
        self._keys: dict[str, dict] = {}        # kid -> JWK (asymmetric keys only)
        self._fetched = 0.0                     # monotonic time of the last successful fetch
        self._tried = -1e18                     # monotonic time of the last attempt
        self._jwks_uri = config.jwks_uri
        self._document: dict | None = None      # the discovery document
        self._parsed: dict[tuple[str, str], jwt.PyJWK] = {}   # (kid, alg) -> key object, per fetch
        self._lock = threading.Lock()
        self.fetches = 0                        # counted for tests and the bench

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key for a token header; TokenRefused / Unavailable otherwise."""
        now = time.monotonic()
        if not self._keys or now - self._fetched > self.config.jwks_ttl:
            self._refresh(now, stale_ok=bool(self._keys))
        jwk = self._find(kid, alg)
        if jwk is None and self._refresh(time.monotonic(), stale_ok=True, rate_limited=True):
            jwk = self._find(kid, alg)
        if jwk is None:
            raise TokenRefused(f"token signed with a key {self.config.issuer} does not publish "
                               f"(key id {str(kid)[:40]!r}); get a new token")
        parsed = self._parsed.get((jwk["kid"], alg))
        if parsed is None:
            try:
                parsed = jwt.PyJWK(jwk, algorithm=alg)
            except PyJWKError:
                raise TokenRefused(f"token's key from {self.config.issuer} does not fit its algorithm {alg}") from None
            self._parsed[(jwk["kid"], alg)] = parsed
        return parsed

    def _find(self, kid: str | None, alg: str) -> dict | None:
        keys = self._keys
        want = KEY_TYPES.get(alg[:2])
        if kid is None:  # allowed only when the choice is unambiguous
            fitting = [k for k in keys.values() if k.get("kty") == want and k.get("alg") in (None, alg)]
            return fitting[0] if len(fitting) == 1 else None
        jwk = keys.get(kid)
        if jwk is None or jwk.get("kty") != want or jwk.get("alg") not in (None, alg):
            return None
        return jwk

    def _refresh(self, now: float, stale_ok: bool, rate_limited: bool = False) -> bool:
        """Fetch the JWKS (one fetch at a time); False when skipped or failed with keys still usable."""
        with self._lock:
            if rate_limited and now - self._tried < self.config.refetch_interval:
                return False
            if self._fetched > now:  # another thread fetched while we waited
                return True
            self._tried = time.monotonic()
            try:
                keys = self._fetch()
            except Unavailable as exc:
                if stale_ok:
                    log.warning("keeping the cached keys of %s: %s", self.config.issuer, exc)
                    return False
                raise
            self._keys = keys
            self._parsed = {}
            self._fetched = time.monotonic()
            self.fetches += 1
            return True

    def discovery(self) -> dict:
        """The issuer's discovery document (fetched once; the web login needs its endpoints)."""
        if self._document is None:
            cfg = self.config
            url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = self._get(url)
            if not isinstance(doc, dict) or doc.get("issuer") != cfg.issuer:
                raise Unavailable(f"{url}: its 'issuer' is not {cfg.issuer!r} (a misconfigured or impostor issuer)")
            self._document = doc
        return self._document

    def _fetch(self) -> dict[str, dict]:
        cfg = self.config
        if not self._jwks_uri:
            doc = self.discovery()
            uri = doc.get("jwks_uri")
            if not isinstance(uri, str):
                raise Unavailable(f"{cfg.issuer}: the discovery document has no jwks_uri")
            try:
                self._jwks_uri = check_url(uri, "jwks_uri", cfg.allow_http)
            except ValueError as exc:
                raise Unavailable(str(exc)) from None
        data = self._get(self._jwks_uri)
        found = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(found, list):
            raise Unavailable(f"{self._jwks_uri}: not a JWK set")
        keys: dict[str, dict] = {}
        for k in found[:100]:
            if (isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("kty") in ("RSA", "EC", "OKP")
                    and k.get("use", "sig") == "sig"):
                keys[k["kid"]] = k
        if not keys:
            raise Unavailable(f"{self._jwks_uri}: no usable signing keys")
        return keys

    def _get(self, url: str) -> Any:
        try:
            return get_json(url, ca_file=self.config.ca_file)
        except HttpStatus as exc:
            raise Unavailable(f"cannot fetch the keys of {self.config.issuer}: {exc}") from None


class OidcVerifier:
    """Verifies JWTs of the configured issuers into :class:`Identity` values."""

    def __init__(self, issuers: list[OidcIssuer]):
        self.issuers = {i.issuer: i for i in issuers}
        self.keys = {i.issuer: KeySet(i) for i in issuers}
        self._seen: OrderedDict[str, Identity] = OrderedDict()
        self._lock = threading.Lock()
        self.cache = True

    def verify(self, token: str) -> Identity:
        """The identity in a valid token; TokenRefused (UNAUTHENTICATED) or Unavailable (issuer down)."""
        if len(token) > MAX_TOKEN:
            raise TokenRefused(f"token of {len(token)} bytes, at most {MAX_TOKEN}")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.time()
        if self.cache:
            hit = self._seen.get(digest)
            if hit is not None:
                if hit.expires is not None and hit.expires > now:
                    return hit
                with self._lock:
                    self._seen.pop(digest, None)
        ident = self._verify(token, now)
        if self.cache:
            with self._lock:
                self._seen[digest] = ident
                while len(self._seen) > CACHE_SIZE:
                    self._seen.popitem(last=False)
        return ident

    def verify_id_token(self, token: str, client_id: str, nonce: str) -> Identity:
        """The identity in an ID token from the web login (audience: the web client; the login's nonce)."""
        claims, cfg = self._claims(token, (client_id,))
        if claims.get("nonce") != nonce:
            raise TokenRefused(f"ID token from {cfg.issuer} does not answer this login (nonce)")
        return self._identity(claims, cfg)

    def _verify(self, token: str, now: float) -> Identity:
        claims, cfg = self._claims(token)
        return self._identity(claims, cfg)

    def _claims(self, token: str, audience: tuple[str, ...] | None = None) -> tuple[dict, OidcIssuer]:
        try:  # one parse for routing (PyJWT's strict base64url check is the slow part of a decode)
            first = jwt.decode_complete(token, options={"verify_signature": False})
            header, unverified = first["header"], first["payload"]
        except PyJWTError:
            raise TokenRefused("bearer token: not a valid JWT") from None
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise TokenRefused("bearer token: not a valid JWT")
        alg = header.get("alg")
        iss = unverified.get("iss")
        cfg = self.issuers.get(iss) if isinstance(iss, str) else None
        if cfg is None:
            raise TokenRefused(f"token from an issuer this server does not trust ({str(iss)[:100]!r}); "
                               f"trusted: {', '.join(sorted(self.issuers))}")
        if not isinstance(alg, str) or alg not in cfg.algorithms:
            raise TokenRefused(f"token from {cfg.issuer}: signing algorithm {str(alg)[:20]!r} is not accepted "
                               f"(accepted: {', '.join(cfg.algorithms)})")
        kid = header.get("kid")
        key = self.keys[cfg.issuer].key(kid if isinstance(kid, str) else None, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=list(audience or cfg.audience), issuer=cfg.issuer,
                                leeway=cfg.leeway, options={"require": ["exp", "iss", "aud"]})
        except ExpiredSignatureError:
            raise TokenRefused(f"token expired (issuer {cfg.issuer}); get a new token") from None
        except (ImmatureSignatureError, InvalidIssuedAtError):
            raise TokenRefused(f"token not yet valid (issuer {cfg.issuer}); check the clocks") from None
        except InvalidAudienceError:
            raise TokenRefused(f"token from {cfg.issuer} is meant for another service (its audience is not "
                               f"{' or '.join(cfg.audience)})") from None
        except InvalidIssuerError:
            raise TokenRefused(f"token issuer is not {cfg.issuer}") from None
        except InvalidSignatureError:
            raise TokenRefused(f"token signature does not verify with the keys of {cfg.issuer}") from None
        except MissingRequiredClaimError as exc:
            raise TokenRefused(f"token from {cfg.issuer} lacks the {exc.claim!r} claim") from None
        except PyJWTError as exc:
            raise TokenRefused(f"token from {cfg.issuer} refused: {type(exc).__name__}") from None
        return claims, cfg

    def _identity(self, claims: dict, cfg: OidcIssuer) -> Identity:
        scopes = scope_list(claims.get("scope")) or scope_list(claims.get("scp"))
        return Identity(
            user=user_name(claims.get(cfg.user_claim), cfg.user_claim, cfg.issuer, cfg.user_prefix),
            groups=group_names(claims.get(cfg.groups_claim)) if cfg.groups_claim else frozenset(),
            prefixes=read_prefixes(scopes),
            issuer=cfg.issuer,
            expires=float(claims["exp"]),
            source="oidc",
        )
