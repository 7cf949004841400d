"""Read-only SQL over arrowroot datasets, executed by DuckDB (the engine behind Flight SQL).

Every dataset is a table named by its dataset name (``"cms/run.root:Events"``, quoted), and the
catalog is the schema ``arrowroot`` (``files``, ``datasets``, ``columns``, ``provenance``). This
module knows nothing about Flight: it raises the project's errors (PermissionDenied,
InvalidRequest, NotFound for an unknown table, TimedOut, QueryCancelled, ResourceExhausted),
which every door maps through the one error table.

How a query runs:

1. *Screen* (``screen.py``, in this process, parse-only): size limit, exactly one SELECT, only
   dataset / catalog / CTE tables, an allow-list of table functions, a deny-list of stateful
   scalar functions.
2. *Plan* (in a sandbox worker process, ``sandbox.py``): the referenced datasets become zero-row
   tables with their real schemas; DuckDB binds the query and ``EXPLAIN (FORMAT JSON)`` names the
   columns each table scan needs; the result schema and the parameter types come from DuckDB's
   binder. No dataset data is read.
3. *Execute* (``run.py``, in a sandbox worker process too): the worker scans lazy sources that
   ask this process for each batch; this process reads only the needed columns through the
   provider (the server's one read path) and sends them over the pipe, and the results come
   back re-chunked to at most ``max_batch_bytes``. The worker's address space is capped at
   ``memory_limit`` plus :data:`WORKER_OVERHEAD`, and it is killed at the deadline, so neither
   per-row growth nor a long query can take the server's memory or time.

Parameters bind by their Arrow types (an int64 column binds as BIGINT whatever its values); a
batch of several rows runs the query once per row and concatenates the results.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pyarrow as pa

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.shapes import META_PARENT
from arrowroot.flight_server.core.unreadable import no_columns_text, reasons_of, without_reasons
from arrowroot.flight_server.sql.errors import QueryCancelled, failure, parse_bytes, timed_out
from arrowroot.flight_server.sql.pushdown import answer
from arrowroot.flight_server.sql.run import QueryRun
from arrowroot.flight_server.sql.sandbox import Sandbox, SandboxError, WorkerGone, sandbox
from arrowroot.flight_server.sql.screen import (CATALOG_SCHEMA, CATALOG_TABLES, Screened, dataset_of, quote_ident,
                                               screen)

__all__ = [
    "TableProvider",
    "SqlEngine",
    "PreparedQuery",
    "QueryRun",
    "QueryCancelled",
    "CATALOG_SCHEMA",
    "CATALOG_TABLES",
    "WORKER_OVERHEAD",
    "address_space",
    "quote_ident",
]

#: Address space of a sandbox worker beyond DuckDB's memory_limit: the interpreter, pyarrow,
#: DuckDB's threads and the batches in flight (measured: ~0.6 GiB after a 2M-row aggregate).
WORKER_OVERHEAD = 1 << 30


def address_space(memory_limit: str) -> int:
    """The address-space cap of a sandbox worker: DuckDB's memory limit plus the interpreter's share."""
    return parse_bytes(memory_limit) + WORKER_OVERHEAD


@runtime_checkable
class TableProvider(Protocol):
    """What the engine needs from the server: the caller's view of the datasets."""

    def dataset_names(self) -> list[str]: ...

    def dataset_schema(self, name: str) -> pa.Schema: ...

    def scan(self, name: str, columns: list[str]) -> pa.RecordBatchReader:
        """Stream ``columns``; providers that take ``allow_missing=True`` serve ``dataset(...)``;
        providers that take ``where=`` (a cut every row DuckDB keeps passes, see ``pushdown.py``)
        may skip what fails it."""
        ...

    # Optional: ``summary(name, columns) -> {"rows": n, "columns": {c: {"count", "min", "max"}}} | None``,
    # exact whole-dataset statistics (zone maps) that answer count/min/max queries without a scan.

    def catalog_tables(self) -> dict[str, pa.Table]: ...


@dataclass(frozen=True)
class PreparedQuery:
    """A screened and planned query: what it returns, what it binds, and what it will read."""

    query: str
    schema: pa.Schema
    parameter_schema: pa.Schema
    #: table key -> columns that will be scanned (None = referenced, but no scan in the plan)
    scans: dict[str, list[str] | None]
    uses_catalog: bool
    plan_ms: float = field(default=0.0, compare=False)
    #: the parameter types ``schema`` was planned with (None: planned with the parameters unbound)
    bound: pa.Schema | None = None
    #: (dataset, cut) the scan may apply; (dataset, [(function, column)]) answerable from statistics
    pushdown: tuple[str, str] | None = field(default=None, compare=False)
    aggregates: tuple[str, list] | None = field(default=None, compare=False)

    @property
    def parameter_count(self) -> int:
        return len(self.parameter_schema)

    def planned_for(self, parameters: pa.Table | None) -> bool:
        """Whether ``schema`` is the result schema with these parameters bound."""
        if parameters is None or not self.parameter_count:
            return True
        return self.bound is not None and self.bound.types == parameters.schema.types


