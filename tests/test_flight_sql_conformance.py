"""Flight SQL as ADBC, DB-API tools and JDBC/ODBC-style clients use it (issue 22).

What ADBC's own Python Flight SQL tests and its DB-API tests exercise, where it applies to a
read-mostly server: queries, partitions, metadata, options, prepared statements with typed
parameters, ingest modes under ``home/``, errors, cancellation, session options, and the
authorization header forms — through ``adbc_driver_flightsql`` against a real server, with raw
``pyarrow.flight`` where ADBC hides the protocol. The README's Flight SQL table is checked
against the server row by row.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import grpc
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.server.sql_metadata import KEYS_SCHEMA, PRIMARY_KEYS_SCHEMA, XDBC_TYPE_INFO_SCHEMA
from arrowroot.protos import flight_sql as fs
from tests.conftest import RunningServer, start_server

EVENTS = "hep/events.root:events"
Q = f'"{EVENTS}"'
N = 3000
README = Path(__file__).resolve().parents[1] / "README.md"
SLOW = "SELECT count(*) AS n FROM range(100000000000) a(x), range(100) b(y) WHERE x % 7 = y"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Cannot disable autocommit")]   # ADBC drivers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = write_sample_files(tmp_path_factory.mktemp("conformance"), entries=N)
    r = start_server(root, sql_timeout=60.0)
    yield r
    r.stop()


@pytest.fixture
def conn(server: RunningServer) -> Iterator[flightsql.Connection]:
    with flightsql.connect(server.location, autocommit=True) as c:
        yield c


def _rows(conn: flightsql.Connection, query: str, params: object = None) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetch_arrow_table()


def _raw(server: RunningServer) -> fl.FlightClient:
    return server.flight()


def _info(c: fl.FlightClient, msg: object) -> fl.FlightInfo:
    return c.get_flight_info(fl.FlightDescriptor.for_command(fs.pack(msg)))


def _fetch(c: fl.FlightClient, info: fl.FlightInfo) -> pa.Table:
    return c.do_get(info.endpoints[0].ticket).read_all()


def _idle(server: RunningServer, within: float = 15.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not server.server.sql.active_queries() and server.server.sql.pool.busy == 0:
            return True
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------- queries and errors


def test_query_trivial_and_fetchone(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        cur.execute(f"SELECT count(*) FROM {Q}")
        assert cur.fetchone() == (N,)


def test_query_error_is_invalid_argument_with_little_noise(conn) -> None:
    with conn.cursor() as cur, pytest.raises(flightsql.ProgrammingError) as err:
        cur.execute("SELECT")
    assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
    assert err.value.args[0].startswith("INVALID_ARGUMENT: [FlightSQL] ")
    assert "Traceback" not in err.value.args[0]


def test_query_partitioned(conn) -> None:
    with conn.cursor() as cur:
        partitions, schema = cur.adbc_execute_partitions(f"SELECT event, nMuon FROM {Q} WHERE event < 10")
        assert len(partitions) == 1
        assert schema.names == ["event", "nMuon"]
        cur.adbc_read_partition(partitions[0])
        table = cur.fetch_arrow_table()
    assert table.schema.equals(schema)
    assert table.column("event").to_pylist() == list(range(10))


def test_statement_and_connection_options(server: RunningServer) -> None:
    """Queue size, fetch timeout and call headers are client options the server must tolerate."""
    with adbc_driver_flightsql.connect(server.location) as db, adbc_driver_manager.AdbcConnection(db) as c:
        with adbc_driver_manager.AdbcStatement(c) as stmt:
            stmt.set_options(**{adbc_driver_flightsql.StatementOptions.QUEUE_SIZE.value: "2",
                                adbc_driver_flightsql.StatementOptions.TIMEOUT_FETCH.value: "10"})
            stmt.set_sql_query("SELECT 1 AS x")
            stream, _ = stmt.execute_query()
            assert pa.RecordBatchReader._import_from_c(stream.address).read_all().column("x").to_pylist() == [1]
    with flightsql.connect(server.location, autocommit=True,
                           conn_kwargs={"adbc.flight.sql.rpc.call_header.x-trace": "abc"}) as c2:
        assert _rows(c2, "SELECT 2 AS x").column("x").to_pylist() == [2]


# ----------------------------------------------------------------------------- metadata


def test_get_info_and_table_types(conn) -> None:
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "arrowroot"
    assert conn.adbc_get_table_types() == ["SYSTEM TABLE", "TABLE"]


def test_every_table_listed_is_queryable_and_has_its_schema(conn, server: RunningServer) -> None:
    """GetTables lists exactly what SQL can name: each listed table answers a query with the
    schema GetTables gave, and arrowroot.provenance is among them."""
    objects = conn.adbc_get_objects().read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["memory"]
    listed = [(s["db_schema_name"], t["table_name"]) for s in objects[0]["catalog_db_schemas"]
              for t in s["db_schema_tables"]]
    assert ("arrowroot", "provenance") in listed
    assert {t for s, t in listed if s == "main"} == {d.name for d in server.server.service.visible(
        server.server.sql._caller(None))}
    for db_schema, table in listed:
        name = f'"{table}"' if db_schema == "main" else f"{db_schema}.{table}"
        got = _rows(conn, f"SELECT * FROM {name} LIMIT 1")
        advertised = conn.adbc_get_table_schema(table, db_schema_filter=db_schema)
        assert got.schema.names == advertised.names, (db_schema, table)
    with pytest.raises(flightsql.ProgrammingError, match="no such table"):
        _rows(conn, "SELECT * FROM arrowroot.not_a_table")


def test_current_catalog_and_schema_are_session_options(conn) -> None:
    assert conn.adbc_current_catalog == "memory"
    assert conn.adbc_current_db_schema == "main"
    conn.adbc_current_catalog = "memory"  # the one there is: accepted
    with pytest.raises(flightsql.ProgrammingError, match="invalid value"):
        conn.adbc_current_db_schema = "elsewhere"


def test_session_actions_raw(server: RunningServer) -> None:
    c = _raw(server)
    M = fs.FLIGHT_MESSAGES
    got = M["GetSessionOptionsResult"].FromString(
        list(c.do_action(fl.Action("GetSessionOptions", M["GetSessionOptionsRequest"]().SerializeToString())))[0]
        .body.to_pybytes())
    assert {k: v.string_value for k, v in got.session_options.items()} == {"catalog": "memory", "schema": "main"}
    req = M["SetSessionOptionsRequest"]()
    req.session_options["catalog"].string_value = "memory"
    req.session_options["colour"].string_value = "blue"
    res = M["SetSessionOptionsResult"].FromString(
        list(c.do_action(fl.Action("SetSessionOptions", req.SerializeToString())))[0].body.to_pybytes())
    assert set(res.errors) == {"colour"}
    assert res.errors["colour"].value == M["SetSessionOptionsResult"].ErrorValue.Value("INVALID_NAME")
    closed = M["CloseSessionResult"].FromString(
        list(c.do_action(fl.Action("CloseSession", b"")))[0].body.to_pybytes())
    assert closed.status == M["CloseSessionResult"].Status.Value("CLOSED")


def test_xdbc_type_info_from_the_duckdb_types(server: RunningServer) -> None:
    c = _raw(server)
    info = _info(c, fs.CommandGetXdbcTypeInfo())
    assert info.schema.equals(XDBC_TYPE_INFO_SCHEMA)
    table = _fetch(c, info)
    assert table.schema.equals(XDBC_TYPE_INFO_SCHEMA)
    rows = table.to_pylist()
    assert [(r["data_type"], r["type_name"]) for r in rows] == sorted((r["data_type"], r["type_name"]) for r in rows)
    by_name = {r["type_name"]: r for r in rows}
    X = fs.XdbcDataType
    assert by_name["BIGINT"]["data_type"] == X.XDBC_BIGINT
    assert by_name["VARCHAR"]["data_type"] == X.XDBC_VARCHAR
    assert by_name["DOUBLE"]["data_type"] == X.XDBC_DOUBLE
    assert by_name["TIMESTAMP"]["sql_data_type"] == X.XDBC_DATETIME
    assert by_name["UINTEGER"]["unsigned_attribute"] is True
    # every column type the served datasets have appears (the types come from DuckDB's catalogue)
    duck = _rows_raw(c, f"SELECT DISTINCT typeof(nMuon) AS t FROM {Q}")
    assert duck.column("t").to_pylist()[0] in by_name
    only = _fetch(c, _info(c, fs.CommandGetXdbcTypeInfo(data_type=X.XDBC_BIGINT))).to_pylist()
    assert only and {r["data_type"] for r in only} == {X.XDBC_BIGINT}


def _rows_raw(c: fl.FlightClient, query: str) -> pa.Table:
    return _fetch(c, _info(c, fs.CommandStatementQuery(query=query)))


@pytest.mark.parametrize("msg, schema", [
    (fs.CommandGetPrimaryKeys(table=EVENTS), PRIMARY_KEYS_SCHEMA),
    (fs.CommandGetExportedKeys(table=EVENTS), KEYS_SCHEMA),
    (fs.CommandGetImportedKeys(table=EVENTS), KEYS_SCHEMA),
    (fs.CommandGetCrossReference(pk_table=EVENTS, fk_table=EVENTS), KEYS_SCHEMA),
], ids=lambda m: fs.message_name(m) if hasattr(m, "DESCRIPTOR") else "")
def test_key_commands_answer_empty_tables(server: RunningServer, msg: object, schema: pa.Schema) -> None:
    c = _raw(server)
    info = _info(c, msg)
    assert info.schema.equals(schema)
    table = _fetch(c, info)
    assert table.num_rows == 0 and table.schema.equals(schema)


def test_sql_info_tells_the_truth(conn, server: RunningServer) -> None:
    """Each claim is checked against what the server does."""
    c = _raw(server)
    S = fs.SqlInfo
    got = {r["info_name"]: r["value"] for r in _fetch(c, _info(c, fs.CommandGetSqlInfo())).to_pylist()}
    assert got[S.FLIGHT_SQL_SERVER_READ_ONLY] is False
    assert got[S.FLIGHT_SQL_SERVER_BULK_INGESTION] is True
    with conn.cursor() as cur:  # ingest is served (into home/<user>/)
        assert cur.adbc_ingest("home/local/truth", pa.table({"a": [1, 2]})) == 2
    assert got[S.FLIGHT_SQL_SERVER_TRANSACTION] == fs.SqlSupportedTransaction.SQL_SUPPORTED_TRANSACTION_NONE
    assert got[S.SQL_TRANSACTIONS_SUPPORTED] is False
    with pytest.raises(pa.ArrowNotImplementedError, match="BeginTransaction"):
        list(c.do_action(fl.Action("BeginTransaction", fs.pack(fs.ActionBeginTransactionRequest()))))
    assert got[S.SQL_DDL_TABLE] is False
    with pytest.raises(fl.FlightUnauthorizedError, match="only SELECT"):
        _rows_raw(c, "CREATE TABLE t (a INTEGER)")
    assert got[S.FLIGHT_SQL_SERVER_CANCEL] is True  # test_cancel_flight_info
    assert got[S.FLIGHT_SQL_SERVER_SQL] is True and got[S.FLIGHT_SQL_SERVER_SUBSTRAIT] is False
    assert got[S.SQL_SUPPORTED_GRAMMAR] & (1 << fs.SupportedSqlGrammar.SQL_CORE_GRAMMAR)
    assert got[S.SQL_ANSI92_SUPPORTED_LEVEL] & (1 << fs.SupportedAnsi92SqlGrammarLevel.ANSI92_ENTRY_SQL)
    assert got[S.SQL_IDENTIFIER_QUOTE_CHAR] == '"'
    assert got[S.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT] == int(server.server.sql.handle_ttl_s * 1000)


# ----------------------------------------------------------------------------- prepared statements


def test_parameters_bind_by_their_arrow_types(conn) -> None:
    """An int64 parameter stays BIGINT whatever its value (2**40 used to fail "not in range"),
    and each row of a parameter batch answers its own result, concatenated."""
    params = pa.table({
        "i": pa.array([1, 2**40, None], pa.int64()),
        "f": pa.array([0.5, 1.5, 2.5], pa.float32()),
        "s": pa.array(["a", None, "ccc"], pa.string()),
        "b": pa.array([True, False, None], pa.bool_()),
        "t": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None, dt.datetime(1999, 12, 31)], pa.timestamp("us")),
    })
    got = _rows(conn, "SELECT ? AS i, ? AS f, ? AS s, ? AS b, ? AS t", params)
    assert got.schema.types == [pa.int64(), pa.float32(), pa.string(), pa.bool_(), pa.timestamp("us")]
    assert got.to_pylist() == params.rename_columns(["i", "f", "s", "b", "t"]).to_pylist()
    with conn.cursor() as cur:
        cur.execute("SELECT ? + 1 AS y", (2**40,))
        assert cur.fetchone() == (2**40 + 1,)


def test_parameter_schema_has_the_types_duckdb_infers(conn) -> None:
    with conn.cursor() as cur:
        schema = cur.adbc_prepare(f"SELECT event FROM {Q} WHERE nMuon > ? AND MET_pt < ? AND ? IS NOT NULL")
    assert schema.names == ["$1", "$2", "$3"]
    assert schema.types[:2] == [pa.int32(), pa.float32()]  # the columns' types
    assert schema.types[2] == pa.null()                     # nothing says what the third is


def test_flight_info_after_binding_has_the_bound_schema(server: RunningServer) -> None:
    """GetFlightInfo of a prepared statement answers the schema its DoGet streams once
    parameters are bound (ADBC refused "endpoint 0 returned inconsistent schema")."""
    c = _raw(server)
    result = fs.unpack(list(c.do_action(fl.Action("CreatePreparedStatement", fs.pack(
        fs.ActionCreatePreparedStatementRequest(query="SELECT ? AS x")))))[0].body.to_pybytes())
    assert pa.ipc.read_schema(pa.py_buffer(result.dataset_schema)).types == [pa.null()]
    desc = fl.FlightDescriptor.for_command(fs.pack(fs.CommandPreparedStatementQuery(
        prepared_statement_handle=result.prepared_statement_handle)))
    for t, values in ((pa.int64(), [1, 2**40]), (pa.string(), ["a", "b"]), (pa.float64(), [0.25, None])):
        writer, meta = c.do_put(desc, pa.schema([("p", t)]))
        writer.write_table(pa.table({"p": pa.array(values, t)}))
        writer.done_writing()
        meta.read()
        writer.close()
        info = c.get_flight_info(desc)
        assert info.schema.types == [t]
        table = c.do_get(info.endpoints[0].ticket).read_all()
        assert table.schema.types == [t] and table.column("x").to_pylist() == values
    list(c.do_action(fl.Action("ClosePreparedStatement", fs.pack(fs.ActionClosePreparedStatementRequest(
        prepared_statement_handle=result.prepared_statement_handle)))))


def test_executemany_is_refused_with_what_to_do_instead(conn) -> None:
    with conn.cursor() as cur, pytest.raises(flightsql.ProgrammingError) as err:
        cur.executemany(f"SELECT count(*) FROM {Q} WHERE nMuon = ?", [(1,), (2,)])
    assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
    assert "executemany" in str(err.value) and "cursor.execute(query, parameters)" in str(err.value)
    got = _rows(conn, f"SELECT count(*) AS n FROM {Q} WHERE nMuon = ?", pa.table({"p": pa.array([1, 2], pa.int32())}))
    assert got.num_rows == 2  # what executemany would have meant, with the results


def test_ddl_and_dml_are_refused_the_same_way_on_every_path(conn) -> None:
    """execute, a prepared statement and execute_update all answer PERMISSION_DENIED, same text."""
    messages = set()
    with conn.cursor() as cur:
        for call in (lambda: cur.execute("CREATE TABLE t (a INTEGER)"),
                     lambda: cur.executemany("INSERT INTO t VALUES (?)", [(1,)])):
            with pytest.raises(flightsql.ProgrammingError) as err:
                call()
            assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHORIZED
            messages.add(re.search(r"only SELECT[^.]*", str(err.value)).group(0).rsplit(";", 1)[0])
    with adbc_driver_manager.AdbcStatement(conn.adbc_connection) as stmt:
        stmt.set_sql_query("DROP TABLE t")
        with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
            stmt.execute_update()
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHORIZED
        messages.add(re.search(r"only SELECT[^.]*", str(err.value)).group(0).rsplit(";", 1)[0])
    assert len(messages) == 1, messages


# ----------------------------------------------------------------------------- ingest (home/<user>/)


INGEST_TARGET = adbc_driver_manager.StatementOptions.INGEST_TARGET_TABLE.value
INGEST_MODE = adbc_driver_manager.StatementOptions.INGEST_MODE.value


def _ingest(conn, table: str, data: pa.Table | pa.RecordBatchReader, mode: str) -> int:
    with adbc_driver_manager.AdbcStatement(conn.adbc_connection) as stmt:
        stmt.set_options(**{INGEST_TARGET: table, INGEST_MODE: f"adbc.ingest.mode.{mode}"})
        stmt.bind_stream(data if isinstance(data, pa.RecordBatchReader) else data.to_reader())
        return stmt.execute_update()


def test_ingest_modes(conn) -> None:
    ids = lambda n: _rows(conn, f'SELECT id FROM "{n}" ORDER BY id').column("id").to_pylist()  # noqa: E731
    t = "home/local/ingest_modes"
    assert _ingest(conn, t, pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", "c"]}), "create") == 3
    with pytest.raises(adbc_driver_manager.Error, match="already exists"):
        _ingest(conn, t, pa.table({"id": pa.array([9], pa.int64()), "name": ["z"]}), "create")
    assert _ingest(conn, t, pa.table({"id": pa.array([4], pa.int64()), "name": ["d"]}), "append") == 1
    assert ids(t) == [1, 2, 3, 4]
    assert _ingest(conn, t, pa.table({"id": pa.array([100, 200], pa.int64()), "name": ["x", "y"]}), "replace") == 2
    assert ids(t) == [100, 200]
    ca = "home/local/ingest_create_append"
    assert _ingest(conn, ca, pa.table({"id": pa.array([1, 2], pa.int64())}), "create_append") == 2
    assert _ingest(conn, ca, pa.table({"id": pa.array([3, 4], pa.int64())}), "create_append") == 2
    assert ids(ca) == [1, 2, 3, 4]
    schema = pa.schema([("id", pa.int64()), ("value", pa.string())])
    batches = [pa.record_batch([pa.array([1, 2, 3], pa.int64()), pa.array(list("abc"))], schema=schema),
               pa.record_batch([pa.array([4, 5], pa.int64()), pa.array(list("de"))], schema=schema)]
    assert _ingest(conn, "home/local/ingest_batches", pa.RecordBatchReader.from_batches(schema, batches), "create") == 5
    assert ids("home/local/ingest_batches") == [1, 2, 3, 4, 5]
    with conn.cursor() as cur:
        data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["x", "y", "z"]})
        assert cur.adbc_ingest("home/local/ingest_reader", data.to_reader()) == 3
        assert cur.adbc_ingest("home/local/ingest_table", data) == 3
        assert cur.adbc_ingest("home/local/ingest_table", data, mode="append") == 3
        cur.execute('SELECT count(*) FROM "home/local/ingest_table"')
        assert cur.fetchone() == (6,)
    with pytest.raises(adbc_driver_manager.Error, match="home/"):
        _ingest(conn, "outside_home", pa.table({"id": [1]}), "create")


# ----------------------------------------------------------------------------- cancellation


def test_adbc_cancel_stops_the_query_on_the_server(conn, server: RunningServer) -> None:
    with conn.cursor() as cur:
        cur.execute(SLOW)

        def cancel() -> None:
            deadline = time.monotonic() + 30
            while not server.server.sql.active_queries() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            cur.adbc_cancel()

        t = threading.Thread(target=cancel, daemon=True)
        t.start()
        with pytest.raises(adbc_driver_manager.Error, match="(?i)cancel"):
            cur.fetchone()
        t.join()
    assert _idle(server), "the query and its worker are released"


def _cancel_request(info: fl.FlightInfo) -> object:
    """CancelFlightInfoRequest{info} (Flight.proto), from pyarrow's FlightInfo."""
    M = fs.FLIGHT_MESSAGES
    return M["CancelFlightInfoRequest"](info=M["FlightInfo"].FromString(info.serialize()))


