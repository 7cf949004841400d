"""Read-only SQL over arrowroot datasets, executed by DuckDB (the engine behind Flight SQL).

Every dataset is a table named by its dataset name (``"cms/run.root:Events"``, quoted), and the
catalog is the schema ``arrowroot`` (``files``, ``datasets``, ``columns``). This module knows
nothing about Flight: it raises the project's errors (PermissionDenied, InvalidRequest, NotFound for
an unknown table, TimedOut, QueryCancelled), which every door maps through the one error table.

How a query runs (one private in-memory DuckDB database per query, so concurrent queries share
nothing and a lock or interrupt never touches anybody else):

1. *Screen*: size limit, DuckDB's own parser (exactly one SELECT), then the parse tree from
   ``json_serialize_sql``: only dataset / catalog / CTE tables, an allow-list of table
   functions, a deny-list of stateful scalar functions, no string-literal table references.
2. *Plan*: the referenced datasets become zero-row tables with their real schemas; DuckDB binds
   the query and ``EXPLAIN (FORMAT JSON)`` (with every optimizer off except the two that prune
   columns, so no constant folding or empty-table tricks can hide a scan) names the columns
   each table scan needs. No dataset data is read.
3. *Execute*: the zero-row tables are replaced by lazy Arrow sources exposing only the needed
   columns; DuckDB pulls ``provider.scan(name, needed)`` through the Arrow C stream interface
   (once per scan in the plan, so self-joins work), and results stream out of
   ``fetch_record_batch`` re-chunked to at most ``max_batch_bytes``.

DuckDB settings on every database: ``enable_external_access=false`` (no files, COPY, ATTACH,
INSTALL/LOAD, HTTP), ``autoload/autoinstall_known_extensions=false``,
``allow_community_extensions=false``, ``allow_unsigned_extensions=false``,
``python_enable_replacements=false`` (DuckDB would otherwise resolve unknown table names to
Python variables of the calling frame), ``memory_limit``/``threads`` from the engine, and
``lock_configuration=true`` before the user's SQL runs.
"""

from __future__ import annotations

import atexit
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import duckdb
import pyarrow as pa
from arrowroot.flight_server.sql.sandbox_worker import walk as _walk  # one plan walker for both sides
from arrowroot.flight_server.core.batches import halve_until_small
from arrowroot.flight_server.core.errors import (Cancelled, InvalidRequest, NotFound, PermissionDenied,
                                                TimedOut)
from arrowroot.flight_server.core.shapes import META_PARENT
from arrowroot.flight_server.core.unreadable import column_text, no_columns_text, reasons_of, without_reasons

from arrowroot.flight_server.sql.sandbox import Job, SandboxError, read_run, sandbox

__all__ = [
    "TableProvider",
    "SqlEngine",
    "PreparedQuery",
    "QueryCancelled",
    "CATALOG_SCHEMA",
    "CATALOG_TABLES",
]

CATALOG_SCHEMA = "arrowroot"
CATALOG_TABLES = ("files", "datasets", "columns", "provenance")

#: Table functions a query may call. Everything else (read_csv, read_parquet, glob, query,
#: query_table, sniff_csv, duckdb_*, pragma_*, json_execute_serialized_sql, ...) is refused.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

#: ``FROM dataset('name', allow_missing => true)``: a dataset read with the request's
#: ``allow_missing`` (columns some files lack come as nulls). The call is replaced by a table
#: name of its own before DuckDB plans the query; dataset names are relative paths, so the
#: prefix (a leading '/') never names a real dataset.
DATASET_FUNCTION = "dataset"
ALLOW_MISSING_PREFIX = "/allow_missing/"

#: Scalar functions that read or change server state (settings, profiling, logs, dynamic SQL).
DENIED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "enable_profiling",
        "enable_profile",
        "disable_profiling",
        "disable_profile",
        "write_log",
        "json_execute_serialized_sql",
        "json_deserialize_sql",
        "duckdb_logs_parsed",
        "duckdb_profiling_settings",
        "query",
        "query_table",
    }
)

#: Resident memory of a sandbox worker beyond DuckDB's memory_limit (interpreter, pyarrow).
WORKER_OVERHEAD = 384 << 20

_BASE_CONFIG: dict[str, object] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,
}