def _fixed_width(t: pa.DataType) -> int:
    try:
        return t.bit_width
    except ValueError:
        return 1 << 20  # variable width: lists, strings, structs


def _cheapest_column(schema: pa.Schema) -> str:
    """The column to read when a query needs rows but no values (count(*))."""
    return min(schema, key=lambda f: (_fixed_width(f.type), schema.get_field_index(f.name))).name


def _as_table(parameters: pa.RecordBatch | pa.Table | None) -> pa.Table | None:
    if parameters is None or parameters.num_columns == 0:
        return None
    if parameters.num_rows == 0:
        raise InvalidRequest("parameter batch has no rows")
    return parameters if isinstance(parameters, pa.Table) else pa.Table.from_batches([parameters])


def _screened(prepared: PreparedQuery) -> Screened:
    """A planned query as it was screened (its text is the screened one: no second screening)."""
    return Screened(prepared.query, {k: k.lower() for k in prepared.scans}, prepared.uses_catalog,
                    prepared.parameter_count, prepared.pushdown, prepared.aggregates)


class SqlEngine:
    """Runs read-only SQL over a :class:`TableProvider` in sandboxed DuckDB worker processes."""

    def __init__(
        self,
        provider: TableProvider,
        *,
        timeout_s: float,                  # Settings.sql_timeout
        memory_limit: str,                 # Settings.sql_memory_limit
        workers: int,                      # Settings.sql_workers (the pool's size when none is given)
        max_query_bytes: int = 1_000_000,
        max_batch_bytes: int = 8 << 20,
        batch_rows: int = 65_536,
        threads: int = 4,
        pool: Sandbox | None = None,
    ) -> None:
        self.provider = provider
        self.timeout_s = timeout_s
        self.max_query_bytes = max_query_bytes
        self.max_batch_bytes = max_batch_bytes
        self.batch_rows = batch_rows
        self.memory_limit = memory_limit
        self.threads = threads
        self.workers = workers
        self._pool = pool
        self._running: dict[str, QueryRun] = {}
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> Sandbox:
        """The worker pool: the one given (a server's own), else the process-wide one."""
        if self._pool is not None:
            return self._pool
        return sandbox(address_space(self.memory_limit), self.workers, (self.memory_limit, self.threads))

    # ------------------------------------------------------------------ public API

    def screen(self, query: str) -> Screened:
        return screen(query, self.provider.dataset_names(), self.max_query_bytes, self.provider.dataset_schema)

    def prepare(self, query: str, parameters: pa.RecordBatch | pa.Table | None = None) -> PreparedQuery:
        """Screen and plan without reading any dataset data (GetSchema, prepared statements, and
        GetFlightInfo of a statement); with ``parameters``, the result schema is the one their
        Arrow types give. Planning runs in a sandbox worker, under the timeout and memory bound."""
        t0 = time.perf_counter()
        screened = self.screen(query)
        return self._plan(screened, _as_table(parameters), self.timeout_s, t0)[0]

    def execute(
        self,
        query: str | PreparedQuery,
        parameters: pa.RecordBatch | pa.Table | None = None,
        *,
        query_id: str | None = None,
    ) -> QueryRun:
        """Start the query; its results stream from the returned :class:`QueryRun` (close it, or
        read it to the end). ``query_id`` names the run for :meth:`cancel`; the timeout counts
        the planning (if the query is not planned yet) and the run up to the last batch, not the
        start of a worker process."""
        budget = self.timeout_s
        params = _as_table(parameters)
        query_id = query_id or uuid.uuid4().hex
        with self._lock:
            if query_id in self._running:
                raise InvalidRequest(f"query id {query_id!r} is already running")
        if isinstance(query, PreparedQuery):
            prepared = query
            if params is not None and params.num_columns != prepared.parameter_count:
                raise InvalidRequest(f"query has {prepared.parameter_count} parameters, got {params.num_columns} values")
            if not prepared.planned_for(params):  # the parameters' types decide the result schema
                prepared, spent = self._plan(_screened(prepared), params, budget, time.perf_counter())
                budget -= spent
        else:
            prepared, spent = self._plan(self.screen(query), params, budget, time.perf_counter())
            budget -= spent
        known = self._from_statistics(prepared) if params is None else None
        if known is not None:
            return QueryRun.of_table(known, query_id)
        return self._start(query_id, prepared, params, budget)

    def plan_again(self, prepared: PreparedQuery, parameters: pa.RecordBatch | pa.Table | None = None
                   ) -> PreparedQuery:
        """Plan a prepared query again: with parameters bound (their types give the result
        schema), or because the catalog changed since it was planned."""
        return self._plan(_screened(prepared), _as_table(parameters), self.timeout_s, time.perf_counter())[0]

    def cancel(self, query_id: str) -> bool:
        """Stop a running query (client went away, CancelFlightInfo). True if it was running."""
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

    def _schema(self, key: str) -> pa.Schema:
        """A dataset's table: its columns, less ROOT parent branches (records of columns that
        are there already: ``SELECT *`` serves nothing twice)."""
        schema = self.provider.dataset_schema(dataset_of(key)[0])
        if not any(META_PARENT in (f.metadata or {}) for f in schema):
            return schema
        return pa.schema([f for f in schema if META_PARENT not in (f.metadata or {})], metadata=schema.metadata)

    def _left(self, budget: float) -> float:
        if budget <= 0:
            raise timed_out(self.timeout_s)
        return budget

    def _plan(self, s: Screened, params: pa.Table | None, budget: float, t0: float) -> tuple[PreparedQuery, float]:
        """Bind and plan in a sandbox worker over zero-row tables with the datasets' schemas;
        also the seconds the worker spent (counted against the query's time)."""
        if params is not None and params.num_columns != s.n_params:
            raise InvalidRequest(f"query has {s.n_params} parameters, got {params.num_columns} values")
        schemas = {key: self._schema(key) for key in s.datasets}
        for key, schema in schemas.items():
            if not len(schema):  # DuckDB would say only "must have at least one column"
                raise InvalidRequest("columns: " + no_columns_text(dataset_of(key)[0], reasons_of(schema)))
        tables: dict[str, pa.Table] = {key: schema.empty_table() for key, schema in schemas.items()}
        if s.uses_catalog:
            tables.update(self._catalog(empty=True))
        header = self._job("plan", s.query, list(schemas), s.uses_catalog)
        header["n_params"] = s.n_params
        job = self.sandbox.start(header, tables, params, self._left(budget))
        try:
            _, data = job.receive()
        except (SandboxError, WorkerGone) as exc:
            job.close(reusable=isinstance(exc, SandboxError))
            raise failure(exc, timeout_s=self.timeout_s, memory=self.memory_limit, schemas=schemas) from None
        spent = job.elapsed
        job.close(reusable=True)
        result = json.loads(data)
        scans: dict[str, list[str] | None] = {}
        for key, cols in result["scans"].items():
            schema = schemas[key]
            if cols is None:
                scans[key] = None
            elif not cols:
                scans[key] = [_cheapest_column(schema)] if len(schema) else []
            else:
                wanted = set(cols)
                scans[key] = [c for c in schema.names if c in wanted]  # dataset order
        schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(result["schema"])))
        if params is not None:
            param_schema = pa.schema([pa.field(f"${i + 1}", t) for i, t in enumerate(params.schema.types)])
        elif "parameters" in result:
            param_schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(result["parameters"])))
        else:
            param_schema = pa.schema([pa.field(f"${i + 1}", pa.null()) for i in range(s.n_params)])
        prepared = PreparedQuery(query=s.query, schema=schema, parameter_schema=param_schema, scans=scans,
                                 uses_catalog=s.uses_catalog, plan_ms=(time.perf_counter() - t0) * 1e3,
                                 bound=param_schema if params is not None else None,
                                 pushdown=s.pushdown, aggregates=s.aggregates)
        return prepared, spent

    def _from_statistics(self, prepared: PreparedQuery) -> pa.Table | None:
        """count/min/max over a whole dataset, answered from the provider's zone statistics."""
        summary = getattr(self.provider, "summary", None)
        if prepared.aggregates is None or summary is None:
            return None
        name, items = prepared.aggregates
        schema = self.provider.dataset_schema(name)
        columns = []
        for _, col in items:
            if col is None:
                continue
            found = col if col in schema.names else next((n for n in schema.names if n.lower() == col.lower()), None)
            if found is None:
                return None
            columns.append(found)
        stats = summary(name, list(dict.fromkeys(columns)))
        if stats is None:
            return None
        return answer(items, stats["rows"], stats["columns"], schema, prepared.schema)

    def _start(self, query_id: str, prepared: PreparedQuery, params: pa.Table | None, budget: float) -> QueryRun:
        sources: list[tuple[str, pa.Schema, str]] = []
        tables: dict[str, pa.Table] = {}
        for key, cols in prepared.scans.items():
            schema = without_reasons(self._schema(key))
            if cols is not None:  # None: the plan never scans it; expose every column lazily
                schema = pa.schema([schema.field(c) for c in cols])
            pushed = prepared.pushdown
            sources.append((key, schema, pushed[1] if pushed is not None and pushed[0] == key else ""))
            tables[key] = schema.empty_table()
        if prepared.uses_catalog:
            tables.update(self._catalog(empty=False))
        header = self._job("run", prepared.query, [k for k, _, _ in sources], prepared.uses_catalog)
        header["schema"] = prepared.schema.serialize().to_pybytes().hex()
        job = self.sandbox.start(header, tables, params, self._left(budget))
        run = QueryRun(job, self.provider, sources, prepared.schema, query_id=query_id, timeout_s=self.timeout_s,
                       memory=self.memory_limit, max_batch_bytes=self.max_batch_bytes, on_close=self._forget)
        with self._lock:
            if query_id in self._running:
                run.close()
                raise InvalidRequest(f"query id {query_id!r} is already running")
            self._running[query_id] = run
        return run

    def _forget(self, run: QueryRun) -> None:
        with self._lock:
            if self._running.get(run.query_id) is run:
                del self._running[run.query_id]
