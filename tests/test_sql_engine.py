"""SqlEngine against real DuckDB and an in-memory provider (the ROOT/HDF5 provider lives elsewhere)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, PermissionDenied, TimedOut
from arrowroot.flight_server.core.settings import default
from arrowroot.flight_server.sql.engine import PreparedQuery, QueryCancelled, SqlEngine, TableProvider

pytestmark = pytest.mark.slow

LIMITS = {"timeout_s": default("sql_timeout"), "memory_limit": default("sql_memory_limit"),
          "workers": default("sql_workers")}

EVENTS = "cms/run2012.root:Events"
H5 = "km3/det.h5:/hits"
N = 20_000


def _events(n: int = N) -> pa.Table:
    rng = np.random.default_rng(42)
    counts = rng.integers(0, 5, n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    muon_pt = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(rng.exponential(20, offsets[-1]).astype(np.float32))
    )
    cols = {
        "run": pa.array(np.full(n, 194_108, dtype=np.int32)),
        "event": pa.array(np.arange(n, dtype=np.int64)),
        "MET_pt": pa.array(rng.exponential(30, n).astype(np.float32)),
        "nMuon": pa.array(counts.astype(np.uint32)),
        "Muon_pt": muon_pt,
        "trigger": pa.array(rng.choice(["HLT_Mu", "HLT_Ele", "none"], n)),
    }
    for i in range(94):  # 100 columns in total
        cols[f"aux_{i:02d}"] = pa.array(rng.normal(size=n))
    return pa.table(cols)


def _hits() -> pa.Table:
    return pa.table({"dom_id": pa.array(np.arange(1000) % 31, pa.int32()), "tot": pa.array(np.arange(1000) * 0.5)})


class MemoryProvider:
    """Serves pyarrow tables and records every scan, like the real provider would read files."""

    def __init__(self, tables: dict[str, pa.Table], delay_s: float = 0.0) -> None:
        self.tables = tables
        self.scans: list[tuple[str, list[str]]] = []
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def dataset_names(self) -> list[str]:
        return list(self.tables)

    def dataset_schema(self, name: str) -> pa.Schema:
        return self.tables[name].schema

    def scan(self, name: str, columns: list[str]) -> pa.RecordBatchReader:
        with self._lock:
            self.scans.append((name, list(columns)))
        table = self.tables[name].select(columns)

        def gen():
            for batch in table.to_batches(max_chunksize=4096):
                if self.delay_s:
                    time.sleep(self.delay_s)
                yield batch

        return pa.RecordBatchReader.from_batches(table.schema, gen())

    def catalog_tables(self) -> dict[str, pa.Table]:
        files = pa.table({"file_id": [1, 2], "path": ["cms/run2012.root", "km3/det.h5"], "format": ["root", "hdf5"]})
        datasets = pa.table(
            {"dataset_id": [10, 20], "file_id": [1, 2], "name": [EVENTS, H5], "n_rows": [N, 1000]}
        )
        columns = pa.table(
            {
                "dataset_id": [10] * len(self.tables[EVENTS].schema) + [20, 20],
                "column_name": self.tables[EVENTS].schema.names + ["dom_id", "tot"],
            }
        )
        return {"files": files, "datasets": datasets, "columns": columns}


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return {EVENTS: _events(), H5: _hits()}


@pytest.fixture
def provider(tables) -> MemoryProvider:  # noqa: ANN001
    return MemoryProvider(tables)


@pytest.fixture
def engine(provider) -> SqlEngine:  # noqa: ANN001
    return SqlEngine(provider, **LIMITS)


def _direct(tables: dict[str, pa.Table], query: str, params: list | None = None) -> pa.Table:
    """The same query run by plain DuckDB on the same Arrow tables: the reference result."""
    con = duckdb.connect()
    for name, t in tables.items():
        con.register(name, t)
    return con.sql(query, params=params).to_arrow_table()


def _run(engine: SqlEngine, query: str, params: pa.RecordBatch | None = None) -> pa.Table:
    return engine.execute(query, params).read_all()


def _assert_same(got: pa.Table, want: pa.Table) -> None:
    """Equal up to float summation order (DuckDB's parallel aggregates are not bit-stable)."""
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    assert got.num_rows == want.num_rows
    for g, w in zip(got.to_pylist(), want.to_pylist()):
        assert g == pytest.approx(w, rel=1e-9, nan_ok=True) if all(
            isinstance(v, float) or v is None for v in w.values()
        ) else {k: (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v) for k, v in g.items()} == w


def test_is_a_table_provider(provider) -> None:  # noqa: ANN001
    assert isinstance(provider, TableProvider)


@pytest.mark.parametrize(
    "query",
    [
        f'SELECT avg(MET_pt) AS m FROM "{EVENTS}" WHERE nMuon >= 2',
        f'SELECT nMuon, count(*) AS n, max(MET_pt) AS mx FROM "{EVENTS}" GROUP BY nMuon ORDER BY nMuon',
        f'SELECT event, len(Muon_pt) AS k, list_max(Muon_pt) AS lead FROM "{EVENTS}" WHERE len(Muon_pt) > 2 ORDER BY event',
        f'SELECT sum(pt) AS s FROM (SELECT unnest(Muon_pt) AS pt FROM "{EVENTS}")',
        f'SELECT trigger, count(*) AS c FROM "{EVENTS}" GROUP BY ALL ORDER BY trigger',
        f'WITH hi AS (SELECT * FROM "{EVENTS}" WHERE MET_pt > 50) SELECT count(*) AS c, avg(aux_03) AS a FROM hi',
        f'SELECT a.event FROM "{EVENTS}" a JOIN "{EVENTS}" b ON a.event = b.event + 1 WHERE b.nMuon = 4 ORDER BY 1',
        f'SELECT count(*) AS c FROM "{EVENTS}" e JOIN "{H5}" h ON e.event = h.dom_id',
        f'SELECT * FROM "{EVENTS}" ORDER BY event LIMIT 7',
        f'SELECT count(*) FROM "{EVENTS}"',
    ],
)
def test_results_match_duckdb(engine, tables, query: str) -> None:  # noqa: ANN001
    got = _run(engine, query)
    want = _direct(tables, query)
    _assert_same(got, want)


def test_reads_only_the_columns_used(engine, provider) -> None:  # noqa: ANN001
    _run(engine, f'SELECT avg(MET_pt) FROM "{EVENTS}" WHERE nMuon >= 2')
    assert provider.scans == [(EVENTS, ["MET_pt", "nMuon"])]


def test_count_star_reads_one_cheap_column(engine, provider) -> None:  # noqa: ANN001
    got = _run(engine, f'SELECT count(*) AS n FROM "{EVENTS}"')
    assert got.column("n").to_pylist() == [N]
    assert len(provider.scans) == 1 and len(provider.scans[0][1]) == 1
    assert provider.scans[0][1][0] not in ("Muon_pt", "trigger")  # not a variable-width column


def test_select_star_reads_everything(engine, provider, tables) -> None:  # noqa: ANN001
    _run(engine, f'SELECT * FROM "{EVENTS}" LIMIT 1')
    assert provider.scans[0][1] == tables[EVENTS].schema.names


def test_self_join_scans_twice_with_union_of_columns(engine, provider) -> None:  # noqa: ANN001
    _run(engine, f'SELECT a.MET_pt FROM "{EVENTS}" a JOIN "{EVENTS}" b USING (event) WHERE b.aux_07 > 0')
    assert len(provider.scans) == 2
    assert all(sorted(cols) == ["MET_pt", "aux_07", "event"] for _, cols in provider.scans)


def test_where_false_does_not_read(engine, provider) -> None:  # noqa: ANN001
    got = _run(engine, f'SELECT MET_pt FROM "{EVENTS}" WHERE 1 = 0')
    assert got.num_rows == 0
    assert all(len(cols) <= 1 for _, cols in provider.scans)


def test_catalog_schema_and_join(engine) -> None:  # noqa: ANN001
    got = _run(
        engine,
        "SELECT f.path, d.name, count(c.column_name) AS ncol FROM arrowroot.files f "
        "JOIN arrowroot.datasets d USING (file_id) JOIN arrowroot.columns c USING (dataset_id) "
        "GROUP BY ALL ORDER BY f.path",
    )
    assert got.to_pylist() == [
        {"path": "cms/run2012.root", "name": EVENTS, "ncol": 100},
        {"path": "km3/det.h5", "name": H5, "ncol": 2},
    ]


def test_catalog_join_with_dataset(engine) -> None:  # noqa: ANN001
    got = _run(
        engine,
        f'SELECT d.n_rows = (SELECT count(*) FROM "{EVENTS}") AS ok FROM arrowroot.datasets d WHERE d.name = \'{EVENTS}\'',
    )
    assert got.column("ok").to_pylist() == [True]


def test_prepare_reads_no_data(engine, provider, tables) -> None:  # noqa: ANN001
    p = engine.prepare(f'SELECT event, list_max(Muon_pt) AS lead, ? AS tag FROM "{EVENTS}" WHERE MET_pt > ?')
    assert isinstance(p, PreparedQuery)
    assert provider.scans == []
    assert p.schema.names == ["event", "lead", "tag"]
    assert p.schema.field("event").type == pa.int64()
    assert p.schema.field("lead").type == pa.float32()
    assert p.parameter_count == 2
    assert p.scans == {EVENTS: ["event", "MET_pt", "Muon_pt"]}


def test_prepared_then_executed(engine, provider, tables) -> None:  # noqa: ANN001
    q = f'SELECT count(*) AS c FROM "{EVENTS}" WHERE nMuon >= ? AND MET_pt > ?'
    p = engine.prepare(q)
    params = pa.record_batch({"a": pa.array([2], pa.int64()), "b": pa.array([40.0])})
    got = engine.execute(p, params).read_all()
    assert got.equals(_direct(tables, q, [2, 40.0]))
    assert provider.scans == [(EVENTS, ["MET_pt", "nMuon"])]


def test_multi_row_parameters_concatenate(engine, tables) -> None:  # noqa: ANN001
    q = f'SELECT ? AS k, count(*) AS c FROM "{EVENTS}" WHERE nMuon = ?'
    params = pa.record_batch({"k": ["zero", "one", "four"], "n": pa.array([0, 1, 4], pa.int32())})
    got = _run(engine, q, params)
    want = pa.concat_tables(_direct(tables, q, [k, n]) for k, n in [("zero", 0), ("one", 1), ("four", 4)])
    assert got.to_pylist() == want.to_pylist()


def test_parameter_count_mismatch(engine) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="parameters"):
        _run(engine, "SELECT ? + ?", pa.record_batch({"a": [1]}))