class QueryCancelled(Cancelled):
    """The query was cancelled through :meth:`SqlEngine.cancel` (or its client went away)."""


@runtime_checkable
class TableProvider(Protocol):
    """What the engine needs from the server: the caller's view of the datasets."""

    def dataset_names(self) -> list[str]: ...

    def dataset_schema(self, name: str) -> pa.Schema: ...

    def scan(self, name: str, columns: list[str]) -> pa.RecordBatchReader:
        """Stream ``columns``; providers that take ``allow_missing=True`` serve ``dataset(...)``."""
        ...

    def catalog_tables(self) -> dict[str, pa.Table]: ...


@dataclass(frozen=True)
class PreparedQuery:
    """A screened and planned query: what it returns, what it binds, and what it will read."""

    query: str
    schema: pa.Schema
    parameter_schema: pa.Schema
    #: dataset name -> columns that will be scanned (None = referenced, but no scan in the plan)
    scans: dict[str, list[str] | None]
    uses_catalog: bool
    plan_ms: float = field(default=0.0, compare=False)

    @property
    def parameter_count(self) -> int:
        return len(self.parameter_schema)


# ----------------------------------------------------------------------------- helpers


def quote_ident(name: str) -> str:
    """DuckDB identifier quoting, so any dataset name is a valid table name."""
    return '"' + name.replace('"', '""') + '"'


def _fixed_width(t: pa.DataType) -> int:
    try:
        return t.bit_width
    except ValueError:
        return 1 << 20  # variable width: lists, strings, structs


def _cheapest_column(schema: pa.Schema) -> str:
    """The column to read when a query needs rows but no values (count(*))."""
    return min(schema, key=lambda f: (_fixed_width(f.type), schema.get_field_index(f.name))).name


class _LazyScan:
    """Arrow PyCapsule source: DuckDB asks for the schema at bind time (free) and for a
    stream once per scan in the plan; only then is the provider asked to read data."""

    def __init__(self, provider: TableProvider, name: str, schema: pa.Schema,
                 failures: list[BaseException] | None = None) -> None:
        self.provider, self.name, self.schema = provider, name, schema
        self.scans = 0
        #: errors the provider raised when asked for a stream, reported instead of DuckDB's wrapper
        self.failures = failures if failures is not None else []

    def __arrow_c_schema__(self) -> object:
        return self.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        self.scans += 1
        name, allow_missing = _dataset_of(self.name)
        try:
            if allow_missing:
                reader = self.provider.scan(name, list(self.schema.names), allow_missing=True)
            else:
                reader = self.provider.scan(name, list(self.schema.names))
        except Exception as exc:  # DuckDB would report only "exporting a stream ... failed"
            self.failures.append(exc)
            raise
        if not reader.schema.equals(self.schema):
            reader = _conform(reader, self.schema)
        return reader.__arrow_c_stream__(requested_schema)


def _conform(reader: pa.RecordBatchReader, schema: pa.Schema) -> pa.RecordBatchReader:
    """Reorder/cast a provider's batches to the schema DuckDB was promised."""

    def gen() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            arrays = [batch.column(f.name).cast(f.type) for f in schema]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, gen())


# ----------------------------------------------------------------------------- screening


@dataclass
class _Screened:
    query: str
    datasets: dict[str, str]  # canonical dataset name -> lowercase key
    uses_catalog: bool
    n_params: int


