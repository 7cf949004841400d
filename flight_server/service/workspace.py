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
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from arrowroot.flight_server.service import skims
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.service.streams import Stream
from arrowroot.flight_server.workspace import names
from arrowroot.flight_server.workspace.lineage import provenance_dict
from arrowroot.flight_server.workspace.upload import ENTRY, Upload

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

    def put(self, caller: Caller, name: str, mode: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
            parent: str | None = None, metadata: dict[str, str] | None = None,
            complete: Callable[[], None] | None = None,
            on_expired: Callable[[], None] | None = None) -> dict[str, Any]:
        """Stream batches into ``name``; nothing is kept unless every batch arrived and
        ``complete()`` (the door's check that the client finished its stream) does not raise.

        An upload is a stream: it takes a slot (the same caps as reads) and a client that sends
        nothing for ``stream_idle_timeout`` has it ended — its temporary file deleted at once,
        ``on_expired`` called (the Flight door cuts the connection the read waits on)."""
        t0 = time.perf_counter()
        owner = self.owner(caller)
        parent_rec = self._parent(caller, parent) if parent else None
        slot = self.service.ctx.streams.acquire(caller.principal, upload=True)
        try:
            up = _permission(lambda: self.workspace.begin(name, owner, mode or "create", schema, parent_rec,
                                                          metadata))
            slot.when_expired(up.abort)
            if on_expired is not None:
                slot.when_expired(on_expired)
            try:
                self._drain(up, batches, slot)
                if complete is not None:
                    complete()
                entry = up.commit()
            except BaseException:
                up.abort()
                raise
        finally:
            slot.release()
        log.info("%s put %s mode=%s rows=%d bytes=%d %.3fs", owner, name, mode, up.rows, entry.bytes,
                 time.perf_counter() - t0)
        return {"dataset": name, "kind": entry.kind, "rows": self.catalog.dataset(name).entries,
                "written": up.rows - up.copied, "bytes": entry.bytes}

    @staticmethod
    def _drain(up: Upload, batches: Iterable[pa.RecordBatch], slot: Stream) -> None:
        limit = getattr(up, "base_entries", None)
        it = iter(batches)
        while True:
            slot.waiting()  # the client's turn: the reaper times it out if nothing comes
            try:
                batch = next(it)
            except StopIteration:
                break
            slot.pulling()  # TimedOut if the reaper ended the upload meanwhile
            if limit is not None and batch.num_rows:
                up.check_entries(batch.column(ENTRY).cast(pa.int64()).to_numpy(), limit)
            up.write(batch)
        slot.pulling()

    def _parent(self, caller: Caller, name: str) -> DatasetRecord:
        return self.service.dataset(caller, name)  # the caller must be able to read it (and it is current)

    def ingest(self, caller: Caller, table: str, db_schema: str | None, if_exists: str, create: bool,
               schema: pa.Schema, batches: Iterable[pa.RecordBatch],
               complete: Callable[[], None] | None = None, on_expired: Callable[[], None] | None = None) -> int:
        """Flight SQL ``CommandStatementIngest`` (ADBC ``adbc_ingest``): rows written."""
        name = f"{db_schema}/{table}" if db_schema else table
        exists = self.catalog.workspace_entry(name) is not None
        if not exists and not create:
            raise NotFound(f"no workspace dataset named {name!r} to append to")
        mode = {"fail": "create", "append": "append", "replace": "replace"}[if_exists] if exists else "create"
        result = self.put(caller, name, mode, schema, batches, complete=complete, on_expired=on_expired)
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
                        if k not in ("name", "kind", "deleted_at"):
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
        """Evaluate ``where`` on the parent server-side; store the passing entries (or the rows): skims.py."""
        t0 = time.perf_counter()
        owner = self.owner(caller)
        answer = skims.skim(self.workspace, owner, name, args, lambda parent: self._parent(caller, parent),
                            lambda spec: self.service.plan(caller, spec), self.service.run)
        log.info("%s skim %s from %s where=%r rows=%d bytes=%d %.3fs", owner, name, args.get("parent"),
                 args.get("where"), answer["rows"], answer["bytes"], time.perf_counter() - t0)
        return answer

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