def test_batches_are_bounded_by_bytes(provider) -> None:  # noqa: ANN001
    engine = SqlEngine(provider, max_batch_bytes=256 * 1024, **LIMITS)
    reader = engine.execute(f'SELECT * FROM "{EVENTS}"')
    sizes = [b.nbytes for b in reader]
    assert sum(1 for _ in sizes) > 1
    assert max(sizes) <= 256 * 1024


def test_timeout_interrupts(tables) -> None:  # noqa: ANN001
    engine = SqlEngine(MemoryProvider(tables), **{**LIMITS, "timeout_s": 0.3})
    t0 = time.perf_counter()
    with pytest.raises(TimedOut):
        _run(engine, "SELECT count(*) FROM range(10000000000) a(x), range(1000) b(y) WHERE x % 7 = y")
    assert time.perf_counter() - t0 < 5
    assert engine.running() == []
    assert _run(engine, "SELECT 42 AS x").column("x").to_pylist() == [42]


def test_cancel_while_streaming(tables) -> None:  # noqa: ANN001
    provider = MemoryProvider(tables, delay_s=0.05)
    engine = SqlEngine(provider, **LIMITS)
    reader = engine.execute(f'SELECT MET_pt FROM "{EVENTS}"', query_id="q1")
    reader.read_next_batch()
    assert engine.running() == ["q1"]
    assert engine.cancel("q1")
    with pytest.raises(QueryCancelled):
        reader.read_all()
    assert engine.running() == []
    assert not engine.cancel("q1")