class SqlEngine:
    """Runs read-only SQL over a :class:`TableProvider`, one sandboxed DuckDB per query."""

    def __init__(
        self,
        provider: TableProvider,
        *,
        timeout_s: float = 300.0,
        max_query_bytes: int = 1_000_000,
        max_batch_bytes: int = 8 << 20,
        batch_rows: int = 65_536,
        memory_limit: str = "2GB",
        threads: int = 4,
    ) -> None:
        self.provider = provider
        self.timeout_s = timeout_s
        self.max_query_bytes = max_query_bytes
        self.max_batch_bytes = max_batch_bytes
        self.batch_rows = batch_rows
        self.memory_limit = memory_limit
        self.threads = threads
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API

    def prepare(self, query: str) -> PreparedQuery:
        """Screen and plan without reading any dataset data (GetSchema, prepared statements).

        Binding and planning run in a sandbox worker process (see ``sandbox.py``) under the
        timeout and the memory bound: DuckDB folds constant expressions there.
        """
        t0 = time.perf_counter()
        con = self._connect()
        try:
            screened = self._screen(con, query)
        except duckdb.Error as exc:
            raise _translate(exc) from exc
        finally:
            _close_later(con)
        scans, schema = self._probe(screened, None, self.timeout_s)
        params = pa.schema([pa.field(f"${i + 1}", pa.null()) for i in range(screened.n_params)])
        return PreparedQuery(
            query=screened.query,
            schema=schema,
            parameter_schema=params,
            scans=scans,
            uses_catalog=screened.uses_catalog,
            plan_ms=(time.perf_counter() - t0) * 1e3,
        )

    @property
    def max_rss(self) -> int:
        """Resident-memory bound of a sandbox worker: DuckDB's limit plus the interpreter."""
        return parse_bytes(self.memory_limit) + WORKER_OVERHEAD

    def _job(self, kind: str, query: str, datasets: Sequence[str], uses_catalog: bool) -> dict:
        return {
            "kind": kind,
            "query": query,
            "datasets": list(datasets),
            "catalog": list(CATALOG_TABLES) if uses_catalog else [],
            "catalog_schema": CATALOG_SCHEMA,
            "memory_limit": self.memory_limit,
            "threads": self.threads,
            "batch_rows": self.batch_rows,
        }

    def _catalog(self, empty: bool) -> dict[str, pa.Table]:
        tables = self.provider.catalog_tables()
        return {f"catalog:{k}": (t.schema.empty_table() if empty else t) for k, t in tables.items()
                if k in CATALOG_TABLES}

    def _probe(
        self, s: _Screened, params: pa.Table | None, timeout_s: float
    ) -> tuple[dict[str, list[str] | None], pa.Schema]:
        """Bind and plan in a sandbox worker over zero-row tables with the datasets' schemas."""
        schemas = {name: self._schema(name) for name in s.datasets}
        for name, schema in schemas.items():
            if not len(schema):  # DuckDB would say only "must have at least one column"
                raise InvalidRequest("columns: " + no_columns_text(name, reasons_of(schema)))
        tables: dict[str, pa.Table] = {name: schema.empty_table() for name, schema in schemas.items()}
        if s.uses_catalog:
            tables.update(self._catalog(empty=True))
        job = self._job("plan", s.query, list(schemas), s.uses_catalog)
        job["n_params"] = s.n_params
        try:
            result = sandbox().call(job, tables, params, timeout_s, self.max_rss)
        except SandboxError as exc:
            raise _unreadable_column(exc, schemas) or _sandbox_error(exc) from None
        except TimeoutError:
            raise TimedOut(f"query exceeded its {self.timeout_s:g} s time limit") from None
        scans: dict[str, list[str] | None] = {}
        for name, cols in result["scans"].items():
            schema = schemas[name]
            if cols is None:
                scans[name] = None
            elif not cols:
                scans[name] = [_cheapest_column(schema)] if len(schema) else []
            else:
                scans[name] = [c for c in schema.names if c in set(cols)]  # dataset order
        schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(result["schema"])))
        return scans, schema

    def execute(
        self,
        query: str | PreparedQuery,
        parameters: pa.RecordBatch | pa.Table | None = None,
        *,
        query_id: str | None = None,
    ) -> pa.RecordBatchReader:
        """Stream the results; one execution per parameter row, results concatenated.

        ``query_id`` names the run for :meth:`cancel`; the timeout interrupts it too.
        """
        rows = self._parameter_rows(parameters)
        params = None
        if rows:
            params = parameters if isinstance(parameters, pa.Table) else pa.Table.from_batches([parameters])
        query_id = query_id or uuid.uuid4().hex
        start = time.monotonic()
        with self._lock:
            if query_id in self._running:
                raise InvalidRequest(f"query id {query_id!r} is already running")
        if isinstance(query, PreparedQuery):
            if rows and len(rows[0]) != query.parameter_count:
                raise InvalidRequest(
                    f"query has {query.parameter_count} parameters, got {len(rows[0])} values"
                )
            screened = _Screened(query.query, {n: n.lower() for n in query.scans}, query.uses_catalog,
                                 query.parameter_count)
            scans = query.scans if not rows else None  # parameters bind anew: probe them too
        else:
            con = self._connect()
            try:
                screened = self._screen(con, query)
            except duckdb.Error as exc:
                raise _translate(exc) from exc
            finally:
                _close_later(con)
            if rows and len(rows[0]) != screened.n_params:
                raise InvalidRequest(f"query has {screened.n_params} parameters, got {len(rows[0])} values")
            scans = None
        sql, uses_catalog = screened.query, screened.uses_catalog
        if not screened.datasets:
            return self._execute_sandboxed(query_id, sql, uses_catalog, params, start)
        if scans is None:
            scans, _ = self._probe(screened, params, self._left(start))
        con = self._connect()
        run = _Running(con, self._left(start), self.timeout_s)
        with self._lock:
            if query_id in self._running:
                con.close()
                raise InvalidRequest(f"query id {query_id!r} is already running")
            self._running[query_id] = run
        try:
            self._bind_sources(con, scans, uses_catalog, run.failures)
            con.execute("SET disabled_optimizers = ''").fetchall()
            con.execute("SET lock_configuration = true").fetchall()
            first = con.sql(sql, params=rows[0] if rows else None).to_arrow_reader(self.batch_rows)
        except BaseException as exc:
            self._finish(query_id, run)
            if isinstance(exc, duckdb.Error):
                raise run.translate(exc) from exc
            raise
        return pa.RecordBatchReader.from_batches(
            first.schema, self._stream(query_id, run, sql, first, rows[1:])
        )

    def _left(self, start: float) -> float:
        left = self.timeout_s - (time.monotonic() - start)
        if left <= 0:
            raise TimedOut(f"query exceeded its {self.timeout_s:g} s time limit")
        return left

    def _execute_sandboxed(
        self, query_id: str, sql: str, uses_catalog: bool, params: pa.Table | None, start: float
    ) -> pa.RecordBatchReader:
        """A query that reads no dataset runs entirely in a sandbox worker (killable)."""
        tables = self._catalog(empty=False) if uses_catalog else {}
        job = sandbox().start(self._job("run", sql, [], uses_catalog), tables, params,
                              self._left(start), self.max_rss)
        run = _SandboxRun(job, self.timeout_s)
        with self._lock:
            if query_id in self._running:
                job.stop("cancel")
                job.finish()
                raise InvalidRequest(f"query id {query_id!r} is already running")
            self._running[query_id] = run
        try:
            schema, batches = read_run(job)
        except (SandboxError, TimeoutError, MemoryError) as exc:
            self._finish(query_id, run)
            raise run.translate(exc) from None

        def gen() -> Iterator[pa.RecordBatch]:
            try:
                for batch in batches:
                    if batch.num_rows:
                        yield from halve_until_small(batch, self.max_batch_bytes)
            except (SandboxError, TimeoutError, MemoryError) as exc:
                raise run.translate(exc) from None
            finally:
                batches.close()
                self._finish(query_id, run)

        return pa.RecordBatchReader.from_batches(schema, gen())

    def cancel(self, query_id: str) -> bool:
        """Interrupt a running query (client went away, CancelFlightInfo). True if it was running."""
        with self._lock:
            run = self._running.get(query_id)
        if run is None:
            return False
        run.cancel()
        return True

    def running(self) -> list[str]:
        """Ids of the queries currently executing or streaming."""
        with self._lock:
            return list(self._running)

    # ------------------------------------------------------------------ stages

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return _pool(self.memory_limit, self.threads).get()

    def _screen(self, con: duckdb.DuckDBPyConnection, query: str) -> _Screened:
        if not isinstance(query, str):
            raise InvalidRequest("query must be a string")
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > self.max_query_bytes:
            raise InvalidRequest(f"query is {size} bytes; the limit is {self.max_query_bytes}")
        query = query.strip().rstrip(";").strip()
        if not query:
            raise InvalidRequest("empty query")
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise InvalidRequest(f"SQL syntax error: {_msg(exc)}") from exc
        if len(statements) != 1:
            raise PermissionDenied(f"exactly one statement per query, got {len(statements)}")
        stmt = statements[0]
        if stmt.type != duckdb.StatementType.SELECT:
            raise PermissionDenied(
                f"only SELECT queries are allowed (read-only server); got {stmt.type.name}"
            )
        names = stmt.named_parameters
        if any(not n.isdigit() for n in names):
            raise InvalidRequest("only positional parameters (? or $1) are supported")
        n_params = max((int(n) for n in names), default=0)
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
        if tree.get("error"):
            raise InvalidRequest(f"SQL error: {tree.get('error_message')}")
        return self._check_tree(query, tree, n_params)

    def _check_tree(self, query: str, tree: dict, n_params: int) -> _Screened:
        encoded = query.encode("utf-8")
        by_lower: dict[str, str] = {}
        for name in self.provider.dataset_names():
            by_lower.setdefault(name.lower(), name)
        ctes: set[str] = set()
        for node in _walk(tree):
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                ctes.update(item["key"].lower() for item in cte_map.get("map", []))
        datasets: dict[str, str] = {}
        uses_catalog = False
        edits: list[tuple[dict, str]] = []  # dataset(...) calls → the table name they stand for
        for node in _walk(tree):
            kind = node.get("type")
            if kind == "BASE_TABLE":
                loc = node.get("query_location")
                if isinstance(loc, int) and 0 <= loc < len(encoded) and encoded[loc : loc + 1] == b"'":
                    raise PermissionDenied(
                        f"reading files is not allowed: FROM '{node.get('table_name')}'"
                    )
                catalog = (node.get("catalog_name") or "").lower()
                schema = (node.get("schema_name") or "").lower()
                table = node.get("table_name") or ""
                if schema == CATALOG_SCHEMA and catalog in ("", "memory") and table.lower() in CATALOG_TABLES:
                    uses_catalog = True
                elif catalog in ("", "memory") and schema in ("", "main") and table.lower() in by_lower:
                    datasets[by_lower[table.lower()]] = table.lower()
                elif not catalog and not schema and table.lower() in ctes:
                    pass
                else:
                    shown = ".".join(p for p in (catalog, schema, table) if p)
                    raise NotFound(
                        f"no such table: {shown!r}; tables are dataset names in double quotes "
                        f'(e.g. "file.root:tree") and {CATALOG_SCHEMA}.{{{",".join(CATALOG_TABLES)}}}'
                    )
            elif kind == "TABLE_FUNCTION" and _function_name(node) == DATASET_FUNCTION:
                name, allow_missing = _dataset_call(node, by_lower)
                key = ALLOW_MISSING_PREFIX + name if allow_missing else name
                datasets[key] = key.lower()
                edits.append((node, quote_ident(key)))
            elif kind == "TABLE_FUNCTION":
                fn = node.get("function") or {}
                fname = (fn.get("function_name") or "").lower()
                if fname not in ALLOWED_TABLE_FUNCTIONS or fn.get("schema") or fn.get("catalog"):
                    raise PermissionDenied(
                        f"table function {fname}() is not allowed; allowed: "
                        + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
                    )
            elif node.get("class") == "FUNCTION":
                fname = (node.get("function_name") or "").lower()
                if fname in DENIED_FUNCTIONS or fname.startswith(("read_", "pragma_", "duckdb_")):
                    raise PermissionDenied(f"function {fname}() is not allowed")
        if edits:
            query = _replace_spans(encoded, edits)
        return _Screened(query, datasets, uses_catalog, n_params)

    def _bind_catalog(self, con: duckdb.DuckDBPyConnection) -> None:
        tables = self.provider.catalog_tables()
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG_SCHEMA}").fetchall()
        for key in CATALOG_TABLES:
            if key in tables:
                con.register(f"__arrowroot_catalog_{key}", tables[key])
                con.execute(
                    f"CREATE OR REPLACE VIEW {CATALOG_SCHEMA}.{key} AS SELECT * FROM __arrowroot_catalog_{key}"
                ).fetchall()

    def _schema(self, key: str) -> pa.Schema:
        """A dataset's table: its columns, less ROOT parent branches (records of columns that
        are there already: ``SELECT *`` serves nothing twice)."""
        schema = self.provider.dataset_schema(_dataset_of(key)[0])
        if not any(META_PARENT in (f.metadata or {}) for f in schema):
            return schema
        return pa.schema([f for f in schema if META_PARENT not in (f.metadata or {})], metadata=schema.metadata)

    def _bind_sources(
        self, con: duckdb.DuckDBPyConnection, scans: dict[str, list[str] | None], uses_catalog: bool,
        failures: list[BaseException] | None = None,
    ) -> None:
        for i, (name, cols) in enumerate(scans.items()):
            schema = without_reasons(self._schema(name))
            if cols is not None:  # None: the plan never scans it, expose all columns lazily
                schema = pa.schema([schema.field(c) for c in cols])
            # A view in memory.main (what CommandGetTables advertises), over a registered
            # source: every reference in the plan opens its own scan (self-joins work).
            con.register(f"__arrowroot_source_{i}", _LazyScan(self.provider, name, schema, failures))
            con.execute(
                f"CREATE VIEW memory.main.{quote_ident(name)} AS SELECT * FROM __arrowroot_source_{i}"
            ).fetchall()
        if uses_catalog:
            self._bind_catalog(con)

    def _parameter_rows(self, parameters: pa.RecordBatch | pa.Table | None) -> list[list[object]]:
        if parameters is None or parameters.num_columns == 0:
            return []
        if parameters.num_rows == 0:
            raise InvalidRequest("parameter batch has no rows")
        columns = [col.to_pylist() for col in parameters.columns]
        return [list(row) for row in zip(*columns)]

    def _stream(
        self,
        query_id: str,
        run: _Running,
        sql: str,
        first: pa.RecordBatchReader,
        more_rows: Sequence[list[object]],
    ) -> Iterator[pa.RecordBatch]:
        schema = first.schema
        try:
            readers = itertools.chain(
                [first],
                (run.con.sql(sql, params=row).to_arrow_reader(self.batch_rows) for row in more_rows),
            )
            for reader in readers:
                for batch in reader:
                    if not batch.schema.equals(schema):
                        batch = batch.cast(schema)
                    if batch.num_rows:
                        yield from halve_until_small(batch, self.max_batch_bytes)
        except (duckdb.Error, pa.ArrowException, OSError) as exc:
            # DuckDB errors raised while pyarrow pulls from DuckDB's stream arrive as Arrow
            # errors (OSError for interrupts); the provider's own I/O errors pass through.
            if run.reason or isinstance(exc, duckdb.Error) or _is_duckdb_message(str(exc)):
                raise run.translate(exc) from exc
            raise
        finally:
            self._finish(query_id, run)

    def _finish(self, query_id: str, run: _Running) -> None:
        with self._lock:
            if self._running.get(query_id) is run:
                del self._running[query_id]
        run.close()


