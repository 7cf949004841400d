"""Flight SQL on the arrowroot port: SQL over the served datasets, executed by :mod:`.sql`.

The server owns one :class:`FlightSqlFrontEnd`; ``service.py`` hands it every descriptor
command, ticket or action whose bytes are a ``google.protobuf.Any`` with a type URL under
``type.googleapis.com/arrow.flight.protocol.sql.`` (:meth:`FlightSqlFrontEnd.claims`).
Everything else stays the plain arrowroot protocol.

Served: statements (``CommandStatementQuery`` → ``TicketStatementQuery``), prepared
statements (create/close actions, parameters bound by DoPut, answered with
``DoPutPreparedStatementResult``), ``CommandGetSqlInfo``, ``CommandGetCatalogs``,
``CommandGetDbSchemas``, ``CommandGetTables``, ``CommandGetTableTypes``. Any other Flight SQL
command is UNIMPLEMENTED, naming it.

Names: the catalog is DuckDB's ``memory``; every dataset the caller may see is a table of
schema ``main`` named by the dataset name; ``arrowroot.files|datasets|columns`` describe the
visible datasets only. Hidden datasets exist nowhere (``server.visible_datasets(context)``).

Statement tickets are stateless: the SQL, the bound parameters (Arrow IPC), the principal
and an expiry, signed with HMAC-SHA256 under a key that never leaves the server. Prepared
statements are server-side handles (random, bound to the principal) that expire after
``HANDLE_TTL_S`` idle seconds, at most ``MAX_HANDLES_PER_PRINCIPAL`` open per principal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.flight as fl
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from arrowroot.catalog.models import DatasetRecord
from arrowroot.protos import flight_sql as fsql

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import (ArrowrootError, Cancelled, InvalidRequest, NotFound, PermissionDenied,
                                                ResourceExhausted, TimedOut, Unimplemented)
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.execute.executor import StreamStats
from arrowroot.flight_server.plan.planner import dataset_schema
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.counters import Counters
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.service.workspace import WorkspaceService
from arrowroot.flight_server.sql.engine import CATALOG_SCHEMA, PreparedQuery, QueryCancelled, SqlEngine
from arrowroot.flight_server.server.auth import caller_of, record_of
from arrowroot.flight_server.server.errors import fail
from arrowroot.flight_server.server.transport import batches_of, completed, ipc_options

log = logging.getLogger("arrowroot.sql")

CATALOG_NAME = "memory"          # DuckDB's name for the per-query in-memory database
DATASET_SCHEMA = "main"
TABLE_TYPE_DATASET = "TABLE"
TABLE_TYPE_CATALOG = "SYSTEM TABLE"
TABLE_TYPES = (TABLE_TYPE_CATALOG, TABLE_TYPE_DATASET)

HANDLE_TTL_S = 600.0             # prepared statements and statement tickets
MAX_HANDLES_PER_PRINCIPAL = 1024
MAX_PARAMETER_BYTES = 16 << 20
MAX_PARAMETER_ROWS = 100_000
MAX_PREPARED_BYTES = 64 << 20    # per principal: query texts + bound parameters of open statements
PLAN_CACHE_MAX_QUERY = 64 << 10  # longer queries are planned every time rather than cached
MAX_RESULT_BATCH_BYTES = (8 << 20) - (64 << 10)  # strictly below 8 MiB, with room for IPC framing
PLAN_CACHE_SIZE = 512
CANCEL_POLL_S = 0.2
_TICKET_MAGIC = b"ARSQL1"

ACTIONS = {
    "CreatePreparedStatement": "Flight SQL: prepare a query (body: Any<ActionCreatePreparedStatementRequest>).",
    "ClosePreparedStatement": "Flight SQL: close a prepared statement "
                              "(body: Any<ActionClosePreparedStatementRequest>).",
}
#: Flight SQL action types we recognise but do not serve (read-only, no transactions).
_UNSERVED_ACTIONS = frozenset(
    {"BeginTransaction", "EndTransaction", "BeginSavepoint", "EndSavepoint", "CancelQuery",
     "CreatePreparedSubstraitPlan"}
)

# ----------------------------------------------------------------------------- result schemas
# Exactly as in FlightSql.proto: ADBC and JDBC check names, types and nullability.

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_SCHEMA_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
_SQL_INFO_CHILDREN = [
    pa.field("string_value", pa.utf8()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", pa.list_(pa.field("string_data", pa.utf8()))),
    pa.field(
        "int32_to_int32_list_map",
        pa.map_(pa.int32(), pa.list_(pa.field("$data$", pa.int32()))),
    ),
]
SQL_INFO_VALUE_TYPE = pa.dense_union(_SQL_INFO_CHILDREN, type_codes=[0, 1, 2, 3, 4, 5])
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", SQL_INFO_VALUE_TYPE, nullable=False)]
)


def like_to_regex(pattern: str | None) -> re.Pattern[str] | None:
    """A Flight SQL filter pattern (SQL LIKE: ``%`` any run, ``_`` one character) as a regex."""
    if pattern is None:
        return None
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _matches(rx: re.Pattern[str] | None, text: str) -> bool:
    return rx is None or rx.fullmatch(text) is not None


def _any_type_url(data: bytes) -> str | None:
    """The Any type URL of ``data`` when it is a Flight SQL message, else None (cheap, no payload parse)."""
    if not data:
        return None
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, TypeError, ValueError):
        return None
    return wrapper.type_url if wrapper.type_url.startswith(fsql.TYPE_URL_PREFIX) else None


def _schema_bytes(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


# ----------------------------------------------------------------------------- table provider


class ServerTableProvider:
    """The caller's view of the server as SQL tables (``sql.TableProvider``).

    Built on the request thread: the visible datasets are resolved once, so DuckDB's worker
    threads (which call :meth:`scan`) never touch the gRPC call context.
    """

    def __init__(self, service: Service, workspace: WorkspaceService, caller: Caller,
                 scan_log: deque | None = None,
                 on_scan: Callable[[str, StreamStats], None] | None = None) -> None:
        self.service = service
        self.workspace = workspace
        self.caller = caller
        self.on_scan = on_scan
        self.visible: dict[str, DatasetRecord] = {d.name: d for d in service.visible(caller)}
        self.scan_log = scan_log
        self._schemas: dict[str, pa.Schema] = {}
        #: errors raised while reading files: DuckDB wraps them in its own message, the front end
        #: reports the original (FileChanged → UNAVAILABLE, SourceError → INTERNAL, ...).
        self.failures: list[BaseException] = []

    def dataset_names(self) -> list[str]:
        return list(self.visible)

    def _record(self, name: str) -> DatasetRecord:
        rec = self.visible.get(name)
        if rec is None:
            raise NotFound(f"no dataset named {name!r}")
        return rec

    def dataset_schema(self, name: str) -> pa.Schema:
        schema = self._schemas.get(name)
        if schema is None:
            schema = self._schemas[name] = dataset_schema(self._record(name))
        return schema

    def scan(self, name: str, columns: list[str], allow_missing: bool = False) -> pa.RecordBatchReader:
        """Stream ``columns`` of every entry: the planner's tasks in order, one chunk read ahead."""
        self._record(name)
        plan = self.service.plan(self.caller, ReadSpec(dataset=name, columns=tuple(columns),
                                                       allow_missing=allow_missing))
        if self.scan_log is not None:
            self.scan_log.append((name, tuple(plan.columns)))
        service = self.service

        def batches() -> Iterator[pa.RecordBatch]:
            stats = StreamStats()
            try:
                for batch in service.run(plan):
                    stats.rows += batch.num_rows
                    stats.bytes += batch.nbytes
                    yield batch
            except Exception as exc:
                self.failures.append(exc)
                raise
            finally:
                if self.on_scan is not None:
                    self.on_scan(name, stats)

        return pa.RecordBatchReader.from_batches(plan.schema, batches())

    def catalog_tables(self) -> dict[str, pa.Table]:
        """``arrowroot.files|datasets|columns``, restricted to the visible datasets."""
        recs = list(self.visible.values())
        catalog = self.service.ctx.catalog
        assert catalog is not None
        all_visible = len(recs) == len(catalog.datasets())
        used = {p.path for d in recs for p in d.parts}
        files = [f for f in catalog.files().values() if all_visible or f.path in used]
        file_ids = {p.path: p.file_id for d in recs for p in d.parts}
        files_t = pa.table(
            {
                "file_id": pa.array([f.file_id for f in files], pa.int64()),
                "path": pa.array([f.path for f in files], pa.utf8()),
                "format": pa.array([f.format for f in files], pa.utf8()),
                "size": pa.array([f.size for f in files], pa.int64()),
                "mtime": pa.array([f.mtime for f in files], pa.float64()),
                "status": pa.array([f.status for f in files], pa.utf8()),
                "error": pa.array([f.error for f in files], pa.utf8()),
            }
        )
        datasets_t = pa.table(
            {
                "dataset_id": pa.array([d.dataset_id for d in recs], pa.int64()),
                "name": pa.array([d.name for d in recs], pa.utf8()),
                "kind": pa.array([d.kind for d in recs], pa.utf8()),
                "format": pa.array([d.format for d in recs], pa.utf8()),
                "entries": pa.array([d.entries for d in recs], pa.int64()),
                "n_files": pa.array([len(d.parts) for d in recs], pa.int32()),
                "n_columns": pa.array([sum(c.readable for c in d.columns) for d in recs], pa.int32()),
                "first_file_id": pa.array([file_ids.get(d.parts[0].path) if d.parts else None for d in recs],
                                          pa.int64()),
                "attributes": pa.array([json.dumps(d.attributes, default=str) for d in recs], pa.utf8()),
                "origin": pa.array([d.origin for d in recs], pa.utf8()),
            }
        )
        rows: dict[str, list] = {k: [] for k in ("dataset_id", "dataset", "position", "name", "arrow_type",
                                                  "source_type", "shape", "compressed_bytes",
                                                  "uncompressed_bytes", "readable", "reason")}
        for d in recs:
            for i, c in enumerate(d.columns):
                for key, value in (("dataset_id", d.dataset_id), ("dataset", d.name), ("position", i),
                                   ("name", c.name), ("arrow_type", c.arrow_type),
                                   ("source_type", c.source_type), ("shape", list(c.shape)),
                                   ("compressed_bytes", c.compressed_bytes),
                                   ("uncompressed_bytes", c.uncompressed_bytes), ("readable", c.readable),
                                   ("reason", c.reason or None)):
                    rows[key].append(value)
        types = {"dataset_id": pa.int64(), "dataset": pa.utf8(), "position": pa.int32(), "name": pa.utf8(),
                 "arrow_type": pa.utf8(), "source_type": pa.utf8(), "shape": pa.list_(pa.int64()),
                 "compressed_bytes": pa.int64(), "uncompressed_bytes": pa.int64(), "readable": pa.bool_(),
                 "reason": pa.utf8()}
        columns_t = pa.table({k: pa.array(v, types[k]) for k, v in rows.items()})
        return {"files": files_t, "datasets": datasets_t, "columns": columns_t,
                "provenance": self.workspace.provenance_table(set(self.visible))}


