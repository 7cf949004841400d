"""Zone maps through a real server: collected at index time for small files and lazily for large
ones, stored in the catalog and dropped with their file; cuts and Flight SQL filters skip zones and
still return exactly what a full scan returns — random cuts over sorted, partly sorted and random
ROOT and HDF5 data — and count/min/max over a dataset come from the maps when they are exact."""

from __future__ import annotations

import json
import time

import adbc_driver_flightsql.dbapi as flightsql
import awkward as ak
import duckdb
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from arrowroot.flight_server.lang.cuts import ExprError, parse

N = 40_000
CLUSTER = 5_000
DS = "ev.root:t"
H5 = "ev.h5:t"


def _columns(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    run = np.sort(rng.integers(0, 400, N)).astype(np.int32)                # sorted (run numbers)
    time_ = np.sort(rng.uniform(0, 1e6, N))                                 # sorted (timestamps)
    partly = run.astype(np.float32) + rng.normal(0, 3, N).astype(np.float32)  # nearly sorted
    swap = rng.integers(0, N, (N // 50, 2))
    partly[swap[:, 0]], partly[swap[:, 1]] = partly[swap[:, 1]], partly[swap[:, 0]]
    noise = rng.normal(0, 100, N)                                            # random
    noise[rng.random(N) < 0.01] = np.nan
    return {"run": run, "time": time_, "partly": partly, "noise": noise,
            "n": rng.poisson(2, N).astype(np.int32)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("zones")
    cols = _columns()
    rng = np.random.default_rng(3)
    jagged = ak.unflatten(rng.exponential(20, cols["n"].sum()).astype(np.float32), cols["n"])
    with uproot.recreate(d / "ev.root") as f:
        t = f.mktree("t", {"run": "int32", "time": "float64", "partly": "float32", "noise": "float64",
                           "pt": "var * float32"})
        for s in range(0, N, CLUSTER):
            t.extend({k: cols[k][s:s + CLUSTER] for k in ("run", "time", "partly", "noise")} |
                     {"pt": jagged[s:s + CLUSTER]})
    with h5py.File(d / "ev.h5", "w") as f:
        for k in ("run", "time", "partly", "noise"):
            f.create_dataset(f"t/{k}", data=cols[k], chunks=(4_000,), compression="gzip")
    return d


@pytest.fixture(scope="module")
def server(data_dir):
    from conftest import start_server

    r = start_server(data_dir, chunk_bytes=64_000, endpoint_bytes=200_000)
    r.server.indexer.zones.wait()   # collected in the background after indexing
    yield r
    r.stop()


@pytest.fixture(scope="module")
def local(data_dir) -> dict[str, pa.Table]:
    root = uproot.open(data_dir / "ev.root")["t"].arrays(library="ak")
    table = ak.to_arrow_table(root, extensionarray=False)
    with h5py.File(data_dir / "ev.h5") as f:
        h5 = pa.table({k: f[f"t/{k}"][:] for k in ("run", "time", "partly", "noise")})
    return {DS: table, H5: h5}


def _read(server, ds: str, where: str) -> tuple[list[int], dict]:
    c = server.flight()
    request = {"dataset": ds, "columns": ["run"], "where": where, "with_entry_numbers": True}
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)))
    entries: list[int] = []
    for ep in info.endpoints:
        entries += c.do_get(ep.ticket).read_all()["entry"].to_pylist()
    return entries, json.loads(info.app_metadata or b"{}")


def _expected(table: pa.Table, where: str) -> list[int]:
    return np.flatnonzero(parse(where, table.schema).mask(table).to_numpy(zero_copy_only=False)).tolist()


def test_small_files_get_zone_maps_when_indexed(server) -> None:
    cat = server.server.catalog
    rec = cat.dataset(DS)
    maps = cat.zones.get(rec.parts)[(rec.parts[0].file_id, "t")]
    assert set(maps) == {"run", "time", "partly", "noise", "pt", "npt"}   # npt: the counter uproot writes
    run = maps["run"]
    assert run.starts == tuple(range(0, N, CLUSTER)) and run.stops[-1] == N
    assert all(lo <= hi for lo, hi in zip(run.mins, run.maxs))
    assert list(run.maxs) == sorted(run.maxs)                     # sorted data, sorted zones
    assert maps["pt"].min_lens[0] == 0 and maps["noise"].nans[0] > 0
    h5 = cat.dataset(H5)
    assert cat.zones.get(h5.parts)[(h5.parts[0].file_id, "t")]["run"].starts == tuple(range(0, N, 4_000))


@pytest.mark.parametrize("ds", [DS, H5])
def test_a_selective_cut_on_a_sorted_column_skips_most_of_the_file(server, local, ds) -> None:
    where = "run >= 100 and run < 104"
    entries, notes = _read(server, ds, where)
    assert entries == _expected(local[ds], where) and entries
    assert notes["zone_skipped"] >= 0.7 * N          # 6 of 8 ROOT clusters, 8 of 10 HDF5 chunks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_cuts_return_what_a_full_scan_returns(server, local, data) -> None:
    ds = data.draw(st.sampled_from([DS, H5]))
    column = data.draw(st.sampled_from(["run", "time", "partly", "noise"]))
    lo = data.draw(st.floats(-50, 1e6, allow_nan=False))
    width = data.draw(st.sampled_from([0.5, 3, 50, 1e4, 1e7]))
    op = data.draw(st.sampled_from([">", ">=", "<", "<=", "==", "!="]))
    shape = data.draw(st.sampled_from(["{c} {op} {lo}", "{c} >= {lo} and {c} < {hi}", "not ({c} >= {lo} and {c} < {hi})",
                                       "{c} < {lo} or {c} > {hi}", "abs({c} - {lo}) < {w}", "isnan({c}) or {c} > {hi}",
                                       "{c} in [{ilo}, {ihi}]", "any(pt > {w}) and {c} > {lo}",
                                       "count(pt > 10) >= 2 and {c} <= {hi}", "len(pt) == 0 or {c} * 2 > {lo}"]))
    where = shape.format(c=column, op=op, lo=repr(lo), hi=repr(lo + width), w=repr(width), ilo=int(lo),
                         ihi=int(lo + width))
    if ds == H5 and "pt" in where:
        where = where.replace("any(pt > ", "(run > ").replace("count(pt > 10) >= 2", "run >= 0").replace(
            "len(pt) == 0", "run < 0")
    try:
        parse(where, local[ds].schema)
    except ExprError:
        assume(False)
    entries, _ = _read(server, ds, where)
    assert entries == _expected(local[ds], where), (ds, where)


def test_large_files_get_zone_maps_on_the_first_cut(tmp_path, local) -> None:
    """Files over the index-time size: the first cut reads everything and asks for the maps; the
    collector reads them in the background; the next cut skips."""
    from conftest import start_server

    src = local[DS]
    with uproot.recreate(tmp_path / "big.root") as f:
        t = f.mktree("t", {"run": "int32"})
        for s in range(0, N, CLUSTER):
            t.extend({"run": src["run"].to_numpy()[s:s + CLUSTER]})
    r = start_server(tmp_path, index=False)
    try:
        r.server.indexer.zone_index_bytes = 0
        r.server.indexer.run()
        r.server.indexer.zones.wait()
        rec = r.server.catalog.dataset("big.root:t")
        assert r.server.catalog.zones.get(rec.parts)[(rec.parts[0].file_id, "t")] == {}
        where = "run >= 100 and run < 104"
        first, notes = _read(r, "big.root:t", where)
        assert "zone_skipped" not in notes and first == _expected(src, where)
        r.server.indexer.zones.wait()
        again, notes = _read(r, "big.root:t", where)
        assert again == first and notes["zone_skipped"] >= 0.7 * N
        # the file is rewritten: its maps go with it, and the new file's are collected anew
        time.sleep(0.01)
        with uproot.recreate(tmp_path / "big.root") as f:
            f.mktree("t", {"run": "int32"}).extend({"run": np.full(1000, 101, np.int32)})
        r.server.indexer.run()
        r.server.indexer.zones.wait()
        count = r.server.catalog.cursor().execute("SELECT count(*) FROM zone_maps").fetchone()[0]
        assert count == 0
        got, notes = _read(r, "big.root:t", where)
        assert got == list(range(1000)) and "zone_skipped" not in notes
    finally:
        r.stop()


# ---------------------------------------------------------------- Flight SQL


def _sql(server, query: str) -> pa.Table:
    with flightsql.connect(server.location, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


@pytest.mark.parametrize("ds", [DS, H5])
def test_count_min_max_come_from_zone_maps(server, local, ds) -> None:
    front = server.server.sql
    before = len(front.scan_log)
    got = _sql(server, f'SELECT count(*) AS n, min(run) AS lo, max("run") AS hi, count(time) AS c, '
                       f'max(partly) AS p FROM "{ds}"')
    assert len(front.scan_log) == before                       # nothing was read
    ref = duckdb.sql("SELECT count(*) AS n, min(run) AS lo, max(run) AS hi, count(time) AS c, max(partly) AS p "
                     "FROM tab", connection=_con(local[ds])).arrow().read_all()
    assert got.to_pylist() == ref.to_pylist() and got.schema.types == ref.schema.types
    # NaN in `noise`: DuckDB orders NaN above every number, the maps keep no NaN: a real scan answers
    got = _sql(server, f'SELECT max(noise) AS m, min(noise) AS lo FROM "{ds}"')
    assert len(front.scan_log) == before + 1
    ref = duckdb.sql("SELECT max(noise) AS m, min(noise) AS lo FROM tab", connection=_con(local[ds])).fetchall()
    assert np.isnan(got["m"][0].as_py()) and np.isnan(ref[0][0]) and got["lo"][0].as_py() == ref[0][1]


def _con(table: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("tab", table.select([c for c in table.column_names if c != "pt"]))
    return con


@pytest.mark.parametrize("query", [
    'SELECT count(*) AS n, sum(run) AS s FROM "{ds}" WHERE run BETWEEN 100 AND 103',
    'SELECT count(*) AS n FROM "{ds}" WHERE noise > 50',          # NaN passes `> 50` in SQL
    'SELECT count(*) AS n FROM "{ds}" WHERE noise <= -50 AND time >= 250000.5',
    'SELECT count(*) AS n FROM "{ds}" WHERE partly > 0.1 AND run IN (7, 8, 300)',
    'SELECT count(*) AS n FROM "{ds}" WHERE 200 < run OR noise < 0',
    'SELECT avg(time) AS a FROM "{ds}" WHERE run = 55',
])
def test_sql_filters_pushed_into_the_scan_return_what_duckdb_returns(server, local, query: str) -> None:
    for ds in (DS, H5):
        front = server.server.sql
        rows_before = front.scanned.snapshot().get(ds, {}).get("rows", 0)
        got = _sql(server, query.format(ds=ds))
        ref = duckdb.sql(query.format(ds="tab").replace('"tab"', "tab"), connection=_con(local[ds])).arrow().read_all()
        assert got.to_pylist() == ref.to_pylist(), (ds, query)
        read = front.scanned.snapshot()[ds]["rows"] - rows_before
        if "BETWEEN" in query or "run = 55" in query:
            assert read < N / 10                                      # zones skipped, rows filtered
