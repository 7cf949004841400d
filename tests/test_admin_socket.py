"""The identity commands while ``arrowroot serve`` runs: they reach the server through its local
admin socket, and the change holds at once, with no restart (real server and CLI processes).

Before this door they stopped in one line ("stop the server, change, start it again").
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from arrowroot.clients import Client
from arrowroot.clients.errors import Unauthenticated
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.server.admin_socket import socket_path

from cli_process import CLI, Running, clean_env, run_cli

pytestmark = pytest.mark.slow

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"


def ok(*args: str, input: str | None = None) -> str:
    r = run_cli(*args, input=input)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def fails(*args: str, says: str, input: str | None = None) -> None:
    r = run_cli(*args, input=input)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A directory with one user (made before the start, as an operator begins) served with --auth."""
    root = write_sample_files(tmp_path_factory.mktemp("admin_socket"), entries=500)
    d = str(root)
    ok("index", d)
    ok("users", "add", d, "alice", "--password-stdin", input="alice's pass\n")
    ok("grant", d, "hep/*", "--to", "user:alice")
    server = Running("serve", d, "--port", "0", "--auth")
    try:
        location = f"grpc://127.0.0.1:{server.port}"
        with Client(location, username="alice", password="alice's pass") as c:  # the server is up
            assert c.datasets()["name"].to_pylist() == [EVENTS]
        yield d, location, server
    finally:
        err = server.stop()
        assert "Traceback" not in err, err


def test_identity_commands_change_a_running_server(served) -> None:
    d, location, server = served
    # a user and a grant made while it runs: bob logs in and reads at once
    ok("users", "add", d, "bob", "-g", "lab", "--password-stdin", input="bob's pass\n")
    assert "granted: read lab/scan.h5:detector to group:lab" in ok("grant", d, DETECTOR, "--to", "group:lab")
    with Client(location, username="bob", password="bob's pass") as c:
        assert c.datasets()["name"].to_pylist() == [DETECTOR]
        assert c.read(DETECTOR, columns=["energy"]).num_rows == 500
    assert "bob\tgroups=lab\tkeys=0" in ok("users", "list", d)
    assert "lab\tbob" in ok("groups", "members", d)
    assert "read\tlab/scan.h5:detector\tgroup:lab\t(1 datasets now)" in ok("grants", d)

    # an API key made while it runs works at once, and stops working when revoked
    r = run_cli("keys", "create", d, "bob", "--label", "ci")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    with Client(location, token=key) as c:
        assert c.datasets()["name"].to_pylist() == [DETECTOR]
    key_id = ok("keys", "list", d, "bob").split("\t")[0]
    ok("keys", "revoke", d, key_id)
    with pytest.raises(Unauthenticated, match="has been revoked"):
        Client(location, token=key).datasets()

    # a changed password: the old one is refused, the new one works
    ok("users", "passwd", d, "bob", "--password-stdin", input="bob's new pass\n")
    with pytest.raises(Unauthenticated):
        Client(location, username="bob", password="bob's pass").datasets()
    with Client(location, username="bob", password="bob's new pass") as c:
        assert c.datasets()["name"].to_pylist() == [DETECTOR]

    # revoking the grant hides the data at once; removing the user ends the logins
    ok("revoke", d, DETECTOR, "--to", "group:lab")
    with Client(location, username="bob", password="bob's new pass") as c:
        assert c.datasets().num_rows == 0
    ok("users", "remove", d, "bob")
    with pytest.raises(Unauthenticated):
        Client(location, username="bob", password="bob's new pass").datasets()

    # the server's own refusals come back in one line, with no traceback
    fails("users", "remove", d, "nobody", says="no user named 'nobody'")
    fails("users", "add", d, "alice", "--password-stdin", input="again pass\n", says="user 'alice' exists")
    fails("grant", d, "x/*", "--to", "group:nope", says="no group named")
    fails("revoke", d, "x/*", "--to", "user:alice", says="no read grant of 'x/*' to user:alice")
    assert server.proc.poll() is None


def test_the_socket_is_private_and_answers_bad_requests_with_errors(served) -> None:
    d, location, server = served
    catalog = Path(d) / ".arrowroot" / "catalog.duckdb"
    path = socket_path(catalog)
    assert path.exists() and (path.parent.stat().st_mode & 0o777) == 0o700
    assert (path.stat().st_mode & 0o777) == 0o600

    def ask(raw: bytes) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(15)
            s.connect(str(path))
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            return json.loads(s.makefile("rb").readline())

    assert ask(b"{not json\n") == {"ok": False, "error": ask(b"{not json\n")["error"]}
    assert "bad admin request" in ask(b"{not json\n")["error"]
    assert "unknown admin operation 'drop_tables'" in ask(b'{"op": "drop_tables"}\n')["error"]
    assert "unknown arguments sql" in ask(b'{"op": "list_users", "args": {"sql": "x"}}\n')["error"]
    assert "over 65536 bytes" in ask(b"x" * (70 << 10))["error"]
    assert ask(b'{"op": "list_users"}\n')["ok"] is True

    # another OS user cannot reach it: the directory is 0700, so connect() is refused by the kernel
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\n    print('connected')\n"
             "except PermissionError:\n    print('refused')\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe,
                        str(path)], capture_output=True, text=True, timeout=60, env=clean_env(), cwd="/")
    assert r.stdout.strip() == "refused", (r.stdout, r.stderr)
    with Client(location, username="alice", password="alice's pass") as c:  # and the server is still up
        assert c.datasets()["name"].to_pylist() == [EVENTS]


def test_a_server_killed_leaves_a_socket_the_next_start_replaces(tmp_path: Path) -> None:
    root = write_sample_files(tmp_path / "data", entries=100)
    ok("index", str(root))
    catalog = root / ".arrowroot" / "catalog.duckdb"
    first = Running("serve", str(root), "--port", "0")
    assert first.port
    path = socket_path(catalog)
    assert path.exists()
    first.proc.kill()
    first.proc.wait()
    assert path.exists()  # kill -9 leaves it behind
    # with no server, the command writes the file itself (the dead socket is not asked)
    ok("users", "add", str(root), "carol", "--password-stdin", input="carol's pass\n")
    with Running("serve", str(root), "--port", "0") as second:
        assert second.port
        assert "carol\tgroups=-" in ok("users", "list", str(root))
        ok("grant", str(root), "*", "--to", "user:carol")
        with Client(f"grpc://127.0.0.1:{second.port}", username="carol", password="carol's pass") as c:
            assert {EVENTS, DETECTOR} <= set(c.datasets()["name"].to_pylist())
    assert not path.exists()  # a clean stop removes it


def test_a_server_without_authentication_says_so(tmp_path: Path) -> None:
    root = write_sample_files(tmp_path / "data", entries=100)
    with Running("serve", str(root), "--port", "0") as server:
        assert server.port
        r = run_cli("users", "add", str(root), "dave", "--password-stdin", input="dave's pass\n")
        assert r.returncode == 0 and "added user dave" in r.stdout, r.stderr
        assert "started without authentication" in r.stderr


def test_the_cli_module_runs_as_a_command() -> None:
    """The same entry point the tests call (guards against CLI helpers that only run in-process)."""
    r = subprocess.run([*CLI, "users", "--help"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert r.returncode == 0 and "passwd" in r.stdout and os.sep not in r.stderr
