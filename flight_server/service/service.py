"""The service layer: what a caller may see and read, asked the same way by every door.

Methods take a :class:`~.caller.Caller` (never a gRPC context or an HTTP request) and raise the
errors of ``core/errors.py``; each door maps those through the one table (``errors.py``).

    visible / dataset / schema / search        catalog lookups under the caller's grants
    plan / endpoints                            a read planned once into signed tickets
    open / stream / run                         the one read path (``reads.py``)
    action                                      health, rescan, files, stats, nodes, node.register
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import (InvalidRequest, NotFound, PermissionDenied, Unimplemented,
                                                quote)
from arrowroot.flight_server.core.request import ReadSpec, dataset_name
from arrowroot.flight_server.core.timeranges import SERIES_CRITERIA, check_criteria, matches_series
from arrowroot.flight_server.datasets.select import list_files
from arrowroot.flight_server.lang import glob
from arrowroot.flight_server.lang.limits import JsonLimitError, load_json
from arrowroot.flight_server.plan.planner import Plan, dataset_schema, plan_read
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.context import ServerContext
from arrowroot.flight_server.service.follow import Follows
from arrowroot.flight_server.service.membership import REGISTER_ACTION, NodeRefused, locations_for
from arrowroot.flight_server.service.reads import Item, OpenRead, Reads
from arrowroot.flight_server.sources import supports_slices
from arrowroot.flight_server.workspace.store import OVERLAY_FORMAT, ParentChanged

log = logging.getLogger("arrowroot")

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


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a FlightInfo: its signed ticket and where to redeem it ([] = here)."""

    ticket: bytes
    locations: list[str]


