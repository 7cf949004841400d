"""Authentication and per-dataset grants over the wire: real servers on port 0, real clients
(pyarrow.flight, arrowroot's Client, ADBC Flight SQL).

Cast: alice is in group cms (reads hep/*), bob in group lab (reads lab/*), carol in no group.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.flight as fl
import pytest

from arrowroot.catalog import identities
from arrowroot.catalog.errors import not_found
from arrowroot.catalog.store import Catalog
from arrowroot.clients import Client
from arrowroot.clients.errors import Unauthenticated
from arrowroot.flight_server.server.auth import AuthConfigError
from arrowroot.flight_server.service.identity import MAX_AUTH_HEADER
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.server.flight import ArrowrootServer

pytestmark = pytest.mark.slow

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "carol": "carol-pw-3"}


@dataclass
class Served:
    server: ArrowrootServer
    catalog: Catalog
    location: str

    def flight(self) -> fl.FlightClient:
        return fl.connect(self.location)


def _serve(root: Path, catalog: Catalog, **settings: object) -> Served:
    server = ArrowrootServer(Settings(root=root, port=0, **settings), catalog=catalog)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    return Served(server, catalog, f"grpc://127.0.0.1:{server.port}")


def _people(cat: Catalog) -> None:
    identities.add_user(cat, "alice", PASSWORDS["alice"], ["cms"])
    identities.add_user(cat, "bob", PASSWORDS["bob"], ["lab"])
    identities.add_user(cat, "carol", PASSWORDS["carol"])
    identities.grant(cat, "hep/*", "group:cms")
    identities.grant(cat, "lab/*", "group:lab")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_files(tmp_path_factory.mktemp("authdata"), entries=4000)


@pytest.fixture(autouse=True)
def _fresh_login_limits(request: pytest.FixtureRequest) -> None:
    """Each test starts with no failed logins on record (the lockout has its own tests)."""
    from arrowroot.flight_server.service.logins import LoginLimiter

    for name in ("private", "public"):
        if name in request.fixturenames:
            request.getfixturevalue(name).server.ctx.auth.logins = LoginLimiter()


@pytest.fixture(scope="module")
def private(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Collaboration data only: no public grant."""
    cat = Catalog(tmp_path_factory.mktemp("private") / "catalog.duckdb")
    _people(cat)
    s = _serve(data_dir, cat)
    yield s
    s.server.shutdown()
    cat.close()


