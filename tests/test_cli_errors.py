"""Every command of the `arrowroot` CLI in its error cases, as real processes: each ends in one
line that names the cause and the fix, with the right exit status, and never a Python traceback
or gRPC's own log lines."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arrowroot.flight_server.cli.main import main

from cli_process import run_cli
from conftest import start_server

pytestmark = pytest.mark.slow

DS = "hep/events.root:events"
NOISE = ("Traceback", "E0000", "add_port.cc", "absl::InitializeLog", "I0000", "ssl_transport_security")


@dataclass
class Case:
    id: str
    args: list[str]
    status: int
    says: str                       # in stderr
    env: dict[str, str] = field(default_factory=dict)
    input: str | None = None


@pytest.fixture(scope="module")
def world(tmp_path_factory, sample_dir, sample_server):
    """A plain server (holding sample_dir's catalog), a TLS server, a fresh directory, files to upload."""
    from test_tls import Pki

    tmp = tmp_path_factory.mktemp("clierrors")
    pki = Pki(tmp)
    tls = start_server(sample_dir, catalog=tmp / "tls.duckdb", tls_cert=pki.files["server_cert"],
                       tls_key=pki.files["server_key"])
    fresh = tmp / "fresh"
    fresh.mkdir()
    (tmp / "bad.parquet").write_bytes(b"PAR1 this is not a parquet file")
    (tmp / "notes.txt").write_text("x")
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp / "ok.parquet")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    (tmp / "toml").mkdir()
    (tmp / "toml" / "arrowroot.toml").write_text("[server]\nprot = 9000\n")
    # a server that holds its catalog with no admin socket (the commands cannot hand it their change)
    mute = start_server(sample_dir, catalog=tmp / "held.duckdb", admin_socket=False)
    yield {"tmp": tmp, "data": sample_dir, "loc": sample_server.location, "tls": f"grpc://127.0.0.1:{tls.server.port}",
           "tls_as_tls": f"grpc+tls://127.0.0.1:{sample_server.server.port}", "fresh": fresh,
           "taken": held.getsockname()[1]}
    held.close()
    tls.stop()
    mute.stop()


