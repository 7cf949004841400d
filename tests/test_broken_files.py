"""Broken files are visible: named in NOT_FOUND, listed by `ls --errors`, counted on a warm restart."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import uproot

from arrowroot.clients import NotFound


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with uproot.recreate(root / "good.root") as f:
        f["t"] = {"x": np.arange(10, dtype=np.int32)}
    (root / "notes.root").write_text("this is a text file someone named .root\n")
    good = (root / "good.root").read_bytes()
    (root / "cut.root").write_bytes(good[:200])  # truncated: the header survives, the rest is gone
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_names_in_broken_files_say_why(serve, messy):
    server = serve(messy)
    with server.client() as c:
        assert c.read("good.root:t")["x"].to_pylist() == list(range(10))
        with pytest.raises(NotFound, match=r"notes.root could not be indexed: not a ROOT file"):
            c.read("notes.root:t")
        with pytest.raises(NotFound, match=r"cut.root (could not be indexed|holds no dataset)"):
            c.read("cut.root:t")
    r = run_cli("ls", "--errors", "-l", server.location)
    assert r.returncode == 0
    listed = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    assert set(listed) == {"notes.root", "cut.root"} and "not a ROOT file" in listed["notes.root"]
    assert str(messy) not in r.stdout


@pytest.mark.slow
def test_warm_restart_still_reports_broken_files(messy):
    cold = run_cli("index", str(messy))
    warm = run_cli("index", str(messy))  # nothing changed
    for r in (cold, warm):
        assert r.returncode == 0, r.stderr
        assert "notes.root" in r.stderr and "cut.root" in r.stderr and "2 errors" in r.stdout + r.stderr