def test_cancel_flight_info_stops_a_running_query(server: RunningServer) -> None:
    c = _raw(server)
    info = _info(c, fs.CommandStatementQuery(query=SLOW))
    errors: list[BaseException] = []

    def read() -> None:
        # read_chunk, not read_all: pyarrow's read_all re-raises a CANCELLED status as SIGINT
        # in the main thread (its Ctrl-C handling), which would end the test run
        try:
            reader = server.flight().do_get(info.endpoints[0].ticket)
            while True:
                reader.read_chunk()
        except StopIteration:
            pass
        except BaseException as exc:  # noqa: BLE001 - the cancellation is the point
            errors.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.server.sql.active_queries() and time.monotonic() < deadline:
        time.sleep(0.05)
    request = _cancel_request(info)
    result = fs.FLIGHT_MESSAGES["CancelFlightInfoResult"].FromString(
        list(c.do_action(fl.Action("CancelFlightInfo", request.SerializeToString())))[0].body.to_pybytes())
    assert result.status == fs.FLIGHT_ENUMS["CancelStatus"].CANCEL_STATUS_CANCELLED
    t.join(30)
    assert errors and isinstance(errors[0], fl.FlightCancelledError), errors
    assert _idle(server)
    with pytest.raises(fl.FlightCancelledError, match="cancelled"):  # a cancelled FlightInfo stays cancelled
        c.do_get(info.endpoints[0].ticket).read_chunk()
    # a FlightInfo of the plain protocol has nothing to cancel
    plain = c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS))
    other = fs.FLIGHT_MESSAGES["CancelFlightInfoResult"].FromString(list(c.do_action(fl.Action(
        "CancelFlightInfo", _cancel_request(plain).SerializeToString())))[0].body.to_pybytes())
    assert other.status == fs.FLIGHT_ENUMS["CancelStatus"].CANCEL_STATUS_NOT_CANCELLABLE


