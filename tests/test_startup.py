"""Start-up failures end in one line with the cause and the fix, exit status 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from arrowroot.catalog.store import Catalog

pytestmark = pytest.mark.slow


def run_cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def data(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_port_in_use(data):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("serve", str(data), "--port", str(port), "--no-index")
    assert r.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in r.stderr and "--port 0" in r.stderr
    assert "Traceback" not in r.stderr


def test_catalog_held_by_another_process(data):
    held = Catalog(data / ".arrowroot" / "catalog.duckdb")
    try:
        for args in (("index", str(data)), ("serve", str(data), "--port", "0")):
            r = run_cli(*args)
            assert r.returncode == 2, r.stderr
            assert "is in use by another process" in r.stderr and "--catalog" in r.stderr
            assert "Traceback" not in r.stderr
    finally:
        held.close()


def test_bad_setting_in_the_environment(data):
    r = run_cli("serve", str(data), "--port", "0", env={"ARROWROOT_TICKET_TTL": "soon"})
    assert r.returncode == 2 and "ARROWROOT_TICKET_TTL='soon': not a valid float" in r.stderr
    assert "Traceback" not in r.stderr
