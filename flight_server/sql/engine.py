"""Read-only SQL over arrowroot datasets, executed by DuckDB (the engine behind Flight SQL).

Every dataset is a table named by its dataset name (``"cms/run.root:Events"``, quoted), and the
catalog is the schema ``arrowroot`` (``files``, ``datasets``, ``columns``). This module knows
nothing about Flight: the server maps the exceptions (PermissionError -> PERMISSION_DENIED,
ValueError -> INVALID_ARGUMENT, TimeoutError -> DEADLINE_EXCEEDED, QueryCancelled -> CANCELLED).

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
import functools
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import duckdb
import pyarrow as pa
from arrowroot.flight_server.core.errors import Cancelled

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

#: The optimizers kept while planning: they are the ones that drop unused columns from scans.
_PLANNING_OPTIMIZERS = frozenset({"unused_columns", "column_lifetime"})

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

    def scan(self, name: str, columns: list[str]) -> pa.RecordBatchReader: ...

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


def _split_qualified(text: str) -> list[str]:
    """Split DuckDB's rendering of a qualified name (memory.main."a.b") into its parts."""
    parts: list[str] = []
    buf: list[str] = []
    i, quoted = 0, False
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"' and i + 1 < len(text) and text[i + 1] == '"':
                buf.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                buf.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


@functools.lru_cache(maxsize=1)
def _all_optimizers() -> tuple[str, ...]:
    con = duckdb.connect(":memory:", config=dict(_BASE_CONFIG))
    try:
        return tuple(r[0] for r in con.execute("SELECT name FROM duckdb_optimizers()").fetchall())
    finally:
        con.close()


def _fixed_width(t: pa.DataType) -> int:
    try:
        return t.bit_width
    except ValueError:
        return 1 << 20  # variable width: lists, strings, structs


def _cheapest_column(schema: pa.Schema) -> str:
    """The column to read when a query needs rows but no values (count(*))."""
    return min(schema, key=lambda f: (_fixed_width(f.type), schema.get_field_index(f.name))).name