# ----------------------------------------------------------------------------- the README's table


def _readme_rows() -> list[tuple[str, str, set[str]]]:
    """(command or action, answer, statuses) rows of the README's Flight SQL table."""
    text = README.read_text()
    start = text.index("<!-- flight-sql-table -->")
    end = text.index("<!-- /flight-sql-table -->", start)
    rows = []
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            answer = cells[1].strip("*").split()[0].lower()
            statuses = set(re.findall(r"`([A-Z_]+)`", cells[2]))
            for name in re.findall(r"`([A-Za-z]+)`", cells[0]):
                rows.append((name, answer, statuses))
    return rows


#: one probe per row: how a client sends it, with a valid body where one is needed
_PROBES = {
    "CommandStatementQuery": ("info", lambda: fs.CommandStatementQuery(query="SELECT 1")),
    "CommandPreparedStatementQuery": ("prepared", None),
    "CommandGetSqlInfo": ("info", lambda: fs.CommandGetSqlInfo()),
    "CommandGetCatalogs": ("info", lambda: fs.CommandGetCatalogs()),
    "CommandGetDbSchemas": ("info", lambda: fs.CommandGetDbSchemas()),
    "CommandGetTables": ("info", lambda: fs.CommandGetTables()),
    "CommandGetTableTypes": ("info", lambda: fs.CommandGetTableTypes()),
    "CommandGetXdbcTypeInfo": ("info", lambda: fs.CommandGetXdbcTypeInfo()),
    "CommandGetPrimaryKeys": ("info", lambda: fs.CommandGetPrimaryKeys(table=EVENTS)),
    "CommandGetExportedKeys": ("info", lambda: fs.CommandGetExportedKeys(table=EVENTS)),
    "CommandGetImportedKeys": ("info", lambda: fs.CommandGetImportedKeys(table=EVENTS)),
    "CommandGetCrossReference": ("info", lambda: fs.CommandGetCrossReference(pk_table=EVENTS, fk_table=EVENTS)),
    "CommandStatementIngest": ("put", lambda: fs.CommandStatementIngest(table=f"home/local/probe_{time.time_ns()}")),
    "CommandStatementUpdate": ("put", lambda: fs.CommandStatementUpdate(query="DELETE FROM x")),
    "CommandPreparedStatementUpdate": ("put", lambda: fs.CommandPreparedStatementUpdate()),
    "CommandStatementSubstraitPlan": ("info", lambda: fs.CommandStatementSubstraitPlan()),
    "CreatePreparedStatement": ("action", lambda: fs.pack(fs.ActionCreatePreparedStatementRequest(query="SELECT 1"))),
    "ClosePreparedStatement": ("action", lambda: fs.pack(fs.ActionClosePreparedStatementRequest())),
    "CreatePreparedSubstraitPlan": ("action", lambda: fs.pack(fs.ActionCreatePreparedSubstraitPlanRequest())),
    "BeginTransaction": ("action", lambda: fs.pack(fs.ActionBeginTransactionRequest())),
    "EndTransaction": ("action", lambda: fs.pack(fs.ActionEndTransactionRequest())),
    "BeginSavepoint": ("action", lambda: fs.pack(fs.ActionBeginSavepointRequest())),
    "EndSavepoint": ("action", lambda: fs.pack(fs.ActionEndSavepointRequest())),
    "CancelFlightInfo": ("cancel", None),
    "CancelQuery": ("cancel", None),
    "GetSessionOptions": ("action", lambda: b""),
    "SetSessionOptions": ("action", lambda: b""),
    "CloseSession": ("action", lambda: b""),
    "RenewFlightEndpoint": ("action", lambda: b""),
    "PollFlightInfo": ("poll", None),
}


