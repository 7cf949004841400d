"""Logging in with the account you already have: OIDC bearer JWTs, WLCG scopes, JupyterHub users.

Real components only: oidc-provider (npm, under Node.js) issues tokens through its own token
endpoint and login form and rotates its keys; JupyterHub 6 (PyPI) with configurable-http-proxy
(npm) makes user tokens through its REST API and verifies them for arrowroot. Every credential
reads the same dataset on every door (Flight, Flight SQL through ADBC, HTTP); each hostile token
is refused with its status, the server stays up, and no token text reaches the log.

Cast: lena is a local user (password, API key). alice's tokens carry the group /l200/analysis
(grants hep/* and lab/*); bob's carry /other (no grant); alice is also a hub user in the hub
group l200-analysis (grant hep/*).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pytest

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.clients import Client
from arrowroot.clients.errors import Unauthenticated
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.service.identity import MAX_AUTH_HEADER
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.web import WebServer

from identity_services import (AUDIENCE, NODE, NPM, OTHER_RESOURCE, Hub, OidcProvider, hs256_with,
                               login_code_flow, tampered, unsigned)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(NODE is None or NPM is None, reason="node and npm run the identity services")]

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
ENTRIES = 4000
LENA_PW = "lena-pw-1"


@dataclass
class Served:
    server: ArrowrootServer
    web: WebServer
    catalog: Catalog
    location: str

    @property
    def http_url(self) -> str:
        return self.web.url.rstrip("/")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    p = OidcProvider(tmp_path_factory.mktemp("oidc"))
    web_port = _free_port()
    p.start(redirect_uris=[f"http://127.0.0.1:{web_port}/auth/callback"])
    p.web_port = web_port
    yield p
    p.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    web_port = _free_port()                  # the web view that logs in through the hub (its OAuth callback)
    h = Hub(tmp_path_factory.mktemp("hub"), redirect=f"http://127.0.0.1:{web_port}/auth/callback")
    h.web_port = web_port
    h.start()
    yield h
    h.stop()


def _free_port() -> int:
    from identity_services import free_port
    return free_port()


def _config(provider: OidcProvider, hub: Hub | None, token_file: Path, web_login: str = "oidc") -> str:
    text = f'''
[[auth.oidc]]
issuer = "{provider.issuer}"
audience = "{AUDIENCE}"
user_claim = "preferred_username"
groups_claim = "groups"
leeway = 5
refetch_interval = 1
'''
    if hub is not None:
        text += f'''
[auth.jupyterhub]
api_url = "{hub.api_url}"
api_token_file = "{token_file}"
cache_ttl = 2
public_url = "{hub.url}"
'''
    if web_login == "oidc":
        secret = token_file.with_name("web-secret")
        secret.write_text(provider.web_client[1])
        text += f'''
[auth.web]
login = "oidc"
client_id = "{provider.web_client[0]}"
client_secret_file = "{secret}"
scopes = ["openid", "profile", "groups"]
'''
    return text


def _serve(root: Path, catalog: Catalog, http_port: int = 0) -> Served:
    server = ArrowrootServer(Settings(root=root, port=0), catalog=catalog)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    web = WebServer(server.service, http_port, flight_port=server.port).start()
    return Served(server, web, catalog, f"grpc://127.0.0.1:{server.port}")


def _people(cat: Catalog) -> None:
    identities.add_user(cat, "lena", LENA_PW)
    identities.grant(cat, "hep/*", "user:lena")
    identities.add_group(cat, "/l200/analysis")
    identities.grant(cat, "hep/*", "group:/l200/analysis")
    identities.grant(cat, "lab/*", "group:/l200/analysis")
    identities.add_group(cat, "l200-analysis")            # the hub's group name
    identities.grant(cat, "hep/*", "group:l200-analysis")


@pytest.fixture(scope="module")
def served(provider: OidcProvider, hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = write_sample_files(tmp_path_factory.mktemp("ssodata"), entries=ENTRIES)
    token_file = tmp_path_factory.mktemp("secrets") / "hub-token"
    token_file.write_text(hub.service_token)
    (root / "arrowroot.toml").write_text(_config(provider, hub, token_file))
    cat = Catalog(tmp_path_factory.mktemp("ssocat") / "catalog.duckdb")
    _people(cat)
    s = _serve(root, cat, provider.web_port)
    yield s
    s.web.stop()
    s.server.shutdown()
    cat.close()


# ---------------------------------------------------------------- the three doors


def read_flight(s: Served, **cred: str) -> tuple[int, int]:
    with Client(s.location, discover=False, **cred) as c:
        t = c.read(EVENTS, ["nMuon"], library="pa")
    return t.num_rows, pc.sum(t["nMuon"]).as_py()


def read_sql(s: Served, **db_kwargs: str) -> tuple[int, int]:
    import adbc_driver_flightsql.dbapi as flightsql

    with flightsql.connect(s.location, db_kwargs=db_kwargs) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*), sum("nMuon") FROM "{EVENTS}"')
        n, total = cur.fetchone()
    return n, int(total)


def read_http(s: Served, authorization: str) -> tuple[int, int]:
    r = httpx.get(f"{s.http_url}/api/data/{EVENTS}", params={"columns": "nMuon", "format": "arrow"},
                  headers={"authorization": authorization}, timeout=60)
    assert r.status_code == 200, r.text
    t = pa.ipc.open_stream(r.content).read_all()
    return t.num_rows, pc.sum(t["nMuon"]).as_py()


def _bearer_everywhere(s: Served, token: str) -> list[tuple[int, int]]:
    return [read_flight(s, token=token),
            read_sql(s, **{"adbc.flight.sql.authorization_header": f"Bearer {token}"}),
            read_http(s, f"Bearer {token}")]


def test_same_read_with_every_credential_on_every_door(served: Served, provider: OidcProvider, hub: Hub,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    import base64
    reference = read_flight(served, username="lena", password=LENA_PW)
    assert reference[0] == ENTRIES
    basic = "Basic " + base64.b64encode(f"lena:{LENA_PW}".encode()).decode()
    results = {"password": [reference, read_sql(served, username="lena", password=LENA_PW),
                            read_http(served, basic)]}
    _, key = identities.create_key(served.catalog, "lena", "sso-test")
    oidc = provider.token("alice-cli")
    wlcg = provider.token("alice-cli", scope="storage.read:/hep")
    hub_token, _ = hub.user_token("alice", ["access:services!service=arrowroot"])
    secrets_ = {"api key": key, "oidc": oidc, "wlcg scope": wlcg, "jupyterhub": hub_token}
    for kind, token in secrets_.items():
        results[kind] = _bearer_everywhere(served, token)
    for kind, got in results.items():
        assert got == [reference] * 3, kind
    for token in secrets_.values():  # tokens never logged
        assert token not in caplog.text and token.split(".")[-1] not in caplog.text


def test_token_groups_are_grantees_and_hidden_means_absent(served: Served, provider: OidcProvider) -> None:
    alice = provider.token("alice-cli")
    with Client(served.location, token=alice, discover=False) as c:
        names = set(c.datasets().column("name").to_pylist())
    assert EVENTS in names and DETECTOR in names
    assert all(n.startswith(("hep/", "lab/")) for n in names)
    bob = provider.token("bob-cli")          # a valid token, but its group has no grant
    with Client(served.location, token=bob, discover=False) as c:
        assert c.datasets().num_rows == 0
        with pytest.raises(KeyError) as hidden:
            c.read(EVENTS, ["nMuon"])
        with pytest.raises(KeyError) as missing:
            c.read("hep/absent.root:events", ["nMuon"])
    assert str(hidden.value).replace(EVENTS, "X") == str(missing.value).replace("hep/absent.root:events", "X")


def test_wlcg_scope_narrows_the_grants(served: Served, provider: OidcProvider,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lab_only = provider.token("alice-cli", scope="storage.read:/lab")
    scitoken = provider.token("alice-cli", scope="read:/hep")
    with Client(served.location, token=lab_only, discover=False) as c:
        names = set(c.datasets().column("name").to_pylist())
        assert DETECTOR in names and not any(n.startswith("hep/") for n in names)
        with pytest.raises(KeyError, match="no dataset"):           # NOT_FOUND, like a missing one
            c.read(EVENTS, ["nMuon"])
        assert c.read(DETECTOR, entries=(0, 10)).num_rows == 10
    assert read_flight(served, token=scitoken) == (ENTRIES, read_flight(served, token=provider.token("alice-cli"))[1])
    with Client(served.location, token=scitoken, discover=False) as c:
        assert not any(n.startswith("lab/") for n in c.datasets().column("name").to_pylist())
    # SQL and HTTP see the same narrowing
    import adbc_driver_flightsql.dbapi as flightsql
    with flightsql.connect(served.location, db_kwargs={"adbc.flight.sql.authorization_header":
                                                       f"Bearer {lab_only}"}) as conn, conn.cursor() as cur:
        with pytest.raises(flightsql.ProgrammingError, match="hep/events.root:events"):
            cur.execute(f'SELECT count(*) FROM "{EVENTS}"')
    r = httpx.get(f"{served.http_url}/api/data/{EVENTS}", headers={"authorization": f"Bearer {lab_only}"})
    assert r.status_code == 404
    assert lab_only not in caplog.text


def test_token_user_workspace_is_under_its_name(served: Served, provider: OidcProvider) -> None:
    alice = provider.token("alice-cli")
    table = pa.table({"x": pa.array(range(5), pa.int64())})
    with Client(served.location, token=alice, discover=False) as c:
        summary = c.put("home/alice/sso_test", table)
        assert summary["dataset"] == "home/alice/sso_test" and summary["rows"] == 5
        assert c.read("home/alice/sso_test").column("x").to_pylist() == list(range(5))
    with Client(served.location, token=provider.token("bob-cli"), discover=False) as c:
        with pytest.raises(KeyError):                 # another token user's home does not exist for bob
            c.read("home/alice/sso_test")
        with pytest.raises(PermissionError):
            c.put("home/alice/intruder", table)


# ---------------------------------------------------------------- hostile tokens


def _refused(s: Served, token: str) -> tuple[str, int, str]:
    """(Flight error type, HTTP status, Flight message) for one token on Flight and HTTP."""
    with fl.connect(s.location) as c:
        try:
            list(c.list_flights(options=fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])))
            kind, message = "accepted", ""
        except fl.FlightError as exc:
            kind, message = type(exc).__name__, str(exc).split(". Detail:")[0]
    r = httpx.get(f"{s.http_url}/api/datasets", headers={"authorization": f"Bearer {token}"}, timeout=30)
    return kind, r.status_code, message


def test_hostile_tokens_are_refused(served: Served, provider: OidcProvider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    good = provider.token("alice-cli")
    kid = provider.signing_kid
    cases = {
        "expired": (provider.sign(provider.claims(iat=now - 7200, exp=now - 3600)), "token expired"),
        "not yet valid": (provider.sign(provider.claims(nbf=now + 3600)), "not yet valid"),
        "issued in the future": (provider.sign(provider.claims(iat=now + 3600)), "not yet valid"),
        "wrong audience": (provider.token("alice-cli", resource=OTHER_RESOURCE), "meant for another service"),
        "wrong issuer": (provider.sign(provider.claims(iss="https://evil.example")), "does not trust"),
        "alg none": (unsigned(provider.claims(), kid), "algorithm 'none'"),
        "HS256 with the public key": (hs256_with(provider.public_pem(), provider.claims(), kid), "algorithm 'HS256'"),
        "unknown kid": (provider.sign(provider.claims(), kid=kid, headers={"kid": "made-up"}), "does not publish"),
        "tampered payload": (tampered(good, preferred_username="lena"), "signature does not verify"),
        "no exp": (provider.sign({k: v for k, v in provider.claims().items() if k != "exp"}), "lacks the 'exp'"),
        "oversized": (good + "A" * (MAX_AUTH_HEADER + 100), f"at most {MAX_AUTH_HEADER}"),
        "garbage jwt": ("eyJhbGciOi.not-base64!.x", "not a valid JWT"),
    }
    fetches = served.server.ctx.auth.external.oidc.keys[provider.issuer].fetches
    for name, (token, message) in cases.items():
        kind, status, text = _refused(served, token)
        assert (kind, status) == ("FlightUnauthenticatedError", 401), name
        assert message in text, (name, text)
        assert token not in caplog.text, name
        assert token.split(".")[-1] not in caplog.text or len(token.split(".")[-1]) < 8, name
    expired_text = _refused(served, cases["expired"][0])[2]
    assert provider.issuer in expired_text            # "token expired" names the issuer
    # the made-up kid cost at most one extra JWKS fetch, even asked twice in a row (rate limit)
    assert served.server.ctx.auth.external.oidc.keys[provider.issuer].fetches <= fetches + 1
    assert read_flight(served, token=good)[0] == ENTRIES  # the server is up and good tokens work
    assert good not in caplog.text


def test_made_up_key_ids_cannot_flood_the_issuer(served: Served, provider: OidcProvider) -> None:
    """Each unknown key id may refetch the keys, but at most once per refetch_interval (1 s here)."""
    oidc = served.server.ctx.auth.external.oidc
    keys = oidc.keys[provider.issuer]
    before, t0 = keys.fetches, time.monotonic()
    for i in range(50):
        token = provider.sign(provider.claims(jti=str(i)), headers={"kid": f"made-up-{i}"})
        with pytest.raises(Exception, match="does not publish"):
            oidc.verify(token)
    elapsed = time.monotonic() - t0
    assert keys.fetches - before <= 1 + int(elapsed / keys.config.refetch_interval), (keys.fetches - before, elapsed)


def test_key_rotation(served: Served, provider: OidcProvider) -> None:
    before = provider.token("alice-cli")
    assert read_flight(served, token=before)[0] == ENTRIES
    keys = served.server.ctx.auth.external.oidc.keys[provider.issuer]
    fetches = keys.fetches
    time.sleep(1.1)                                   # past refetch_interval
    new_kid = provider.rotate(keep_old=True)
    after = provider.token("alice-cli")               # signed with the new key
    assert json.loads(_b64(after.split(".")[0]))["kid"] == new_kid
    assert read_flight(served, token=after)[0] == ENTRIES       # unknown kid → one refetch → accepted
    assert keys.fetches == fetches + 1
    assert read_flight(served, token=before)[0] == ENTRIES      # the old key is still published
    time.sleep(1.1)
    provider.rotate(keep_old=False)                   # the first two keys withdrawn
    newest = provider.token("alice-cli")
    assert read_flight(served, token=newest)[0] == ENTRIES
    forged_old = provider.sign(provider.claims(), kid="k1")    # a key no longer published
    kind, status, text = _refused(served, forged_old)
    assert (kind, status) == ("FlightUnauthenticatedError", 401) and "does not publish" in text


def _b64(part: str) -> bytes:
    import base64
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_expired_token_from_the_provider(tmp_path: Path, provider: OidcProvider) -> None:
    """A token the provider issued with a 2-second lifetime stops working once it expires."""
    short = OidcProvider(tmp_path / "short", access_ttl=2).start()
    try:
        root = write_sample_files(tmp_path / "data", entries=100)
        (root / "arrowroot.toml").write_text(
            f'[auth.oidc]\nissuer = "{short.issuer}"\naudience = "{AUDIENCE}"\n'
            'user_claim = "preferred_username"\nleeway = 0\n')
        cat = Catalog(tmp_path / "catalog.duckdb")
        identities.add_group(cat, "/l200/analysis")
        identities.grant(cat, "hep/*", "group:/l200/analysis")
        s = _serve(root, cat)
        try:
            token = short.token("alice-cli")
            with Client(s.location, token=token, discover=False) as c:
                assert c.read(EVENTS, ["nMuon"]).num_rows == 100
                time.sleep(3.2)
                with pytest.raises(Unauthenticated, match=f"token expired \\(issuer {short.issuer}\\)"):
                    c.read(EVENTS, ["nMuon"])
        finally:
            s.web.stop()
            s.server.shutdown()
            cat.close()
    finally:
        short.stop()


# ---------------------------------------------------------------- JupyterHub


def test_hub_token_groups_and_revocation(served: Served, hub: Hub) -> None:
    token, token_id = hub.user_token("alice", ["access:services!service=arrowroot"])
    with Client(served.location, token=token, discover=False) as c:
        names = set(c.datasets().column("name").to_pylist())
        assert EVENTS in names and not any(n.startswith("lab/") for n in names)   # hub group: hep/* only
    hub.revoke("alice", token_id)
    deadline = time.monotonic() + 10                  # cache_ttl = 2 s in this server's config
    while True:
        try:
            with Client(served.location, token=token, discover=False) as c:
                c.datasets()
        except Unauthenticated as exc:
            assert "JupyterHub" in str(exc)
            break
        assert time.monotonic() < deadline, "a revoked hub token still works after the cache lifetime"
        time.sleep(0.3)


def test_hub_token_without_the_service_scope_is_refused(served: Served, hub: Hub) -> None:
    token, _ = hub.user_token("bob", ["read:users:name!user"])
    with pytest.raises(Unauthenticated, match="access:services!service=arrowroot"):
        with Client(served.location, token=token, discover=False) as c:
            c.datasets()


def test_client_in_a_notebook_finds_the_hub_token(served: Served, hub: Hub) -> None:
    """In alice's single-user server, spawned by the hub, a kernel runs ``Client(...)`` with no
    credentials: it finds the server's $JUPYTERHUB_API_TOKEN and reads as alice."""
    code = ("import os\n"
            "from arrowroot.clients import Client\n"
            f"c = Client({served.location!r})\n"
            f"t = c.read({EVENTS!r}, ['nMuon'])\n"
            "print(c.token_source, t.num_rows, os.environ['JUPYTERHUB_USER'])\n")
    try:
        out = hub.run_in_notebook("alice", code)
    finally:
        hub.stop_server("alice")
    assert out.split() == ["$JUPYTERHUB_API_TOKEN", str(ENTRIES), "alice"]