def test_concurrent_queries(engine, tables) -> None:  # noqa: ANN001
    queries = [f'SELECT sum(aux_{i:02d}) AS s FROM "{EVENTS}" WHERE nMuon = {i % 5}' for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda q: _run(engine, q), queries))
    for q, g in zip(queries, got):
        _assert_same(g, _direct(tables, q))


# ------------------------------------------------------------------------------ abuse

PERMISSION = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM read_json_auto('/etc/passwd')",
    "SELECT * FROM read_ndjson_objects('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM parquet_scan('/etc/passwd')",
    "SELECT * FROM parquet_metadata('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_duckdb('/tmp/x.db')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM 'https://example.com/x.parquet'",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('x')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM pragma_show('x')",
    "SELECT current_setting('enable_external_access')",
    "SELECT enable_profiling()",
    "COPY (SELECT 1) TO '/tmp/arrowroot_pwned.csv'",
    "COPY \"cms/run2012.root:Events\" TO '/tmp/arrowroot_pwned.parquet'",
    "ATTACH '/tmp/arrowroot_pwned.db' AS x",
    "ATTACH ':memory:' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA enable_profiling",
    "SET enable_external_access = true",
    "SET threads = 64",
    "RESET lock_configuration",
    "EXPORT DATABASE '/tmp/arrowroot_export'",
    "CREATE TABLE t AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "DROP TABLE \"cms/run2012.root:Events\"",
    "INSERT INTO \"cms/run2012.root:Events\" (event) VALUES (1)",
    "UPDATE \"cms/run2012.root:Events\" SET event = 0",
    "DELETE FROM \"cms/run2012.root:Events\"",
    "SELECT 1; SELECT 2",
    "SELECT 1; COPY (SELECT 1) TO '/tmp/arrowroot_pwned.csv'",
    "CALL pragma_version()",
    "EXPLAIN ANALYZE SELECT 1",
    "CHECKPOINT",
    "DETACH memory",
    "USE system",
    "VACUUM",
    "BEGIN TRANSACTION",
]