class Service:
    """Catalog lookups, planning, the read path and actions over one context."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        on_changed = ctx.indexer.start if ctx.indexer is not None else None
        self.reads = Reads(ctx.tickets, ctx.readers, ctx.streams, ctx.served,
                           bind_principal=ctx.role == "coordinator", on_changed=on_changed)
        #: reads planned since start (the stats action's "plans"); a DoGet never plans, so this
        #: counts GetFlightInfo/GetSchema, HTTP reads, SQL scans and skims
        self.plans_made = 0
        self.follows = Follows(self)  # follow streams (follow.py)

    # ------------------------------------------------------------ catalog

    def _catalog_only(self) -> None:
        if self.ctx.catalog is None:
            raise Unimplemented("this is an arrowroot data node: it serves the tickets of its coordinator's "
                                "FlightInfos; ask the coordinator")

    def visible(self, caller: Caller) -> list[DatasetRecord]:
        """The datasets the caller may read."""
        self._catalog_only()
        assert self.ctx.access is not None
        return self.ctx.access.visible_datasets(caller)

    def dataset(self, caller: Caller, name: str) -> DatasetRecord:
        """The record a caller may see (NotFound otherwise; it says so when the file exists but
        failed to index or holds no datasets). A skim whose parent changed says so."""
        self._catalog_only()
        access = self.ctx.access
        assert access is not None
        try:
            rec = access.dataset(name, caller)
        except NotFound:
            why = self._why_missing(name, caller)
            if why is None:
                raise
            raise NotFound(f"no dataset named {quote(name)}: {why}") from None
        if rec.format == OVERLAY_FORMAT and self.ctx.workspace is not None:
            try:
                self.ctx.workspace.check_parent(rec.name)
            except ParentChanged as exc:
                raise InvalidRequest(str(exc)) from None
        return rec

    def _why_missing(self, name: str, caller: Caller) -> str | None:
        catalog, access = self.ctx.catalog, self.ctx.access
        assert catalog is not None and access is not None
        try:
            path = dataset_name(name).partition(":")[0]
        except InvalidRequest:
            return None
        rec = catalog.files().get(path)
        if rec is None or not access.could_read(name, caller):
            return None
        if rec.status == "error":
            return f"the file {path} could not be indexed: {rec.error}"
        if not any(p.path == path for d in catalog.datasets() for p in d.parts):
            return f"the file {path} holds no dataset arrowroot serves"
        return None

    @staticmethod
    def schema(rec: DatasetRecord) -> pa.Schema:
        """A dataset's Arrow schema (decoded once per record)."""
        return dataset_schema(rec)

    def search(self, caller: Caller, query: dict[str, Any] | bytes | None) -> list[DatasetRecord]:
        """The visible datasets matching list_flights criteria (a JSON object, or its bytes)."""
        visible = self.visible(caller)
        if isinstance(query, (bytes, bytearray)):
            if not query.strip():
                return visible
            try:
                query = load_json(bytes(query), "criteria")
            except JsonLimitError as exc:
                raise InvalidRequest(f"{exc}; e.g. {{\"name\": \"cms/*\"}}") from None
        if query is None:
            return visible
        if not isinstance(query, dict):
            raise InvalidRequest("criteria: a JSON object expected")
        if not query:
            return visible
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
        catalog = self.ctx.catalog
        assert catalog is not None
        ids = {d.dataset_id for d in visible}
        found = catalog.search(name=name, fmt=query.get("format"), kind=query.get("kind"),
                               has_column=query.get("has_column"), attributes=attrs)
        return [d for d in found if d.dataset_id in ids
                and (not series or matches_series(d.attributes.get("timeseries"), series))]

    # ------------------------------------------------------------ reads

    def plan(self, caller: Caller, spec: ReadSpec) -> Plan:
        """The one place a read is planned: catalog lookup (visible datasets only) → tasks
        bound to the caller, expiring, carrying the caller's request id."""
        rec = self.dataset(caller, spec.dataset)
        self.plans_made += 1
        return plan_read(spec, rec, self.ctx.limits, caller.principal, self.ctx.tickets.expiry(),
                         slices_supported=supports_slices(rec.format), request_id=caller.request_id)

    def endpoints(self, plan: Plan) -> list[Endpoint]:
        """Signed tickets of a plan's tasks, each with its data-node locations."""
        tickets = self.ctx.tickets.sign(plan.tasks)
        membership = self.ctx.membership
        placement = membership.placement() if membership is not None else None
        return [Endpoint(t, locations_for(task, placement)) for task, t in zip(plan.tasks, tickets)]

    def open(self, caller: Caller, ticket: bytes) -> OpenRead:
        """A ticket verified for this caller: ready to stream."""
        return self.reads.open(ticket, caller)

    def stream(self, read: OpenRead, record: CallRecord | None = None,
               cancelled: Callable[[], bool] | None = None,
               on_expired: Callable[[], None] | None = None) -> Iterator[Item]:
        return self.reads.stream(read, record, cancelled or (lambda: False), on_expired)

    def run(self, plan: Plan, record: CallRecord | None = None,
            cancelled: Callable[[], bool] | None = None,
            on_expired: Callable[[], None] | None = None, read_ahead: bool = True) -> Iterator[pa.RecordBatch]:
        """Every non-empty batch of a plan, run here (HTTP, SQL scans, skims)."""
        if record is not None:
            record.dataset = plan.dataset.name
        return self.reads.run(list(plan.tasks), record, cancelled or (lambda: False), on_expired, read_ahead)

    # ------------------------------------------------------------ actions

    def action(self, caller: Caller, kind: str, args: dict[str, Any], body: bytes = b"") -> Any:
        """Answer one catalog action: a JSON-able value, or a pyarrow Table (``files``)."""
        ctx = self.ctx
        if kind == "health":
            self._catalog_only()
            assert ctx.indexer is not None
            return {"status": "ok", "version": __version__, "datasets": len(self.visible(caller)),
                    "indexing": ctx.indexer.running}
        if kind == "rescan":
            self._catalog_only()
            assert ctx.access is not None and ctx.indexer is not None
            if not ctx.access.may_administer(caller):
                raise PermissionDenied("rescan: needs the admin permission (an operator grants it with "
                                       "`arrowroot grant DIR '*' --to user:NAME --permission admin`)")
            path = args.get("path")
            if path is not None and not isinstance(path, str):
                raise InvalidRequest("rescan.path: a string expected")
            if args.get("wait", True):
                return ctx.indexer.run(path).as_dict()
            ctx.indexer.start(path)
            return {"started": True}
        if kind == "files":
            name, where, channels = args.get("dataset"), args.get("where"), args.get("channels") or []
            if not isinstance(name, str) or not name:
                raise InvalidRequest("files.dataset: a dataset name is required")
            if where is not None and not isinstance(where, str):
                raise InvalidRequest("files.where: a file-key filter string expected")
            if not isinstance(channels, list):
                raise InvalidRequest("files.channels: a list of channel ids expected")
            return list_files(self.dataset(caller, name), where, [str(c) for c in channels])
        if kind == "stats":
            return self._stats(caller)
        if kind == "nodes":
            return {"nodes": ctx.membership.describe() if ctx.membership is not None else []}
        if kind == REGISTER_ACTION:
            if ctx.membership is None:
                raise PermissionDenied("node.register: this server has no shared ticket key, so no node can "
                                       "serve its tickets; start it with --key-file PATH (or ARROWROOT_TICKET_KEY)")
            try:
                return ctx.membership.register(body)
            except NodeRefused as exc:
                raise PermissionDenied(str(exc)) from None
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
        raise NotFound(f"no action {kind!r}; available: {', '.join(sorted(ACTIONS))}")

    def _stats(self, caller: Caller) -> dict[str, Any]:
        ctx = self.ctx
        served = ctx.served.snapshot()
        if ctx.catalog is None:  # a data node: what it served, its cache
            return {"served": served, "cache": ctx.readers.chunks.stats(), "memory": memory(ctx)}
        assert ctx.access is not None and ctx.indexer is not None
        datasets = self.visible(caller)
        visible = {d.name for d in datasets}
        if ctx.access.enabled:
            # only what this caller may see: totals of hidden data are not theirs to know
            files = {p.path: p.size for d in datasets for p in d.parts}
            out: dict[str, Any] = {"files": len(files), "bytes": sum(files.values()), "datasets": len(datasets),
                                   "datasets_by_format": dict(Counter(d.format for d in datasets))}
        else:
            out = ctx.catalog.stats()
        out["served"] = {k: v for k, v in served.items() if k in visible}
        out["indexing"] = ctx.indexer.running
        # files that failed to index (or hold no datasets), with the reason; only those a grant
        # of the caller covers, so the list reveals nothing they could not read anyway
        out["file_errors"] = [{"path": p, "error": e} for p, e in ctx.catalog.file_errors()
                              if ctx.access.could_read(p, caller)]
        out["cache"] = ctx.readers.chunks.stats()
        out["plans"] = self.plans_made
        out["memory"] = memory(ctx)
        if ctx.membership is not None:
            out["nodes"] = ctx.membership.describe()
        return out