def _probe(server: RunningServer, name: str) -> str:
    """"served", or the status the server answers one row of the table with."""
    c = _raw(server)
    kind, make = _PROBES[name]
    try:
        if kind == "info":
            _fetch(c, _info(c, make()))
        elif kind == "prepared":
            res = fs.unpack(list(c.do_action(fl.Action("CreatePreparedStatement", fs.pack(
                fs.ActionCreatePreparedStatementRequest(query="SELECT 1 AS x")))))[0].body.to_pybytes())
            _fetch(c, _info(c, fs.CommandPreparedStatementQuery(prepared_statement_handle=res.prepared_statement_handle)))
        elif kind == "put":
            writer, meta = c.do_put(fl.FlightDescriptor.for_command(fs.pack(make())), pa.schema([("a", pa.int64())]))
            writer.write_table(pa.table({"a": pa.array([1], pa.int64())}))
            writer.done_writing()
            meta.read()
            writer.close()
        elif kind == "action":
            list(c.do_action(fl.Action(name, make())))
        elif kind == "cancel":
            info = _info(c, fs.CommandStatementQuery(query="SELECT 1"))
            body = (fs.pack(fs.ActionCancelQueryRequest(info=info.serialize())) if name == "CancelQuery" else
                    _cancel_request(info).SerializeToString())
            list(c.do_action(fl.Action(name, body)))
        elif kind == "poll":
            channel = grpc.insecure_channel(server.location.removeprefix("grpc://"))
            call = channel.unary_unary("/arrow.flight.protocol.FlightService/PollFlightInfo",
                                       request_serializer=lambda b: b, response_deserializer=lambda b: b)
            try:
                call(fl.FlightDescriptor.for_command(fs.pack(fs.CommandStatementQuery(query="SELECT 1"))).serialize())
            except grpc.RpcError as exc:
                return exc.code().name
            finally:
                channel.close()
    except (pa.ArrowNotImplementedError, NotImplementedError):
        return "UNIMPLEMENTED"
    except fl.FlightUnauthorizedError:
        return "PERMISSION_DENIED"
    except pa.ArrowInvalid:
        return "INVALID_ARGUMENT"
    return "served"