INVALID = [
    "SELEC 1",
    "SELECT getenv('HOME')",  # not a function in the Python build; refused either way
    "SELECT * FROM nonexistent_table",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM system.main.duckdb_settings",
    "SELECT * FROM \"/etc/passwd\"",
    "",
    "SELECT $name",
]


def _still_works(engine: SqlEngine) -> None:
    assert _run(engine, f'SELECT count(*) AS n FROM "{EVENTS}"').column("n").to_pylist() == [N]


@pytest.mark.parametrize("query", PERMISSION)
def test_forbidden_is_permission_error(engine, query: str) -> None:  # noqa: ANN001
    with pytest.raises(PermissionDenied):
        _run(engine, query)
    with pytest.raises(PermissionDenied):
        engine.prepare(query)
    _still_works(engine)


@pytest.mark.parametrize("query", INVALID)
def test_malformed_is_value_error(engine, query: str) -> None:  # noqa: ANN001
    with pytest.raises((InvalidRequest, PermissionDenied, NotFound)) as info:
        _run(engine, query)
    assert str(info.value)
    _still_works(engine)


def test_huge_query_refused_before_parsing(engine) -> None:  # noqa: ANN001
    query = "SELECT 1 " + "+ 1 " * 2_500_000  # 10 MB
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="limit"):
        _run(engine, query)
    assert time.perf_counter() - t0 < 1
    _still_works(engine)


def test_python_variables_are_not_tables(engine) -> None:  # noqa: ANN001
    secret_table = pa.table({"secret": ["hunter2"]})  # noqa: F841 - DuckDB replacement scans would find this
    with pytest.raises(NotFound, match="no such table"):
        _run(engine, "SELECT * FROM secret_table")


def test_no_files_written() -> None:
    import os

    for p in ("/tmp/arrowroot_pwned.csv", "/tmp/arrowroot_pwned.parquet", "/tmp/arrowroot_pwned.db", "/tmp/arrowroot_export"):
        assert not os.path.exists(p), p
