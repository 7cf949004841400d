"""Failed-login lockouts keyed by (name, client address): a guesser cannot lock the owner out.

Loopback clients bind different source addresses (127.0.0.2 attacks, 127.0.0.3 is the owner):
the whole 127/8 is local on Linux, so the server sees two addresses.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator

import httpx
import pyarrow.flight as fl
import pytest

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.service.logins import LockedOut, LoginLimiter
from arrowroot.flight_server.web import WebServer

PASSWORD = "correct horse battery"
ATTACKER, OWNER = "127.0.0.2", "127.0.0.3"


# ------------------------------------------------------------------ the limiter


def test_a_locked_key_does_not_lock_the_name_elsewhere() -> None:
    lim = LoginLimiter(free=3, max_lock_s=8, burst=1000)
    for i in range(4):
        lim.check("alice", ATTACKER, now=100.0 + i)
        lim.failed("alice", ATTACKER, now=100.0 + i)
    with pytest.raises(LockedOut, match=r"for 'alice' from this address; try again in a second"):
        lim.check("alice", ATTACKER, now=103.5)
    lim.check("alice", OWNER, now=103.5)          # the owner, from elsewhere: not refused
    lim.check("alice", now=103.5)                 # nor on the Flight port (address unknown)
    lim.succeeded("alice", OWNER)                 # the owner's success does not unlock the attacker
    with pytest.raises(LockedOut):
        lim.check("alice", ATTACKER, now=103.6)


def test_one_address_spraying_names_is_locked() -> None:
    lim = LoginLimiter(free=5, free_per_address=10, burst=1000)
    for i in range(11):
        lim.failed(f"user{i}", ATTACKER, now=10.0)
    with pytest.raises(LockedOut, match="from this address; try again in 1 s"):
        lim.check("someone-new", ATTACKER, now=10.0)
    lim.check("someone-new", OWNER, now=10.0)


def test_the_server_wide_backstop_spares_keys_without_failures() -> None:
    lim = LoginLimiter(free=100, free_per_address=1000, burst=10, window_s=5)
    for i in range(10):
        lim.failed("alice", f"10.0.0.{i}", now=50.0)
    with pytest.raises(LockedOut, match="on this server; try again in 5 s"):
        lim.check("alice", "10.0.0.3", now=51.0)
    lim.check("alice", OWNER, now=51.0)           # no failure on record from here: not refused
    lim.check("alice", "10.0.0.3", now=56.0)      # the window moved on


def test_the_records_stay_bounded_and_are_forgotten() -> None:
    lim = LoginLimiter(max_keys=500, forget_s=60)
    for i in range(20_000):  # an attacker cycling names and addresses
        lim.failed(f"name{i}", f"10.{i % 250}.{i // 250 % 250}.1", now=1000.0 + i / 1000)
        assert len(lim) <= 500
    assert len(lim) == 500
    lim.failed("alice", ATTACKER, now=2000.0)
    for _ in range(10):
        lim.failed("alice", ATTACKER, now=2000.0)
    with pytest.raises(LockedOut):
        lim.check("alice", ATTACKER, now=2001.0)
    lim.check("alice", ATTACKER, now=2000.0 + 61 + 300)  # forgotten after forget_s, even while locked before
    assert ("alice", ATTACKER) not in lim._keys


# ------------------------------------------------------------------ over the doors


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ArrowrootServer, WebServer]]:
    root = write_sample_files(tmp_path_factory.mktemp("lockouts"), entries=100)
    cat = Catalog(tmp_path_factory.mktemp("lockouts_cat") / "catalog.duckdb")
    identities.add_user(cat, "alice", PASSWORD)
    identities.grant(cat, "hep/*", "user:alice")
    server = ArrowrootServer(Settings(root=root, port=0, auth=True), catalog=cat)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    web = WebServer(server.service, port=0, host="127.0.0.1", flight_port=server.port).start()
    yield server, web
    web.stop()
    server.shutdown()


def _http(web: WebServer, source: str, auth: tuple[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=web.url, auth=auth, timeout=30, follow_redirects=False,
                        transport=httpx.HTTPTransport(local_address=source))


def _basic(password: str) -> fl.FlightCallOptions:
    raw = base64.b64encode(f"alice:{password}".encode()).decode()
    return fl.FlightCallOptions(headers=[(b"authorization", f"Basic {raw}".encode())])


@pytest.mark.slow
def test_guessing_from_one_address_leaves_the_owner_in(served) -> None:
    server, web = served
    limiter = server.ctx.auth.logins = LoginLimiter()
    with _http(web, ATTACKER, ("alice", "guess")) as attacker:
        for _ in range(6):
            r = attacker.get("/api/datasets")
            assert r.status_code == 401 and "wrong user name or password" in r.json()["message"]
        r = attacker.get("/api/datasets")  # the 6th failure locked the key: refused unchecked, with the wait
        assert r.status_code == 401
        assert "too many failed logins for 'alice' from this address; try again in" in r.json()["message"]
        for _ in range(4):  # the attacker keeps at it each time the lock lapses (1, 2, 4, 8 s): now 16 s
            limiter.failed("alice", ATTACKER)
        r = attacker.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/"})
        assert r.status_code == 401 and "too many failed logins" in r.text  # even the right password, from there
        r = attacker.get("/api/datasets", auth=("alice", PASSWORD))
        assert r.status_code == 401 and "try again in" in r.json()["message"]
    with _http(web, OWNER, ("alice", PASSWORD)) as owner:  # the owner, from another address
        r = owner.get("/api/datasets")
        assert r.status_code == 200
        assert any(d["name"].startswith("hep/") for d in r.json()["datasets"]), r.json()
        r = owner.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/"}, auth=None)
        assert r.status_code == 303 and "arrowroot_session" in r.headers.get("set-cookie", "")
    # and on the Flight port, whose logins the HTTP attacker's failures do not touch
    flight = fl.connect(f"grpc://127.0.0.1:{server.port}")
    header = flight.authenticate_basic_token("alice", PASSWORD)
    names = [f.descriptor.path for f in flight.list_flights(options=fl.FlightCallOptions(headers=[header]))]
    assert names
    flight.close()


@pytest.mark.slow
def test_guessing_on_the_flight_port_leaves_the_web_login(served) -> None:
    """Flight's address is unknown (pyarrow's middleware has no peer): its failures lock the
    address-less key, never the owner's HTTP logins."""
    server, web = served
    limiter = server.ctx.auth.logins = LoginLimiter()
    flight = fl.connect(f"grpc://127.0.0.1:{server.port}")
    for _ in range(6):
        with pytest.raises(fl.FlightUnauthenticatedError, match="wrong user name or password"):
            list(flight.list_flights(options=_basic("guess")))
    with pytest.raises(fl.FlightUnauthenticatedError, match=r"too many failed logins for 'alice'; try again in"):
        list(flight.list_flights(options=_basic("guess")))
    for _ in range(4):  # the attacker keeps at it each time the lock lapses: now 16 s
        limiter.failed("alice")
    with pytest.raises(fl.FlightUnauthenticatedError, match="too many failed logins"):
        flight.authenticate_basic_token("alice", PASSWORD)
    flight.close()
    with _http(web, OWNER, ("alice", PASSWORD)) as owner:
        assert owner.get("/api/datasets").status_code == 200