def memory(ctx: ServerContext) -> dict[str, Any]:
    """Where this process's memory is: resident, Arrow's allocator, the chunk cache, open streams."""
    return {"rss_bytes": psutil.Process().memory_info().rss, "arrow_allocated_bytes": pa.total_allocated_bytes(),
            "arrow_allocator": pa.default_memory_pool().backend_name, "cache_bytes": ctx.readers.chunks.bytes,
            "open_streams": ctx.streams.open_count()}


def parse_action_body(kind: str, body: bytes) -> dict[str, Any]:
    """An action's JSON body (bounded), as a dict; empty body = {}."""
    if not body.strip():
        return {}
    try:
        args = load_json(body, f"action {kind}: body")
    except JsonLimitError as exc:
        raise InvalidRequest(str(exc)) from None
    if not isinstance(args, dict):
        raise InvalidRequest(f"action {kind}: body must be a JSON object")
    return args


def encode_result(result: Any) -> bytes:
    """An action's answer as bytes: Arrow IPC for tables, JSON for everything else."""
    if isinstance(result, pa.Table):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, result.schema) as w:
            w.write_table(result)
        return sink.getvalue().to_pybytes()
    return json.dumps(result).encode()


__all__ = ["Service", "Endpoint", "ACTIONS", "CRITERIA_KEYS", "parse_action_body", "encode_result"]
