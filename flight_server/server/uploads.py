"""The Flight front end of workspaces: DoPut uploads, Flight SQL bulk ingest and the
``skim`` / ``lineage`` / ``delete`` / ``rename`` / ``workspace`` actions.

Thin on purpose: names, files, quotas and the catalog rows are ``flight_server/workspace``'s
business; this module decodes requests, finds out who is calling (the owner of what they
write), streams batches in and maps the answers to Flight.

Statuses: a name that is taken answers INVALID_ARGUMENT with a message starting
"already exists:" (pyarrow's Flight server cannot raise ALREADY_EXISTS: a Python
exception maps to INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, the Flight error classes or
UNKNOWN, and a name clash is something the client fixes, not an outage). Writing outside
your home namespace is PERMISSION_DENIED; over quota is INVALID_ARGUMENT ("quota: ...").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.catalog.models import DatasetRecord
from arrowroot.protos import arrowroot_pb2 as pb

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.plan.levels import level_selection, skim_meta
from arrowroot.flight_server.server.codec import parse_command
from arrowroot.flight_server.workspace import names
from arrowroot.flight_server.workspace.store import (ENTRY, OVERLAY_FORMAT, Limits, ParentChanged, Upload,
                                                     Workspace, provenance_dict, version_of)

if TYPE_CHECKING:
    from arrowroot.flight_server.server.flight import ArrowrootServer

log = logging.getLogger("arrowroot.uploads")

ACTIONS = {
    "skim": 'Keep the entries of a dataset that pass a cut: body {"dataset": "home/<you>/name", "parent": '
            '"...", "where": "...", "materialize": false, "columns": [...], "mode": "create"|"replace", '
            '"metadata": {}}; stores only the passing entry numbers (or, with materialize, a copy). Levels also '
            'take "files", "channels", "hit_where" and "hit_mode" ("any"|"only").',
    "lineage": 'Provenance of a workspace dataset and its ancestors: body {"dataset": "..."}.',
    "delete": 'Delete one of your workspace datasets: body {"dataset": "..."}.',
    "rename": 'Rename one of your workspace datasets: body {"dataset": "...", "to": "..."}.',
    "workspace": "Your workspace datasets with their kind, size and parent, and your quota, as JSON.",
}


def _parse_put(data: bytes) -> pb.PutRequest:
    return parse_command(data, pb.PutRequest(), '{"dataset": "home/alice/higgs", "mode": "create"}')


class Uploads:
    """Workspace writes and actions for one ArrowrootServer."""

    def __init__(self, server: ArrowrootServer):
        self.server = server
        s = server.settings
        limits = Limits(max_upload_bytes=s.max_upload_bytes, quota_bytes=s.quota_bytes)
        # default: next to the catalog (<root>/.arrowroot/workspace unless --catalog moves it), so a
        # read-only data mount (Docker) still gets a writable workspace on the catalog volume
        directory = s.workspace or s.catalog_path.parent / "workspace"
        self.workspace = Workspace(s.root, directory, server.catalog, limits, __version__)
        self.workspace.recover()

    # -------------------------------------------------------- who

    def owner(self, context: fl.ServerCallContext | None) -> str:
        """Whose home the caller writes to: their user name, ``local`` with authentication off."""
        access = self.server.access
        if not access.enabled:
            return names.LOCAL_USER
        user = access.user(context)
        if not user:
            raise Unauthenticated("log in to write: anonymous callers have no home namespace")
        return user

    def _run(self, fn: Any) -> Any:
        try:
            return fn()
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from None

    # -------------------------------------------------------- DoPut

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        if descriptor.descriptor_type == fl.DescriptorType.PATH:
            if len(descriptor.path) != 1:
                raise InvalidRequest("descriptor path: one element, the dataset name, expected")
            p = descriptor.path[0]
            msg = pb.PutRequest(dataset=p.decode() if isinstance(p, bytes) else p)
        else:
            msg = _parse_put(descriptor.command)
        result = self._run(lambda: self.put(context, msg.dataset, msg.mode or "create", reader,
                                            msg.parent or None, dict(msg.metadata)))
        writer.write(pa.py_buffer(json.dumps(result).encode()))

    def put(self, context: fl.ServerCallContext | None, name: str, mode: str,
            reader: fl.MetadataRecordBatchReader, parent: str | None = None,
            metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Stream a DoPut's batches into ``name``; nothing is kept unless every batch arrives."""
        t0 = time.perf_counter()
        owner = self.owner(context)
        parent_rec = self._parent(parent, context) if parent else None
        up = self.workspace.begin(name, owner, mode, reader.schema, parent_rec, metadata)
        try:
            self._drain(up, reader)
            entry = up.commit()
        except BaseException:
            up.abort()
            raise
        log.info("%s put %s mode=%s rows=%d bytes=%d %.3fs", owner, name, mode, up.rows, entry.bytes,
                 time.perf_counter() - t0)
        return {"dataset": name, "kind": entry.kind, "rows": self.server.catalog.dataset(name).entries,
                "written": up.rows - up.copied, "bytes": entry.bytes}

    def _drain(self, up: Upload, reader: fl.MetadataRecordBatchReader) -> None:
        limit = getattr(up, "base_entries", None)
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return
            batch = chunk.data
            if batch is None:
                continue
            if limit is not None and batch.num_rows:
                up.check_entries(batch.column(ENTRY).cast(pa.int64()).to_numpy(), limit)
            up.write(batch)

    def _parent(self, name: str, context: fl.ServerCallContext | None) -> DatasetRecord:
        rec = self.server.dataset(name, context)  # the caller must be able to read it
        self.check(rec)
        return rec

    def ingest(self, context: fl.ServerCallContext, table: str, schema: str | None, if_exists: str,
               create: bool, reader: fl.MetadataRecordBatchReader) -> int:
        """Flight SQL ``CommandStatementIngest`` (ADBC ``adbc_ingest``): rows written."""
        name = f"{schema}/{table}" if schema else table
        exists = self.server.catalog.workspace_entry(name) is not None
        if not exists and not create:
            raise NotFound(f"no workspace dataset named {name!r} to append to")
        mode = {"fail": "create", "append": "append", "replace": "replace"}[if_exists] if exists else "create"
        result = self._run(lambda: self.put(context, name, mode, reader))
        return int(result["written"])

    # -------------------------------------------------------- reads

    def check(self, rec: DatasetRecord) -> None:
        """Overlays whose parent's files changed refuse to be read (InvalidRequest says why)."""
        if rec.format == OVERLAY_FORMAT:
            try:
                self.workspace.check_parent(rec.name)
            except ParentChanged as exc:
                raise InvalidRequest(str(exc)) from None

    # -------------------------------------------------------- actions

    def claims_action(self, kind: str) -> bool:
        return kind in ACTIONS

    def action(self, kind: str, args: dict[str, Any], context: fl.ServerCallContext) -> Any:
        return self._run(lambda: self._action(kind, args, context))

    def _action(self, kind: str, args: dict[str, Any], context: fl.ServerCallContext) -> Any:
        if kind == "workspace":
            owner = self.owner(context)
            entries = [provenance_dict(e) for e in self.server.catalog.workspace_entries(owner)]
            used = sum(e["bytes"] for e in entries)
            return {"owner": owner, "home": names.home_of(owner), "datasets": entries, "bytes": used,
                    "quota_bytes": self.workspace.limits.quota_bytes,
                    "max_upload_bytes": self.workspace.limits.max_upload_bytes}
        name = args.get("dataset")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{kind}.dataset: a dataset name is required")
        if kind == "lineage":
            self.server.access.dataset(name, context)  # visible? (a changed parent is what lineage is for)
            chain = self.workspace.lineage(name)
            visible = {d.name for d in self.server.visible_datasets(context)}
            for item in chain[1:]:  # ancestors the caller may not read show their name only
                if item["name"] not in visible:
                    for k in list(item):
                        if k not in ("name", "kind"):
                            item.pop(k)
            return {"dataset": name, "lineage": chain}
        if kind == "delete":
            self.workspace.delete(name, self.owner(context))
            return {"deleted": name}
        if kind == "rename":
            to = args.get("to")
            if not isinstance(to, str) or not to:
                raise InvalidRequest("rename.to: the new name is required")
            self.workspace.rename(name, to, self.owner(context))
            return {"renamed": name, "to": to}
        if kind == "skim":
            return self.skim(context, name, args)
        raise NotFound(f"no action {kind!r}")

    def skim(self, context: fl.ServerCallContext | None, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Evaluate ``where`` on the parent server-side; store the passing entries (or the rows)."""
        t0 = time.perf_counter()
        owner = self.owner(context)
        parent_name, where = args.get("parent"), args.get("where")
        if not isinstance(parent_name, str) or not parent_name:
            raise InvalidRequest("skim.parent: the dataset to skim is required")
        selection = level_selection(args)  # levels: files, channels, hit_where, hit_mode (plan/levels.py)
        if not isinstance(where, str) or not (where.strip() or selection):
            raise InvalidRequest("skim.where: a cut is required, e.g. \"nMuon >= 2\"")
        materialize = args.get("materialize", False)
        if not isinstance(materialize, bool):
            raise InvalidRequest("skim.materialize: true or false")
        columns = args.get("columns") or []
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidRequest("skim.columns: a list of column names")
        metadata = args.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidRequest("skim.metadata: a JSON object of strings")
        metadata = {str(k): str(v) for k, v in metadata.items()}
        mode = args.get("mode", "create")
        parent = self._parent(parent_name, context)
        is_overlay = parent.format == OVERLAY_FORMAT
        if materialize:
            spec = ReadSpec(dataset=parent_name, columns=tuple(columns), where=where,
                            with_entry_numbers=not is_overlay, **selection)
            plan = self.server.plan(spec, context)
            up = self.workspace.begin(name, owner, mode, plan.schema.remove_metadata(), None, metadata,
                                      kind="materialized", cut=where)
            up.extra["parent_version"] = version_of(self.workspace.base_of(parent).rec)
            try:
                for batch in self._stream(plan):
                    up.write(batch)
                entry = up.commit({"columns": list(plan.schema.names)})
            except BaseException:
                up.abort()
                raise
        else:
            schema = pa.ipc.read_schema(pa.py_buffer(parent.schema))
            from arrowroot.flight_server.lang.cuts import ExprError, parse
            try:
                cut = parse(where, schema) if where.strip() else None
            except ExprError as exc:
                raise InvalidRequest(f"where: {exc}") from None
            if is_overlay:
                spec = ReadSpec(dataset=parent_name, columns=(ENTRY,), where=where, **selection)
            else:
                first = next((n for n in schema.names if cut is not None and n in cut.columns), schema.names[0])
                spec = ReadSpec(dataset=parent_name, columns=(first,), where=where, with_entry_numbers=True,
                                **selection)
            plan = self.server.plan(spec, context)
            up = self.workspace.begin_skim(name, owner, parent, where, metadata, mode,
                                           level=skim_meta(parent, spec, plan.tasks))
            try:
                for batch in self._stream(plan):
                    entries = batch.column(ENTRY).to_numpy()
                    up.check_entries(entries, up.base_entries)  # type: ignore[attr-defined]
                    up.write(pa.RecordBatch.from_arrays([pa.array(entries, pa.int64())], schema=up.schema))
                entry = up.commit({"columns": []})
            except BaseException:
                up.abort()
                raise
        rec = self.server.catalog.dataset(name)
        log.info("%s skim %s from %s where=%r rows=%d bytes=%d %.3fs", owner, name, parent_name, where, rec.entries,
                 entry.bytes, time.perf_counter() - t0)
        return {"dataset": name, "kind": entry.kind, "rows": rec.entries, "parent_entries": parent.entries,
                "bytes": entry.bytes}

    def _stream(self, plan: Any) -> Iterator[pa.RecordBatch]:
        """Every batch of a plan, run here (a skim's cut evaluated server-side)."""
        from arrowroot.flight_server.execute.executor import StreamStats, stream_task

        stats = StreamStats()
        for task in plan.tasks:
            for item in stream_task(task, self.server.readers, stats):
                batch = item[0] if isinstance(item, tuple) else item
                if batch.num_rows:
                    yield batch

    def provenance_table(self, visible: set[str]) -> pa.Table:
        """``arrowroot.provenance``: one row per workspace dataset the caller may read."""
        rows = [provenance_dict(e) for e in self.server.catalog.workspace_entries() if e.name in visible]
        types = {"name": pa.utf8(), "kind": pa.utf8(), "owner": pa.utf8(), "parent": pa.utf8(),
                 "parent_version": pa.utf8(), "base": pa.utf8(), "cut": pa.utf8(), "columns": pa.list_(pa.utf8()),
                 "bytes": pa.int64(), "created_at": pa.timestamp("us", tz="UTC"), "arrowroot_version": pa.utf8(),
                 "metadata": pa.utf8()}
        out = {}
        for k, t in types.items():
            values = [r[k] for r in rows]
            if k == "created_at":
                values = [int(v * 1e6) for v in values]
                out[k] = pa.array(values, pa.int64()).cast(t)
            elif k == "metadata":
                out[k] = pa.array([json.dumps(v) for v in values], t)
            else:
                out[k] = pa.array(values, t)
        return pa.table(out)

    def actions(self) -> list[tuple[str, str]]:
        return sorted(ACTIONS.items())


