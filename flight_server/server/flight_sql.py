"""The Flight SQL door: each Flight SQL command, ticket or action to the room that answers it.

The coordinator's port (``flight.py``) hands this door every call whose bytes are a
``google.protobuf.Any`` with a type URL under ``type.googleapis.com/arrow.flight.protocol.sql.``
(:meth:`FlightSqlFrontEnd.command`, which parses it once per call), plus the Flight SQL and
session/cancel actions (:meth:`FlightSqlFrontEnd.claims_action`). The rooms:

    sql_statements.py   statement tickets (a query's plan, signed) and the prepared-statement store
    sql_results.py      a query's DoGet stream, the client watcher, the running queries (cancel)
    sql_metadata.py     catalogs, schemas, tables, table types, keys, XDBC type info
    sql_info.py         CommandGetSqlInfo
    sql_session.py      session options, CancelFlightInfo / CancelQuery bodies
    service/sql_tables  the caller's datasets as tables, read through the service's read path
    sql/                the engine: screening, planning and executing in sandboxed workers

What is served, refused by design, or unimplemented is one table in the README ("SQL").
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from arrowroot.protos import flight_sql as fsql

from arrowroot.flight_server.core.errors import (ArrowrootError, InvalidRequest, PermissionDenied, ResourceExhausted,
                                                TimedOut, Unimplemented)
from arrowroot.flight_server.execute.executor import StreamStats
from arrowroot.flight_server.service.counters import Counters
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.service.sql_tables import ServerTableProvider
from arrowroot.flight_server.service.workspace import WorkspaceService
from arrowroot.flight_server.sql.engine import PreparedQuery, SqlEngine, address_space
from arrowroot.flight_server.sql.errors import QueryCancelled
from arrowroot.flight_server.sql.sandbox import Sandbox
from arrowroot.flight_server.sql.screen import ONLY_SELECT
from arrowroot.flight_server.server import peers
from arrowroot.flight_server.server.auth import caller_of, record_of
from arrowroot.flight_server.server.errors import fail
from arrowroot.flight_server.server.sql_info import SQL_INFO_SCHEMA, sql_info_table
from arrowroot.flight_server.server.sql_metadata import (CATALOG_NAME, CATALOGS_SCHEMA, DB_SCHEMAS_SCHEMA,
                                                        TABLE_TYPES_SCHEMA, TABLES_SCHEMA, TABLES_SCHEMA_WITH_SCHEMA,
                                                        like_to_regex, metadata_schema, metadata_table)
from arrowroot.flight_server.server.sql_results import ResultStream, RunningQueries
from arrowroot.flight_server.server.sql_session import (CANCEL_ACTIONS, SESSION_ACTIONS, cancel_result,
                                                       cancel_tickets, close_session, get_session_options,
                                                       set_session_options)
from arrowroot.flight_server.server.sql_statements import (HANDLE_TTL_S, MAX_HANDLES_PER_PRINCIPAL, PreparedStore,
                                                          StatementTickets)
from arrowroot.flight_server.server.transport import batches_of, completed, ipc_options

log = logging.getLogger("arrowroot.sql")

MAX_PARAMETER_BYTES = 16 << 20
MAX_PARAMETER_ROWS = 100_000
PLAN_CACHE_MAX_QUERY = 64 << 10  # longer queries are planned every time rather than cached
MAX_RESULT_BATCH_BYTES = (8 << 20) - (64 << 10)  # strictly below 8 MiB, with room for IPC framing
PLAN_CACHE_SIZE = 512
SQL_THREADS = 4                  # DuckDB threads in each SQL worker

ACTIONS = {
    "CreatePreparedStatement": "Flight SQL: prepare a query (body: Any<ActionCreatePreparedStatementRequest>).",
    "ClosePreparedStatement": "Flight SQL: close a prepared statement "
                              "(body: Any<ActionClosePreparedStatementRequest>).",
    **CANCEL_ACTIONS,
    **SESSION_ACTIONS,
}
#: Flight SQL actions recognised and refused: there are no transactions (every query reads one
#: snapshot) and no Substrait.
UNSERVED_ACTIONS = {
    "BeginTransaction": "transactions", "EndTransaction": "transactions", "BeginSavepoint": "transactions",
    "EndSavepoint": "transactions", "CreatePreparedSubstraitPlan": "Substrait plans",
}
NOT_UPDATES = ("arrowroot runs queries only; {what} runs a statement without a result set. Execute the query "
               "instead (cursor.execute(query, parameters): a parameter batch of N rows answers the N results, "
               "concatenated); tables are uploaded with bulk ingest (adbc_ingest) into home/<user>/")


@dataclass(frozen=True)
class Command:
    """A Flight SQL message taken from a call's bytes once: the message, or why it is not usable."""

    name: str
    msg: Message | None = None
    error: BaseException | None = None

    def message(self) -> Message:
        if self.error is not None:
            raise self.error
        assert self.msg is not None
        return self.msg


