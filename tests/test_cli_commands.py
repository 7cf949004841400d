"""The command line as a user types it: sql, ls filters, compact schema, cut hints, empty ranges."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from arrowroot.clients import InvalidRequest

pytestmark = pytest.mark.slow

DS = "hep/events.root:events"


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_sql_prints_and_writes(sample_server, tmp_path):
    q = f'SELECT nMuon, count(*) AS n FROM "{DS}" GROUP BY nMuon ORDER BY nMuon'
    with sample_server.client() as c:
        want = c.sql(q)
    assert want.num_rows > 1 and sum(want["n"].to_pylist()) == 20000
    r = run_cli("sql", q, "-l", sample_server.location)
    assert r.returncode == 0, r.stderr
    assert f"{want.num_rows} rows" in r.stdout and "nMuon" in r.stdout
    for name in ("h.csv", "h.parquet"):
        r = run_cli("sql", q, "-l", sample_server.location, "-o", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        got = pcsv.read_csv(tmp_path / name) if name.endswith(".csv") else pq.read_table(tmp_path / name)
        assert got["n"].to_pylist() == want["n"].to_pylist()
    r = run_cli("sql", "SELEC 1", "-l", sample_server.location)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_ls_filters_and_nothing_found(sample_server):
    r = run_cli("ls", "-l", sample_server.location, "--format", "hdf5")
    assert r.returncode == 0 and r.stdout and all(".h5:" in line for line in r.stdout.splitlines())
    r = run_cli("ls", "-l", sample_server.location, "--has-column", "nMuon")
    assert r.stdout.splitlines() and all(line.startswith("hep/") for line in r.stdout.splitlines())
    r = run_cli("ls", "nothing*", "-l", sample_server.location, "--kind", "ttree")
    assert r.returncode == 0 and r.stdout == "" and "no dataset matches name 'nothing*' and kind='ttree'" in r.stderr


def test_schema_compact_and_full(sample_server):
    r = run_cli("schema", DS, "-l", sample_server.location)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert "nMuon: int32" in lines and "Muon_pt: list<item: float>" in lines
    assert "arrowroot.source_type" not in r.stdout
    r = run_cli("schema", DS, "-l", sample_server.location, "--full")
    assert "arrowroot.source_type" in r.stdout


@pytest.mark.parametrize("cut,fix", [("nMuon = 2", "use '=='"), ("nMuon > 1 && MET_pt > 3", "use 'and'"),
                                     ("nMuon > 1 || MET_pt > 3", "use 'or'")])
def test_cut_syntax_errors_name_the_fix(sample_server, cut, fix):
    with sample_server.client() as c:
        with pytest.raises(InvalidRequest, match=fix):
            c.read(DS, ["nMuon"], where=cut)


def test_range_past_the_end_says_so(sample_server, tmp_path):
    r = run_cli("get", DS, str(tmp_path / "x.parquet"), "-c", "nMuon", "-e", "50000:60000", "-l",
                sample_server.location)
    assert r.returncode == 0 and "past its end" in r.stderr