def _open_database(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config=dict(_BASE_CONFIG, memory_limit=memory_limit, threads=threads))
    con.execute("SET enable_progress_bar = false").fetchall()  # a session option: no bars on the server's stdout
    return con


class _DatabasePool:
    """Fresh, configured, never-used in-memory databases, opened ahead of time by a thread.

    ``duckdb.connect`` costs ~15 ms, most of a small query's latency. Each database is still
    used by exactly one query and then closed (nothing is shared between queries); the pool
    only moves the opening off the request path.
    """

    def __init__(self, memory_limit: str, threads: int, size: int = 3) -> None:
        self.memory_limit, self.threads, self.size = memory_limit, threads, size
        self._ready: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._wanted.set()
        self._stopped = False
        self._thread = threading.Thread(target=self._fill, name="duckdb-pool", daemon=True)
        self._thread.start()
        # A daemon thread inside duckdb.connect at interpreter exit aborts the process
        # ("FATAL: exception not rethrown"): stop and join it first.
        atexit.register(self.close)

    def close(self) -> None:
        self._stopped = True
        self._wanted.set()
        self._thread.join(5)
        with self._lock:
            ready, self._ready = self._ready, []
        for con in ready:
            con.close()

    def get(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            con = self._ready.pop() if self._ready else None
        self._wanted.set()
        return con if con is not None else _open_database(self.memory_limit, self.threads)

    def _fill(self) -> None:
        while not self._stopped:
            self._wanted.wait()
            self._wanted.clear()
            while not self._stopped:
                with self._lock:
                    if len(self._ready) >= self.size:
                        break
                con = _open_database(self.memory_limit, self.threads)
                with self._lock:
                    self._ready.append(con)


class _Closer:
    """Closes used databases on a background thread: ``close()`` costs 3-10 ms, which would
    otherwise sit between a query's last batch and the end of its stream."""

    def __init__(self) -> None:
        self._queue: list[duckdb.DuckDBPyConnection] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="duckdb-closer", daemon=True)
        self._thread.start()
        atexit.register(self.stop)  # never leave a daemon thread inside DuckDB at exit

    def put(self, con: duckdb.DuckDBPyConnection) -> None:
        with self._cond:
            if not self._stopped:
                self._queue.append(con)
                self._cond.notify()
                return
        _close_now(con)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if not self._queue:
                    return
                con = self._queue.pop()
            _close_now(con)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(10)


