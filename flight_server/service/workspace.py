"""Workspaces as a service: uploads, ingest, skims, lineage, delete, rename — for any door.

The names, files, quotas and catalog rows are ``flight_server/workspace``'s business; this layer
decides who writes (the caller's home), checks that a parent is readable by the caller, evaluates
skims' cuts server-side through the one read path, and maps workspace errors onto the error tree.
The Flight side (DoPut, Flight SQL bulk ingest, the workspace actions) is ``server/workspace_api.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.lang.cuts import ExprError, parse
from arrowroot.flight_server.plan.levels import level_selection, skim_meta
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.workspace import names
from arrowroot.flight_server.workspace.store import ENTRY, OVERLAY_FORMAT, Upload, provenance_dict, version_of

log = logging.getLogger("arrowroot.workspace")

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


def _permission(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PermissionError as exc:
        raise PermissionDenied(str(exc)) from None


class WorkspaceService:
    """Workspace writes and actions over one coordinator's service."""

    def __init__(self, service: Service):
        self.service = service
        ctx = service.ctx
        assert ctx.workspace is not None and ctx.catalog is not None and ctx.access is not None
        self.workspace = ctx.workspace
        self.catalog = ctx.catalog
        self.access = ctx.access

    def owner(self, caller: Caller) -> str:
        """Whose home the caller writes to: their user name, ``local`` with authentication off."""
        if not self.access.enabled:
            return names.LOCAL_USER
        if not caller.user:
            raise Unauthenticated("log in to write: anonymous callers have no home namespace")
        return caller.user

    # -------------------------------------------------------- uploads

    def put(self, caller: Caller, name: str, mode: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
            parent: str | None = None, metadata: dict[str, str] | None = None,
            complete: Callable[[], None] | None = None) -> dict[str, Any]:
        """Stream batches into ``name``; nothing is kept unless every batch arrived and
        ``complete()`` (the door's check that the client finished its stream) does not raise."""
        t0 = time.perf_counter()
        owner = self.owner(caller)
        parent_rec = self._parent(caller, parent) if parent else None
        up = _permission(lambda: self.workspace.begin(name, owner, mode or "create", schema, parent_rec, metadata))
        try:
            self._drain(up, batches)
            if complete is not None:
                complete()
            entry = up.commit()
        except BaseException:
            up.abort()
            raise
        log.info("%s put %s mode=%s rows=%d bytes=%d %.3fs", owner, name, mode, up.rows, entry.bytes,
                 time.perf_counter() - t0)
        return {"dataset": name, "kind": entry.kind, "rows": self.catalog.dataset(name).entries,
                "written": up.rows - up.copied, "bytes": entry.bytes}

    @staticmethod
    def _drain(up: Upload, batches: Iterator[pa.RecordBatch]) -> None:
        limit = getattr(up, "base_entries", None)
        for batch in batches:
            if limit is not None and batch.num_rows:
                up.check_entries(batch.column(ENTRY).cast(pa.int64()).to_numpy(), limit)
            up.write(batch)

    def _parent(self, caller: Caller, name: str) -> DatasetRecord:
        return self.service.dataset(caller, name)  # the caller must be able to read it (and it is current)

    def ingest(self, caller: Caller, table: str, db_schema: str | None, if_exists: str, create: bool,
               schema: pa.Schema, batches: Iterator[pa.RecordBatch],
               complete: Callable[[], None] | None = None) -> int:
        """Flight SQL ``CommandStatementIngest`` (ADBC ``adbc_ingest``): rows written."""
        name = f"{db_schema}/{table}" if db_schema else table
        exists = self.catalog.workspace_entry(name) is not None
        if not exists and not create:
            raise NotFound(f"no workspace dataset named {name!r} to append to")
        mode = {"fail": "create", "append": "append", "replace": "replace"}[if_exists] if exists else "create"
        result = self.put(caller, name, mode, schema, batches, complete=complete)
        return int(result["written"])

    # -------------------------------------------------------- actions

    def action(self, caller: Caller, kind: str, args: dict[str, Any]) -> Any:
        return _permission(lambda: self._action(caller, kind, args))

    def _action(self, caller: Caller, kind: str, args: dict[str, Any]) -> Any:
        if kind == "workspace":
            owner = self.owner(caller)
            entries = [provenance_dict(e) for e in self.catalog.workspace_entries(owner)]
            used = sum(e["bytes"] for e in entries)
            return {"owner": owner, "home": names.home_of(owner), "datasets": entries, "bytes": used,
                    "quota_bytes": self.workspace.limits.quota_bytes,
                    "max_upload_bytes": self.workspace.limits.max_upload_bytes}
        name = args.get("dataset")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{kind}.dataset: a dataset name is required")
        if kind == "lineage":
            self.access.dataset(name, caller)  # visible? (a changed parent is what lineage is for)
            chain = self.workspace.lineage(name)
            visible = {d.name for d in self.access.visible_datasets(caller)}
            for item in chain[1:]:  # ancestors the caller may not read show their name only
                if item["name"] not in visible:
                    for k in list(item):
                        if k not in ("name", "kind"):
                            item.pop(k)
            return {"dataset": name, "lineage": chain}
        if kind == "delete":
            self.workspace.delete(name, self.owner(caller))
            return {"deleted": name}
        if kind == "rename":
            to = args.get("to")
            if not isinstance(to, str) or not to:
                raise InvalidRequest("rename.to: the new name is required")
            self.workspace.rename(name, to, self.owner(caller))
            return {"renamed": name, "to": to}
        if kind == "skim":
            return self.skim(caller, name, args)
        raise NotFound(f"no action {kind!r}")

    def skim(self, caller: Caller, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Evaluate ``where`` on the parent server-side; store the passing entries (or the rows)."""
        t0 = time.perf_counter()
        owner = self.owner(caller)
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
        parent = self._parent(caller, parent_name)
        is_overlay = parent.format == OVERLAY_FORMAT
        if materialize:
            spec = ReadSpec(dataset=parent_name, columns=tuple(columns), where=where,
                            with_entry_numbers=not is_overlay, **selection)
            plan = self.service.plan(caller, spec)
            up = self.workspace.begin(name, owner, mode, plan.schema.remove_metadata(), None, metadata,
                                      kind="materialized", cut=where)
            up.extra["parent_version"] = version_of(self.workspace.base_of(parent).rec)
            try:
                for batch in self.service.run(plan):
                    up.write(batch)
                entry = up.commit({"columns": list(plan.schema.names)})
            except BaseException:
                up.abort()
                raise
        else:
            schema = self.service.schema(parent)
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
            plan = self.service.plan(caller, spec)
            up = self.workspace.begin_skim(name, owner, parent, where, metadata, mode,
                                           level=skim_meta(parent, spec, plan.tasks))
            try:
                for batch in self.service.run(plan):
                    entries = batch.column(ENTRY).to_numpy()
                    up.check_entries(entries, up.base_entries)  # type: ignore[attr-defined]
                    up.write(pa.RecordBatch.from_arrays([pa.array(entries, pa.int64())], schema=up.schema))
                entry = up.commit({"columns": []})
            except BaseException:
                up.abort()
                raise
        rec = self.catalog.dataset(name)
        log.info("%s skim %s from %s where=%r rows=%d bytes=%d %.3fs", owner, name, parent_name, where, rec.entries,
                 entry.bytes, time.perf_counter() - t0)
        return {"dataset": name, "kind": entry.kind, "rows": rec.entries, "parent_entries": parent.entries,
                "bytes": entry.bytes}

    def provenance_table(self, visible: set[str]) -> pa.Table:
        """``arrowroot.provenance``: one row per workspace dataset the caller may read."""
        rows = [provenance_dict(e) for e in self.catalog.workspace_entries() if e.name in visible]
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


__all__ = ["WorkspaceService", "ACTIONS"]
