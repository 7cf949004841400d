"""Flight SQL over the wire with the real ADBC driver (and raw pyarrow.flight where ADBC hides details).

Every result is compared with DuckDB run locally on the same data read by uproot/h5py, never
through arrowroot.
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import awkward as ak
import duckdb
import h5py
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from arrowroot.flight_server.server.flight_sql import (
    CATALOGS_SCHEMA,
    DB_SCHEMAS_SCHEMA,
    SQL_INFO_SCHEMA,
    TABLE_TYPES_SCHEMA,
    TABLES_SCHEMA,
    TABLES_SCHEMA_WITH_SCHEMA,
    like_to_regex,
)
from arrowroot.protos import flight_sql as fs

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
Q = f'"{EVENTS}"'

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Cannot disable autocommit")]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference(sample_dir: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB over the sample files read by uproot and h5py (the expected answers)."""
    with uproot.open(sample_dir / "hep" / "events.root") as f:
        arrays = f["events"].arrays(["run", "event", "nMuon", "Muon_pt", "Muon_eta", "MET_pt"])
    events = pa.table({
        "run": pa.array(arrays["run"].to_numpy()),
        "event": pa.array(arrays["event"].to_numpy()),
        "nMuon": pa.array(arrays["nMuon"].to_numpy()),
        "Muon_pt": _list(arrays["Muon_pt"]),
        "Muon_eta": _list(arrays["Muon_eta"]),
        "MET_pt": pa.array(arrays["MET_pt"].to_numpy()),
    })
    with h5py.File(sample_dir / "lab" / "scan.h5", "r") as f:
        detector = pa.table({k: f["detector"][k][()] for k in ("time", "energy", "channel")})
    con = duckdb.connect()
    con.register("events", events)
    con.register("detector", detector)
    return con


def _list(arr: ak.Array) -> pa.Array:
    counts = ak.num(arr).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ak.flatten(arr).to_numpy()))


@pytest.fixture(scope="module")
def conn(sample_server):
    with flightsql.connect(sample_server.location, autocommit=True) as c:
        yield c


def sql(conn, query: str, params: tuple | None = None) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetch_arrow_table()