# ----------------------------------------------------------------------------- state


@dataclass
class _Prepared:
    handle: bytes
    principal: str
    query: PreparedQuery
    parameters: pa.Table | None = None
    last_used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        return len(self.query.query) + (self.parameters.nbytes if self.parameters is not None else 0)


class _PreparedStore:
    """Open prepared statements: idle TTL, a cap per principal, handles bound to principals."""

    def __init__(self, ttl_s: float = HANDLE_TTL_S, cap: int = MAX_HANDLES_PER_PRINCIPAL) -> None:
        self.ttl_s, self.cap = ttl_s, cap
        self._items: dict[bytes, _Prepared] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        dead = [h for h, p in self._items.items() if now - p.last_used > self.ttl_s]
        for h in dead:
            del self._items[h]

    def add(self, principal: str, query: PreparedQuery) -> _Prepared:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            mine = [p for p in self._items.values() if p.principal == principal]
            if len(mine) >= self.cap:
                raise MemoryError(
                    f"{len(mine)} prepared statements are open (the limit is {self.cap}); close some first"
                )
            self._check_bytes(mine, len(query.query))
            entry = _Prepared(secrets.token_bytes(16), principal, query, last_used=now)
            self._items[entry.handle] = entry
            return entry

    def _check_bytes(self, mine: list[_Prepared], extra: int) -> None:
        held = sum(p.nbytes for p in mine)
        if held + extra > MAX_PREPARED_BYTES:
            raise MemoryError(f"open prepared statements would hold {held + extra} bytes of queries and "
                              f"parameters (the limit is {MAX_PREPARED_BYTES}); close some first")

    def bind(self, entry: _Prepared, parameters: pa.Table | None) -> None:
        """Attach DoPut parameters, within the principal's byte budget."""
        with self._lock:
            mine = [p for p in self._items.values() if p.principal == entry.principal and p is not entry]
            self._check_bytes(mine, len(entry.query.query) + (parameters.nbytes if parameters is not None else 0))
            entry.parameters = parameters

    def get(self, handle: bytes, principal: str) -> _Prepared:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._items.get(bytes(handle))
            if entry is None or entry.principal != principal:
                raise NotFound(
                    "prepared statement handle is unknown or expired (idle for more than "
                    f"{self.ttl_s:g} s); prepare the query again"
                )
            entry.last_used = now
            return entry

    def close(self, handle: bytes, principal: str) -> bool:
        with self._lock:
            entry = self._items.get(bytes(handle))
            if entry is None or entry.principal != principal:
                return False
            del self._items[entry.handle]
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# ----------------------------------------------------------------------------- front end