def _command(data: bytes) -> Command | None:
    """Parse bytes as a Flight SQL ``Any`` (None: not Flight SQL — the plain arrowroot protocol)."""
    if not data:
        return None
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, TypeError, ValueError):
        return None
    if not wrapper.type_url.startswith(fsql.TYPE_URL_PREFIX):
        return None
    name = wrapper.type_url[len(fsql.TYPE_URL_PREFIX):]
    cls = fsql.MESSAGES.get(name)
    if cls is None:
        return Command(name, error=Unimplemented(
            f"unknown Flight SQL message type {fsql.PACKAGE}.{name[:100]}; this server serves "
            f"{', '.join(sorted(fsql.SUPPORTED))}"))
    msg = cls()
    try:
        msg.ParseFromString(wrapper.value)
    except (DecodeError, RuntimeError) as exc:
        return Command(name, error=InvalidRequest(f"malformed Flight SQL {name}: {exc}"))
    return Command(name, msg)


class FlightSqlFrontEnd:
    """Flight SQL over one service: queries through the SQL engine, metadata from the catalog."""

    def __init__(self, service: Service, workspace: WorkspaceService, *, timeout_s: float | None = None,
                 handle_ttl_s: float = HANDLE_TTL_S, max_handles: int = MAX_HANDLES_PER_PRINCIPAL) -> None:
        self.service = service
        self.workspace = workspace
        self.settings = settings = service.ctx.settings
        self._ipc = ipc_options(settings.compression)[""]
        self.timeout_s = float(timeout_s if timeout_s is not None else settings.sql_timeout)
        self.handle_ttl_s = handle_ttl_s
        self.max_batch_bytes = min(MAX_RESULT_BATCH_BYTES, max(1 << 16, settings.batch_bytes))
        self.prepared = PreparedStore(handle_ttl_s, max_handles)
        self.tickets = StatementTickets(service.ctx.keys.key("sql-statements"), handle_ttl_s)
        self.running = RunningQueries(handle_ttl_s)
        #: this server's SQL worker processes (closed with the server: nobody waits on a slot then)
        self.pool = Sandbox(address_space(settings.sql_memory_limit), settings.sql_workers,
                            database=(settings.sql_memory_limit, SQL_THREADS))
        self._plans: OrderedDict[tuple, PreparedQuery] = OrderedDict()
        self._plans_lock = threading.Lock()
        #: (dataset, columns) of recent scans, newest last: lets tests and operators see what SQL read.
        self.scan_log: deque[tuple[str, tuple[str, ...]]] = deque(maxlen=256)
        #: per dataset: scans SQL queries made, rows and bytes they read (kept apart from the
        #: DoGet counters: one query may scan a dataset several times)
        self.scanned = Counters()

    def close(self) -> None:
        """Stop every query and wake everybody waiting for a SQL worker (server shutdown)."""
        self.pool.close()

    # ------------------------------------------------------------ routing (flight.py)

    @staticmethod
    def command(data: bytes | fl.FlightDescriptor | fl.Ticket | None) -> Command | None:
        """The Flight SQL command of a descriptor, ticket or bytes, parsed once (None: not ours)."""
        if isinstance(data, fl.FlightDescriptor):
            if data.descriptor_type != fl.DescriptorType.CMD:
                return None
            data = data.command
        elif isinstance(data, fl.Ticket):
            data = data.ticket
        return _command(data or b"")

    @classmethod
    def claims(cls, data: bytes | fl.FlightDescriptor | fl.Ticket | None) -> bool:
        """Whether bytes (or a command descriptor / ticket) carry a Flight SQL message."""
        return cls.command(data) is not None

    def claims_action(self, action: fl.Action) -> bool:
        if action.type in ACTIONS or action.type in UNSERVED_ACTIONS:
            return True
        body = action.body.to_pybytes() if action.body is not None else b""
        return self.claims(body)

    def actions(self) -> list[tuple[str, str]]:
        return sorted(ACTIONS.items())

    def active_queries(self) -> list[str]:
        """Ids of the SQL queries executing or streaming now (operators, tests)."""
        return self.running.ids()

    # ------------------------------------------------------------ helpers

    def _guard(self, context: fl.ServerCallContext, method: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise fail(self._map_error(exc), record_of(context)) from None

    @staticmethod
    def _map_error(exc: BaseException) -> BaseException:
        """Builtin exceptions that escape a library → the error tree (the one table maps it)."""
        if isinstance(exc, ArrowrootError):
            return exc
        if isinstance(exc, NotImplementedError):
            return Unimplemented(str(exc))
        if isinstance(exc, PermissionError):
            return PermissionDenied(str(exc))
        if isinstance(exc, TimeoutError):
            return TimedOut(str(exc))
        if isinstance(exc, MemoryError):
            return ResourceExhausted(str(exc) or "out of memory")
        return exc

    @staticmethod
    def _unimplemented(name: str, method: str) -> Unimplemented:
        return Unimplemented(f"Flight SQL {name} via {method}: not served by arrowroot "
                             "(the README's SQL table lists what is)")

    def _caller(self, context: fl.ServerCallContext | None) -> Any:
        return caller_of(context, "flight_sql")

    def _engine(self, provider: ServerTableProvider) -> SqlEngine:
        return SqlEngine(provider, timeout_s=self.timeout_s, max_batch_bytes=self.max_batch_bytes,
                         memory_limit=self.settings.sql_memory_limit, workers=self.settings.sql_workers,
                         threads=SQL_THREADS, pool=self.pool)

    def _provider(self, context: fl.ServerCallContext | None) -> ServerTableProvider:
        return ServerTableProvider(self.service, self.workspace, self._caller(context), self.scan_log,
                                   self._count_scan)

    def _count_scan(self, dataset: str, stats: StreamStats) -> None:
        self.scanned.add(dataset, scans=1, rows=stats.rows, bytes=stats.bytes)

    @property
    def _generation(self) -> int:
        catalog = self.service.ctx.catalog
        assert catalog is not None
        return catalog.generation

    def _plan(self, context: fl.ServerCallContext | None, query: object, parameters: pa.Table | None = None,
              provider: ServerTableProvider | None = None) -> PreparedQuery:
        """Screen and plan (no data read), cached per principal, catalog generation, text and
        parameter types. ``query`` is SQL text, or a prepared query to plan with ``parameters``."""
        if not isinstance(query, (str, PreparedQuery)):
            raise InvalidRequest("query must be a string")
        provider = provider or self._provider(context)
        text = query if isinstance(query, str) else query.query
        types = tuple(str(t) for t in parameters.schema.types) if parameters is not None else None
        key = (provider.caller.principal, self._generation, tuple(sorted(provider.visible)), text,
               isinstance(query, str), types)
        with self._plans_lock:
            hit = self._plans.get(key)
            if hit is not None:
                self._plans.move_to_end(key)
                return hit
        engine = self._engine(provider)
        prepared = engine.prepare(query, parameters) if isinstance(query, str) else engine.plan_again(query, parameters)
        if len(text) <= PLAN_CACHE_MAX_QUERY:
            with self._plans_lock:
                self._plans[key] = prepared
                while len(self._plans) > PLAN_CACHE_SIZE:
                    self._plans.popitem(last=False)
        return prepared

    @staticmethod
    def _no_transaction(msg: Message) -> None:
        if msg.HasField("transaction_id"):
            raise Unimplemented("Flight SQL transactions: arrowroot has none (every query reads one snapshot)")

    # ------------------------------------------------------------ GetFlightInfo / GetSchema

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
                        command: Command | None = None) -> fl.FlightInfo:
        command = command or self.command(descriptor)
        assert command is not None
        info, what = self._guard(context, "get_flight_info", lambda: self._flight_info(context, descriptor, command))
        record_of(context).detail = what[:200]
        return info

    def _flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
                     command: Command) -> tuple[fl.FlightInfo, str]:
        msg, name = command.message(), command.name
        principal = self._caller(context).principal
        if name == "CommandStatementQuery":
            self._no_transaction(msg)
            plan = self._plan(context, msg.query)
            ticket = self.tickets.sign(principal, plan, None, self._generation)
            return self._info(plan.schema, descriptor, ticket), f"{name} {msg.query[:200]!r}"
        if name == "CommandPreparedStatementQuery":
            entry = self.prepared.get(msg.prepared_statement_handle, principal)
            ticket = self.tickets.sign(principal, entry.plan, entry.parameters, self._generation)
            return self._info(entry.plan.schema, descriptor, ticket), f"{name} {entry.query.query[:200]!r}"
        schema = metadata_schema(msg)
        if schema is None:
            raise self._unimplemented(name, "GetFlightInfo")
        # a metadata command's ticket is the command itself; DoGet answers it for its caller
        return fl.FlightInfo(schema, descriptor, [fl.FlightEndpoint(fsql.pack(msg), [])], -1, -1), name

    @staticmethod
    def _info(schema: pa.Schema, descriptor: fl.FlightDescriptor, handle: bytes) -> fl.FlightInfo:
        ticket = fsql.pack(fsql.TicketStatementQuery(statement_handle=handle))
        return fl.FlightInfo(schema, descriptor, [fl.FlightEndpoint(ticket, [])], -1, -1)

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
                   command: Command | None = None) -> fl.SchemaResult:
        command = command or self.command(descriptor)
        assert command is not None

        def run() -> pa.Schema:
            msg, name = command.message(), command.name
            if name == "CommandStatementQuery":
                self._no_transaction(msg)
                return self._plan(context, msg.query).schema
            if name == "CommandPreparedStatementQuery":
                return self.prepared.get(msg.prepared_statement_handle, self._caller(context).principal).plan.schema
            schema = metadata_schema(msg)
            if schema is None:
                raise self._unimplemented(name, "GetSchema")
            return schema

        return fl.SchemaResult(self._guard(context, "get_schema", run))

    # ------------------------------------------------------------ DoGet

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket,
               command: Command | None = None) -> fl.FlightDataStream:
        command = command or self.command(ticket)
        assert command is not None
        msg = self._guard(context, "do_get", command.message)
        if command.name == "TicketStatementQuery":
            return self._guard(context, "do_get", lambda: self._execute(context, msg.statement_handle))

        def answer() -> pa.Table:
            if command.name == "CommandGetSqlInfo":
                return sql_info_table(list(msg.info), self.handle_ttl_s)
            provider = self._provider(context) if command.name == "CommandGetTables" else None
            table = metadata_table(msg, provider)
            if table is None:
                raise self._unimplemented(command.name, "DoGet")
            return table

        return fl.RecordBatchStream(self._guard(context, "do_get", answer))

    def _execute(self, context: fl.ServerCallContext, handle: bytes) -> fl.FlightDataStream:
        provider = self._provider(context)
        statement = self.tickets.open(handle, provider.caller.principal)
        if self.running.was_cancelled(statement.digest):
            raise QueryCancelled("the query was cancelled (CancelFlightInfo); ask for a new FlightInfo")
        plan = statement.plan
        engine = self._engine(provider)
        if statement.generation != self._generation:  # the catalog changed since GetFlightInfo: plan again
            plan = self._plan(context, plan, statement.parameters, provider)
        run = engine.execute(plan, statement.parameters, query_id=uuid.uuid4().hex)
        digest = statement.digest
        self.running.add(digest, run)
        record = record_of(context)
        record.detail = f"query={run.query_id[:12]} scans={list(plan.scans)}"[:200]
        stream = ResultStream(context, run, self._map_error, on_close=lambda s: self.running.remove(digest, s.run))
        return fl.GeneratorStream(run.schema, stream, options=self._ipc)

    # ------------------------------------------------------------ DoPut

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter,
               command: Command | None = None) -> None:
        command = command or self.command(descriptor)
        assert command is not None

        def run() -> None:
            msg, name = command.message(), command.name
            if name == "CommandStatementIngest":  # ADBC bulk ingest → the caller's workspace
                count = self._ingest(context, msg, reader)
                writer.write(pa.py_buffer(fsql.DoPutUpdateResult(record_count=count).SerializeToString()))
                return
            if name == "CommandPreparedStatementQuery":
                self._bind(context, msg, reader, writer)
                return
            if name == "CommandStatementUpdate":
                self._no_transaction(msg)
                self._engine(self._provider(context)).screen(msg.query)  # DDL/DML: refused as on the query path
                raise InvalidRequest(NOT_UPDATES.format(what="CommandStatementUpdate (execute_update)"))
            if name == "CommandPreparedStatementUpdate":
                raise InvalidRequest(NOT_UPDATES.format(what="CommandPreparedStatementUpdate (executemany)"))
            raise self._unimplemented(name, "DoPut")

        self._guard(context, "do_put", run)

    def _bind(self, context: fl.ServerCallContext, msg: Message, reader: fl.MetadataRecordBatchReader,
              writer: fl.FlightMetadataWriter) -> None:
        """Parameters by their Arrow types; the bound query is planned now, so GetFlightInfo
        answers the schema its DoGet streams."""
        provider = self._provider(context)
        entry = self.prepared.get(msg.prepared_statement_handle, provider.caller.principal)
        params = _read_parameters(reader)
        count = entry.query.parameter_count
        if params is not None and params.num_columns != count:
            raise InvalidRequest(f"the prepared query has {count} parameters, the bound batch has "
                                 f"{params.num_columns} columns")
        if params is not None and params.num_rows == 0:
            params = None
        bound = self._plan(context, entry.query, params, provider) if params is not None else None
        self.prepared.bind(entry, params, bound)
        result = fsql.DoPutPreparedStatementResult(prepared_statement_handle=entry.handle)
        writer.write(pa.py_buffer(result.SerializeToString()))

    def _ingest(self, context: fl.ServerCallContext, msg: Message, reader: fl.MetadataRecordBatchReader) -> int:
        if msg.temporary or msg.HasField("transaction_id"):
            raise Unimplemented("Flight SQL ingest: temporary tables and transactions are not supported")
        opts = msg.table_definition_options
        exists = {1: "fail", 2: "append", 3: "replace"}.get(opts.if_exists, "fail")
        create = opts.if_not_exist != 2
        schema = msg.schema if msg.HasField("schema") else None
        peer = context.peer()  # an ingest idle past the timeout has its connection cut
        return self.workspace.ingest(self._caller(context), msg.table, schema, exists, create,
                                     reader.schema, batches_of(reader), complete=lambda: completed(context),
                                     on_expired=lambda: peers.cut(peer))

    # ------------------------------------------------------------ DoAction

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        results = self._guard(context, "do_action", lambda: self._action(context, action.type, body))
        yield from results

    def _action(self, context: fl.ServerCallContext, kind: str, body: bytes) -> list[fl.Result]:
        if kind in UNSERVED_ACTIONS:
            raise Unimplemented(f"Flight SQL action {kind}: arrowroot serves no {UNSERVED_ACTIONS[kind]} "
                                "(every query reads one snapshot)")
        if kind == "GetSessionOptions":
            return [fl.Result(get_session_options(body))]
        if kind == "SetSessionOptions":
            return [fl.Result(set_session_options(body))]
        if kind == "CloseSession":
            return [fl.Result(close_session(body))]
        if kind in CANCEL_ACTIONS:
            return [fl.Result(cancel_result(kind, self._cancel(context, cancel_tickets(kind, body))))]
        command = _command(body)
        name = command.name if command is not None else "?"
        expected = {"CreatePreparedStatement": "ActionCreatePreparedStatementRequest",
                    "ClosePreparedStatement": "ActionClosePreparedStatementRequest"}.get(kind)
        if expected is None:
            raise Unimplemented(f"action {kind[:100]!r} with Flight SQL {name}: not served; "
                                f"Flight SQL actions served: {', '.join(ACTIONS)}")
        if command is None or name != expected:
            raise InvalidRequest(f"action {kind}: the body must be Any<{expected}>, got {name}")
        msg = command.message()
        principal = self._caller(context).principal
        if kind == "CreatePreparedStatement":
            self._no_transaction(msg)
            prepared = self._plan(context, msg.query)
            entry = self.prepared.add(principal, prepared)
            result = fsql.ActionCreatePreparedStatementResult(
                prepared_statement_handle=entry.handle,
                dataset_schema=prepared.schema.serialize().to_pybytes(),
                parameter_schema=prepared.parameter_schema.serialize().to_pybytes(),
            )
            record_of(context).detail = f"prepare {msg.query[:200]!r} ({prepared.plan_ms:.1f} ms)"
            return [fl.Result(fsql.pack(result))]
        self.prepared.close(msg.prepared_statement_handle, principal)  # closing twice is harmless
        return []

    def _cancel(self, context: fl.ServerCallContext, tickets: list[bytes]) -> bool:
        """Stop the queries of these tickets (the caller's own only); whether any ticket was ours."""
        principal = self._caller(context).principal
        ours = False
        for raw in tickets:
            command = _command(raw)
            if command is None or command.name != "TicketStatementQuery" or command.msg is None:
                continue
            statement = self.tickets.open(command.msg.statement_handle, principal)
            self.running.cancel(statement.digest)
            ours = True
        return ours


def _read_parameters(reader: fl.MetadataRecordBatchReader) -> pa.Table | None:
    """The bound parameter rows of a DoPut, bounded in bytes and rows."""
    batches, nbytes, rows = [], 0, 0
    for batch in batches_of(reader):
        nbytes += batch.nbytes
        rows += batch.num_rows
        if nbytes > MAX_PARAMETER_BYTES or rows > MAX_PARAMETER_ROWS:
            raise InvalidRequest(f"parameters: at most {MAX_PARAMETER_ROWS} rows and {MAX_PARAMETER_BYTES} bytes")
        batches.append(batch)
    if not batches:
        return None
    return pa.Table.from_batches(batches, schema=reader.schema)


__all__ = ["FlightSqlFrontEnd", "Command", "ServerTableProvider", "sql_info_table", "like_to_regex",
           "SQL_INFO_SCHEMA", "TABLES_SCHEMA", "TABLES_SCHEMA_WITH_SCHEMA", "CATALOGS_SCHEMA",
           "DB_SCHEMAS_SCHEMA", "TABLE_TYPES_SCHEMA", "CATALOG_NAME", "ONLY_SELECT"]