def test_the_readme_table_matches_the_server(server: RunningServer) -> None:
    rows = _readme_rows()
    assert {n for n, _, _ in rows} == set(_PROBES), "every Flight SQL command and action has one row"
    wrong = {}
    for name, answer, statuses in rows:
        got = _probe(server, name)
        if (answer == "served") != (got == "served") or (answer != "served" and got not in statuses):
            wrong[name] = (answer, sorted(statuses), got)
    assert not wrong, f"README says / server does: {wrong}"


# ----------------------------------------------------------------------------- authorization header forms

PASSWORD = "alice-pw-1"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Catalog]]:
    root = write_sample_files(tmp_path_factory.mktemp("authsql"), entries=N)
    cat = Catalog(tmp_path_factory.mktemp("authcat") / "catalog.duckdb")
    identities.add_user(cat, "alice", PASSWORD, ["cms"])
    identities.grant(cat, "hep/*", "group:cms")
    server = ArrowrootServer(Settings(root=root, port=0), catalog=cat)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    yield f"grpc://127.0.0.1:{server.port}", cat
    server.shutdown()
    cat.close()


def _basic() -> str:
    return "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


def _login_token(location: str) -> str:
    c = fl.connect(location)
    key, value = c.authenticate_basic_token("alice", PASSWORD)
    return value.decode().removeprefix("Bearer ")