def ref(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> pa.Table:
    return con.sql(query, params=params).to_arrow_table()


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.column_names == want.column_names
    assert got.num_rows == want.num_rows
    for g, w in zip(got.to_pylist(), want.to_pylist()):
        for k in w:
            if isinstance(w[k], float):
                assert g[k] == pytest.approx(w[k], rel=1e-9), k
            elif isinstance(w[k], list) and w[k] and isinstance(w[k][0], float):
                assert g[k] == pytest.approx(w[k], rel=1e-6), k
            else:
                assert g[k] == w[k], k


# ----------------------------------------------------------------------------- queries


def test_connect_and_info(conn) -> None:
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "arrowroot"
    assert info["vendor_arrow_version"] == pa.__version__


def test_select_aggregate(conn, reference) -> None:
    got = sql(conn, f"SELECT avg(MET_pt) AS m, count(*) AS n FROM {Q} WHERE nMuon >= 2")
    want = ref(reference, "SELECT avg(MET_pt) AS m, count(*) AS n FROM events WHERE nMuon >= 2")
    assert_same(got, want)
    assert got["n"][0].as_py() > 1000


@pytest.mark.parametrize("cut", [0, 2, 4])
def test_select_with_parameters(conn, reference, cut: int) -> None:
    got = sql(conn, f"SELECT count(*) AS n, max(MET_pt) AS top FROM {Q} WHERE nMuon >= ?", (cut,))
    want = ref(reference, "SELECT count(*) AS n, max(MET_pt) AS top FROM events WHERE nMuon >= ?", [cut])
    assert_same(got, want)


def test_rows_and_two_parameters(conn, reference) -> None:
    query = "SELECT event, nMuon, MET_pt FROM {} WHERE MET_pt > ? AND nMuon = ? ORDER BY event"
    got = sql(conn, query.format(Q), (50.0, 3))
    want = ref(reference, query.format("events"), [50.0, 3])
    assert_same(got, want)
    assert got.num_rows > 10


def test_jagged_list_functions(conn, reference) -> None:
    query = ("SELECT event, len(Muon_pt) AS n, list_max(Muon_pt) AS lead, list_sum(Muon_pt) AS ht, Muon_pt "
             "FROM {} WHERE nMuon >= 1 ORDER BY event LIMIT 500")
    got = sql(conn, query.format(Q))
    want = ref(reference, query.format("events"))
    assert_same(got, want)
    assert got["n"].to_pylist() == [len(x) for x in got["Muon_pt"].to_pylist()]


def test_unnest_jagged(conn, reference) -> None:
    query = ("SELECT count(*) AS muons, avg(pt) AS mean_pt, max(pt) AS top FROM "
             "(SELECT unnest(Muon_pt) AS pt FROM {} WHERE MET_pt > 20)")
    assert_same(sql(conn, query.format(Q)), ref(reference, query.format("events")))
    hist = ("SELECT floor(pt / 10)::INT AS bin, count(*) AS n FROM "
            "(SELECT unnest(Muon_pt) AS pt FROM {}) GROUP BY bin ORDER BY bin")
    assert_same(sql(conn, hist.format(Q)), ref(reference, hist.format("events")))


def test_hdf5_table(conn, reference) -> None:
    query = "SELECT channel, count(*) AS n, avg(energy) AS e FROM {} GROUP BY channel ORDER BY channel"
    assert_same(sql(conn, query.format(f'"{DETECTOR}"')), ref(reference, query.format("detector")))


def test_join_with_catalog(conn, reference, sample_server) -> None:
    got = sql(conn, f"""
        SELECT d.name, d.entries, d.format, count(*) AS rows, sum(e.nMuon) AS muons
        FROM {Q} AS e JOIN arrowroot.datasets AS d ON d.name = '{EVENTS}'
        GROUP BY d.name, d.entries, d.format""")
    want = ref(reference, "SELECT count(*) AS rows, sum(nMuon) AS muons FROM events")
    row = got.to_pylist()[0]
    assert row["name"] == EVENTS and row["format"] == "root"
    assert row["entries"] == row["rows"] == want["rows"][0].as_py()
    assert row["muons"] == want["muons"][0].as_py()
    files = sql(conn, "SELECT path, format FROM arrowroot.files ORDER BY path").to_pylist()
    assert {"path": "hep/events.root", "format": "root"} in files
    cols = sql(conn, f"SELECT name FROM arrowroot.columns WHERE dataset = '{EVENTS}' AND readable ORDER BY position")
    assert "Muon_pt" in cols["name"].to_pylist()


def test_same_prepared_statement_many_times(conn, reference) -> None:
    query = f"SELECT count(*) AS n FROM {Q} WHERE nMuon = ?"
    with conn.cursor() as cur:
        for k in range(5):
            cur.execute(query, (k,))
            assert cur.fetchone()[0] == ref(reference, "SELECT count(*) FROM events WHERE nMuon = ?", [k])[0][0].as_py()


# ----------------------------------------------------------------------------- metadata


def test_get_objects(conn, sample_server) -> None:
    objects = conn.adbc_get_objects().read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["memory"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert set(schemas) == {"main", "arrowroot"}
    tables = {t["table_name"]: t for t in schemas["main"]["db_schema_tables"]}
    assert set(tables) == {d.name for d in sample_server.server.catalog.datasets()}
    columns = [c["column_name"] for c in tables[EVENTS]["table_columns"]]
    assert {"nMuon", "Muon_pt", "MET_pt"} <= set(columns)
    assert {t["table_name"] for t in schemas["arrowroot"]["db_schema_tables"]} == {"files", "datasets", "columns",
                                                                                   "provenance"}
    only = conn.adbc_get_objects(depth="tables", table_name_filter="%events%").read_all().to_pylist()
    names = [t["table_name"] for s in only[0]["catalog_db_schemas"] for t in (s["db_schema_tables"] or [])]
    assert names == [EVENTS]


def test_get_table_schema_and_types(conn, sample_server) -> None:
    schema = conn.adbc_get_table_schema(EVENTS)
    assert schema.field("Muon_pt").type == pa.list_(pa.float32())
    assert schema.field("MET_pt").type == pa.float32()
    got = sql(conn, f"SELECT * FROM {Q} LIMIT 3")
    assert got.schema.names == schema.names
    assert conn.adbc_get_table_schema("datasets", db_schema_filter="arrowroot").names[:2] == ["dataset_id", "name"]
    assert sorted(conn.adbc_get_table_types()) == ["SYSTEM TABLE", "TABLE"]


def test_pandas_read_sql(conn, reference) -> None:
    query = "SELECT nMuon, count(*) AS n, avg(MET_pt) AS met FROM {} GROUP BY nMuon ORDER BY nMuon"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = pd.read_sql(query.format(Q), conn)
    want = reference.sql(query.format("events")).df()
    assert list(got.columns) == ["nMuon", "n", "met"]
    np.testing.assert_array_equal(got["nMuon"].to_numpy(), want["nMuon"].to_numpy())
    np.testing.assert_array_equal(got["n"].to_numpy(), want["n"].to_numpy())
    np.testing.assert_allclose(got["met"].to_numpy(), want["met"].to_numpy(), rtol=1e-9)


def test_polars_read_database(conn, reference) -> None:
    query = "SELECT event, len(Muon_pt) AS n, MET_pt FROM {} WHERE nMuon >= 3 ORDER BY event"
    got = pl.read_database(query.format(Q), connection=conn)
    want = pl.from_arrow(ref(reference, query.format("events")))
    assert got.columns == ["event", "n", "MET_pt"]
    assert got.equals(want)


def _flight(sample_server) -> fl.FlightClient:
    return fl.connect(sample_server.location)


def _info(client: fl.FlightClient, msg) -> fl.FlightInfo:
    return client.get_flight_info(fl.FlightDescriptor.for_command(fs.pack(msg)))


def _fetch(client: fl.FlightClient, info: fl.FlightInfo) -> pa.Table:
    return pa.concat_tables([client.do_get(e.ticket).read_all() for e in info.endpoints])


def test_metadata_result_schemas_match_the_spec(sample_server) -> None:
    client = _flight(sample_server)
    cases = [
        (fs.CommandGetCatalogs(), CATALOGS_SCHEMA),
        (fs.CommandGetDbSchemas(), DB_SCHEMAS_SCHEMA),
        (fs.CommandGetTables(), TABLES_SCHEMA),
        (fs.CommandGetTables(include_schema=True), TABLES_SCHEMA_WITH_SCHEMA),
        (fs.CommandGetTableTypes(), TABLE_TYPES_SCHEMA),
        (fs.CommandGetSqlInfo(), SQL_INFO_SCHEMA),
    ]
    for msg, schema in cases:
        info = _info(client, msg)
        table = _fetch(client, info)
        assert info.schema.equals(schema) and table.schema.equals(schema), fs.message_name(msg)
        assert client.get_schema(fl.FlightDescriptor.for_command(fs.pack(msg))).schema.equals(schema)
    # the exact wire shape the specification writes down
    assert [(f.name, str(f.type), f.nullable) for f in TABLES_SCHEMA_WITH_SCHEMA] == [
        ("catalog_name", "string", True), ("db_schema_name", "string", True),
        ("table_name", "string", False), ("table_type", "string", False), ("table_schema", "binary", False)]
    value = SQL_INFO_SCHEMA.field("value").type
    assert value.mode == "dense" and list(value.type_codes) == [0, 1, 2, 3, 4, 5]
    assert [value.field(i).name for i in range(6)] == [
        "string_value", "bool_value", "bigint_value", "int32_bitmask", "string_list", "int32_to_int32_list_map"]


def test_sql_info_values(sample_server) -> None:
    client = _flight(sample_server)
    S = fs.SqlInfo
    wanted = [S.FLIGHT_SQL_SERVER_NAME, S.FLIGHT_SQL_SERVER_READ_ONLY, S.SQL_IDENTIFIER_QUOTE_CHAR, S.SQL_KEYWORDS]
    rows = _fetch(client, _info(client, fs.CommandGetSqlInfo(info=wanted))).to_pylist()
    got = {r["info_name"]: r["value"] for r in rows}
    assert got[S.FLIGHT_SQL_SERVER_NAME] == "arrowroot"
    assert got[S.FLIGHT_SQL_SERVER_READ_ONLY] is False  # bulk ingest writes into home/<user>/
    assert got[S.SQL_IDENTIFIER_QUOTE_CHAR] == '"'
    assert "SELECT" in got[S.SQL_KEYWORDS]


def test_get_tables_filters(sample_server) -> None:
    client = _flight(sample_server)

    def names(**kw) -> list[str]:
        return _fetch(client, _info(client, fs.CommandGetTables(**kw)))["table_name"].to_pylist()

    assert names(table_name_filter_pattern="lab/scan.h5:detector/%") == [
        "lab/scan.h5:detector/channel", "lab/scan.h5:detector/energy", "lab/scan.h5:detector/time"]
    assert names(db_schema_filter_pattern="arrowroot") == ["columns", "datasets", "files", "provenance"]
    assert names(table_types=["SYSTEM TABLE"]) == ["columns", "datasets", "files", "provenance"]
    assert names(catalog="other") == []
    got = _fetch(client, _info(client, fs.CommandGetTables(table_name_filter_pattern=EVENTS, include_schema=True)))
    schema = pa.ipc.read_schema(pa.py_buffer(got["table_schema"][0].as_py()))
    assert "Muon_pt" in schema.names
    assert like_to_regex("a_c%").fullmatch("abcdef") and not like_to_regex("a_c").fullmatch("abbc")


# ----------------------------------------------------------------------------- streaming, limits


def test_result_batches_stay_below_8_mib(sample_server) -> None:
    client = _flight(sample_server)
    info = _info(client, fs.CommandStatementQuery(
        query="SELECT range AS i, range * 0.5 AS x, repeat('y', 40) AS s FROM range(2000000)"))
    reader = client.do_get(info.endpoints[0].ticket)
    rows = 0
    for chunk in reader:
        assert chunk.data.nbytes < 8 << 20
        rows += chunk.data.num_rows
    assert rows == 2_000_000


def test_touching_two_of_100_columns_reads_two(tmp_path: Path, serve) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    with uproot.recreate(tmp_path / "wide.root") as f:  # a TTree (a dict assignment writes an RNTuple)
        tree = f.mktree("t", {f"b{i:03d}": "float64" for i in range(100)})
        tree.extend({f"b{i:03d}": rng.normal(size=n) for i in range(100)})
    running = serve(tmp_path)
    front = running.server.sql
    with flightsql.connect(running.location, autocommit=True) as c:
        got = sql(c, 'SELECT avg(b007) AS a, max(b042) AS m FROM "wide.root:t" WHERE b007 > 0')
        assert got.num_rows == 1
        assert list(front.scan_log)[-1] == ("wide.root:t", ("b007", "b042"))
        before = len(front.scan_log)
        assert sql(c, 'SELECT count(*) AS n FROM "wide.root:t"')["n"][0].as_py() == n
        assert len(front.scan_log) == before          # answered from the catalog, nothing read
        sql(c, 'SELECT count(*) + 0 AS n FROM "wide.root:t"')
        assert len(list(front.scan_log)[-1][1]) == 1


def test_statement_ticket_cannot_be_altered(sample_server) -> None:
    client = _flight(sample_server)
    info = _info(client, fs.CommandStatementQuery(query=f"SELECT count(*) FROM {Q}"))
    assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 1
    ticket = fs.unpack(info.endpoints[0].ticket.ticket)
    forged = ticket.statement_handle.replace(b"count(*)", b"max(run)")
    assert forged != ticket.statement_handle
    with pytest.raises(pa.ArrowInvalid, match="signature"):
        client.do_get(fl.Ticket(fs.pack(fs.TicketStatementQuery(statement_handle=forged)))).read_all()


def test_timeout_is_deadline_exceeded(tmp_path: Path, serve, sample_dir: Path) -> None:
    running = serve(sample_dir, sql_timeout=0.5)
    client = fl.connect(running.location)
    slow = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"
    info = _info(client, fs.CommandStatementQuery(query=slow))
    t0 = time.perf_counter()
    with pytest.raises(fl.FlightTimedOutError, match="time limit"):
        client.do_get(info.endpoints[0].ticket).read_all()
    assert time.perf_counter() - t0 < 10
    assert running.server.sql.active_queries() == []
    assert _fetch(client, _info(client, fs.CommandStatementQuery(query="SELECT 42 AS x")))["x"][0].as_py() == 42


def test_client_going_away_cancels_the_query(sample_dir: Path, serve) -> None:
    running = serve(sample_dir, sql_timeout=120)
    client = fl.connect(running.location)
    slow = "SELECT sum(a.range * b.range) FROM range(400000) a, range(400000) b"
    info = _info(client, fs.CommandStatementQuery(query=slow))
    options = fl.FlightCallOptions(timeout=1.0)  # the client gives up after 1 s
    with pytest.raises(fl.FlightError):
        client.do_get(info.endpoints[0].ticket, options=options).read_all()
    deadline = time.time() + 10
    while running.server.sql.active_queries() and time.time() < deadline:
        time.sleep(0.1)
    assert running.server.sql.active_queries() == [], "the query kept running after the client left"


def test_prepared_statements_expire_and_are_capped(sample_dir: Path, serve) -> None:
    running = serve(sample_dir)
    front = running.server.sql
    front.prepared.ttl_s, front.prepared.cap = 2.0, 3  # preparing runs in a sandbox worker: allow time
    client = fl.connect(running.location)

    def create(query: str) -> bytes:
        body = fs.pack(fs.ActionCreatePreparedStatementRequest(query=query))
        (result,) = list(client.do_action(fl.Action("CreatePreparedStatement", body)))
        return fs.unpack(result.body.to_pybytes()).prepared_statement_handle

    handles = [create(f"SELECT {i} AS x") for i in range(3)]
    with pytest.raises(fl.FlightUnavailableError, match="limit is 3"):
        create("SELECT 4")
    body = fs.pack(fs.ActionClosePreparedStatementRequest(prepared_statement_handle=handles[0]))
    assert list(client.do_action(fl.Action("ClosePreparedStatement", body))) == []
    create("SELECT 5")  # room again after a close
    time.sleep(2.5)
    with pytest.raises(KeyError, match="expired"):  # NOT_FOUND
        _info(client, fs.CommandPreparedStatementQuery(prepared_statement_handle=handles[1]))
    assert len(front.prepared) == 0


def test_prepared_statement_with_raw_flight_do_put(sample_server, reference) -> None:
    client = _flight(sample_server)
    body = fs.pack(fs.ActionCreatePreparedStatementRequest(query=f"SELECT count(*) AS n FROM {Q} WHERE nMuon >= ?"))
    (result,) = list(client.do_action(fl.Action("CreatePreparedStatement", body)))
    created = fs.unpack(result.body.to_pybytes())
    assert pa.ipc.read_schema(pa.py_buffer(created.dataset_schema)).names == ["n"]
    assert len(pa.ipc.read_schema(pa.py_buffer(created.parameter_schema))) == 1
    cmd = fs.CommandPreparedStatementQuery(prepared_statement_handle=created.prepared_statement_handle)
    descriptor = fl.FlightDescriptor.for_command(fs.pack(cmd))
    params = pa.table({"$1": pa.array([3], pa.int64())})
    writer, meta = client.do_put(descriptor, params.schema)
    writer.write_table(params)
    writer.done_writing()
    answer = meta.read()
    writer.close()
    put = fs.DoPutPreparedStatementResult.FromString(answer.to_pybytes())
    assert put.prepared_statement_handle == created.prepared_statement_handle
    got = _fetch(client, client.get_flight_info(descriptor))
    assert got["n"][0].as_py() == ref(reference, "SELECT count(*) FROM events WHERE nMuon >= 3")[0][0].as_py()


# ----------------------------------------------------------------------------- abuse

ABUSE = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM (SELECT * FROM '/etc/passwd')",
    "SELECT content FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT 1 AS x UNION ALL SELECT * FROM read_csv('/etc/passwd')",
    "WITH p AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM p",
    "SELECT * FROM 'https://example.com/data.csv'",
    "COPY (SELECT 1) TO '/tmp/arrowroot-pwned.csv'",
    f"COPY {Q} TO '/tmp/arrowroot-pwned.parquet'",
    "EXPORT DATABASE '/tmp/arrowroot-pwned'",
    "ATTACH '/tmp/arrowroot-pwned.duckdb' AS pwned",
    "DETACH memory",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '/tmp/evil.duckdb_extension'",
    "PRAGMA version",
    "CALL pragma_version()",
    "SELECT * FROM pragma_database_list()",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "SELECT 1; SELECT 2",
    f"SELECT 1; DROP TABLE {Q}",
    f"DROP TABLE {Q}",
    "CREATE TABLE t AS SELECT 1",
    f"INSERT INTO {Q} VALUES (1)",
    "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "SELECT getenv('HOME')",
    "SELECT current_setting('memory_limit')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('x')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT * FROM \"etc/passwd\"",
    "SELECT * FROM system.main.duckdb_settings",
    "USE system",
    "SELECT 1 -- " + "x" * 10_000_000,
]


@pytest.mark.parametrize("query", ABUSE, ids=[q[:40] for q in ABUSE])
def test_abuse_is_refused_and_the_server_keeps_serving(conn, query: str) -> None:
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute(query)
            cur.fetchall()
    assert err.value.status_code in (adbc_driver_manager.AdbcStatusCode.UNAUTHORIZED,
                                     adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT,
                                     adbc_driver_manager.AdbcStatusCode.NOT_FOUND), str(err.value)[:300]
    assert not Path("/tmp/arrowroot-pwned.csv").exists()
    assert sql(conn, f"SELECT count(*) AS n FROM {Q}")["n"][0].as_py() == 20_000


def test_abuse_statuses_on_the_wire(sample_server) -> None:
    """The gRPC codes themselves: PERMISSION_DENIED, INVALID_ARGUMENT or (no such table) NOT_FOUND,
    never INTERNAL."""
    client = _flight(sample_server)
    for query in ABUSE[:-1]:
        with pytest.raises((fl.FlightUnauthorizedError, pa.ArrowInvalid, pa.ArrowKeyError)):
            _info(client, fs.CommandStatementQuery(query=query))
    with pytest.raises(fl.FlightUnauthorizedError):
        _info(client, fs.CommandStatementQuery(query="SELECT * FROM read_csv('/etc/passwd')"))


# ----------------------------------------------------------------------------- unimplemented


@pytest.mark.parametrize("msg", [
    fs.CommandStatementUpdate(query="DELETE FROM x"),
    fs.CommandPreparedStatementUpdate(),
    fs.CommandStatementSubstraitPlan(),
], ids=lambda m: fs.message_name(m))
def test_unknown_commands_are_unimplemented(sample_server, msg) -> None:
    client = _flight(sample_server)
    with pytest.raises(pa.ArrowNotImplementedError, match=fs.message_name(msg)):
        _info(client, msg)


def test_unimplemented_everywhere(sample_server) -> None:
    client = _flight(sample_server)
    from google.protobuf import any_pb2

    unknown = any_pb2.Any(type_url=fs.TYPE_URL_PREFIX + "CommandFromTheFuture", value=b"").SerializeToString()
    with pytest.raises(pa.ArrowNotImplementedError, match="CommandFromTheFuture"):
        client.get_flight_info(fl.FlightDescriptor.for_command(unknown))
    with pytest.raises(pa.ArrowNotImplementedError, match="BeginTransaction"):
        list(client.do_action(fl.Action("BeginTransaction", fs.pack(fs.ActionBeginTransactionRequest()))))
    with pytest.raises(pa.ArrowNotImplementedError, match="CommandStatementSubstraitPlan"):
        writer, _ = client.do_put(fl.FlightDescriptor.for_command(fs.pack(fs.CommandStatementSubstraitPlan())),
                                  pa.schema([("a", pa.int64())]))
        writer.close()
    with pytest.raises(pa.ArrowNotImplementedError, match="CommandStatementSubstraitPlan"):
        client.do_get(fl.Ticket(fs.pack(fs.CommandStatementSubstraitPlan()))).read_all()
    with pytest.raises(pa.ArrowInvalid, match="malformed"):
        client.get_flight_info(fl.FlightDescriptor.for_command(
            any_pb2.Any(type_url=fs.type_url("CommandGetTables"), value=b"\xff\xff").SerializeToString()))
    # and the plain protocol is untouched
    actions = {a.type for a in client.list_actions()}
    assert {"health", "CreatePreparedStatement", "ClosePreparedStatement"} <= actions
    table = client.do_get(client.get_flight_info(fl.FlightDescriptor.for_path(EVENTS)).endpoints[0].ticket).read_all()
    assert "Muon_pt" in table.column_names


def test_concurrent_clients(sample_server, reference) -> None:
    want = ref(reference, "SELECT count(*) FROM events WHERE nMuon >= 2")[0][0].as_py()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with flightsql.connect(sample_server.location, autocommit=True) as c:
                for _ in range(3):
                    assert sql(c, f"SELECT count(*) AS n FROM {Q} WHERE nMuon >= ?", (2,))["n"][0].as_py() == want
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_file_changed_under_a_query_is_unavailable(tmp_path: Path, serve) -> None:
    """Errors from reading files keep their own status through DuckDB (not INVALID_ARGUMENT)."""
    with uproot.recreate(tmp_path / "a.root") as f:
        tree = f.mktree("t", {"x": "float64"})
        tree.extend({"x": np.arange(1000.0)})
    running = serve(tmp_path)
    client = fl.connect(running.location)
    query = fs.CommandStatementQuery(query='SELECT sum(x) AS s FROM "a.root:t"')
    assert _fetch(client, _info(client, query))["s"][0].as_py() == 499500.0
    info = _info(client, query)
    with open(tmp_path / "a.root", "ab") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(fl.FlightUnavailableError, match="modified"):
        client.do_get(info.endpoints[0].ticket).read_all()
    assert running.server.sql.scanned["a.root:t"]["rows"] == 1000


def test_preparing_reads_no_data(sample_server) -> None:
    front = sample_server.server.sql
    before = (len(front.scan_log), {k: dict(v) for k, v in front.scanned.items()})
    client = _flight(sample_server)
    query = f"SELECT avg(MET_pt) FROM {Q} WHERE nMuon >= ? AND event % 7 = 3"
    body = fs.pack(fs.ActionCreatePreparedStatementRequest(query=query))
    (result,) = list(client.do_action(fl.Action("CreatePreparedStatement", body)))
    handle = fs.unpack(result.body.to_pybytes()).prepared_statement_handle
    cmd = fs.CommandPreparedStatementQuery(prepared_statement_handle=handle)
    client.get_flight_info(fl.FlightDescriptor.for_command(fs.pack(cmd)))
    client.get_schema(fl.FlightDescriptor.for_command(fs.pack(fs.CommandStatementQuery(query=f"SELECT * FROM {Q}"))))
    assert (len(front.scan_log), front.scanned) == before


def test_hidden_datasets_do_not_exist(sample_dir: Path, tmp_path: Path) -> None:
    """A user granted only hep/*: every other dataset is absent from SQL and its catalog tables."""
    from arrowroot.catalog import identities
    from arrowroot.catalog.store import Catalog
    from arrowroot.flight_server.core.settings import Settings
    from arrowroot.flight_server.server.flight import ArrowrootServer

    catalog = Catalog(tmp_path / "c.duckdb")
    identities.add_user(catalog, "hepuser", "a long enough password")
    identities.grant(catalog, "hep/*", "user:hepuser")
    server = ArrowrootServer(Settings(root=sample_dir, port=0), catalog=catalog)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        with flightsql.connect(f"grpc://127.0.0.1:{server.port}", autocommit=True,
                               db_kwargs={"username": "hepuser", "password": "a long enough password"}) as c:
            assert sql(c, f"SELECT count(*) AS n FROM {Q}")["n"][0].as_py() == 20_000
            with pytest.raises(adbc_driver_manager.Error, match="no such table"):
                sql(c, f'SELECT * FROM "{DETECTOR}"')
            assert sql(c, "SELECT name FROM arrowroot.datasets")["name"].to_pylist() == [EVENTS]
            assert sql(c, "SELECT path FROM arrowroot.files")["path"].to_pylist() == ["hep/events.root"]
            assert set(sql(c, "SELECT DISTINCT dataset FROM arrowroot.columns")["dataset"].to_pylist()) == {EVENTS}
            objects = c.adbc_get_objects(depth="tables").read_all().to_pylist()
            main = [s for s in objects[0]["catalog_db_schemas"] if s["db_schema_name"] == "main"][0]
            assert [t["table_name"] for t in main["db_schema_tables"]] == [EVENTS]
    finally:
        server.shutdown()