def test_client_finds_a_wlcg_token_file(served: Served, provider: OidcProvider, tmp_path: Path) -> None:
    token = provider.token("alice-cli", scope="storage.read:/hep")
    (tmp_path / f"bt_u{os.getuid()}").write_text(token + "\n")
    code = ("from arrowroot.clients import Client\n"
            f"c = Client({served.location!r})\n"
            f"print(c.token_source, c.read({EVENTS!r}, ['nMuon']).num_rows)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEARER_TOKEN", "JUPYTERHUB_"))}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [f"$XDG_RUNTIME_DIR/bt_u{os.getuid()}", str(ENTRIES)]
    other = tmp_path / "elsewhere.jwt"
    other.write_text(provider.token("bob-cli"))
    env["BEARER_TOKEN_FILE"] = str(other)             # takes precedence over the runtime dir
    out = subprocess.run([sys.executable, "-c", "from arrowroot.clients import Client\n"
                          f"print(Client({served.location!r}).token_source)"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "$BEARER_TOKEN_FILE"


# ---------------------------------------------------------------- web login


def test_web_login_through_the_oidc_provider(served: Served, provider: OidcProvider) -> None:
    """The web view's login is the provider's authorization-code flow with PKCE."""
    with httpx.Client(timeout=30, follow_redirects=False) as browser:
        r = browser.get(f"{served.http_url}/datasets/{EVENTS}")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        r = login_code_flow(browser, f"{served.http_url}{r.headers['location']}", login="alice")
        assert r.status_code == 200, (r.status_code, r.text[:300])
        assert str(r.url).startswith(f"{served.http_url}/datasets/")
        assert "alice" in r.text and "nMuon" in r.text
        page = browser.get(f"{served.http_url}/").text
        assert "scan.h5" in page                          # group /l200/analysis from the ID token
    with httpx.Client(timeout=30, follow_redirects=False) as browser:  # a forged callback is refused
        r = browser.get(f"{served.http_url}/auth/callback", params={"code": "x", "state": "forged"})
        assert r.status_code == 400


def test_web_login_through_the_hub(hub: Hub, tmp_path: Path) -> None:
    """The web view logs in with the hub's OAuth; revoking that token at the hub ends the session."""
    root = write_sample_files(tmp_path / "data", entries=100)
    token_file = tmp_path / "hub-token"
    token_file.write_text(hub.service_token)
    (root / "arrowroot.toml").write_text(
        f'[auth.jupyterhub]\napi_url = "{hub.api_url}"\napi_token_file = "{token_file}"\ncache_ttl = 1\n'
        '[auth.web]\nlogin = "jupyterhub"\n')
    cat = Catalog(tmp_path / "catalog.duckdb")
    identities.add_group(cat, "l200-analysis")
    identities.grant(cat, "hep/*", "group:l200-analysis")
    s = _serve(root, cat, hub.web_port)
    try:
        with httpx.Client(timeout=30, follow_redirects=False) as browser:
            start = f"{s.http_url}/login?next=/datasets/{EVENTS}"
            r = login_code_flow(browser, start, login="alice", password="hub-password-for-tests")
            assert r.status_code == 200, (r.status_code, r.text[:300])
            assert str(r.url) == f"{s.http_url}/datasets/{EVENTS}" and "alice" in r.text
            tokens = hub.api("GET", "/users/alice/tokens").json()["api_tokens"]
            oauth = [t for t in tokens if t.get("oauth_client") and "arrowroot" in str(t.get("oauth_client"))]
            assert oauth, tokens
            for t in oauth:
                hub.revoke("alice", t["id"])
            deadline = time.monotonic() + 10
            while browser.get(f"{s.http_url}/datasets/{EVENTS}").status_code == 200:
                assert time.monotonic() < deadline, "the web session outlived its revoked hub token"
                time.sleep(0.3)
            r = browser.get(f"{s.http_url}/datasets/{EVENTS}")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        s.web.stop()
        s.server.shutdown()
        cat.close()


@pytest.mark.browser
def test_web_login_in_a_real_browser(served: Served, provider: OidcProvider, tmp_path: Path) -> None:
    """Chromium (Debian's, driven by Playwright) goes through the provider's own login and consent
    pages and lands on the dataset page as alice; logging out ends the session."""
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("no chromium on PATH (.ci/run installs it)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"{served.http_url}/datasets/{EVENTS}")
            page.wait_for_selector("input[name=login]")                 # the provider's own login form
            assert page.url.startswith(provider.issuer)
            page.fill("input[name=login]", "alice")
            page.fill("input[name=password]", "any")
            page.click("button[type=submit]")
            page.wait_for_selector("input[name=prompt][value=consent]", state="attached")   # its consent page
            page.click("button[type=submit]")
            page.wait_for_url(f"{served.http_url}/datasets/**")
            body = page.content()
            assert "alice" in body and "nMuon" in body
            page.screenshot(path=str(tmp_path / "after-login.png"), full_page=True)
            page.goto(f"{served.http_url}/")
            assert "scan.h5" in page.content()                          # granted through the token's group
        finally:
            browser.close()