class FlightSqlFrontEnd:
    """Flight SQL commands of one :class:`ArrowrootServer`, answered from its catalog and files."""

    def __init__(self, service: Service, workspace: WorkspaceService, *, timeout_s: float | None = None,
                 handle_ttl_s: float = HANDLE_TTL_S, max_handles: int = MAX_HANDLES_PER_PRINCIPAL) -> None:
        self.service = service
        self.workspace = workspace
        self.settings = settings = service.ctx.settings
        self._ipc = ipc_options(settings.compression)[""]
        self.timeout_s = float(timeout_s if timeout_s is not None else settings.sql_timeout)
        self.handle_ttl_s = handle_ttl_s
        self.max_batch_bytes = min(MAX_RESULT_BATCH_BYTES, max(1 << 16, settings.batch_bytes))
        self.prepared = _PreparedStore(handle_ttl_s, max_handles)
        self._key = service.ctx.keys.key("sql-statements")  # derived from the deployment's one secret
        self._plans: OrderedDict[tuple, PreparedQuery] = OrderedDict()
        self._plans_lock = threading.Lock()
        #: (dataset, columns) of recent scans, newest last: lets tests and operators see what SQL read.
        self.scan_log: deque[tuple[str, tuple[str, ...]]] = deque(maxlen=256)
        self._active: dict[str, SqlEngine] = {}
        #: per dataset: scans SQL queries made, rows and bytes they read (kept apart from the
        #: DoGet counters: one query may scan a dataset several times)
        self.scanned = Counters()
        self._active_lock = threading.Lock()

    # ------------------------------------------------------------ dispatch helpers

    @staticmethod
    def claims(data: bytes | fl.FlightDescriptor | fl.Ticket | None) -> bool:
        """Whether bytes (or a command descriptor / ticket) carry a Flight SQL message."""
        if isinstance(data, fl.FlightDescriptor):
            if data.descriptor_type != fl.DescriptorType.CMD:
                return False
            data = data.command
        elif isinstance(data, fl.Ticket):
            data = data.ticket
        return _any_type_url(data or b"") is not None

    def claims_action(self, action: fl.Action) -> bool:
        if action.type in ACTIONS or action.type in _UNSERVED_ACTIONS:
            return True
        body = action.body.to_pybytes() if action.body is not None else b""
        return self.claims(body)

    def actions(self) -> list[tuple[str, str]]:
        return sorted(ACTIONS.items())

    def _unpack(self, data: bytes) -> Message:
        try:
            msg = fsql.unpack(bytes(data))
        except ValueError as exc:
            if "unknown Flight SQL message type" in str(exc):
                raise NotImplementedError(f"{exc}; this server serves {', '.join(sorted(fsql.SUPPORTED))}") from None
            raise
        if msg is None:
            raise ValueError("not a Flight SQL message")
        return msg

    def _unimplemented(self, msg: Message, method: str) -> NotImplementedError:
        name = fsql.message_name(msg)
        why = "arrowroot is read-only" if any(w in name for w in ("Update", "Ingest", "Transaction", "Savepoint")) \
            else "not supported by arrowroot"
        return NotImplementedError(f"Flight SQL {name} via {method}: {why}")

    def _guard(self, context: fl.ServerCallContext, method: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise fail(self._map_error(method, exc), record_of(context)) from None

    def _map_error(self, method: str, exc: BaseException) -> BaseException:
        """Engine exceptions → the error tree → the one table (``server/errors.py``)."""
        if isinstance(exc, NotImplementedError) and not isinstance(exc, Unimplemented):
            exc = Unimplemented(str(exc))
        elif isinstance(exc, PermissionError):
            exc = PermissionDenied(str(exc))
        elif isinstance(exc, TimeoutError):
            exc = TimedOut(str(exc))
        elif isinstance(exc, QueryCancelled):
            exc = Cancelled(str(exc))
        elif isinstance(exc, MemoryError):
            exc = ResourceExhausted(str(exc) or "out of memory")
        elif isinstance(exc, ValueError) and not isinstance(exc, ArrowrootError):
            exc = InvalidRequest(str(exc))  # the engine's and this module's validation
        return exc

    def _principal(self, context: fl.ServerCallContext | None) -> str:
        return caller_of(context, "flight_sql").principal

    def _engine(self, provider: ServerTableProvider) -> SqlEngine:
        return SqlEngine(provider, timeout_s=self.timeout_s, max_batch_bytes=self.max_batch_bytes,
                         memory_limit=self.settings.sql_memory_limit)

    def _provider(self, context: fl.ServerCallContext | None) -> ServerTableProvider:
        return ServerTableProvider(self.service, self.workspace, caller_of(context, "flight_sql"), self.scan_log,
                                   self._count_scan)

    def _count_scan(self, dataset: str, stats: StreamStats) -> None:
        self.scanned.add(dataset, scans=1, rows=stats.rows, bytes=stats.bytes)

    def _prepare(self, context: fl.ServerCallContext | None, query: str,
                 provider: ServerTableProvider | None = None) -> PreparedQuery:
        """Screen and plan (no data read), cached per principal, catalog generation and text."""
        if not isinstance(query, str):
            raise ValueError("query must be a string")
        provider = provider or self._provider(context)
        catalog = self.service.ctx.catalog
        assert catalog is not None
        key = (self._principal(context), catalog.generation, tuple(sorted(provider.visible)), query)
        with self._plans_lock:
            hit = self._plans.get(key)
            if hit is not None:
                self._plans.move_to_end(key)
                return hit
        prepared = self._engine(provider).prepare(query)
        if len(query) > PLAN_CACHE_MAX_QUERY:
            return prepared
        with self._plans_lock:
            self._plans[key] = prepared
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return prepared

    # ------------------------------------------------------------ statement tickets

    def _ticket(self, context: fl.ServerCallContext | None, query: str, params: pa.Table | None) -> bytes:
        body = {
            "q": query,
            "p": self._principal(context),
            "x": time.time() + self.handle_ttl_s,
            "a": base64.b64encode(_ipc_bytes(params)).decode() if params is not None else None,
        }
        payload = json.dumps(body, separators=(",", ":")).encode()
        mac = hmac.new(self._key, _TICKET_MAGIC + payload, hashlib.sha256).digest()
        handle = _TICKET_MAGIC + mac + payload
        return fsql.pack(fsql.TicketStatementQuery(statement_handle=handle))

    def _open_ticket(self, context: fl.ServerCallContext, handle: bytes) -> tuple[str, pa.Table | None]:
        handle = bytes(handle)
        n = len(_TICKET_MAGIC)
        if len(handle) < n + 32 or not handle.startswith(_TICKET_MAGIC):
            raise ValueError("TicketStatementQuery: not a ticket of this server; use the one from GetFlightInfo")
        mac, payload = handle[n:n + 32], handle[n + 32:]
        if not hmac.compare_digest(mac, hmac.new(self._key, _TICKET_MAGIC + payload, hashlib.sha256).digest()):
            raise ValueError("TicketStatementQuery: signature does not match; tickets are only valid, "
                             "unaltered, on the server that issued them")
        body = json.loads(payload)
        if body["p"] != self._principal(context):
            raise NotFound("ticket: issued to another user; ask for your own FlightInfo")
        if time.time() > body["x"]:
            raise NotFound(f"ticket: expired (valid for {self.handle_ttl_s:g} s); ask for a new FlightInfo")
        params = _ipc_table(base64.b64decode(body["a"])) if body.get("a") else None
        return body["q"], params

    # ------------------------------------------------------------ Flight methods

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        info, what = self._guard(context, "get_flight_info", lambda: self._flight_info(context, descriptor))
        record_of(context).detail = what[:200]
        return info

    def _flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor
                     ) -> tuple[fl.FlightInfo, str]:
        msg = self._unpack(descriptor.command)
        name = fsql.message_name(msg)
        if name == "CommandStatementQuery":
            self._no_transaction(msg)
            prepared = self._prepare(context, msg.query)
            ticket = self._ticket(context, msg.query, None)
            return self._info(prepared.schema, descriptor, ticket), f"{name} {msg.query[:200]!r}"
        if name == "CommandPreparedStatementQuery":
            entry = self.prepared.get(msg.prepared_statement_handle, self._principal(context))
            ticket = self._ticket(context, entry.query.query, entry.parameters)
            return self._info(entry.query.schema, descriptor, ticket), f"{name} {entry.query.query[:200]!r}"
        schema = self._metadata_schema(msg)
        if schema is None:
            raise self._unimplemented(msg, "GetFlightInfo")
        # For metadata commands the ticket is the command itself; DoGet answers it for its caller.
        return self._info(schema, descriptor, fsql.pack(msg)), name

    @staticmethod
    def _info(schema: pa.Schema, descriptor: fl.FlightDescriptor, ticket: bytes) -> fl.FlightInfo:
        return fl.FlightInfo(schema, descriptor, [fl.FlightEndpoint(ticket, [])], -1, -1)

    @staticmethod
    def _no_transaction(msg: Message) -> None:
        if msg.HasField("transaction_id"):
            raise NotImplementedError("Flight SQL transactions: arrowroot is read-only and has none")

    @staticmethod
    def _metadata_schema(msg: Message) -> pa.Schema | None:
        name = fsql.message_name(msg)
        if name == "CommandGetTables":
            return TABLES_SCHEMA_WITH_SCHEMA if msg.include_schema else TABLES_SCHEMA
        return {
            "CommandGetSqlInfo": SQL_INFO_SCHEMA,
            "CommandGetCatalogs": CATALOGS_SCHEMA,
            "CommandGetDbSchemas": DB_SCHEMAS_SCHEMA,
            "CommandGetTableTypes": TABLE_TYPES_SCHEMA,
        }.get(name)

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.SchemaResult:
        def run() -> pa.Schema:
            msg = self._unpack(descriptor.command)
            name = fsql.message_name(msg)
            if name == "CommandStatementQuery":
                self._no_transaction(msg)
                return self._prepare(context, msg.query).schema
            if name == "CommandPreparedStatementQuery":
                return self.prepared.get(msg.prepared_statement_handle, self._principal(context)).query.schema
            schema = self._metadata_schema(msg)
            if schema is None:
                raise self._unimplemented(msg, "GetSchema")
            return schema

        return fl.SchemaResult(self._guard(context, "get_schema", run))

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        msg = self._guard(context, "do_get", lambda: self._unpack(ticket.ticket))
        name = fsql.message_name(msg)
        if name == "TicketStatementQuery":
            return self._guard(context, "do_get", lambda: self._execute(context, msg.statement_handle))
        table = self._guard(context, "do_get", lambda: self._metadata(context, msg))
        return fl.RecordBatchStream(table)

    def _metadata(self, context: fl.ServerCallContext, msg: Message) -> pa.Table:
        name = fsql.message_name(msg)
        if name == "CommandGetSqlInfo":
            return sql_info_table(list(msg.info))
        if name == "CommandGetCatalogs":
            return pa.Table.from_pylist([{"catalog_name": CATALOG_NAME}], schema=CATALOGS_SCHEMA)
        if name == "CommandGetTableTypes":
            return pa.Table.from_pylist([{"table_type": t} for t in TABLE_TYPES], schema=TABLE_TYPES_SCHEMA)
        if name == "CommandGetDbSchemas":
            if msg.HasField("catalog") and msg.catalog != CATALOG_NAME:
                return DB_SCHEMAS_SCHEMA.empty_table()
            rx = like_to_regex(msg.db_schema_filter_pattern if msg.HasField("db_schema_filter_pattern") else None)
            rows = [{"catalog_name": CATALOG_NAME, "db_schema_name": s}
                    for s in sorted((CATALOG_SCHEMA, DATASET_SCHEMA)) if _matches(rx, s)]
            return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)
        if name == "CommandGetTables":
            return self._tables(context, msg)
        raise self._unimplemented(msg, "DoGet")

    def _tables(self, context: fl.ServerCallContext, msg: Message) -> pa.Table:
        schema = TABLES_SCHEMA_WITH_SCHEMA if msg.include_schema else TABLES_SCHEMA
        if msg.HasField("catalog") and msg.catalog != CATALOG_NAME:
            return schema.empty_table()
        schema_rx = like_to_regex(msg.db_schema_filter_pattern if msg.HasField("db_schema_filter_pattern") else None)
        table_rx = like_to_regex(msg.table_name_filter_pattern if msg.HasField("table_name_filter_pattern") else None)
        types = set(msg.table_types) or None
        provider = self._provider(context)
        candidates: list[tuple[str, str, str, Any]] = []
        if _matches(schema_rx, CATALOG_SCHEMA) and (types is None or TABLE_TYPE_CATALOG in types):
            cat = provider.catalog_tables() if msg.include_schema else {}
            for t in ("files", "datasets", "columns"):
                candidates.append((CATALOG_SCHEMA, t, TABLE_TYPE_CATALOG, lambda t=t: cat[t].schema))
        if _matches(schema_rx, DATASET_SCHEMA) and (types is None or TABLE_TYPE_DATASET in types):
            for n in provider.dataset_names():
                candidates.append((DATASET_SCHEMA, n, TABLE_TYPE_DATASET, lambda n=n: provider.dataset_schema(n)))
        rows = []
        for db_schema, table, ttype, get_schema in sorted(candidates, key=lambda c: (c[0], c[1])):
            if not _matches(table_rx, table):
                continue
            row = {"catalog_name": CATALOG_NAME, "db_schema_name": db_schema, "table_name": table,
                   "table_type": ttype}
            if msg.include_schema:
                row["table_schema"] = _schema_bytes(get_schema())
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=schema)

    def _execute(self, context: fl.ServerCallContext, handle: bytes) -> fl.FlightDataStream:
        query, params = self._open_ticket(context, handle)
        provider = self._provider(context)
        prepared = self._prepare(context, query, provider)
        engine = self._engine(provider)
        query_id = uuid.uuid4().hex
        # DuckDB computes blocking operators (aggregates, sorts) inside execute(): the watcher
        # must already run, so a client that goes away cancels the query, not just the stream.
        watcher = _CancelWatcher(context, engine, query_id)
        with self._active_lock:
            self._active[query_id] = engine
        try:
            reader = engine.execute(prepared, params, query_id=query_id)
        except Exception as exc:
            watcher.stop()
            self._forget(query_id)
            raise (provider.failures[0] if provider.failures else exc) from None
        record = record_of(context)
        record.detail = f"query={query_id[:12]} scans={prepared.scans}"
        results = _ResultStream(self, context, engine, query_id, reader, watcher, provider)
        return fl.GeneratorStream(reader.schema, results, options=self._ipc)

    def _forget(self, query_id: str) -> None:
        with self._active_lock:
            self._active.pop(query_id, None)

    def active_queries(self) -> list[str]:
        """Ids of the SQL queries executing or streaming now (operators, tests)."""
        with self._active_lock:
            return list(self._active)

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        def run() -> None:
            msg = self._unpack(descriptor.command)
            if fsql.message_name(msg) == "CommandStatementIngest":  # ADBC bulk ingest → workspace (uploads.py)
                count = self._ingest(context, msg, reader)
                writer.write(pa.py_buffer(fsql.DoPutUpdateResult(record_count=count).SerializeToString()))
                return
            if fsql.message_name(msg) != "CommandPreparedStatementQuery":
                raise self._unimplemented(msg, "DoPut")
            entry = self.prepared.get(msg.prepared_statement_handle, self._principal(context))
            params = _read_parameters(reader)
            if params is not None and params.num_columns != entry.query.parameter_count:
                raise ValueError(f"the prepared query has {entry.query.parameter_count} parameters, "
                                 f"the bound batch has {params.num_columns} columns")
            self.prepared.bind(entry, params)
            result = fsql.DoPutPreparedStatementResult(prepared_statement_handle=entry.handle)
            writer.write(pa.py_buffer(result.SerializeToString()))

        self._guard(context, "do_put", run)

    def _ingest(self, context: fl.ServerCallContext, msg: Message, reader: fl.MetadataRecordBatchReader) -> int:
        if msg.temporary or msg.HasField("transaction_id"):
            raise NotImplementedError("Flight SQL ingest: temporary tables and transactions are not supported")
        opts = msg.table_definition_options
        exists = {1: "fail", 2: "append", 3: "replace"}.get(opts.if_exists, "fail")
        create = opts.if_not_exist != 2
        schema = msg.schema if msg.HasField("schema") else None
        return self.workspace.ingest(caller_of(context, "flight_sql"), msg.table, schema, exists, create,
                                     reader.schema, batches_of(reader), complete=lambda: completed(context))

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        results = self._guard(context, "do_action", lambda: self._action(context, action.type, body))
        yield from results

    def _action(self, context: fl.ServerCallContext, kind: str, body: bytes) -> list[fl.Result]:
        if kind in _UNSERVED_ACTIONS:
            raise NotImplementedError(f"Flight SQL action {kind}: not supported (arrowroot is read-only)")
        msg = self._unpack(body)
        name = fsql.message_name(msg)
        expected = {"CreatePreparedStatement": "ActionCreatePreparedStatementRequest",
                    "ClosePreparedStatement": "ActionClosePreparedStatementRequest"}.get(kind)
        if expected is None:
            raise NotImplementedError(f"action {kind!r} with Flight SQL {name}: not supported; "
                                      f"Flight SQL actions served: {', '.join(ACTIONS)}")
        if name != expected:
            raise ValueError(f"action {kind}: the body must be {expected}, got {name}")
        principal = self._principal(context)
        if kind == "CreatePreparedStatement":
            self._no_transaction(msg)
            prepared = self._prepare(context, msg.query)
            entry = self.prepared.add(principal, prepared)
            result = fsql.ActionCreatePreparedStatementResult(
                prepared_statement_handle=entry.handle,
                dataset_schema=_schema_bytes(prepared.schema),
                parameter_schema=_schema_bytes(prepared.parameter_schema),
            )
            record_of(context).detail = f"prepare {msg.query[:200]!r} ({prepared.plan_ms:.1f} ms)"
            return [fl.Result(fsql.pack(result))]
        self.prepared.close(msg.prepared_statement_handle, principal)  # closing twice is harmless
        return []


