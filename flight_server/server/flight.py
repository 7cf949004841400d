"""The Flight port of a coordinator: the composition root of a serving process.

:class:`ArrowrootServer` builds the :class:`~arrowroot.flight_server.service.context.ServerContext`
and the service layer once, and routes each Flight call to one of three sibling doors that share
them — Flight SQL (``flight_sql.py``: calls whose bytes are a Flight SQL ``Any``), the workspace
API (``workspace_api.py``: DoPut and the workspace actions) and the datasets door
(``datasets_door.py``: list, plan, read, catalog actions). No door calls another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow.flight as fl

from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.errors import Unauthenticated, Unimplemented
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.service.context import ServerContext
from arrowroot.flight_server.service.membership import REGISTER_ACTION
from arrowroot.flight_server.service.service import ACTIONS, Service
from arrowroot.flight_server.service.workspace import WorkspaceService
from arrowroot.flight_server.server.auth import flight_kwargs, is_node_call, record_of, tls_kwargs
from arrowroot.flight_server.server.datasets_door import DatasetsDoor
from arrowroot.flight_server.server.errors import fail
from arrowroot.flight_server.server.flight_sql import FlightSqlFrontEnd
from arrowroot.flight_server.server.node import flight_health_probe
from arrowroot.flight_server.server.ops import Ops
from arrowroot.flight_server.server.workspace_api import WorkspaceApi

class ArrowrootServer(fl.FlightServerBase):
    """Serves the datasets of one directory over Arrow Flight (and Flight SQL, and the workspace API)."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None, ctx: ServerContext | None = None,
                 **flight_args: Any):
        self.ctx = ctx or ServerContext.coordinator(settings, catalog, probe=flight_health_probe)
        self.settings = self.ctx.settings
        self.service = Service(self.ctx)
        self.datasets_door = DatasetsDoor(self.service)
        self.workspace = WorkspaceService(self.service)
        self.workspace_api = WorkspaceApi(self.workspace)
        self.sql = FlightSqlFrontEnd(self.service, self.workspace)
        self.ops = Ops(self, self.ctx)  # metrics, gRPC health, graceful stop (ops.py)
        kwargs = {**tls_kwargs(self.settings), **flight_kwargs("flight", self.ctx.auth, flight_args,
                                                               self.ops.sink, self.ops.draining)}
        super().__init__(self.settings.location, **kwargs)
        self.ops.metrics.watch_sql(lambda: len(self.sql.active_queries()))
        self.ops.drain.before.append(self.service.follows.stop)  # follow streams never end by themselves
        self.ops.started()  # the catalog is open and the port answers: SERVING

    # the context's parts, as operators and tests name them
    @property
    def catalog(self) -> Catalog:
        assert self.ctx.catalog is not None
        return self.ctx.catalog

    @property
    def indexer(self) -> Any:
        return self.ctx.indexer

    @property
    def access(self) -> Any:
        return self.ctx.access

    @property
    def readers(self) -> Any:
        return self.ctx.readers

    @property
    def tickets(self) -> Any:
        return self.ctx.tickets

    @property
    def streams(self) -> Any:
        return self.ctx.streams

    @property
    def membership(self) -> Any:
        return self.ctx.membership

    @property
    def plans_made(self) -> int:
        return self.service.plans_made

    # ------------------------------------------------------------ routing

    def _door(self, context: fl.ServerCallContext, door: str) -> None:
        record_of(context).door = door

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[fl.FlightInfo]:
        return self.datasets_door.list_flights(context, criteria)

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        command = self.sql.command(descriptor)  # parsed once, handed to the door
        if command is not None:
            self._door(context, "flight_sql")
            return self.sql.get_flight_info(context, descriptor, command)
        return self.datasets_door.get_flight_info(context, descriptor)

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.SchemaResult:
        command = self.sql.command(descriptor)  # parsed once, handed to the door
        if command is not None:
            self._door(context, "flight_sql")
            return self.sql.get_schema(context, descriptor, command)
        return self.datasets_door.get_schema(context, descriptor)

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        command = self.sql.command(ticket)  # parsed once, handed to the door
        if command is not None:
            self._door(context, "flight_sql")
            return self.sql.do_get(context, ticket, command)
        return self.datasets_door.do_get(context, ticket)

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        command = self.sql.command(descriptor)
        if command is not None:
            self._door(context, "flight_sql")
            return self.sql.do_put(context, descriptor, reader, writer, command)
        self._door(context, "workspace")
        return self.workspace_api.do_put(context, descriptor, reader, writer)

    def list_actions(self, context: fl.ServerCallContext) -> list[tuple[str, str]]:
        return self.datasets_door.actions() + self.workspace_api.actions() + self.sql.actions()

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
        if is_node_call(context) and kind != REGISTER_ACTION:
            raise fail(Unauthenticated(f"{kind[:100]!r}: a data node's key signs only its registration; "
                                       "call with a user's credentials"), record_of(context))
        if self.sql.claims_action(action):
            self._door(context, "flight_sql")
            return self.sql.do_action(context, action)
        if self.workspace_api.claims_action(kind):
            self._door(context, "workspace")
            return self.workspace_api.do_action(context, kind, body)
        if kind not in ACTIONS:
            known = ", ".join(sorted(a for a, _ in self.list_actions(context)))
            raise fail(Unimplemented(f"no action {kind[:100]!r} on this server; served: {known}"),
                       record_of(context))
        return self.datasets_door.do_action(context, kind, body)

    # ------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        if self.ctx.membership is not None:
            self.ctx.membership.stop()
        self.service.follows.stop()
        self.sql.close()  # running SQL stops and nobody waits for a SQL worker: shutdown never hangs on one
        super().shutdown()
        self.ctx.close()
        self.ops.close()

    def reload(self) -> None:
        """SIGHUP: rescan the directory and arrowroot.toml, re-read identities; streams go on."""
        self.access.reload()
        self.indexer.start()  # after a run in progress, which may have walked the directory already


__all__ = ["ArrowrootServer"]
