"""Real identity services for the tests, run as processes on loopback ports.

* :class:`OidcProvider`: the npm package ``oidc-provider`` (a certified OpenID Connect
  implementation) under Node.js (``tests/identity/oidc_provider.mjs``), issuing JWT access tokens
  through its own token endpoint (client credentials; authorization code + PKCE through its own
  login form), with key rotation by SIGHUP.
* :class:`Hub`: JupyterHub from PyPI with its proxy ``configurable-http-proxy`` from npm, the
  SharedPasswordAuthenticator, an arrowroot service and real single-user servers (jupyter_server);
  user tokens are made through the hub's REST API.

The npm packages come from ``tests/identity/package-lock.json`` (``npm ci``, once per lock).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

IDENTITY_DIR = Path(__file__).resolve().parent / "identity"
NODE = shutil.which("node")
NPM = shutil.which("npm")
AUDIENCE = "arrowroot"
RESOURCE = "urn:arrowroot"
OTHER_RESOURCE, OTHER_AUDIENCE = "urn:other-service", "other-service"
SCOPES = "storage.read:/ storage.read:/hep storage.read:/lab read:/hep openid profile groups"


def npm_ci() -> Path:
    """``npm ci`` in tests/identity from the committed lock file, once per lock; node_modules."""
    assert NODE and NPM, "node and npm are needed"
    lock = IDENTITY_DIR / "package-lock.json"
    modules = IDENTITY_DIR / "node_modules"
    stamp = modules / ".arrowroot-lock.sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text().strip() == digest):
        proc = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=IDENTITY_DIR, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"npm ci failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        stamp.write_text(digest + "\n")
    return modules


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rsa_jwk(kid: str, alg: str = "RS256") -> tuple[dict, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk, key


class OidcProvider:
    """oidc-provider on 127.0.0.1:<free port>; ``token()`` asks its token endpoint."""

    def __init__(self, workdir: Path, access_ttl: int = 600):
        npm_ci()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keys_file = self.workdir / "jwks.json"
        self.private: dict[str, rsa.RSAPrivateKey] = {}
        self.signing_kid = ""
        self.clients = {
            # service accounts (client credentials): the user name and groups a site's mappers would add
            "alice-cli": ("alice-secret", {"preferred_username": "alice", "groups": ["/l200/analysis"]}),
            "bob-cli": ("bob-secret", {"preferred_username": "bob", "groups": ["/other"]}),
            "carol-cli": ("carol-secret", {"preferred_username": "carol"}),
        }
        self.web_client = ("arrowroot-web", "web-secret")
        self.redirect_uris: list[str] = []
        self._write_keys([self._new_key("k1")])
        self.access_ttl = access_ttl
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def _new_key(self, kid: str) -> dict:
        jwk, key = rsa_jwk(kid)
        self.private[kid] = key
        return jwk

    def _write_keys(self, jwks: list[dict]) -> None:
        self.keys_file.write_text(json.dumps({"keys": jwks}))
        self.signing_kid = jwks[0]["kid"]
        self._public = jwks

    def start(self, redirect_uris: list[str] | None = None) -> "OidcProvider":
        self.redirect_uris = redirect_uris or ["http://127.0.0.1:1/auth/callback"]
        config = {
            "port": 0, "keys_file": str(self.keys_file), "audience": AUDIENCE, "resource": RESOURCE,
            "other_resource": OTHER_RESOURCE, "other_audience": OTHER_AUDIENCE, "scopes": SCOPES,
            "access_ttl": self.access_ttl,
            "clients": [{"client_id": cid, "client_secret": sec, "grant_types": ["client_credentials"],
                         "redirect_uris": [], "response_types": []} for cid, (sec, _) in self.clients.items()]
            + [{"client_id": self.web_client[0], "client_secret": self.web_client[1],
                "grant_types": ["authorization_code"], "response_types": ["code"],
                "redirect_uris": self.redirect_uris}],
            "client_claims": {cid: claims for cid, (_, claims) in self.clients.items()},
            "accounts": {"alice": {"groups": ["/l200/analysis"]}, "dave": {"groups": ["/l200/analysis"]}},
        }
        (self.workdir / "config.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen([NODE, str(IDENTITY_DIR / "oidc_provider.mjs"), str(self.workdir / "config.json")],
                                     stdout=subprocess.PIPE, stderr=open(self.workdir / "provider.log", "w"), text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        line = self._line()
        assert line.startswith("listening "), line
        self.port = int(line.split()[1])
        return self

    def _line(self, timeout: float = 30.0) -> str:
        """The script's next own line (oidc-provider's notices on stdout are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"oidc-provider said nothing in {timeout} s: "
                                     f"{(self.workdir / 'provider.log').read_text()}") from None
            if line.startswith(("listening", "rotat")) or not line:
                return line

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rotate(self, keep_old: bool = True) -> str:
        """A new signing key (published first); the old one stays published when ``keep_old``."""
        kid = f"k{len(self.private) + 1}"
        old = [k for k in self._public] if keep_old else []
        self._write_keys([self._new_key(kid), *old])
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        line = self._line()
        assert line == "rotated", line
        return kid

    def token(self, client: str = "alice-cli", scope: str | None = None, resource: str = RESOURCE) -> str:
        """An access token from the provider's token endpoint (client credentials grant)."""
        secret = self.clients[client][0]
        data = {"grant_type": "client_credentials", "resource": resource}
        if scope:
            data["scope"] = scope
        r = httpx.post(f"{self.issuer}/token", data=data, auth=(client, secret), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def sign(self, claims: dict, kid: str | None = None, headers: dict | None = None) -> str:
        """A token signed with one of the provider's own private keys (for cases it will not issue,
        such as a future ``nbf``)."""
        kid = kid or self.signing_kid
        return jwt.encode(claims, self.private[kid], algorithm="RS256", headers={"kid": kid, **(headers or {})})

    def claims(self, **extra: object) -> dict:
        now = int(time.time())
        return {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice-cli", "preferred_username": "alice",
                "groups": ["/l200/analysis"], "iat": now, "exp": now + 600, **extra}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        return self.private[self.signing_kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def hs256_with(key: bytes, claims: dict, kid: str) -> str:
    """An HS256 token whose HMAC secret is ``key`` (the issuer's public key: the classic confusion)."""
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def unsigned(claims: dict, kid: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}."


def tampered(token: str, **changes: object) -> str:
    """The same signature over a payload changed after signing."""
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    new = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{new}.{sig}"


def login_code_flow(client: httpx.Client, start_url: str, login: str, password: str = "any") -> httpx.Response:
    """Drive a browser-like authorization-code login: follow redirects, fill the login service's
    own forms (its hidden fields kept, the user name and password typed in, consent confirmed);
    returns the app's first answer that is not a redirect (after its callback)."""
    app = urllib.parse.urlsplit(start_url).netloc
    r = client.get(start_url)
    for _ in range(15):
        if r.is_redirect:
            r = client.get(urllib.parse.urljoin(str(r.url), r.headers["location"]))
            continue
        if urllib.parse.urlsplit(str(r.url)).netloc == app:
            return r
        form = re.search(r'<form[^>]*?action="([^"]*)"[^>]*>(.*?)</form>', r.text, re.S | re.I)
        if r.status_code != 200 or not form or 'method="post"' not in form.group(0).lower():
            return r
        action = urllib.parse.urljoin(str(r.url), form.group(1).replace("&amp;", "&") or str(r.url))
        data = {}
        for tag in re.findall(r"<input[^>]*>", form.group(2), re.I):
            name = re.search(r'name="([^"]+)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name:
                data[name.group(1)] = value.group(1).replace("&amp;", "&") if value else ""
        for key in ("login", "username"):
            if key in data:
                data[key] = login
        if "password" in data:
            data["password"] = password
        r = client.post(action, data=data)
    return r


# ---------------------------------------------------------------- JupyterHub

HUB_CONFIG = '''
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.ConfigurableHTTPProxy.pid_file = {pid_file!r}
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret_file = {cookie!r}
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = "hub-password-for-tests"
c.Authenticator.allowed_users = {{"alice", "bob"}}
c.JupyterHub.load_groups = {{"l200-analysis": {{"users": ["alice"]}}}}
c.JupyterHub.services = [
    {{"name": "arrowroot", "api_token": {service_token!r}, "oauth_redirect_uri": {redirect!r},
      "oauth_no_confirm": True}},
    {{"name": "test-admin", "api_token": {admin_token!r}}},      # the test harness
]
c.JupyterHub.load_roles = [
    # as the README says: arrowroot reads user names and groups; users' tokens may reach it
    {{"name": "arrowroot-service", "services": ["arrowroot"], "scopes": ["read:users:name", "read:users:groups"]}},
    {{"name": "user", "scopes": ["self", "access:services!service=arrowroot"]}},
    {{"name": "test-admin", "services": ["test-admin"],
      "scopes": ["admin:users", "tokens", "servers", "admin:servers", "access:servers", "read:users"]}},
]
# single-user servers: real jupyter_server processes as this unix user (no system accounts needed)
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {args!r}           # --allow-root where the tests run as root (CI)
c.Spawner.default_url = "/tree"
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
c.Spawner.environment = {{"ARROWROOT_URL": {arrowroot_url!r}}}
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server",
                                 "access:services!service=arrowroot", "read:users:groups!user"]
'''


class Hub:
    """JupyterHub 6 with configurable-http-proxy, on loopback ports."""

    def __init__(self, workdir: Path, redirect: str = "http://127.0.0.1:1/auth/callback",
                 arrowroot_url: str = ""):
        modules = npm_ci()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.service_token = secrets.token_hex(32)
        self.admin_token = secrets.token_hex(32)
        (self.workdir / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=self.hub_port, proxy_api_port=self.proxy_api_port,
            chp=str(modules / ".bin" / "configurable-http-proxy"), proxy_token=secrets.token_hex(16),
            pid_file=str(self.workdir / "proxy.pid"), db=self.workdir / "jupyterhub.sqlite",
            cookie=str(self.workdir / "cookie_secret"), service_token=self.service_token, redirect=redirect,
            admin_token=self.admin_token, python=sys.executable, arrowroot_url=arrowroot_url,
            args=["--allow-root"] if os.getuid() == 0 else []))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The hub's REST API through its proxy."""
        return f"{self.url}/hub/api"

    def start(self, timeout: float = 90.0) -> "Hub":
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        self.log = open(self.workdir / "hub.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
                                     cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, (self.workdir / "hub.log").read_text()[-4000:]
            try:
                if httpx.get(f"{self.api_url}/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (self.workdir / "hub.log").read_text()[-4000:]
            time.sleep(0.3)

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, f"{self.api_url}{path}", headers={"authorization": f"token {self.admin_token}"},
                             timeout=30, **kwargs)

    def user_token(self, user: str, scopes: list[str] | None = None, note: str = "test") -> tuple[str, str]:
        """(token, token id) for ``user``, made through the hub's REST API."""
        body: dict = {"note": note}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.api("POST", f"/users/{user}/tokens", json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()["token"], r.json()["id"]

    def start_server(self, user: str, timeout: float = 150.0) -> str:
        """Spawn ``user``'s single-user server through the REST API; its URL once it answers."""
        r = self.api("POST", f"/users/{user}/server")
        assert r.status_code in (201, 202), r.text
        deadline = time.monotonic() + timeout
        while True:
            model = self.api("GET", f"/users/{user}").json()
            server = (model.get("servers") or {}).get("", {})
            if server.get("ready"):
                return f"{self.url}{server['url']}".rstrip("/")
            assert time.monotonic() < deadline, (self.workdir / "hub.log").read_text()[-4000:]
            time.sleep(0.5)

    def stop_server(self, user: str) -> None:
        self.api("DELETE", f"/users/{user}/server")

    def run_in_notebook(self, user: str, code: str, timeout: float = 120.0) -> str:
        """Run ``code`` in a new kernel of ``user``'s single-user server (its REST API and kernel
        websocket, as JupyterLab does); the kernel's stdout, or AssertionError with its error."""
        import uuid

        import websocket

        base = self.start_server(user)
        token, _ = self.user_token(user, [f"access:servers!user={user}"], note="run_in_notebook")
        auth = {"authorization": f"token {token}"}
        r = httpx.post(f"{base}/api/kernels", headers=auth, json={"name": "python3"}, timeout=60)
        assert r.status_code == 201, r.text
        kernel = r.json()["id"]
        ws = websocket.create_connection(f"{base.replace('http://', 'ws://')}/api/kernels/{kernel}/channels",
                                         header=[f"Authorization: token {token}"], timeout=timeout)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            out: list[str] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["header"]["msg_type"], msg["content"]
                if kind == "stream" and content.get("name") == "stdout":
                    out.append(content["text"])
                elif kind == "error":
                    raise AssertionError(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content.get("execution_state") == "idle":
                    return "".join(out)
            raise AssertionError(f"the kernel did not finish in {timeout} s")
        finally:
            ws.close()
            httpx.delete(f"{base}/api/kernels/{kernel}", headers=auth, timeout=30)

    def revoke(self, user: str, token_id: str) -> None:
        r = self.api("DELETE", f"/users/{user}/tokens/{token_id}")
        assert r.status_code == 204, r.text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the hub stops its proxy on a clean exit
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        pid_file = self.workdir / "proxy.pid"
        if pid_file.exists():  # a proxy left behind by a killed hub
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError, PermissionError):
                pass
        if getattr(self, "log", None):
            self.log.close()
