"""Workspaces end to end: uploads (Client, raw DoPut, ADBC ingest), derived columns, skims,
provenance and lifecycle, against a real server on a loopback port and real files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pytest

from arrowroot.clients import Client
from arrowroot.clients.errors import InvalidRequest, NotFound, PermissionDenied, Unavailable
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.protos import PUT_COMMIT

from conftest import read_request, start_server

pytestmark = pytest.mark.slow

EVENTS = "hep/events.root:events"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = write_sample_files(tmp_path_factory.mktemp("wsdata"), entries=6000)
    r = start_server(root)
    yield r
    r.stop()


def _table(n: int = 1000, offset: int = 0) -> pa.Table:
    x = np.arange(offset, offset + n, dtype=np.int64)
    return pa.table({"x": x, "y": x.astype(np.float64) / 4, "label": pa.array([f"r{i}" for i in x]),
                     "hits": pa.array([[int(i), int(i) + 1] for i in x], pa.list_(pa.int32()))})


def _files(r) -> list[Path]:
    home = r.server.ctx.workspace.dir / "home"
    return sorted(p for p in home.rglob("*") if p.is_file()) if home.exists() else []


def test_client_put_round_trip_and_sql(ws) -> None:
    c = ws.client()
    t = _table(2500)
    answer = c.put("home/local/plain", t, metadata={"note": "first"})
    assert answer["rows"] == 2500 and answer["kind"] == "upload"
    got = c.read("home/local/plain")
    assert got.equals(t)
    assert "home/local/plain" in c.datasets("home/*")["name"].to_pylist()
    cut = c.read("home/local/plain", ["x", "hits"], where="y >= 600")
    assert cut["x"].to_pylist() == list(range(2400, 2500))
    assert cut["hits"].to_pylist()[0] == [2400, 2401]
    # the served directory is never written: the bytes are under .arrowroot/workspace
    assert all(".arrowroot" in p.parts for p in _files(ws))
    import adbc_driver_flightsql.dbapi as flightsql

    with flightsql.connect(ws.location) as conn, conn.cursor() as cur:
        cur.execute('SELECT count(*), sum(x), max(label) FROM "home/local/plain" WHERE y < 10')
        assert cur.fetchone() == (40, sum(range(40)), "r9")


def test_raw_flight_do_put_json_command_and_path(ws) -> None:
    client = ws.flight()
    t = _table(300)
    writer, meta = client.do_put(fl.FlightDescriptor.for_command(json.dumps({"dataset": "home/local/raw"})), t.schema)
    writer.write_table(t, max_chunksize=64)
    writer.write_metadata(pa.py_buffer(PUT_COMMIT))
    writer.done_writing()
    answer = json.loads(meta.read().to_pybytes())
    writer.close()
    assert answer == {"dataset": "home/local/raw", "kind": "upload", "rows": 300, "written": 300,
                      "bytes": answer["bytes"]}
    writer, _ = client.do_put(fl.FlightDescriptor.for_path("home/local/raw_path"), t.schema)
    writer.write_table(t)
    writer.write_metadata(pa.py_buffer(PUT_COMMIT))
    writer.close()
    assert read_request(ws, {"dataset": "home/local/raw_path", "columns": ["x"]})["x"].to_pylist() == list(range(300))


def test_create_twice_append_replace_and_schema_mismatch(ws) -> None:
    c = ws.client()
    c.put("home/local/grow", _table(100))
    with pytest.raises(InvalidRequest, match="already exists: 'home/local/grow'"):
        c.put("home/local/grow", _table(100))
    c.put("home/local/grow", _table(50, offset=100), mode="append")
    assert c.read("home/local/grow", "x")["x"].to_pylist() == list(range(150))
    bad = _table(10).set_column(1, "y", pa.array(["a"] * 10))
    with pytest.raises(InvalidRequest, match="column 'y'"):
        c.put("home/local/grow", bad, mode="append")
    with pytest.raises(InvalidRequest, match="column 'label'"):
        c.put("home/local/grow", _table(10).drop_columns(["label"]), mode="append")
    c.put("home/local/grow", _table(7, offset=1000), mode="replace")
    assert c.read("home/local/grow", "x")["x"].to_pylist() == list(range(1000, 1007))
    # exactly one file per dataset remains (replaced files are deleted)
    entries = ws.server.catalog.workspace_entries("local")
    assert sorted(str(ws.server.ctx.workspace.abs(e.path)) for e in entries) == \
        sorted(str(p) for p in _files(ws))


def test_concurrent_creates_one_wins(ws) -> None:
    results: list[object] = []

    def run(i: int) -> None:
        try:
            results.append(ws.client().put("home/local/race", _table(20000, offset=i)))
        except InvalidRequest as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, InvalidRequest)]
    assert len(wins) == 1 and len(losses) == 2
    assert all("already exists" in str(e) for e in losses)
    assert ws.client().read("home/local/race", "x").num_rows == 20000
    assert sum(1 for e in ws.server.catalog.workspace_entries() if e.name == "home/local/race") == 1


def test_failed_upload_leaves_nothing(tmp_path) -> None:
    root = write_sample_files(tmp_path / "d", entries=500)
    r = start_server(root, max_upload_bytes=200_000)
    try:
        c = r.client()
        with pytest.raises(Unavailable, match="resource exhausted: upload: more than the 200000-byte limit"):
            c.put("home/local/big", _table(50_000))
        assert r.server.catalog.workspace_entries() == []
        assert _files(r) == []
        with pytest.raises(NotFound):
            c.read("home/local/big")
    finally:
        r.stop()


def test_quota_per_user(tmp_path) -> None:
    root = write_sample_files(tmp_path / "d", entries=500)
    r = start_server(root, quota_bytes=60_000)
    try:
        c = r.client()
        c.put("home/local/small", _table(1000))
        with pytest.raises(Unavailable, match="resource exhausted: quota"):
            c.put("home/local/large", pa.table({"z": np.random.default_rng(1).random(200_000)}))
        assert [e.name for e in r.server.catalog.workspace_entries()] == ["home/local/small"]
        assert len(_files(r)) == 1
    finally:
        r.stop()


def test_names_outside_home_are_refused(ws) -> None:
    c = ws.client()
    with pytest.raises(InvalidRequest, match="home/<user>/"):
        c.put("cms/mine", _table(5))
    with pytest.raises(PermissionDenied, match="home namespace"):
        c.put("home/bob/mine", _table(5))
    with pytest.raises(InvalidRequest, match="segment"):
        c.put("home/local/../etc", _table(5))


def test_adbc_bulk_ingest(ws) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    t = _table(1234)
    with flightsql.connect(ws.location) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("home/local/ingested", t) == 1234
        assert cur.adbc_ingest("home/local/ingested", _table(6, offset=5000), mode="append") == 6
        cur.execute('SELECT count(*), max(x) FROM "home/local/ingested"')
        assert cur.fetchone() == (1240, 5005)
        with pytest.raises(Exception, match="already exists"):
            cur.adbc_ingest("home/local/ingested", t, mode="create")
    assert ws.client().read("home/local/ingested", "x")["x"].to_pylist()[:3] == [0, 1, 2]


# ---------------------------------------------------------------- derived columns


def test_derived_columns_join_by_entry(ws) -> None:
    c = ws.client()
    parent = c.read(EVENTS, ["MET_pt", "nMuon"], with_entry_numbers=True)
    extra = pa.table({"entry": parent["entry"],
                      "met2": pc.multiply(parent["MET_pt"].cast(pa.float64()), 2.0),
                      "tag": pc.greater(parent["nMuon"], 1)})
    answer = c.put("home/local/derived", extra, parent=EVENTS)
    assert answer["kind"] == "derived"
    got = c.read("home/local/derived", ["event", "MET_pt", "met2", "tag", "Muon_pt"])
    ref = c.read(EVENTS, ["event", "MET_pt", "Muon_pt"])
    assert got["event"].equals(ref["event"]) and got["Muon_pt"].equals(ref["Muon_pt"])
    assert got["met2"].to_pylist() == [2.0 * v for v in ref["MET_pt"].to_pylist()]
    # cuts on either side, or both, are pushed to the side that holds the column
    both = c.read("home/local/derived", ["event", "met2"], where="tag and MET_pt > 40")
    want = c.read(EVENTS, ["event"], where="nMuon > 1 and MET_pt > 40")
    assert both["event"].equals(want["event"]) and both.num_rows > 0
    # a subset of entries works too (derived columns of a skim-like selection)
    sub = extra.filter(pc.equal(pc.bit_wise_and(extra["entry"], 7), 0))
    c.put("home/local/derived_sub", sub, parent=EVENTS)
    part = c.read("home/local/derived_sub", ["event", "met2"])
    assert part["event"].to_pylist() == list(range(0, 6000, 8))


def test_derived_columns_are_checked(ws) -> None:
    c = ws.client()
    with pytest.raises(InvalidRequest, match="'entry'"):
        c.put("home/local/d1", pa.table({"v": [1.0]}), parent=EVENTS)
    with pytest.raises(InvalidRequest, match="'MET_pt' is already a column"):
        c.put("home/local/d2", pa.table({"entry": [0], "MET_pt": [1.0]}), parent=EVENTS)
    with pytest.raises(InvalidRequest, match="strictly increasing"):
        c.put("home/local/d3", pa.table({"entry": [3, 1], "v": [1.0, 2.0]}), parent=EVENTS)
    with pytest.raises(InvalidRequest, match="outside the parent"):
        c.put("home/local/d4", pa.table({"entry": [0, 6000], "v": [1.0, 2.0]}), parent=EVENTS)
    assert not [e for e in ws.server.catalog.workspace_entries() if e.name.startswith("home/local/d") and
                e.name[-1].isdigit()]


# ---------------------------------------------------------------- skims


def test_skim_reads_the_same_rows_as_the_cut(ws) -> None:
    c = ws.client()
    answer = c.skim("home/local/two_mu", EVENTS, "nMuon >= 2", metadata={"purpose": "test"})
    ref = c.read(EVENTS, where="nMuon >= 2", with_entry_numbers=True)
    assert answer["rows"] == ref.num_rows > 0 and answer["parent_entries"] == 6000
    got = c.read("home/local/two_mu")
    for name in ref.schema.names:
        assert got[name].equals(ref[name]), name
    # own entry numbering: entry ranges count skim rows; the 'entry' column points at the parent
    window = c.read("home/local/two_mu", ["entry", "event"], entries=(10, 20))
    assert window["entry"].equals(ref["entry"].slice(10, 10))
    # a cut on the skim, and a skim of the skim, compose
    cut = c.read("home/local/two_mu", ["event"], where="MET_pt > 50")
    assert cut["event"].equals(c.read(EVENTS, ["event"], where="nMuon >= 2 and MET_pt > 50")["event"])
    c.skim("home/local/two_mu_met", "home/local/two_mu", "MET_pt > 50")
    again = c.read("home/local/two_mu_met", ["event", "entry"])
    assert again["event"].equals(cut["event"])
    # the skim stores entry numbers only: far smaller than the rows
    assert answer["bytes"] < 0.25 * c.put("home/local/copy", ref)["bytes"]


def test_materialized_skim_and_sql(ws) -> None:
    c = ws.client()
    answer = c.skim("home/local/mat", EVENTS, "MET_pt > 60", materialize=True, columns=["event", "MET_pt"])
    assert answer["kind"] == "materialized"
    got = c.read("home/local/mat")
    assert got.schema.names == ["entry", "event", "MET_pt"]
    assert got["event"].equals(c.read(EVENTS, ["event"], where="MET_pt > 60")["event"])
    import adbc_driver_flightsql.dbapi as flightsql

    c.skim("home/local/sqlskim", EVENTS, "nMuon == 0")
    with flightsql.connect(ws.location) as conn, conn.cursor() as cur:
        cur.execute('SELECT count(*), sum("nMuon") FROM "home/local/sqlskim"')
        n, s = cur.fetchone()
        assert n == c.read(EVENTS, ["event"], where="nMuon == 0").num_rows and s == 0
        cur.execute("SELECT name, kind, parent, cut FROM arrowroot.provenance WHERE name = 'home/local/sqlskim'")
        assert cur.fetchall() == [("home/local/sqlskim", "skim", EVENTS, "nMuon == 0")]


def test_lineage_and_parent_changed(ws) -> None:
    c = ws.client()
    c.put("home/local/base", _table(400))
    c.skim("home/local/base_skim", "home/local/base", "x % 2 == 0")
    c.skim("home/local/base_skim2", "home/local/base_skim", "x < 100", metadata={"by": "me"})
    chain = c.lineage("home/local/base_skim2")
    assert [i["name"] for i in chain] == ["home/local/base_skim2", "home/local/base_skim", "home/local/base"]
    assert chain[0]["cut"] == "x < 100" and chain[0]["metadata"] == {"by": "me"} and chain[0]["owner"] == "local"
    assert chain[0]["parent_version"] == chain[1]["parent_version"]  # both read the files of home/local/base
    assert c.read("home/local/base_skim2", "x")["x"].to_pylist() == list(range(0, 100, 2))
    with pytest.raises(InvalidRequest, match="holds the data of"):
        c.delete("home/local/base")
    c.put("home/local/base", _table(400, offset=1), mode="replace")
    with pytest.raises(InvalidRequest, match="parent changed since the skim was made"):
        c.read("home/local/base_skim", "x")


def test_rename_and_delete(ws) -> None:
    c = ws.client()
    c.put("home/local/old", _table(10))
    c.skim("home/local/old_skim", "home/local/old", "x > 4")
    c.rename("home/local/old", "home/local/new")
    assert c.read("home/local/new", "x").num_rows == 10
    with pytest.raises(NotFound):
        c.read("home/local/old")
    assert c.lineage("home/local/old_skim")[1]["name"] == "home/local/new"
    assert c.read("home/local/old_skim", "x")["x"].to_pylist() == [5, 6, 7, 8, 9]
    c.delete("home/local/old_skim")
    c.delete("home/local/new")
    with pytest.raises(NotFound):
        c.read("home/local/new")
    with pytest.raises(NotFound):
        c.delete("home/local/new")
    names = {e.name for e in ws.server.catalog.workspace_entries()}
    assert not names & {"home/local/new", "home/local/old_skim"}


def test_rescan_leaves_workspace_datasets_alone(ws) -> None:
    c = ws.client()
    c.put("home/local/kept", _table(10))
    report = c.action("rescan", {})
    assert report["removed"] == 0
    assert c.read("home/local/kept", "x").num_rows == 10


# ---------------------------------------------------------------- privacy


@pytest.fixture(scope="module")
def private_ws(tmp_path_factory: pytest.TempPathFactory):
    from arrowroot.catalog import identities
    from arrowroot.catalog.store import Catalog

    root = write_sample_files(tmp_path_factory.mktemp("wsauth"), entries=500)
    cat = Catalog(tmp_path_factory.mktemp("wsauthcat") / "catalog.duckdb")
    identities.add_user(cat, "alice", "alice-pw-123")
    identities.add_user(cat, "bob", "bob-pw-123")
    identities.grant(cat, "*", "public")  # everything public: still nobody's home
    from arrowroot.flight_server.core.settings import Settings
    from arrowroot.flight_server.server.flight import ArrowrootServer

    server = ArrowrootServer(Settings(root=root, port=0), catalog=cat)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    yield server, f"grpc://127.0.0.1:{server.port}", cat
    server.shutdown()
    cat.close()


def test_workspace_is_private_until_granted(private_ws) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    from arrowroot.catalog import identities

    server, location, cat = private_ws
    alice = Client(location, username="alice", password="alice-pw-123")
    bob = Client(location, username="bob", password="bob-pw-123")
    alice.put("home/alice/secret", _table(50))
    assert alice.read("home/alice/secret", "x").num_rows == 50
    assert "home/alice/secret" not in bob.datasets()["name"].to_pylist()
    assert EVENTS in bob.datasets()["name"].to_pylist()
    with pytest.raises(NotFound):
        bob.read("home/alice/secret")
    with pytest.raises(NotFound):
        bob.lineage("home/alice/secret")
    with pytest.raises(NotFound):
        bob.skim("home/bob/steal", "home/alice/secret", "x > 1")
    anonymous = Client(location)
    assert "home/alice/secret" not in anonymous.datasets()["name"].to_pylist()
    with flightsql.connect(location, db_kwargs={"username": "bob", "password": "bob-pw-123"}) as conn:
        with conn.cursor() as cur:
            with pytest.raises(Exception, match="no such table"):
                cur.execute('SELECT count(*) FROM "home/alice/secret"')
            cur.execute("SELECT count(*) FROM arrowroot.provenance")
            assert cur.fetchone() == (0,)
    with pytest.raises(PermissionDenied):
        bob.put("home/alice/secret", _table(5), mode="replace")
    with pytest.raises(Exception, match="log in"):
        anonymous.put("home/local/x", _table(5))
    identities.grant(cat, "home/alice/*", "user:bob")
    assert bob.read("home/alice/secret", "x").num_rows == 50
    with pytest.raises(NotFound):  # read grants do not let bob delete
        bob.delete("home/alice/secret")
    bob.skim("home/bob/mine", "home/alice/secret", "x >= 40")
    assert bob.read("home/bob/mine", "x")["x"].to_pylist() == list(range(40, 50))


# ---------------------------------------------------------------- crash safety and the CLI


def _spawn(root: Path) -> tuple:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving "), line
    return proc, line.split()[1]


def test_kill_9_during_do_put_leaves_no_partial_dataset(tmp_path) -> None:
    import os
    import signal
    import time

    root = write_sample_files(tmp_path / "d", entries=500)
    proc, location = _spawn(root)
    try:
        c = Client(location)
        c.put("home/local/done", _table(100))
        batch = pa.RecordBatch.from_pydict({"v": np.arange(200_000, dtype=np.float64)})
        writer, _ = c.flight.do_put(fl.FlightDescriptor.for_command(b'{"dataset": "home/local/partial"}'),
                                    batch.schema)
        home = root / ".arrowroot" / "workspace" / "home" / "local"
        for _ in range(50):  # until a row group of the partial upload is on disk
            writer.write_batch(batch)
            if any(p.name.startswith(".tmp-") and p.stat().st_size > 0 for p in home.iterdir()):
                break
            time.sleep(0.05)
        assert any(p.name.startswith(".tmp-") for p in home.iterdir())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        try:
            writer.close()
        except Exception:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, location = _spawn(root)
    try:
        c = Client(location)
        names = c.datasets("home/*")["name"].to_pylist()
        assert names == ["home/local/done"]
        assert c.read("home/local/done", "x")["x"].to_pylist() == list(range(100))
        assert [p.name for p in home.iterdir() if p.name.startswith(".tmp-")] == []
        assert len(list(home.iterdir())) == 1
        c.put("home/local/partial", _table(3))  # the name is free
        assert c.read("home/local/partial", "x").num_rows == 3
    finally:
        proc.terminate()
        proc.wait(40)  # SIGTERM drains: up to --drain-seconds (30) plus 5 s; this test is about the kill -9


def test_cli_put_skim_lineage(ws, tmp_path) -> None:
    import subprocess
    import sys

    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(_table(77), src)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args, "-l", ws.location],
                              capture_output=True, text=True, timeout=60)

    out = cli("put", str(src), "home/local/cli_in", "-m", "source=cli")
    assert out.returncode == 0 and "77 rows" in out.stdout, out.stderr
    out = cli("skim", "home/local/cli_skim", "home/local/cli_in", "-w", "x >= 70")
    assert out.returncode == 0 and "7 of 77 entries" in out.stdout, out.stderr
    out = cli("lineage", "home/local/cli_skim")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0].startswith("home/local/cli_skim [skim] where 'x >= 70'")
    assert out.stdout.splitlines()[1].strip().startswith("home/local/cli_in [upload]")
    out = cli("put", str(src), "home/local/cli_in")
    assert out.returncode == 1 and "already exists" in out.stderr and "Traceback" not in out.stderr


def test_workspace_outside_the_served_root(tmp_path) -> None:
    root = write_sample_files(tmp_path / "d", entries=500)
    r = start_server(root, workspace=tmp_path / "elsewhere")
    try:
        c = r.client()
        c.put("home/local/out", _table(30))
        c.skim("home/local/out_skim", EVENTS, "nMuon >= 1")
        assert c.read("home/local/out", "x")["x"].to_pylist() == list(range(30))
        assert c.read("home/local/out_skim", ["event"]).equals(c.read(EVENTS, ["event"], where="nMuon >= 1"))
        assert all(p.is_relative_to(tmp_path / "elsewhere") for p in _files(r)) and len(_files(r)) == 2
        assert not (root / ".arrowroot" / "workspace").exists()
        paths = {e.path for e in r.server.catalog.workspace_entries()}
        assert all(p.startswith("@workspace/home/local/") for p in paths)  # no server path in the catalog
    finally:
        r.stop()


def test_parquet_files_in_the_served_directory_and_multi_file_parents(tmp_path) -> None:
    import shutil

    import pyarrow.parquet as pq

    root = write_sample_files(tmp_path / "d", entries=3000)
    shutil.copy(root / "hep" / "events.root", root / "hep" / "events2.root")
    pq.write_table(_table(900), root / "tab.parquet", row_group_size=200)
    r = start_server(root, endpoint_bytes=20_000, chunk_bytes=8_000)
    try:
        c = r.client()
        t = c.read("tab.parquet:table")
        assert t.equals(_table(900))
        assert c.read("tab.parquet:table", ["x"], entries=(195, 405), where="x % 100 == 0")["x"].to_pylist() \
            == [200, 300, 400]
        folder = "hep/*.root:events"
        assert c.read(folder, ["event"]).num_rows == 6000
        c.skim("home/local/both_files", folder, "MET_pt > 45")
        got = c.read("home/local/both_files", ["entry", "event", "Muon_pt"])
        ref = c.read(folder, ["event", "Muon_pt"], where="MET_pt > 45", with_entry_numbers=True)
        assert got["entry"].equals(ref["entry"]) and got["Muon_pt"].equals(ref["Muon_pt"])
        assert got["entry"].to_pylist()[-1] >= 3000  # entries of the second file are there too
        c.skim("home/local/tab_skim", "tab.parquet:table", "x >= 850")
        assert c.read("home/local/tab_skim", ["label"])["label"].to_pylist() == [f"r{i}" for i in range(850, 900)]
    finally:
        r.stop()


def test_skim_of_a_rewritten_root_file_fails_clearly(tmp_path) -> None:
    import time

    root = write_sample_files(tmp_path / "d", entries=800)
    r = start_server(root)
    try:
        c = r.client()
        c.skim("home/local/sel", EVENTS, "nMuon >= 2")
        c.put("home/local/extra", pa.table({"entry": [0, 1, 2], "w": [1.0, 2.0, 3.0]}), parent=EVENTS)
        n = c.read("home/local/sel", ["event"]).num_rows
        assert n > 0
        time.sleep(0.01)
        write_sample_files(root, entries=900, seed=7)  # the parent's file is rewritten in place
        for name in ("home/local/sel", "home/local/extra"):  # before re-indexing: the read notices
            with pytest.raises(InvalidRequest, match="parent changed since this was made"):
                c.read(name, ["event"])
        c.action("rescan", {})
        with pytest.raises(InvalidRequest, match="parent changed since the skim was made"):
            c.read("home/local/sel", ["event"])
        with pytest.raises(InvalidRequest, match="parent changed since the derived was made"):
            c.read("home/local/extra", ["w"])
        chain = c.lineage("home/local/sel")
        assert chain[1]["version"] != chain[0]["parent_version"]
        c.skim("home/local/sel", EVENTS, "nMuon >= 2", mode="replace")  # re-run: reads again
        assert c.read("home/local/sel", ["event"]).num_rows == c.read(EVENTS, ["event"], where="nMuon >= 2").num_rows
    finally:
        r.stop()


def test_quota_counts_uploads_still_running(tmp_path) -> None:
    from arrowroot.flight_server.core.errors import ResourceExhausted
    from arrowroot.flight_server.workspace.store import Limits, Workspace

    from arrowroot.catalog.store import Catalog

    cat = Catalog(tmp_path / "c.duckdb")
    ws = Workspace(tmp_path, None, cat, Limits(max_upload_bytes=1 << 30, quota_bytes=3_000_000), "test")
    schema = pa.schema([("z", pa.float64())])
    data = pa.record_batch([pa.array(np.random.default_rng(2).random(200_000))], schema=schema)  # ~1.5 MB stored
    a = ws.begin("home/u/a", "u", "create", schema)
    b = ws.begin("home/u/b", "u", "create", schema)
    a.write(data)  # a full row group: flushed, 1.7 MB reserved
    with pytest.raises(ResourceExhausted, match="counting uploads still running"):
        b.write(data)  # alone it would fit; with a running, it does not
    b.abort()
    a.commit()
    assert [e.name for e in cat.workspace_entries()] == ["home/u/a"]
    assert ws._inflight == {"u": {}}
    cat.close()