def cases(w: dict) -> list[Case]:
    data, fresh, tmp, loc = str(w["data"]), str(w["fresh"]), w["tmp"], w["loc"]
    held = "no arrowroot server answers on its admin socket"
    mute = ["--catalog", str(tmp / "held.duckdb")]
    out = [
        # start-up: exit 2, the cause and the fix
        Case("serve port taken", ["serve", fresh, "--port", str(w["taken"]), "--catalog", str(tmp / "a.duckdb")], 2,
             f"port {w['taken']} on 127.0.0.1 is in use"),
        Case("serve bad host", ["serve", fresh, "--host", "999.1.1.1", "--port", "0", "--catalog", str(tmp / "b.duckdb")],
             2, "--host '999.1.1.1': no such address"),
        Case("serve foreign address", ["serve", fresh, "--host", "192.0.2.1", "--port", "0", "--catalog",
                                       str(tmp / "b2.duckdb")], 2, "cannot listen there"),
        Case("serve bad env", ["serve", fresh], 2, "ARROWROOT_PORT='x': not a valid int", {"ARROWROOT_PORT": "x"}),
        Case("serve bad toml", ["serve", str(tmp / "toml")], 2, "no setting 'prot'; did you mean 'port'?"),
        Case("serve no such dir", ["serve", str(tmp / "nowhere")], 2, "does not exist"),
        Case("serve catalog held", ["serve", data, "--port", "0"], 2, "is in use by another process"),
        Case("serve half TLS", ["serve", fresh, "--port", "0", "--tls-cert", str(tmp / "server_cert.pem"),
                                "--catalog", str(tmp / "c.duckdb")], 2, "TLS needs both --tls-cert and --tls-key"),
        Case("node without key", ["node", fresh, "--port", "0"], 2, "needs its coordinator's ticket key"),
        Case("node no coordinator", ["node", fresh, "--port", "0", "--join", "grpc://127.0.0.1:1"], 1,
             "cannot reach the coordinator grpc://127.0.0.1:1", {"ARROWROOT_TICKET_KEY": "k" * 20}),
        Case("index catalog held", ["index", data], 2, "is in use by another process"),
        Case("settings bad env", ["settings", fresh], 2, "ARROWROOT_CACHE_MB='lots': not a valid float",
             {"ARROWROOT_CACHE_MB": "lots"}),
        Case("demo bad option", ["demo", "--bogus"], 2, "No such option '--bogus'"),
        # client commands: exit 1 for what the server (or the network) says, 2 for usage
        Case("ls no server", ["ls", "-l", "grpc://127.0.0.1:1"], 1, "no server answers at grpc://127.0.0.1:1"),
        Case("ls plain to TLS", ["ls", "-l", w["tls"]], 1, "use grpc+tls://127.0.0.1:"),
        Case("ls TLS to plain", ["ls", "-l", w["tls_as_tls"]], 1, "does not speak TLS: use grpc://127.0.0.1:"),
        Case("ls no server from env", ["ls"], 1, "no server answers at grpc://127.0.0.1:1",
             {"ARROWROOT_URL": "grpc://127.0.0.1:1"}),
        Case("ls bad attr", ["ls", "-l", loc, "--attr", "novalue"], 2, "use KEY=VALUE"),
        Case("ls --errors no server", ["ls", "--errors", "-l", "grpc://127.0.0.1:1"], 1, "no server answers"),
        Case("schema unknown", ["schema", "hep/event.root:events", "-l", loc], 1, "NotFound: no dataset named"),
        Case("get into missing dir", ["get", DS, "/nonexistent/dir/x.parquet", "-l", loc], 2,
             "the directory /nonexistent/dir does not exist: create it first"),
        Case("get unknown suffix", ["get", DS, str(tmp / "x.xyz"), "-l", loc], 2, "or pass --format"),
        Case("get bad range", ["get", DS, str(tmp / "x.parquet"), "-e", "5", "-l", loc], 2, "use START:STOP"),
        Case("get bad cut", ["get", DS, str(tmp / "x.parquet"), "-w", "nMuon = 2", "-l", loc], 1, "use '=='"),
        Case("get unknown column", ["get", DS, str(tmp / "x.parquet"), "-c", "nosuch", "-l", loc], 1, "nosuch"),
        Case("sql syntax", ["sql", "SELEC 1", "-l", loc], 1, "InvalidRequest"),
        Case("sql into missing dir", ["sql", "SELECT 1", "-o", "/nonexistent/x.csv", "-l", loc], 2, "does not exist"),
        Case("action unknown", ["action", "nosuch", "-l", loc], 1, "arrowroot action nosuch: Unimplemented: no action 'nosuch'"),
        Case("action bad body", ["action", "health", "-b", "{not json", "-l", loc], 2, "not JSON"),
        Case("put missing file", ["put", str(tmp / "missing.parquet"), "home/local/x", "-l", loc], 2, "does not exist"),
        Case("put garbage", ["put", str(tmp / "bad.parquet"), "home/local/x", "-l", loc], 1, "arrowroot put:"),
        Case("put unknown suffix", ["put", str(tmp / "notes.txt"), "home/local/x", "-l", loc], 2,
             "cannot tell the format"),
        Case("put outside home", ["put", str(tmp / "ok.parquet"), "home/someone/x", "-l", loc], 1, "PermissionDenied"),
        Case("skim without cut", ["skim", "home/local/s", DS, "-l", loc], 2, "give the cut"),
        Case("skim unknown parent", ["skim", "home/local/s", "nosuch:tree", "-w", "x > 1", "-l", loc], 1, "NotFound"),
        Case("lineage unknown", ["lineage", "home/local/nosuch", "-l", loc], 1, "NotFound"),
        Case("rm unknown", ["rm", "home/local/nosuch", "-l", loc], 1, "NotFound"),
        Case("mv unknown", ["mv", "home/local/nosuch", "home/local/y", "-l", loc], 1, "NotFound"),
        # admin commands on a catalog held by a server without its admin socket: one line with the fix
        # (with the socket they reach the running server: test_admin_socket.py)
        Case("users add held", ["users", "add", data, "bob", "--password-stdin", *mute], 1, held,
             input="pw long enough\n"),
        Case("users passwd held", ["users", "passwd", data, "bob", "--password-stdin", *mute], 1, held,
             input="pw long enough\n"),
        Case("users remove held", ["users", "remove", data, "bob", *mute], 1, held),
        Case("users list held", ["users", "list", data, *mute], 1, held),
        Case("groups add held", ["groups", "add", data, "cms", *mute], 1, held),
        Case("groups remove held", ["groups", "remove", data, "cms", *mute], 1, held),
        Case("groups members held", ["groups", "members", data, *mute], 1, held),
        Case("groups list held", ["groups", "list", data, *mute], 1, held),
        Case("keys create held", ["keys", "create", data, "bob", *mute], 1, held),
        Case("keys revoke held", ["keys", "revoke", data, "ark_x", *mute], 1, held),
        Case("keys list held", ["keys", "list", data, *mute], 1, held),
        Case("grant held", ["grant", data, "hep/*", "--to", "public", *mute], 1, held),
        Case("revoke held", ["revoke", data, "hep/*", "--to", "public", *mute], 1, held),
        Case("grants held", ["grants", data, *mute], 1, held),
        # admin commands' own errors
        Case("users add empty password", ["users", "add", fresh, "alice", "--password-stdin"], 1,
             "--password-stdin: got an empty line", input="\n"),
        Case("users remove unknown", ["users", "remove", fresh, "nobody", "--catalog", str(tmp / "u1.duckdb")], 1,
             "nobody"),
        Case("keys create unknown user", ["keys", "create", fresh, "nobody", "--catalog", str(tmp / "u2.duckdb")], 1,
             "nobody"),
        Case("keys bad expiry", ["keys", "create", fresh, "nobody", "--expires", "soon"], 2, "use a duration"),
        Case("grant bad grantee", ["grant", fresh, "hep/*", "--to", "somebody", "--catalog", str(tmp / "u3.duckdb")],
             1, "somebody"),
    ]
    return out