@pytest.mark.parametrize("form", ["basic_header", "bearer_token", "username_password", "api_key"])
def test_authorization_header_forms_over_many_calls(private: tuple[str, Catalog], form: str) -> None:
    """ADBC's Go driver keeps the token the server answers a Basic header with — pyarrow sends a
    unary call's response headers twice, so it sends two identical copies back; identical copies
    are one credential. 30 calls of each kind, every form."""
    location, cat = private
    option = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
    kwargs = {
        "basic_header": {option: _basic()},
        "bearer_token": {option: f"Bearer {_login_token(location)}"},
        "username_password": {"username": "alice", "password": PASSWORD},
        "api_key": {option: f"Bearer {identities.create_key(cat, 'alice', f'k-{time.time_ns()}')[1]}"},
    }[form]
    warnings.simplefilter("ignore")
    with flightsql.connect(location, db_kwargs=kwargs, autocommit=True) as conn:
        for i in range(30):
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM {Q} WHERE event >= ?", (i,))
                assert cur.fetchone() == (N - i,)
            if i % 10 == 0:
                names = {t["table_name"] for s in conn.adbc_get_objects(depth="tables").read_all().to_pylist()[0][
                    "catalog_db_schemas"] for t in s["db_schema_tables"]}
                assert EVENTS in names and "lab/scan.h5:detector" not in names
                assert conn.adbc_current_catalog == "memory"


