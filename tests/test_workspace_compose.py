"""Skims and derived data compose: a skim of derived columns, derived columns on a skim,
materialize=True on anything; lineage follows parents by id through renames and deletions."""

from __future__ import annotations

import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowroot.catalog.store import Catalog
from arrowroot.clients import InvalidRequest
from arrowroot.flight_server.cli.demo import write_sample_files

from cli_process import run_cli

DS = "hep/events.root:events"


@pytest.fixture
def ws(serve, tmp_path):
    server = serve(write_sample_files(tmp_path / "data", entries=3000))
    with server.client() as c:
        ev = c.read(DS, ["MET_pt", "nMuon"], with_entry_numbers=True)
        c.put("home/local/met2", pa.table({"entry": ev["entry"], "met2": pc.multiply(ev["MET_pt"], 2.0)}), parent=DS)
        yield server, c, ev


def test_a_skim_of_derived_columns_keeps_them(ws):
    _, c, ev = ws
    answer = c.skim("home/local/fast", "home/local/met2", "met2 > 80 and nMuon >= 1")
    assert answer["kind"] == "skim"
    met = ev["MET_pt"].to_numpy()
    want = np.flatnonzero((met * 2 > 80) & (ev["nMuon"].to_numpy() >= 1))
    got = c.read("home/local/fast", ["entry", "MET_pt", "met2", "nMuon"])
    assert got["entry"].to_pylist() == want.tolist() and answer["rows"] == len(want)
    np.testing.assert_array_equal(got["MET_pt"].to_numpy(), met[want])
    np.testing.assert_array_equal(got["met2"].to_numpy(), met[want] * 2)
    # a skim of that skim still has the derived column, and reads the original files
    c.skim("home/local/faster", "home/local/fast", "met2 > 120")
    again = c.read("home/local/faster", ["entry", "met2"])
    assert again["entry"].to_pylist() == want[met[want] * 2 > 120].tolist()
    assert c.sql('SELECT count(*) AS n FROM "home/local/faster"')["n"][0].as_py() == again.num_rows


def test_derived_columns_on_a_skim(ws):
    _, c, ev = ws
    c.skim("home/local/two", DS, "nMuon >= 2")
    sk = c.read("home/local/two", ["entry", "MET_pt"])
    c.put("home/local/two_x", pa.table({"entry": sk["entry"], "x": pc.multiply(sk["MET_pt"], 3.0)}),
          parent="home/local/two")
    got = c.read("home/local/two_x", ["entry", "x", "nMuon"], where="x > 30")
    keep = (sk["MET_pt"].to_numpy() * 3) > 30
    assert got["entry"].to_pylist() == sk["entry"].to_numpy()[keep].tolist()
    assert min(got["nMuon"].to_pylist()) >= 2


def test_materialize_anything(ws):
    _, c, ev = ws
    met = ev["MET_pt"].to_numpy()
    # derived columns (a cut on the derived column), without a cut (every row), and a copy of a copy
    a = c.skim("home/local/copy", "home/local/met2", "met2 > 60", materialize=True, columns=["met2"])
    rows = c.read("home/local/copy")
    assert a["kind"] == "materialized" and rows.column_names == ["met2", "entry"]
    assert rows["entry"].to_pylist() == np.flatnonzero(met * 2 > 60).tolist()
    b = c.skim("home/local/all", "home/local/met2", "", materialize=True)
    assert b["rows"] == 3000 and "met2" in c.read("home/local/all").column_names
    cc = c.skim("home/local/copy2", "home/local/copy", "met2 > 100", materialize=True)
    assert c.read("home/local/copy2")["entry"].to_pylist() == np.flatnonzero(met * 2 > 100).tolist()
    assert cc["rows"] == int((met * 2 > 100).sum())
    # a copy outlives its parent, and remembers it
    assert [x["name"] for x in c.lineage("home/local/copy2")][:3] == ["home/local/copy2", "home/local/copy",
                                                                       "home/local/met2"]


def test_derived_on_derived_says_which_command_makes_a_copy(ws):
    _, c, ev = ws
    with pytest.raises(InvalidRequest, match=r"arrowroot skim home/<you>/copy home/local/met2 --materialize"):
        c.put("home/local/met4", pa.table({"entry": ev["entry"], "y": ev["MET_pt"]}), parent="home/local/met2")


def test_lineage_follows_renames_and_says_when_a_parent_was_deleted(ws):
    server, c, _ = ws
    c.skim("home/local/sel", DS, "nMuon >= 1")
    c.skim("home/local/pinned", "home/local/sel", "MET_pt > 20", materialize=True)
    c.rename("home/local/sel", "home/local/selected")
    chain = c.lineage("home/local/pinned")
    assert [(x["name"], x["kind"]) for x in chain] == [("home/local/pinned", "materialized"),
                                                        ("home/local/selected", "skim"), (DS, "source")]
    assert chain[0]["parent_id"] == chain[1]["id"]
    t0 = time.time()
    c.delete("home/local/selected")
    chain = c.lineage("home/local/pinned")
    assert [(x["name"], x["kind"]) for x in chain] == [("home/local/pinned", "materialized"),
                                                        ("home/local/selected", "deleted")]
    assert t0 - 5 < chain[1]["deleted_at"] < time.time() + 5
    r = run_cli("lineage", "home/local/pinned", "-l", server.location)
    assert r.returncode == 0 and f"home/local/selected [deleted on {time.strftime('%Y-%m-%d')}" in r.stdout, r.stdout


def test_a_catalog_from_before_ids_opens_and_falls_back_to_names(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""CREATE TABLE workspace (name VARCHAR, owner VARCHAR, kind VARCHAR, path VARCHAR, bytes BIGINT,
                   parent VARCHAR, parent_version VARCHAR, base VARCHAR, cut VARCHAR, columns VARCHAR[],
                   created_at DOUBLE, version VARCHAR, metadata JSON)""")
    con.execute("INSERT INTO workspace VALUES ('home/u/a', 'u', 'upload', 'x.parquet', 1, NULL, NULL, NULL, NULL, "
                "[], 1.0, '0.1', '{}')")
    con.close()
    cat = Catalog(path)
    try:
        (entry,) = cat.workspace_entries()
        assert entry.name == "home/u/a" and entry.id == "" and entry.parent_id is None
    finally:
        cat.close()