def _placeholders() -> dict:
    return {k: "" for k in ("data", "fresh", "loc", "tls", "tls_as_tls", "taken")} | {"tmp": Path("/")}


CASE_IDS = [c.id for c in cases(_placeholders())]

@pytest.fixture(scope="module")
def results(world):
    """Every case run once, a few at a time (each is a fresh Python process)."""
    todo = cases(world)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(lambda c: run_cli(*c.args, env=c.env, input=c.input, timeout=180), todo))
    return {c.id: (c, r) for c, r in zip(todo, done)}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_command_fails_in_one_line(results, case_id):
    case, r = results[case_id]
    shown = f"exit {r.returncode}\nstderr:\n{r.stderr}\nstdout:\n{r.stdout}"
    for noise in NOISE:
        assert noise not in r.stderr and noise not in r.stdout, shown
    assert r.returncode == case.status, shown
    assert case.says in r.stderr, shown
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    # click's usage errors add "Usage:" and "Try ... --help" lines; everything else is one line
    assert len([line for line in lines if not line.startswith(("Usage:", "Try '", " "))]) == 1, shown


def _leaves(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _leaves(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_an_error_case():
    runs = [c.args for c in cases(_placeholders())]
    missing = [" ".join(leaf) for leaf in _leaves(main) if not any(tuple(a[:len(leaf)]) == leaf for a in runs)]
    assert not missing, f"no error case for: {missing}"