def _close_now(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.close()
    except duckdb.Error:
        pass


_CLOSER: _Closer | None = None


def _close_later(con: duckdb.DuckDBPyConnection) -> None:
    global _CLOSER
    with _POOLS_LOCK:
        if _CLOSER is None:
            _CLOSER = _Closer()
        closer = _CLOSER
    closer.put(con)


_POOLS: dict[tuple[str, int], _DatabasePool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(memory_limit: str, threads: int) -> _DatabasePool:
    with _POOLS_LOCK:
        pool = _POOLS.get((memory_limit, threads))
        if pool is None:
            pool = _POOLS[(memory_limit, threads)] = _DatabasePool(memory_limit, threads)
        return pool


class _Running:
    """One executing query: its connection, its timeout timer, and why it was interrupted."""

    def __init__(self, con: duckdb.DuckDBPyConnection, left_s: float, timeout_s: float) -> None:
        self.con = con
        self.reason: str | None = None
        self.failures: list[BaseException] = []
        self._closed = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(left_s, self._interrupt, args=("timeout",))
        self._timer.daemon = True
        self._timer.start()
        self.timeout_s = timeout_s

    def _interrupt(self, reason: str) -> None:
        with self._lock:
            if self._closed:
                return
            self.reason = self.reason or reason
            self.con.interrupt()

    def cancel(self) -> None:
        self._interrupt("cancel")

    def translate(self, exc: Exception) -> BaseException:
        if self.reason == "timeout":
            return TimedOut(f"query exceeded its {self.timeout_s:g} s time limit")
        if self.reason == "cancel":
            return QueryCancelled("query cancelled")
        if self.failures:  # a dataset's own error (drift, a changed file) rather than DuckDB's wrapper
            return self.failures[0]
        return _translate(exc)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close_later(self.con)


class _SandboxRun:
    """A query running in a sandbox worker: cancelling it kills the worker."""

    def __init__(self, job: Job, timeout_s: float) -> None:
        self.job, self.timeout_s = job, timeout_s

    def cancel(self) -> None:
        self.job.stop("cancel")

    def translate(self, exc: BaseException) -> BaseException:
        if self.job.reason == "timeout" or isinstance(exc, TimeoutError):
            return TimedOut(f"query exceeded its {self.timeout_s:g} s time limit")
        if self.job.reason == "cancel":
            return QueryCancelled("query cancelled")
        if isinstance(exc, SandboxError):
            return _sandbox_error(exc)
        return exc

    def close(self) -> None:
        if not self.job.done:
            self.job.stop("cancel")
            self.job.finish()


def _function_name(node: dict) -> str:
    return ((node.get("function") or {}).get("function_name") or "").lower()


def _dataset_call(node: dict, by_lower: dict[str, str]) -> tuple[str, bool]:
    """``dataset('name', allow_missing => true)``: the dataset it names and the flag."""
    fn = node.get("function") or {}
    if fn.get("schema") or fn.get("catalog"):
        raise PermissionDenied(f"table function {fn.get('schema')}.{DATASET_FUNCTION}() is not allowed")
    if not isinstance(node.get("query_location_length"), int):
        raise InvalidRequest(f"{DATASET_FUNCTION}(): this DuckDB does not report query spans; name the table instead")
    usage = f"use {DATASET_FUNCTION}('file.h5:object', allow_missing => true)"
    args = fn.get("arguments")
    if args is None:  # older serialisations: children, named ones carried as aliases
        args = [{"name": c.get("alias") or "", "expression": c} for c in fn.get("children", [])]
    name, allow_missing = None, False
    for arg in args:
        expr = arg.get("expression") or {}
        literal = expr.get("literal") if expr.get("class") == "CONSTANT" else None
        if not isinstance(literal, dict):
            raise InvalidRequest(f"{DATASET_FUNCTION}(): arguments must be constants; {usage}")
        key = (arg.get("name") or "").lower()
        if not key and name is None and literal.get("kind") in ("STRING", "VARCHAR"):
            name = literal.get("text")
        elif key == "allow_missing" and literal.get("kind") == "BOOLEAN":
            allow_missing = str(literal.get("text")).lower() == "true"
        else:
            raise InvalidRequest(f"{DATASET_FUNCTION}(): unexpected argument {key or literal.get('text')!r}; {usage}")
    if not name:
        raise InvalidRequest(f"{DATASET_FUNCTION}(): the dataset name is missing; {usage}")
    canonical = by_lower.get(name.lower())
    if canonical is None:
        raise InvalidRequest(f"{DATASET_FUNCTION}(): no dataset named {name!r}")
    return canonical, allow_missing


def _replace_spans(encoded: bytes, edits: list[tuple[dict, str]]) -> str:
    """The query with each node's span (byte offsets DuckDB reports) replaced by ``text``."""
    out = encoded
    for node, text in sorted(edits, key=lambda e: e[0]["query_location"], reverse=True):
        a = node["query_location"]
        b = a + node["query_location_length"]
        # an alias after the call stays in place: the span covers the call only
        out = out[:a] + text.encode("utf-8") + out[b:]
    return out.decode("utf-8")


def _dataset_of(key: str) -> tuple[str, bool]:
    """A table key → (dataset name, allow_missing)."""
    if key.startswith(ALLOW_MISSING_PREFIX):
        return key[len(ALLOW_MISSING_PREFIX):], True
    return key, False


_MISSING_COLUMN = re.compile(r'Referenced column "((?:[^"]|"")+)" not found')


def _unreadable_column(exc: SandboxError, schemas: dict[str, pa.Schema]) -> InvalidRequest | None:
    """A query naming a column the catalog lists as unreadable: say why, not "not found"."""
    m = _MISSING_COLUMN.search(str(exc))
    if m is None:
        return None
    wanted = m.group(1).replace('""', '"')
    for schema in schemas.values():
        for name, reason in reasons_of(schema):
            if name == wanted or name.lower() == wanted.lower():
                return InvalidRequest("columns: " + column_text(name, reason))
    return None


def _sandbox_error(exc: SandboxError) -> BaseException:
    text = str(exc)
    if exc.kind == "permission":
        return PermissionDenied(text)
    if exc.kind == "interrupt":
        return QueryCancelled("query interrupted")
    if exc.kind == "memory":
        return MemoryError(text)
    return InvalidRequest(text)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def parse_bytes(text: str) -> int:
    """DuckDB-style sizes ("2GB", "500MiB") in bytes."""
    t = text.strip().upper().replace(" ", "")
    digits = len(t) - len(t.lstrip("0123456789."))
    number, unit = t[:digits], t[digits:]
    if not number or unit not in _UNITS:
        raise InvalidRequest(f"not a size: {text!r}")
    return int(float(number) * _UNITS[unit])


def _msg(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


_DUCKDB_PREFIXES = (
    "INTERRUPT",
    "Permission Error",
    "Binder Error",
    "Conversion Error",
    "Invalid Input Error",
    "Out of Range Error",
    "Out of Memory Error",
    "Catalog Error",
    "Parser Error",
    "Not implemented Error",
)


def _is_duckdb_message(text: str) -> bool:
    return text.startswith(_DUCKDB_PREFIXES)


def _translate(exc: Exception) -> BaseException:
    """DuckDB errors -> the built-in exceptions the Flight layer maps to status codes."""
    if not isinstance(exc, duckdb.Error):
        text = str(exc)
        if text.startswith("INTERRUPT"):
            return QueryCancelled("query interrupted")
        if text.startswith("Permission Error"):
            return PermissionDenied(_msg(exc))
        if text.startswith("Out of Memory Error"):
            return MemoryError(_msg(exc))
        return InvalidRequest(_msg(exc))
    if isinstance(exc, duckdb.PermissionException):
        return PermissionDenied(_msg(exc))
    if isinstance(exc, duckdb.InterruptException):
        return QueryCancelled("query interrupted")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return MemoryError(_msg(exc))
    return InvalidRequest(_msg(exc))