# ----------------------------------------------------------------------------- helpers


class _CancelWatcher:
    """Polls ``context.is_cancelled()`` while a query runs and interrupts it when the client is gone.

    Stopped (and joined) before the call ends, so the context is never touched afterwards.
    """

    def __init__(self, context: fl.ServerCallContext, engine: SqlEngine, query_id: str) -> None:
        self.context, self.engine, self.query_id = context, engine, query_id
        self.cancelled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sql-watch-{query_id[:8]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(CANCEL_POLL_S):
            if self.cancelled or self.context.is_cancelled():
                self.cancelled = True
                if self.engine.cancel(self.query_id):
                    return

    def stop(self) -> None:
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class _ResultStream:
    """The batches of one query for ``GeneratorStream``; cleans up when exhausted, failed or dropped.

    A class rather than a generator: a generator pyarrow never started would never run its
    ``finally`` (client gone before the first batch), this one stops in ``__del__`` too.
    """

    def __init__(self, front: FlightSqlFrontEnd, context: fl.ServerCallContext, engine: SqlEngine,
                 query_id: str, reader: pa.RecordBatchReader, watcher: _CancelWatcher,
                 provider: ServerTableProvider) -> None:
        self.front, self.context, self.engine, self.query_id = front, context, engine, query_id
        self.provider = provider
        self.reader, self.watcher = reader, watcher
        self.rows, self.t0, self.closed = 0, time.perf_counter(), False

    def __iter__(self) -> _ResultStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self.closed:
            raise StopIteration
        try:
            if self.context.is_cancelled():
                self.watcher.cancelled = True
                raise QueryCancelled("client went away; query cancelled")
            batch = self.reader.read_next_batch()
        except StopIteration:
            self.close("ok")
            raise
        except Exception as exc:
            self.close(type(exc).__name__)
            if self.provider.failures and not isinstance(exc, (TimeoutError, QueryCancelled)):
                exc = self.provider.failures[0]
            raise fail(self.front._map_error("do_get", exc), record_of(self.context)) from None
        self.rows += batch.num_rows
        return batch

    def close(self, status: str = "dropped") -> None:
        if self.closed:
            return
        self.closed = True
        self.watcher.stop()
        self.engine.cancel(self.query_id)  # a no-op unless the stream stopped early
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001 - closing a reader whose query was interrupted
            pass
        self.front._forget(self.query_id)
        record = record_of(self.context)
        record.rows = self.rows
        if status not in ("ok", "dropped"):
            log.debug("sql %s ended: %s", self.query_id[:12], status)

    def __del__(self) -> None:
        self.close()


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _ipc_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _read_parameters(reader: fl.MetadataRecordBatchReader) -> pa.Table | None:
    """The bound parameter rows of a DoPut, bounded in bytes and rows."""
    batches, nbytes, rows = [], 0, 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        if chunk.data is None:
            continue
        nbytes += chunk.data.nbytes
        rows += chunk.data.num_rows
        if nbytes > MAX_PARAMETER_BYTES or rows > MAX_PARAMETER_ROWS:
            raise ValueError(f"parameters: at most {MAX_PARAMETER_ROWS} rows and {MAX_PARAMETER_BYTES} bytes")
        batches.append(chunk.data)
    if not batches:
        return None
    return pa.Table.from_batches(batches, schema=reader.schema)


_KEYWORDS: list[str] | None = None


def _keywords() -> list[str]:
    global _KEYWORDS
    if _KEYWORDS is None:
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        try:
            _KEYWORDS = sorted(r[0].upper() for r in con.execute(
                "SELECT keyword_name FROM duckdb_keywords()").fetchall())
        finally:
            con.close()
    return _KEYWORDS


def sql_info_values() -> dict[int, tuple[int, Any]]:
    """info id → (union type code, value): server identity, read-only, and cheap dialect facts."""
    S = fsql.SqlInfo
    case = fsql.SqlSupportedCaseSensitivity
    return {
        S.FLIGHT_SQL_SERVER_NAME: (0, "arrowroot"),
        S.FLIGHT_SQL_SERVER_VERSION: (0, __version__),
        S.FLIGHT_SQL_SERVER_ARROW_VERSION: (0, pa.__version__),
        S.FLIGHT_SQL_SERVER_READ_ONLY: (1, True),
        S.FLIGHT_SQL_SERVER_SQL: (1, True),
        S.FLIGHT_SQL_SERVER_SUBSTRAIT: (1, False),
        S.FLIGHT_SQL_SERVER_TRANSACTION: (3, fsql.SqlSupportedTransaction.SQL_SUPPORTED_TRANSACTION_NONE),
        S.FLIGHT_SQL_SERVER_CANCEL: (1, False),
        S.FLIGHT_SQL_SERVER_BULK_INGESTION: (1, False),
        S.SQL_DDL_CATALOG: (1, False),
        S.SQL_DDL_SCHEMA: (1, False),
        S.SQL_DDL_TABLE: (1, False),
        S.SQL_IDENTIFIER_CASE: (3, case.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        S.SQL_IDENTIFIER_QUOTE_CHAR: (0, '"'),
        S.SQL_QUOTED_IDENTIFIER_CASE: (3, case.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        S.SQL_ALL_TABLES_ARE_SELECTABLE: (1, True),
        S.SQL_NULL_ORDERING: (3, fsql.SqlNullOrdering.SQL_NULLS_SORTED_AT_END),
        S.SQL_KEYWORDS: (4, _keywords()),
        S.SQL_SUPPORTS_COLUMN_ALIASING: (1, True),
        S.SQL_NULL_PLUS_NULL_IS_NULL: (1, True),
        S.SQL_SCHEMA_TERM: (0, "schema"),
        S.SQL_CATALOG_TERM: (0, "catalog"),
        S.SQL_TRANSACTIONS_SUPPORTED: (1, False),
        S.SQL_MAX_STATEMENT_LENGTH: (2, 1_000_000),
        S.SQL_NAMED_PARAMETERS_SUPPORTED: (1, False),
    }


def sql_info_table(wanted: list[int] | None = None) -> pa.Table:
    """The GetSqlInfo result (dense union values) for ``wanted`` ids (empty = all we know)."""
    values = sql_info_values()
    ids = [i for i in (wanted or sorted(values)) if i in values]
    children: list[list[Any]] = [[] for _ in _SQL_INFO_CHILDREN]
    type_ids, offsets = [], []
    for i in ids:
        code, value = values[i]
        type_ids.append(code)
        offsets.append(len(children[code]))
        children[code].append(int(value) if code in (2, 3) else value)
    arrays = [pa.array(vals, f.type) for vals, f in zip(children, _SQL_INFO_CHILDREN)]
    union = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()), pa.array(offsets, pa.int32()), arrays,
        [f.name for f in _SQL_INFO_CHILDREN], [0, 1, 2, 3, 4, 5],
    )
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), union], schema=SQL_INFO_SCHEMA)


__all__ = ["FlightSqlFrontEnd", "ServerTableProvider", "sql_info_table", "like_to_regex",
           "SQL_INFO_SCHEMA", "TABLES_SCHEMA", "TABLES_SCHEMA_WITH_SCHEMA", "CATALOGS_SCHEMA",
           "DB_SCHEMAS_SCHEMA", "TABLE_TYPES_SCHEMA", "CATALOG_NAME"]
