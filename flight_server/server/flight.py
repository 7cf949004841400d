"""The Flight front end: a thin FlightServerBase over one shared context.

GetFlightInfo decodes the request, looks the dataset up in the catalog and plans it once into
self-contained tasks, each signed into its endpoint's ticket (``tickets.py``). DoGet verifies a
ticket and hands its task to the executor — no planning, no catalog query. Errors go through the
one table in ``errors.py`` (shared with the Flight SQL front end, ``flight_sql.py``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.catalog.models import DatasetRecord
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import FileChanged, InvalidRequest, NotFound, PermissionDenied, quote
from arrowroot.flight_server.core.request import ReadSpec, dataset_name
from arrowroot.flight_server.lang import glob
from arrowroot.flight_server.lang.limits import JsonLimitError, load_json
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.core.task import ReadTask
from arrowroot.flight_server.core.timeranges import SERIES_CRITERIA, check_criteria, matches_series
from arrowroot.flight_server.datasets.select import list_files
from arrowroot.flight_server.execute.cache import chunk_cache
from arrowroot.flight_server.execute.executor import Execution, StreamStats, stream_task
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.index.indexer import Indexer
from arrowroot.flight_server.plan.planner import Limits, Plan, plan_read
from arrowroot.flight_server.server.auth import Access, tls_kwargs
from arrowroot.flight_server.server.codec import decode_command, decode_path
from arrowroot.flight_server.server.counters import Counters
from arrowroot.flight_server.server.errors import to_flight
from arrowroot.flight_server.server.flight_sql import FlightSqlFrontEnd
from arrowroot.flight_server.server.membership import REGISTER_ACTION, Membership, NodeRefused, locations_for
from arrowroot.flight_server.server.streams import StreamSlots
from arrowroot.flight_server.server.tickets import TicketSigner
from arrowroot.flight_server.sources import supports_slices
from arrowroot.flight_server.server.uploads import Uploads
from arrowroot.flight_server.workspace.store import MOUNT

log = logging.getLogger("arrowroot.requests")

CRITERIA_KEYS = {"name", "format", "kind", "has_column", "attributes", *SERIES_CRITERIA}

ACTIONS = {
    "health": "Liveness and catalog summary as JSON: {status, version, datasets, indexing}.",
    "rescan": 'Re-index the served directory or one sub-path: body {"path": "sub/dir", "wait": true}; '
              "returns counts of added/updated/removed files and errors.",
    "files": 'Files of a dataset with their parsed file keys (like pygama\'s FileDB): body {"dataset": '
             '"name", "where": "run >= 10 and type == \'cal\'", "channels": [...]}; answers one Arrow IPC '
             "stream (path, key columns, entries, size[, channels]).",
    "stats": "Catalog statistics (files, datasets, bytes, errors) and per-dataset counts of "
             "requests, rows and bytes served since start, the column-chunk cache's counters and the "
             "data nodes, as JSON.",
    "nodes": "The data nodes this coordinator knows: id, location, alive, static, seconds since last seen.",
    REGISTER_ACTION: "A data node's signed registration or heartbeat (sent by `arrowroot node --join`).",
}


class ArrowrootServer(fl.FlightServerBase):
    """Serves the datasets of one directory over Arrow Flight."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None, **flight_kwargs: Any):
        self.settings = settings
        self.catalog = catalog or Catalog(settings.catalog_path)
        self.streams = StreamSlots(settings.max_streams, settings.max_streams_per_principal,
                                   settings.stream_idle_timeout)
        self.indexer = Indexer(settings.root, self.catalog, show_internal=settings.show_internal,
                               links_outside_root=settings.links_outside_root,
                               zone_index_bytes=int(settings.zone_index_mb * (1 << 20)))
        self.catalog.zones.enabled = settings.zone_maps
        self.readers = ReaderCache(settings.root, chunks=chunk_cache(settings))
        key = settings.ticket_key()
        self.tickets = TicketSigner(key, settings.ticket_ttl)
        #: data nodes (None: no shared key, so no node could verify this server's tickets)
        self.membership: Membership | None = None
        if key is not None:
            self.membership = Membership(key, ttl=settings.node_ttl, interval=max(0.2, settings.node_ttl / 3))
            self.membership.add_static(settings.node_list)
            if settings.node_list:
                self.membership.start_polling()
        elif settings.node_list:
            raise ValueError("nodes: data nodes need the coordinator's ticket key; give both --key-file PATH "
                             "(or ARROWROOT_TICKET_KEY)")
        self.limits = Limits(settings.endpoint_bytes, settings.chunk_bytes, settings.batch_bytes, settings.batch_rows)
        #: DoGet counts planning here; it must stay 0 (tests check that DoGet never plans)
        self.plans_made = 0
        self.served = Counters()  # per dataset: requests, rows, bytes, cut scans (the stats action)
        self._ipc_options = pa.ipc.IpcWriteOptions(compression=settings.compression)
        #: per-request codecs (ReadRequest.compression); "" = the server's default above
        self._ipc_by_codec = {"": self._ipc_options, "none": pa.ipc.IpcWriteOptions(),
                              "lz4": pa.ipc.IpcWriteOptions(compression="lz4"),
                              "zstd": pa.ipc.IpcWriteOptions(compression="zstd")}
        self.sql = FlightSqlFrontEnd(self)  # Flight SQL on the same port: sql_service.py
        self.access = Access(self.catalog, settings)  # who may read what: auth.py, the one place
        self.uploads = Uploads(self)  # workspaces: DoPut, skims, lineage (uploads.py)
        self.readers.mount(MOUNT, self.uploads.workspace.dir)
        flight_kwargs = {**tls_kwargs(settings), **self.access.flight_kwargs(flight_kwargs)}
        super().__init__(settings.location, **flight_kwargs)

    # ------------------------------------------------------------ helpers

    def _who(self, context: fl.ServerCallContext) -> str:
        ident = context.peer_identity()
        if ident:
            return ident.decode() if isinstance(ident, bytes) else str(ident)
        return context.peer()

    def _count(self, dataset: str, stats: StreamStats, cut: bool) -> None:
        self.served.add(dataset, requests=1, rows=stats.rows, bytes=stats.bytes, cut_requests=int(cut),
                        entries_scanned=stats.entries_scanned if cut else 0,
                        entries_passed=stats.entries_passed if cut else 0)

    def _boundary(self, method: str, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise self._map_error(method, what, exc) from None

    def _map_error(self, method: str, what: str, exc: BaseException) -> BaseException:
        if isinstance(exc, FileChanged):
            self.indexer.start(exc.path)
        return to_flight(exc, method, what)

    def _spec(self, descriptor: fl.FlightDescriptor) -> ReadSpec:
        if descriptor.descriptor_type == fl.DescriptorType.PATH:
            return decode_path(descriptor.path)
        return decode_command(descriptor.command)

    def plan(self, spec: ReadSpec, context: fl.ServerCallContext | None = None) -> Plan:
        """The one place a read is planned: catalog lookup (visible datasets only) → tasks."""
        rec = self.dataset(spec.dataset, context)
        self.plans_made += 1
        return plan_read(spec, rec, self.limits, self.principal(context), self.tickets.expiry(),
                         slices_supported=supports_slices(rec.format))

    def dataset(self, name: str, context: fl.ServerCallContext | None = None) -> DatasetRecord:
        """The dataset record a caller may see (NotFound otherwise; it says so when the file
        exists but failed to index or holds no datasets)."""
        try:
            rec = self.access.dataset(name, context)
        except NotFound:
            why = self._why_missing(name, context)
            if why is None:
                raise
            raise NotFound(f"no dataset named {quote(name)}: {why}") from None
        self.uploads.check(rec)  # a skim whose parent changed says so
        return rec

    def _why_missing(self, name: str, context: fl.ServerCallContext | None) -> str | None:
        try:
            path = dataset_name(name).partition(":")[0]
        except InvalidRequest:
            return None
        rec = self.catalog.files().get(path)
        if rec is None or not self.access.could_read(name, context):
            return None
        if rec.status == "error":
            return f"the file {path} could not be indexed: {rec.error}"
        if not any(p.path == path for d in self.catalog.datasets() for p in d.parts):
            return f"the file {path} holds no dataset arrowroot serves"
        return None

    def visible_datasets(self, context: fl.ServerCallContext | None = None) -> list[DatasetRecord]:
        return self.access.visible_datasets(context)

    def _flight_info(self, plan: Plan, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        tickets = self.tickets.sign(plan.tasks)
        placement = self.membership.placement() if self.membership is not None else None
        endpoints = [fl.FlightEndpoint(ticket, locations_for(task, placement))
                     for task, ticket in zip(plan.tasks, tickets)]
        meta = json.dumps(plan.notes).encode() if plan.notes else b""
        return fl.FlightInfo(plan.schema, descriptor, endpoints, plan.total_records, plan.total_bytes,
                             app_metadata=meta)

    # ------------------------------------------------------------ Flight methods

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[fl.FlightInfo]:
        t0 = time.perf_counter()
        found = self._boundary("list_flights", "", lambda: self._search(criteria, context))
        for rec in found:
            schema = pa.ipc.read_schema(pa.py_buffer(rec.schema))
            nbytes = sum(c.uncompressed_bytes or 0 for c in rec.columns if c.readable)
            yield fl.FlightInfo(schema, fl.FlightDescriptor.for_path(rec.name), [], rec.entries, nbytes)
        log.info("%s list_flights %s datasets=%d %.3fs", self._who(context), criteria[:200].decode(errors="replace"),
                 len(found), time.perf_counter() - t0)

    def _search(self, criteria: bytes, context: fl.ServerCallContext) -> list[DatasetRecord]:
        visible = {d.dataset_id for d in self.visible_datasets(context)}
        if not criteria or not criteria.strip():
            return [d for d in self.catalog.datasets() if d.dataset_id in visible]
        try:
            query = load_json(criteria, "criteria")
        except JsonLimitError as exc:
            raise InvalidRequest(f"{exc}; e.g. {{\"name\": \"cms/*\"}}") from None
        if not isinstance(query, dict):
            raise InvalidRequest("criteria: a JSON object expected")
        unknown = set(query) - CRITERIA_KEYS
        if unknown:
            raise InvalidRequest(f"criteria: unknown keys {sorted(unknown)}; known: {sorted(CRITERIA_KEYS)}")
        attrs = query.get("attributes")
        if attrs is not None and not isinstance(attrs, dict):
            raise InvalidRequest("criteria.attributes: a JSON object of attribute values expected")
        for key in ("name", "format", "kind", "has_column"):
            if key in query and not isinstance(query[key], str):
                raise InvalidRequest(f"criteria.{key}: a string expected")
        series = {k: query[k] for k in SERIES_CRITERIA if k in query}
        if series:
            try:
                check_criteria(series)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
        name = glob.compile(query["name"]).match if query.get("name") else None  # linear, bounded
        found = self.catalog.search(name=name, fmt=query.get("format"), kind=query.get("kind"),
                                    has_column=query.get("has_column"), attributes=attrs)
        return [d for d in found if d.dataset_id in visible
                and (not series or matches_series(d.attributes.get("timeseries"), series))]

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        if self.sql.claims(descriptor):
            return self.sql.get_flight_info(context, descriptor)
        t0 = time.perf_counter()

        def run() -> fl.FlightInfo:
            spec = self._spec(descriptor)
            plan = self.plan(spec, context)
            return plan, self._flight_info(plan, descriptor)

        plan, info = self._boundary("get_flight_info", "", run)
        log.info("%s get_flight_info %s rows=%d endpoints=%d %.4fs", self._who(context), plan.dataset.name,
                 plan.total_records, len(plan.tasks), time.perf_counter() - t0)
        return info

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.SchemaResult:
        if self.sql.claims(descriptor):
            return self.sql.get_schema(context, descriptor)
        plan = self._boundary("get_schema", "", lambda: self.plan(self._spec(descriptor), context))
        log.info("%s get_schema %s", self._who(context), plan.dataset.name)
        return fl.SchemaResult(plan.schema)

    def principal(self, context: fl.ServerCallContext | None) -> str:
        return self.access.principal(context)

    def open_ticket(self, ticket: bytes, context: fl.ServerCallContext | None) -> ReadTask:
        """Verify a ticket and check it is the caller's and its files are unchanged (no catalog)."""
        task = self.tickets.open(ticket)
        if task.principal != self.principal(context):
            raise NotFound("ticket: issued to another user; ask for your own FlightInfo")
        for part in task.parts:
            if not part.fill:  # filled gaps of time reads read no file
                self.readers.check(part)
        return task

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        if self.sql.claims(ticket):
            return self.sql.do_get(context, ticket)

        def prepare() -> tuple[ReadTask, Execution]:
            task = self.open_ticket(ticket.ticket, context)
            return task, Execution(task)

        task, ex = self._boundary("do_get", "", prepare)
        options = self._ipc_by_codec[task.compression]  # tickets.open admits only these codecs
        return fl.GeneratorStream(ex.schema, self._stream(context, task, ex), options=options)

    def _stream(self, context: fl.ServerCallContext, task: ReadTask, ex: Execution) -> Iterator[pa.RecordBatch]:
        t0 = time.perf_counter()
        stats = StreamStats()
        what = f"{task.dataset}[{task.entry_start}:{task.entry_stop}]"
        status = "ok"
        slot = None
        batches = None
        try:
            slot = self.streams.acquire(self.principal(context))  # taken when sending starts
            stopped = slot.cancelled
            batches = stream_task(task, self.readers, stats, ex,
                                  cancelled=lambda: context.is_cancelled() or stopped())
            while True:
                slot.pulling()
                try:
                    item = next(batches)
                except StopIteration:
                    break
                slot.waiting()
                yield item
        except GeneratorExit:
            status = "cancelled"
            raise
        except Exception as exc:
            status = "cancelled" if context.is_cancelled() else "error"
            raise self._map_error("do_get", what, exc) from None
        finally:
            if batches is not None:
                batches.close()
            if slot is not None:
                slot.release()
            secs = time.perf_counter() - t0
            self._count(task.dataset, stats, ex.cut is not None)
            cut = f" where={task.where!r} scanned={stats.entries_scanned}" if ex.cut is not None else ""
            log.info("%s do_get %s cols=%d rows=%d bytes=%d %.3fs %s%s", self._who(context), what,
                     len(task.columns), stats.rows, stats.bytes, secs, status, cut)

    # ------------------------------------------------------------ actions

    def list_actions(self, context: fl.ServerCallContext) -> list[tuple[str, str]]:
        return sorted(ACTIONS.items()) + self.uploads.actions() + self.sql.actions()

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        if self.sql.claims(descriptor):
            return self.sql.do_put(context, descriptor, reader, writer)
        t0 = time.perf_counter()
        self._boundary("do_put", "", lambda: self.uploads.do_put(context, descriptor, reader, writer))
        log.info("%s do_put %.3fs", self._who(context), time.perf_counter() - t0)

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        if self.sql.claims_action(action):
            yield from self.sql.do_action(context, action)
            return
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
        t0 = time.perf_counter()
        result = self._boundary("do_action", kind, lambda: self._action(kind, body, context))
        log.info("%s do_action %s %.3fs", self._who(context), kind, time.perf_counter() - t0)
        if isinstance(result, pa.Table):  # typed answers (files) travel as an Arrow IPC stream
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, result.schema) as w:
                w.write_table(result)
            yield fl.Result(sink.getvalue())
            return
        yield fl.Result(json.dumps(result).encode())

    def _action(self, kind: str, body: bytes, context: fl.ServerCallContext) -> dict:
        args = {}
        if body.strip():
            try:
                args = load_json(body, f"action {kind}: body")
            except JsonLimitError as exc:
                raise InvalidRequest(str(exc)) from None
            if not isinstance(args, dict):
                raise InvalidRequest(f"action {kind}: body must be a JSON object")
        if self.uploads.claims_action(kind):
            return self.uploads.action(kind, args, context)
        if kind == "health":
            return {"status": "ok", "version": __version__, "datasets": len(self.visible_datasets(context)),
                    "indexing": self.indexer.running}
        if kind == "rescan":
            if self.access.enabled and not self.access.is_admin(context):
                raise PermissionDenied("rescan: needs the admin permission (an operator grants it with "
                                       "`arrowroot grant DIR '*' --to user:NAME --permission admin`)")
            path = args.get("path")
            if path is not None and not isinstance(path, str):
                raise InvalidRequest("rescan.path: a string expected")
            if args.get("wait", True):
                return self.indexer.run(path).as_dict()
            self.indexer.start(path)
            return {"started": True}
        if kind == "files":
            name, where, channels = args.get("dataset"), args.get("where"), args.get("channels") or []
            if not isinstance(name, str) or not name:
                raise InvalidRequest("files.dataset: a dataset name is required")
            if where is not None and not isinstance(where, str):
                raise InvalidRequest("files.where: a file-key filter string expected")
            if not isinstance(channels, list):
                raise InvalidRequest("files.channels: a list of channel ids expected")
            return list_files(self.dataset(name, context), where, [str(c) for c in channels])
        if kind == "stats":
            served = self.served.snapshot()
            datasets = self.visible_datasets(context)
            visible = {d.name for d in datasets}
            if self.access.enabled:
                # only what this caller may see: totals of hidden data are not theirs to know
                files = {p.path: p.size for d in datasets for p in d.parts}
                out = {"files": len(files), "bytes": sum(files.values()), "datasets": len(datasets),
                       "datasets_by_format": dict(Counter(d.format for d in datasets))}
            else:
                out = self.catalog.stats()
            out["served"] = {k: v for k, v in served.items() if k in visible}
            out["indexing"] = self.indexer.running
            # files that failed to index (or hold no datasets), with the reason; only those a grant
            # of the caller covers, so the list reveals nothing they could not read anyway
            out["file_errors"] = [{"path": p, "error": e} for p, e in self.catalog.file_errors()
                                  if self.access.could_read(p, context)]
            out["cache"] = self.readers.chunks.stats()
            if self.membership is not None:
                out["nodes"] = self.membership.describe()
            return out
        if kind == "nodes":
            return {"nodes": self.membership.describe() if self.membership is not None else []}
        if kind == REGISTER_ACTION:
            if self.membership is None:
                raise PermissionDenied("node.register: this server has no shared ticket key, so no node can "
                                       "serve its tickets; start it with --key-file PATH (or ARROWROOT_TICKET_KEY)")
            try:
                return self.membership.register(body)
            except NodeRefused as exc:
                raise PermissionDenied(str(exc)) from None
        raise NotFound(f"no action {kind!r}; available: {', '.join(sorted(ACTIONS))}")

    # ------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        if self.membership is not None:
            self.membership.stop()
        super().shutdown()
        self.readers.close()