def test_response_headers_the_server_controls(private: tuple[str, Catalog]) -> None:
    """The server sends a token only in answer to Basic credentials, one value (pyarrow repeats
    a unary call's headers; a stream's come once), and nothing to a Bearer caller."""
    location, _ = private
    channel = grpc.insecure_channel(location.removeprefix("grpc://"))
    info = channel.unary_unary("/arrow.flight.protocol.FlightService/GetFlightInfo",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    body = fl.FlightDescriptor.for_command(fs.pack(fs.CommandGetCatalogs())).serialize()
    _, call = info.with_call(body, metadata=[("authorization", _basic())])
    sent = [v for k, v in call.initial_metadata() if k == "authorization"] + \
           [v for k, v in call.trailing_metadata() if k == "authorization"]
    assert len(set(sent)) == 1 and sent[0].startswith("Bearer ars_")
    token = sent[0]
    _, call = info.with_call(body, metadata=[("authorization", token), ("authorization", token)])
    assert not [v for k, v in call.initial_metadata() if k == "authorization"]
    with pytest.raises(grpc.RpcError) as err:
        info.with_call(body, metadata=[("authorization", token), ("authorization", _basic())])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    actions = channel.unary_stream("/arrow.flight.protocol.FlightService/ListActions",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
    stream = actions(b"", metadata=[("authorization", _basic())])
    list(stream)
    assert len([v for k, v in stream.initial_metadata() if k == "authorization"]) == 1
    channel.close()