@pytest.fixture(scope="module")
def public(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Same people, plus the detector table published to everybody."""
    cat = Catalog(tmp_path_factory.mktemp("public") / "catalog.duckdb")
    _people(cat)
    identities.grant(cat, "lab/scan.h5:detector*", "public")
    s = _serve(data_dir, cat)
    yield s
    s.server.shutdown()
    cat.close()


def _opts(*headers: tuple[bytes, bytes]) -> fl.FlightCallOptions:
    return fl.FlightCallOptions(headers=list(headers))


def _login(served: Served, user: str) -> fl.FlightCallOptions:
    with served.flight() as c:
        return _opts(c.authenticate_basic_token(user, PASSWORDS[user]))


def _names(client: fl.FlightClient, options: fl.FlightCallOptions | None = None) -> set[str]:
    return {i.descriptor.path[0].decode() for i in client.list_flights(options=options or _opts())}


def _message(exc: BaseException) -> str:
    return str(exc).split(". Detail:")[0]


def _basic(user: str, password: str, pad: bool = True) -> bytes:
    b64 = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {b64 if pad else b64.rstrip('=')}".encode()


class _Capture(fl.ClientMiddlewareFactory):
    """Records the response headers, to see the bearer token a Basic call returns."""

    def __init__(self) -> None:
        self.headers: list[dict] = []

    def start_call(self, info: fl.CallInfo) -> fl.ClientMiddleware:
        outer = self

        class M(fl.ClientMiddleware):
            def received_headers(self, headers: dict) -> None:
                outer.headers.append(headers)

        return M()


# ---------------------------------------------------------------- logging in


def test_pyarrow_basic_token_and_reads(private: Served) -> None:
    with private.flight() as c:
        header = c.authenticate_basic_token("alice", PASSWORDS["alice"])
        assert header[0] == b"authorization" and header[1].startswith(b"Bearer ars_")
        opts = _opts(header)
        assert _names(c, opts) == {EVENTS}
        info = c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS), opts)
        assert sum(c.do_get(e.ticket, opts).read_all().num_rows for e in info.endpoints) == 4000


def test_arrowroot_client_with_password_and_token(private: Served) -> None:
    with Client(private.location, username="bob", password=PASSWORDS["bob"]) as c:
        assert set(c.datasets()["name"].to_pylist()) == {d.name for d in private.catalog.datasets()
                                                          if d.name.startswith("lab/")}
        assert c.read(DETECTOR, ["energy"], entries=(0, 10)).num_rows == 10
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        Client(private.location, username="bob", password="nope")


def test_basic_header_on_any_call_returns_a_token_and_unpadded_base64_works(private: Served) -> None:
    cap = _Capture()
    with fl.FlightClient(private.location, middleware=[cap]) as c:
        for pad in (True, False):
            assert _names(c, _opts((b"authorization", _basic("carol", PASSWORDS["carol"], pad)))) == set()
        user, pw = "dave", "pw"     # 'dave:pw' needs padding, which ADBC leaves out
        identities.add_user(private.catalog, user, pw, ["cms"])
        try:
            assert base64.b64encode(f"{user}:{pw}".encode()).endswith(b"=")
            assert _names(c, _opts((b"authorization", _basic(user, pw, pad=False)))) == {EVENTS}
            token = [h["authorization"][0] for h in cap.headers if "authorization" in h][-1]
            assert token.startswith("Bearer ars_")
            assert _names(c, _opts((b"authorization", token.encode()))) == {EVENTS}
        finally:
            identities.remove_user(private.catalog, user)


@pytest.mark.parametrize("password", ["wrong", "", "x" * 2000])
def test_wrong_password_is_unauthenticated(private: Served, password: str) -> None:
    with private.flight() as c:
        with pytest.raises(fl.FlightUnauthenticatedError, match="wrong user name or password"):
            c.authenticate_basic_token("alice", password)
        with pytest.raises(fl.FlightUnauthenticatedError, match="wrong user name or password"):
            list(c.list_flights(options=_opts((b"authorization", _basic("alice", password)))))


def test_unknown_user_answers_like_a_wrong_password(private: Served) -> None:
    with private.flight() as c:
        with pytest.raises(fl.FlightUnauthenticatedError) as unknown:
            c.authenticate_basic_token("mallory", "whatever")
        with pytest.raises(fl.FlightUnauthenticatedError) as wrong:
            c.authenticate_basic_token("alice", "whatever")
    assert _message(unknown.value) == _message(wrong.value)


def test_missing_header_is_unauthenticated_without_public_data(private: Served) -> None:
    with private.flight() as c:
        for call in (lambda: list(c.list_flights()),
                     lambda: c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS)),
                     lambda: list(c.do_action(fl.Action("health", b"")))):
            with pytest.raises(fl.FlightUnauthenticatedError, match="authentication required"):
                call()


def test_expired_token_is_unauthenticated(private: Served) -> None:
    auth = private.server.ctx.auth
    auth.token_ttl, saved = 0.3, auth.token_ttl
    try:
        opts = _login(private, "alice")
    finally:
        auth.token_ttl = saved
    with private.flight() as c:
        assert _names(c, opts) == {EVENTS}
        time.sleep(0.4)
        with pytest.raises(fl.FlightUnauthenticatedError, match="token expired"):
            list(c.list_flights(options=opts))


def test_unknown_token_is_unauthenticated(private: Served) -> None:
    with private.flight() as c:
        with pytest.raises(fl.FlightUnauthenticatedError, match="unknown or expired token"):
            list(c.list_flights(options=_opts((b"authorization", b"Bearer ars_made-up"))))


def test_password_change_and_user_removal_end_sessions(private: Served) -> None:
    cat = private.catalog
    identities.add_user(cat, "erin", "first", ["cms"])
    try:
        with private.flight() as c:
            opts = _opts(c.authenticate_basic_token("erin", "first"))
            assert _names(c, opts) == {EVENTS}
            identities.set_password(cat, "erin", "second")
            with pytest.raises(fl.FlightUnauthenticatedError, match="token revoked"):
                list(c.list_flights(options=opts))
            opts = _opts(c.authenticate_basic_token("erin", "second"))
            assert _names(c, opts) == {EVENTS}
            identities.remove_user(cat, "erin")
            with pytest.raises(fl.FlightUnauthenticatedError, match="token revoked"):
                list(c.list_flights(options=opts))
    finally:
        if "erin" in identities.snapshot(cat).users:
            identities.remove_user(cat, "erin")


def test_api_keys_work_expire_and_revoke(private: Served) -> None:
    cat = private.catalog
    key_id, key = identities.create_key(cat, "alice", "notebook")
    _, expired = identities.create_key(cat, "alice", "old", expires_at=time.time() - 1)
    stored = str(cat.cursor().execute("SELECT * FROM api_keys").fetchall())
    secret = key.split("_", 2)[2]  # ark_<id>_<secret>; the secret itself may contain "_"
    assert key not in stored and secret not in stored                    # only the hash is kept
    with Client(private.location, token=key) as client:
        assert client.datasets()["name"].to_pylist() == [EVENTS]
    with private.flight() as c:
        with pytest.raises(fl.FlightUnauthenticatedError, match="has expired"):
            list(c.list_flights(options=_opts((b"authorization", f"Bearer {expired}".encode()))))
        identities.revoke_key(cat, key_id)
        with pytest.raises(fl.FlightUnauthenticatedError, match="has been revoked"):
            list(c.list_flights(options=_opts((b"authorization", f"Bearer {key}".encode()))))


def test_passwords_are_stored_as_scrypt_hashes(private: Served) -> None:
    rows = private.catalog.cursor().execute("SELECT name, password_hash FROM users").fetchall()
    for name, hashed in rows:
        assert hashed.startswith("scrypt$") and PASSWORDS.get(name, "\0") not in hashed
    hashes = [h for n, h in rows if n in PASSWORDS]
    assert len(set(h.split("$")[4] for h in hashes)) == len(hashes)      # one salt each


# ---------------------------------------------------------------- what you cannot read does not exist


def test_list_flights_shows_only_granted_datasets(private: Served) -> None:
    all_names = {d.name for d in private.catalog.datasets()}
    with private.flight() as c:
        assert _names(c, _login(private, "alice")) == {EVENTS}
        assert _names(c, _login(private, "bob")) == {n for n in all_names if n.startswith("lab/")}
        assert _names(c, _login(private, "carol")) == set()
        bob = _login(private, "bob")
        assert _names_with_criteria(c, bob, b'{"name": "hep/*"}') == set()
        health = json.loads(next(c.do_action(fl.Action("health", b""), bob)).body.to_pybytes())
        assert health["datasets"] == len([n for n in all_names if n.startswith("lab/")])


def _names_with_criteria(c: fl.FlightClient, opts: fl.FlightCallOptions, criteria: bytes) -> set[str]:
    return {i.descriptor.path[0].decode() for i in c.list_flights(criteria, options=opts)}


def test_hidden_dataset_answers_exactly_like_a_missing_one(private: Served) -> None:
    bob = _login(private, "bob")
    visible = sorted(d.name for d in private.catalog.datasets() if d.name.startswith("lab/"))
    with private.flight() as c:
        for name in (EVENTS, "hep/events.root:event", "hep/nothing.root:events"):
            for call in (lambda d: c.get_flight_info(d, bob), lambda d: c.get_schema(d, bob)):
                with pytest.raises(KeyError) as err:      # NOT_FOUND
                    call(fl.FlightDescriptor.for_path(name))
                msg = _message(err.value)
                assert msg == f"not found: {not_found('dataset', name, visible)}" or \
                    msg == str(not_found("dataset", name, visible))
                assert "hep/" not in msg.replace(repr(name), "")        # no hint at hidden names
        # and a command descriptor (ReadRequest JSON) the same way
        with pytest.raises(KeyError) as err:
            c.get_flight_info(fl.FlightDescriptor.for_command(f'{{"dataset": "{EVENTS}"}}'.encode()), bob)
        assert _message(err.value) == str(not_found("dataset", EVENTS, visible))


def test_ticket_of_another_user_is_refused(private: Served, public: Served) -> None:
    alice, bob = _login(private, "alice"), _login(private, "bob")
    with private.flight() as c:
        info = c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS), alice)
        ticket = info.endpoints[0].ticket
        assert c.do_get(ticket, alice).read_all().num_rows > 0
        with pytest.raises(KeyError) as err:
            c.do_get(ticket, bob).read_all()
        assert "events" not in _message(err.value)
        with pytest.raises(fl.FlightUnauthenticatedError):
            c.do_get(ticket).read_all()
    # on a server with public data, anonymous callers are let in but still not with alice's ticket
    with public.flight() as c:
        info = c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS), _login(public, "alice"))
        with pytest.raises(KeyError):
            c.do_get(info.endpoints[0].ticket).read_all()


def test_group_membership_and_grants_apply_at_once(private: Served) -> None:
    cat = private.catalog
    with private.flight() as c:
        carol = _login(private, "carol")
        assert _names(c, carol) == set()
        identities.add_group(cat, "cms", ["carol"])
        try:
            assert _names(c, carol) == {EVENTS}
            identities.grant(cat, DETECTOR, "user:carol")
            assert _names(c, carol) == {EVENTS, DETECTOR}
            identities.revoke(cat, DETECTOR, "user:carol")
        finally:
            identities.remove_group(cat, "cms", ["carol"])
        assert _names(c, carol) == set()


def test_public_data_without_credentials_only_when_granted(public: Served, private: Served) -> None:
    published = {d.name for d in public.catalog.datasets() if d.name.startswith(DETECTOR)}
    with public.flight() as c:
        assert _names(c) == published
        info = c.get_flight_info(fl.FlightDescriptor.for_path(DETECTOR))
        assert c.do_get(info.endpoints[0].ticket).read_all().num_rows == 4000
        with pytest.raises(KeyError):
            c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS))
        # a logged-in user sees the public data plus their own
        assert _names(c, _login(public, "alice")) == published | {EVENTS}
    with private.flight() as c, pytest.raises(fl.FlightUnauthenticatedError):
        list(c.list_flights())


def test_default_stays_open_and_auth_flag_needs_someone(data_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "open.duckdb")
    served = _serve(data_dir, cat)
    try:
        with served.flight() as c:
            assert _names(c) == {d.name for d in cat.datasets()}
    finally:
        served.server.shutdown()
    with pytest.raises(AuthConfigError, match="no users and no public grant"):
        ArrowrootServer(Settings(root=data_dir, port=0, auth=True), catalog=cat)
    cat.close()


def test_users_in_the_catalog_turn_auth_on_by_themselves(data_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.duckdb")
    identities.add_user(cat, "zoe", "pw")
    served = _serve(data_dir, cat)
    try:
        with served.flight() as c, pytest.raises(fl.FlightUnauthenticatedError):
            list(c.list_flights())
    finally:
        served.server.shutdown()
        cat.close()


# ---------------------------------------------------------------- hostile headers


@pytest.mark.parametrize("value, message", [
    (b"Bearer", "Bearer without a token"),
    (b"Bearer    ", "Bearer without a token"),
    (b"Basic !!!not-base64!!!", "not base64"),
    (b"Basic " + base64.b64encode(b"no-colon-here"), "must be 'user:password'"),
    (b"Basic " + base64.b64encode(b":only-a-password"), "must be 'user:password'"),
    (b"Basic " + base64.b64encode(b"\xff\xfe:pw"), "not base64 of UTF-8"),
    (b"Digest username=alice", "unsupported scheme"),
    (b"", "unsupported scheme"),
    (b"Bearer " + b"A" * (MAX_AUTH_HEADER + 10), f"at most {MAX_AUTH_HEADER}"),
    (b"Basic " + base64.b64encode(b"alice:" + b"p" * 3100), f"at most {MAX_AUTH_HEADER}"),
], ids=lambda v: v[:24].decode(errors="replace") if isinstance(v, bytes) else None)
def test_garbage_headers_are_unauthenticated(private: Served, value: bytes, message: str) -> None:
    with private.flight() as c:
        with pytest.raises(fl.FlightUnauthenticatedError, match=message):
            list(c.list_flights(options=_opts((b"authorization", value))))


def test_two_authorization_headers_are_refused(private: Served) -> None:
    with private.flight() as c, pytest.raises(fl.FlightUnauthenticatedError, match="one authorization header"):
        list(c.list_flights(options=_opts((b"authorization", b"Bearer a"), (b"authorization", b"Bearer b"))))


def test_headers_beyond_grpc_limits_fail_and_the_server_stays_up(private: Served) -> None:
    with private.flight() as c:
        for value in (b"Bearer " + b"A" * 20_000, b"Basic " + b"QUFB" * 3000):
            with pytest.raises(Exception):   # gRPC refuses metadata over 8/16 KiB before our code runs
                list(c.list_flights(options=_opts((b"authorization", value))))
        assert _names(c, _login(private, "alice")) == {EVENTS}


# ---------------------------------------------------------------- ADBC (Flight SQL)


def _adbc_connect(location: str, **db_kwargs: str):
    import adbc_driver_flightsql.dbapi as flightsql

    return flightsql.connect(location, db_kwargs=db_kwargs)


def test_adbc_username_password(private: Served) -> None:
    with _adbc_connect(private.location, username="alice", password=PASSWORDS["alice"]) as conn:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{EVENTS}"')
            assert cur.fetchone() == (4000,)
        tables = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = {t["table_name"] for cat in tables for s in cat["catalog_db_schemas"] or []
                 for t in s["db_schema_tables"] or []}
        assert EVENTS in names and DETECTOR not in names


def test_adbc_api_key_via_authorization_header(private: Served) -> None:
    import adbc_driver_flightsql
    import adbc_driver_flightsql.dbapi

    _, key = identities.create_key(private.catalog, "bob", "adbc")
    option = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
    with _adbc_connect(private.location, **{option: f"Bearer {key}"}) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{DETECTOR}"')
        assert cur.fetchone() == (4000,)
        with pytest.raises(adbc_driver_flightsql.dbapi.ProgrammingError) as hidden:
            cur.execute(f'SELECT count(*) FROM "{EVENTS}"')
        missing_name = "hep/absent.root:events"
        with pytest.raises(adbc_driver_flightsql.dbapi.ProgrammingError) as missing:
            cur.execute(f'SELECT count(*) FROM "{missing_name}"')
        assert str(hidden.value).replace(EVENTS, "X") == str(missing.value).replace(missing_name, "X")
        cur.execute("SELECT name FROM arrowroot.datasets")
        assert {r[0] for r in cur.fetchall()} == {d.name for d in private.catalog.datasets()
                                                  if d.name.startswith("lab/")}


def test_adbc_wrong_password_is_unauthenticated(private: Served) -> None:
    import adbc_driver_manager

    with pytest.raises(adbc_driver_manager.Error) as err:
        with _adbc_connect(private.location, username="alice", password="wrong") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "UNAUTHENTICATED" in str(err.value).upper() or "wrong user name" in str(err.value)


# ---------------------------------------------------------------- cost


def test_per_call_auth_cost_with_a_valid_token(private: Served) -> None:
    """Password hashing happens only on login; a call with a token costs lookups."""
    from arrowroot.flight_server.server.auth import flight_kwargs

    auth = private.server.ctx.auth
    factory = flight_kwargs("flight", auth)["middleware"]["arrowroot"]
    token = auth.issue_token("alice")
    _, key = identities.create_key(private.catalog, "alice", "bench")
    info = fl.CallInfo(fl.FlightMethod.DO_GET)
    for bearer in (token, key):
        headers = {"authorization": [f"Bearer {bearer}"], "user-agent": ["grpc-c++/1.0"]}
        assert factory.start_call(info, headers).user == "alice"
        n = 20_000
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                factory.start_call(info, headers)
            best = min(best, (time.perf_counter() - t0) / n)
        print(f"per-call auth cost ({bearer[:4]}): {best * 1e6:.1f} µs")
        assert best < 0.2e-3


# ---------------------------------------------------------------- the admin CLI


def test_admin_cli_sets_up_a_served_directory(data_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from arrowroot.flight_server.cli.main import main

    run = CliRunner().invoke
    db = str(tmp_path / "cli.duckdb")
    d = str(data_dir)

    def ok(*args: str, input: str | None = None) -> str:
        result = run(main, [*args, "--catalog", db], input=input)
        assert result.exit_code == 0, result.output
        return result.output

    ok("users", "add", d, "alice", "-g", "cms", "--password-stdin", input="s3cret pass\n")
    ok("users", "add", d, "bob", "--password-stdin", input="bob pw\n")
    ok("groups", "add", d, "lab", "bob")
    assert "cms\talice" in ok("groups", "members", d)
    ok("grant", d, "hep/*", "--to", "group:cms")
    ok("grant", d, "lab/scan.h5:detector", "--to", "group:lab", "--to", "public")
    assert "public" in ok("grants", d)
    key = ok("keys", "create", d, "bob", "--label", "ci", "--expires", "1d").strip().splitlines()[-1]
    assert key.startswith("ark_")
    listing = ok("keys", "list", d)
    assert "ci" in listing and key not in listing
    assert "alice\tgroups=cms" in ok("users", "list", d)
    assert run(main, ["users", "add", d, "alice", "--password-stdin", "--catalog", db], input="x\n").exit_code == 1
    assert "no group named" in run(main, ["grant", d, "x", "--to", "group:nope", "--catalog", db]).output
    ok("revoke", d, "lab/scan.h5:detector", "--to", "public")
    ok("users", "passwd", d, "alice", "--password-stdin", input="new pass\n")
    stored = Path(db).read_bytes()
    assert b"s3cret pass" not in stored and b"new pass" not in stored and key.encode() not in stored

    cat = Catalog(db)
    served = _serve(data_dir, cat)
    try:
        with Client(served.location, username="alice", password="new pass") as c:
            assert c.datasets()["name"].to_pylist() == [EVENTS]
        with Client(served.location, token=key) as c:
            assert c.datasets()["name"].to_pylist() == [DETECTOR]
        with served.flight() as c, pytest.raises(fl.FlightUnauthenticatedError):
            list(c.list_flights())    # the public grant was revoked
    finally:
        served.server.shutdown()
        cat.close()


def test_serve_auth_refuses_to_start_without_anyone(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from arrowroot.flight_server.cli.main import main

    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--port", "0", "--auth", "--no-index"])
    assert result.exit_code == 2  # a start-up failure: one line, exit 2
    assert "no users and no public grant" in result.output


def test_stats_count_only_visible_data_and_anonymous_cannot_rescan(public: Served) -> None:
    with public.flight() as c:
        anon = json.loads(next(c.do_action(fl.Action("stats", b""))).body.to_pybytes())
        assert anon["datasets"] == len({d.name for d in public.catalog.datasets() if d.name.startswith(DETECTOR)})
        assert anon["files"] == 1 and "files_with_errors" not in anon
        alice = json.loads(next(c.do_action(fl.Action("stats", b""), _login(public, "alice"))).body.to_pybytes())
        assert alice["files"] == 2 and alice["datasets"] == anon["datasets"] + 1
        with pytest.raises(fl.FlightUnauthorizedError, match="rescan: needs the admin permission"):
            list(c.do_action(fl.Action("rescan", b"")))
        with pytest.raises(fl.FlightUnauthorizedError, match="rescan: needs the admin permission"):
            list(c.do_action(fl.Action("rescan", b""), _login(public, "alice")))
        identities.grant(public.catalog, "*", "user:alice", "admin")
        try:
            done = json.loads(next(c.do_action(fl.Action("rescan", b""), _login(public, "alice"))).body.to_pybytes())
        finally:
            identities.revoke(public.catalog, "*", "user:alice", "admin")
        assert done["errors"] == []