def _split_by_bytes(batch: pa.RecordBatch, max_bytes: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= 1 or batch.nbytes <= max_bytes:
        yield batch
        return
    rows = max(1, int(batch.num_rows * max_bytes / batch.nbytes))
    for start in range(0, batch.num_rows, rows):
        piece = batch.slice(start, rows)
        if piece.nbytes > max_bytes and piece.num_rows > 1:  # skewed rows (jagged columns)
            yield from _split_by_bytes(piece, max_bytes)
        else:
            yield piece


class _LazyScan:
    """Arrow PyCapsule source: DuckDB asks for the schema at bind time (free) and for a
    stream once per scan in the plan; only then is the provider asked to read data."""

    def __init__(self, provider: TableProvider, name: str, schema: pa.Schema) -> None:
        self.provider, self.name, self.schema = provider, name, schema
        self.scans = 0

    def __arrow_c_schema__(self) -> object:
        return self.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        self.scans += 1
        reader = self.provider.scan(self.name, list(self.schema.names))
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


def _walk(node: object) -> Iterator[dict]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


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
        """Screen and plan without reading any dataset data (GetSchema, prepared statements)."""
        t0 = time.perf_counter()
        con = self._connect()
        try:
            screened = self._screen(con, query)
            scans = self._plan(con, screened, keep_shadows=True)
            schema = self._result_schema(con, screened)
        except duckdb.Error as exc:
            raise _translate(exc) from exc
        finally:
            con.close()
        params = pa.schema([pa.field(f"${i + 1}", pa.null()) for i in range(screened.n_params)])
        return PreparedQuery(
            query=screened.query,
            schema=schema,
            parameter_schema=params,
            scans=scans,
            uses_catalog=screened.uses_catalog,
            plan_ms=(time.perf_counter() - t0) * 1e3,
        )

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
        query_id = query_id or uuid.uuid4().hex
        con = self._connect()
        run = _Running(con, self.timeout_s)
        with self._lock:
            if query_id in self._running:
                con.close()
                raise ValueError(f"query id {query_id!r} is already running")
            self._running[query_id] = run
        try:
            if isinstance(query, PreparedQuery):
                scans, sql, uses_catalog = query.scans, query.query, query.uses_catalog
                if rows and len(rows[0]) != query.parameter_count:
                    raise ValueError(
                        f"query has {query.parameter_count} parameters, got {len(rows[0])} values"
                    )
            else:
                screened = self._screen(con, query)
                if rows and len(rows[0]) != screened.n_params:
                    raise ValueError(f"query has {screened.n_params} parameters, got {len(rows[0])} values")
                scans = self._plan(con, screened)
                sql, uses_catalog = screened.query, screened.uses_catalog
            self._bind_sources(con, scans, uses_catalog)
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
            raise ValueError("query must be a string")
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > self.max_query_bytes:
            raise ValueError(f"query is {size} bytes; the limit is {self.max_query_bytes}")
        query = query.strip().rstrip(";").strip()
        if not query:
            raise ValueError("empty query")
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise ValueError(f"SQL syntax error: {_msg(exc)}") from exc
        if len(statements) != 1:
            raise PermissionError(f"exactly one statement per query, got {len(statements)}")
        stmt = statements[0]
        if stmt.type != duckdb.StatementType.SELECT:
            raise PermissionError(
                f"only SELECT queries are allowed (read-only server); got {stmt.type.name}"
            )
        names = stmt.named_parameters
        if any(not n.isdigit() for n in names):
            raise ValueError("only positional parameters (? or $1) are supported")
        n_params = max((int(n) for n in names), default=0)
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
        if tree.get("error"):
            raise ValueError(f"SQL error: {tree.get('error_message')}")
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
        for node in _walk(tree):
            kind = node.get("type")
            if kind == "BASE_TABLE":
                loc = node.get("query_location")
                if isinstance(loc, int) and 0 <= loc < len(encoded) and encoded[loc : loc + 1] == b"'":
                    raise PermissionError(
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
                    raise ValueError(
                        f"no such table: {shown!r}; tables are dataset names in double quotes "
                        f'(e.g. "file.root:tree") and {CATALOG_SCHEMA}.{{{",".join(CATALOG_TABLES)}}}'
                    )
            elif kind == "TABLE_FUNCTION":
                fn = node.get("function") or {}
                fname = (fn.get("function_name") or "").lower()
                if fname not in ALLOWED_TABLE_FUNCTIONS or fn.get("schema") or fn.get("catalog"):
                    raise PermissionError(
                        f"table function {fname}() is not allowed; allowed: "
                        + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
                    )
            elif node.get("class") == "FUNCTION":
                fname = (node.get("function_name") or "").lower()
                if fname in DENIED_FUNCTIONS or fname.startswith(("read_", "pragma_", "duckdb_")):
                    raise PermissionError(f"function {fname}() is not allowed")
        return _Screened(query, datasets, uses_catalog, n_params)

    def _plan(
        self, con: duckdb.DuckDBPyConnection, s: _Screened, keep_shadows: bool = False
    ) -> dict[str, list[str] | None]:
        """Which columns of which datasets the query reads, from DuckDB's own bound plan."""
        schemas = {name: self.provider.dataset_schema(name) for name in s.datasets}
        for i, (name, schema) in enumerate(schemas.items()):
            con.register(f"__arrowroot_shadow_{i}", schema.empty_table())
            con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrowroot_shadow_{i}").fetchall()
            con.unregister(f"__arrowroot_shadow_{i}")
        if s.uses_catalog:
            self._bind_catalog(con)
        disabled = ",".join(o for o in _all_optimizers() if o not in _PLANNING_OPTIMIZERS)
        con.execute("SET disabled_optimizers = ?", [disabled]).fetchall()
        nulls = [None] * s.n_params if s.n_params else None
        try:
            explained = con.execute("EXPLAIN (FORMAT JSON) " + s.query, nulls).fetchall()
        except duckdb.Error as exc:
            raise _translate(exc) from exc
        plan = json.loads(explained[0][1])
        by_lower = {name.lower(): name for name in schemas}
        needed: dict[str, set[str] | None] = {name: None for name in schemas}
        for node in _walk(plan):
            info = node.get("extra_info")
            if not isinstance(info, dict) or "Table" not in info:
                continue
            parts = _split_qualified(info["Table"])
            if len(parts) != 3 or parts[1] != "main" or parts[2].lower() not in by_lower:
                continue
            name = by_lower[parts[2].lower()]
            proj = info.get("Projections") or []
            cols = [proj] if isinstance(proj, str) else list(proj)
            known = set(schemas[name].names)
            if any(c not in known for c in cols):  # a rendering we do not understand: read all
                cols = list(schemas[name].names)
            needed[name] = (needed[name] or set()) | set(cols)
        scans: dict[str, list[str] | None] = {}
        for name, cols in needed.items():
            schema = schemas[name]
            if cols is None:
                scans[name] = None
            elif not cols:
                scans[name] = [_cheapest_column(schema)] if len(schema) else []
            else:
                scans[name] = [c for c in schema.names if c in cols]  # dataset order
        if not keep_shadows:
            for name in schemas:
                con.execute(f"DROP TABLE {quote_ident(name)}").fetchall()
        return scans

    def _result_schema(self, con: duckdb.DuckDBPyConnection, s: _Screened) -> pa.Schema:
        con.execute("SET disabled_optimizers = ''").fetchall()
        nulls = [None] * s.n_params if s.n_params else None
        rel = con.sql(s.query, params=nulls)
        names = rel.columns
        schema = rel.limit(0).to_arrow_reader().schema
        return pa.schema([f.with_name(n) for f, n in zip(schema, names)])

    def _bind_catalog(self, con: duckdb.DuckDBPyConnection) -> None:
        tables = self.provider.catalog_tables()
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG_SCHEMA}").fetchall()
        for key in CATALOG_TABLES:
            if key in tables:
                con.register(f"__arrowroot_catalog_{key}", tables[key])
                con.execute(
                    f"CREATE OR REPLACE VIEW {CATALOG_SCHEMA}.{key} AS SELECT * FROM __arrowroot_catalog_{key}"
                ).fetchall()

    def _bind_sources(
        self, con: duckdb.DuckDBPyConnection, scans: dict[str, list[str] | None], uses_catalog: bool
    ) -> None:
        for name, cols in scans.items():
            schema = self.provider.dataset_schema(name)
            if cols is not None:  # None: the plan never scans it, expose all columns lazily
                schema = pa.schema([schema.field(c) for c in cols])
            con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}").fetchall()
            con.register(name, _LazyScan(self.provider, name, schema))
        if uses_catalog:
            self._bind_catalog(con)

    def _parameter_rows(self, parameters: pa.RecordBatch | pa.Table | None) -> list[list[object]]:
        if parameters is None or parameters.num_columns == 0:
            return []
        if parameters.num_rows == 0:
            raise ValueError("parameter batch has no rows")
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
                        yield from _split_by_bytes(batch, self.max_batch_bytes)
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

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
        self.con = con
        self.reason: str | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout_s, self._interrupt, args=("timeout",))
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
            return TimeoutError(f"query exceeded its {self.timeout_s:g} s time limit")
        if self.reason == "cancel":
            return QueryCancelled("query cancelled")
        return _translate(exc)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close_later(self.con)


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
            return PermissionError(_msg(exc))
        if text.startswith("Out of Memory Error"):
            return MemoryError(_msg(exc))
        return ValueError(_msg(exc))
    if isinstance(exc, duckdb.PermissionException):
        return PermissionError(_msg(exc))
    if isinstance(exc, duckdb.InterruptException):
        return QueryCancelled("query interrupted")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return MemoryError(_msg(exc))
    return ValueError(_msg(exc))
