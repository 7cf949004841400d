"""The bytes of workspace datasets: Parquet files written atomically, within quotas.

Why a temp file and a rename: a DoPut that fails, is cancelled or whose server is killed
must leave nothing behind. Batches stream into ``home/<owner>/.tmp-<id>.parquet`` (zstd),
bounded in memory by one row group; only a complete file is renamed to ``<id>.parquet``
and only then registered in the catalog, in one transaction with its provenance. A crash
between the rename and the commit leaves an unreferenced file, which :meth:`Workspace.recover`
deletes at the next start (as it does leftover temp files). Files are named by a random
id, not by the dataset name, so a rename is a catalog update and a replace never
overwrites a file that a reader may have open.

The served data directory is never written: the workspace directory defaults to
``<root>/.arrowroot/workspace`` (a dot directory, which the indexer never walks).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from arrowroot.catalog.errors import Conflict
from arrowroot.catalog.models import ColumnRecord, DatasetRecord, FileUpdate, NewDataset, WorkspaceRecord
from arrowroot.catalog.store import Catalog

from arrowroot.flight_server.core.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied
from arrowroot.flight_server.sources.parquet import KIND as PARQUET_KIND, OBJECT, scan_parquet
from arrowroot.flight_server.workspace import names
from arrowroot.flight_server.workspace.lineage import lineage
from arrowroot.flight_server.workspace.overlays import (Base, check_same_schema, level_paths, overlay_boundaries,
                                                        overlay_columns, overlay_schema, version_of)
from arrowroot.flight_server.workspace.types import storable_schema
from arrowroot.flight_server.workspace.upload import ENTRY, OVERLAY_KEY, QuotaExceeded, Upload

log = logging.getLogger("arrowroot.workspace")

MODES = ("create", "append", "replace")
OVERLAY_FORMAT = "overlay"
LEVEL_KEY = "arrowroot.level"     # a level's dataset attribute (datasets/levels.py)
SKIM_ROW_GROUP = 1 << 20
MOUNT = "@workspace"        # catalog path prefix of workspace files outside the served root


class ParentChanged(InvalidRequest):
    """The files of an overlay's parent differ from when it was made."""


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int     # Arrow bytes received by one DoPut (Settings.max_upload_bytes)
    quota_bytes: int          # stored bytes per owner, all their workspace datasets (Settings.quota_bytes)


class Workspace:
    """The workspace directory of one server and the catalog rows of its datasets."""

    def __init__(self, root: Path, directory: Path | None, catalog: Catalog, limits: Limits,
                 version: str = ""):
        self.root = Path(root).resolve()
        self.version = version
        self.dir = Path(directory).resolve() if directory else self.root / ".arrowroot" / "workspace"
        self.catalog = catalog
        self.limits = limits
        self._locks: dict[str, threading.Lock] = {}
        self._quota_lock = threading.Lock()
        self._inflight: dict[str, dict[str, int]] = {}   # owner → upload id → bytes written so far
        self._locks_guard = threading.Lock()
        self._written: dict[str, int] = {}   # kind → datasets committed (metrics)
        self._written_bytes = 0

    def counts(self) -> dict[str, Any]:
        """Datasets committed by kind and their bytes, since start (for the metrics)."""
        with self._quota_lock:
            return {"by_kind": dict(self._written), "bytes_written": self._written_bytes}

    def owner_dir(self, owner: str) -> Path:
        return self.dir / names.HOME / owner

    def rel(self, path: Path) -> str:
        """How the catalog records a workspace file: relative to the served root, or as
        ``@workspace/...`` when the workspace lies outside it (the readers mount it there)."""
        path = Path(path).resolve()
        if self.root in path.parents:
            return path.relative_to(self.root).as_posix()
        return MOUNT + "/" + path.relative_to(self.dir).as_posix()

    def abs(self, rel: str) -> Path:
        head, sep, tail = rel.partition("/")
        if sep and head == MOUNT:
            return self.dir / tail
        return Path(os.path.normpath(self.root / rel))

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    # -------------------------------------------------------- starting uploads

    def reserve(self, up: Upload, size: int) -> None:
        """Count ``size`` bytes of a running upload against its owner's quota, together with
        the owner's other running uploads (so two at once cannot both use the last bytes)."""
        with self._quota_lock:
            mine = self._inflight.setdefault(up.owner, {})
            others = sum(v for k, v in mine.items() if k != up.id)
            left = self.budget(up.owner, up.name if up.mode != "create" else None) - others
            if size > left:
                raise QuotaExceeded(f"quota: {up.owner!r} has {max(left, 0)} of {self.limits.quota_bytes} bytes "
                                    "left (counting uploads still running); this upload needs more. Delete "
                                    "datasets or ask for a larger quota")
            mine[up.id] = size

    def release(self, up: Upload) -> None:
        with self._quota_lock:
            self._inflight.get(up.owner, {}).pop(up.id, None)

    def budget(self, owner: str, replacing: str | None = None) -> int:
        used = self.catalog.workspace_bytes(owner)
        if replacing:
            old = self.catalog.workspace_entry(replacing)
            used -= old.bytes if old else 0
        return max(0, self.limits.quota_bytes - used)

    def begin(self, name: str, owner: str, mode: str, schema: pa.Schema, parent: DatasetRecord | None = None,
              metadata: dict[str, str] | None = None, kind: str | None = None,
              cut: str | None = None) -> Upload:
        """Start an upload into ``name``; the checks that need no data happen here.

        ``parent`` makes it derived columns: ``schema`` must hold an int64 ``entry`` column.
        """
        names.check(name)
        if mode not in MODES:
            raise InvalidRequest(f"mode: one of {', '.join(MODES)} (got {mode!r})")
        if names.owner_of(name) != owner:
            raise PermissionDenied(f"{name!r} is not in your home namespace {names.home_of(owner)!r}")
        schema = storable_schema(schema)
        # appends and replaces take the name's lock before reading its entry: a concurrent
        # append may replace the file that entry names (3 of 6 concurrent appends failed so)
        lock = self._take(name) if mode in ("append", "replace") else None
        try:
            existing = self.catalog.workspace_entry(name)
            if existing is None and name in {d.name for d in self.catalog.datasets()}:
                raise AlreadyExists(f"{name!r} (not a workspace dataset)")
            if mode == "create" and existing is not None:
                raise AlreadyExists(f"{name!r}; choose another name, or put with mode 'replace' or 'append'")
            return self._begin(name, owner, mode, schema, parent, metadata or {}, kind, cut, existing, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def _take(self, name: str, timeout: float = 600.0) -> threading.Lock:
        """The name's write lock (appends, replaces, deletes and renames of one name take turns)."""
        lock = self._lock(name)
        if not lock.acquire(timeout=timeout):
            raise AlreadyExists(f"{name!r} is being written by another request; try again")
        return lock

    def _begin(self, name: str, owner: str, mode: str, schema: pa.Schema, parent: DatasetRecord | None,
               metadata: dict[str, str], kind: str | None, cut: str | None,
               existing: WorkspaceRecord | None, lock: threading.Lock | None) -> Upload:
        for f in schema:
            if not f.name:
                raise InvalidRequest("columns: empty column name")
        if len(set(schema.names)) != len(schema.names):
            dup = next(n for n in schema.names if schema.names.count(n) > 1)
            raise InvalidRequest(f"columns: {dup!r} appears twice")
        copy_from: Path | None = None
        overlay = None
        if mode == "append" and existing is not None:
            if parent is not None and existing.parent != parent.name:
                raise InvalidRequest(f"parent: {name!r} extends {existing.parent!r}, not {parent.name!r}")
            old_schema = pq.read_schema(str(self.abs(existing.path)))
            check_same_schema(old_schema, schema)
            schema = old_schema.remove_metadata()
            copy_from = self.abs(existing.path)
            kind = existing.kind
            parent_name = existing.parent
            if existing.kind in ("derived", "skim"):
                overlay = json.loads(pq.read_schema(str(copy_from)).metadata[OVERLAY_KEY])
                if existing.kind == "skim":
                    raise InvalidRequest(f"mode: {name!r} is a skim; make a new skim instead of appending")
            # the parent of an upload or a copy is provenance only; an overlay reads its base
            parent = None if existing.parent is None or overlay is None else self._record(existing.parent)
        else:
            parent_name = parent.name if parent is not None else None
        if parent is not None and overlay is None:
            base = self.base_of(parent)
            overlay = self.overlay_meta(base, [n for n in schema.names if n != ENTRY], owner)
            schema = overlay_schema(schema, base.rec)
        budget = self.budget(owner, name if existing is not None else None)
        up = Upload(self, name, owner, mode, schema, kind or ("derived" if overlay else "upload"), budget,
                    parent_name, {"metadata": dict(metadata), "cut": cut}, overlay, lock)
        self._identify(up, existing)
        if overlay is not None:
            up.base_entries = overlay["base"]["entries"]  # type: ignore[attr-defined]
        if copy_from is not None:
            try:
                pf = pq.ParquetFile(str(copy_from))
                for g in range(pf.metadata.num_row_groups):
                    for b in pf.read_row_group(g).to_batches():
                        up.received -= b.nbytes  # the old rows do not count against this request
                        up.write(b)
                        up.copied += b.num_rows
                        if overlay is not None:
                            up._last_entry = int(b.column(ENTRY)[-1].as_py())
                pf.close()
            except BaseException:
                up.abort()
                raise
        return up

    def _record(self, name: str) -> DatasetRecord:
        return self.catalog.dataset(name)

    def _identify(self, up: Upload, existing: WorkspaceRecord | None) -> None:
        """The dataset keeps its id through appends and replaces; its parent is known by id."""
        if existing is not None and existing.id:
            up.dataset_id = existing.id
        parent = self.catalog.workspace_entry(up.parent) if up.parent else None
        up.parent_id = parent.id or None if parent is not None else None

    def set_parent(self, up: Upload, parent: DatasetRecord) -> None:
        """Record ``parent`` as the provenance of an upload that does not read from it (a copy)."""
        up.parent = parent.name
        up.extra["parent_version"] = version_of(self.skim_base(parent)[0].rec)
        self._identify(up, None if up.mode == "create" else self.catalog.workspace_entry(up.name))

    # -------------------------------------------------------- overlays (derived columns, skims)

    def base_of(self, parent: DatasetRecord) -> Base:
        """The dataset holding ``parent``'s columns: itself, or a skim's base (skims compose)."""
        entry = self.catalog.workspace_entry(parent.name)
        if entry is not None and entry.kind == "derived":
            raise InvalidRequest(f"parent: {parent.name!r} has derived columns itself; derive from its parent, or "
                                 f"from a copy: `arrowroot skim home/<you>/copy {parent.name} --materialize`")
        if entry is not None and entry.kind == "skim":
            base = self.catalog.dataset(entry.base) if entry.base else None
            if base is None:
                raise NotFound(f"parent: the base of {parent.name!r} is gone")
            return Base(base, version_of(base))
        return Base(parent, version_of(parent))

    def skim_base(self, parent: DatasetRecord) -> tuple[Base, list[str]]:
        """What a skim of ``parent`` reads from: the base dataset whose files hold the parent's
        columns, and the parent's own (derived) columns, which the skim copies at its entries.
        Any dataset: files, uploads, copies, derived columns, skims (of skims, of derived ...)."""
        entry = self.catalog.workspace_entry(parent.name)
        if entry is None or entry.kind not in ("derived", "skim"):
            return Base(parent, version_of(parent)), []
        base = self.catalog.dataset(entry.base) if entry.base else None
        if base is None:
            raise NotFound(f"parent: the base of {parent.name!r} is gone")
        meta = pq.read_schema(str(self.abs(entry.path))).metadata or {}
        own = json.loads(meta[OVERLAY_KEY])["own"] if OVERLAY_KEY in meta else []
        return Base(base, version_of(base)), list(own)

    def overlay_meta(self, base: Base, own: list[str], owner: str, level: dict[str, Any] | None = None,
                     level_dir: Path | None = None) -> dict[str, Any]:
        """What an overlay file records about its base: enough to read it without the catalog.
        A level base also records its tables and columns (``level``, from the planner; file paths
        relative to ``level_dir``, the served root by default, are stored relative to the overlay)."""
        rec = base.rec
        if LEVEL_KEY in rec.attributes and level is None:
            raise InvalidRequest(f"parent: {rec.name!r} is a level; derived columns on a level are not supported "
                                 "(skim it, or materialise a skim and derive from that)")
        schema = pa.ipc.read_schema(pa.py_buffer(rec.schema))
        clash = [c for c in own if c in schema.names]
        if clash:
            raise InvalidRequest(f"columns: {clash[0]!r} is already a column of {rec.name!r}; derived columns need new names")
        here = self.owner_dir(owner)  # base files are found relative to the overlay file
        parts = []
        for p in rec.parts:
            full = os.path.normpath(self.abs(p.path))
            parts.append({"path": os.path.relpath(full, here), "member": f"{p.path}:{p.object_path}",
                          "object": p.object_path, "offset": p.entry_offset,
                          "entries": p.entries, "boundaries": list(p.boundaries), "size": p.size,
                          "mtime": p.mtime, "channel": p.channel})
        return {"base": {"name": rec.name, "format": rec.format, "kind": rec.kind, "entries": rec.entries,
                         "version": base.version, "parts": parts, "origin": rec.origin,
                         "schema": base64.b64encode(rec.schema).decode(),
                         "channel_column": rec.attributes.get("channel_column"),
                         "missing": rec.attributes.get("arrowroot.missing") or {},
                         **({"level": level_paths(level, level_dir or self.root, here)} if level else {})},
                "own": own}

    def begin_skim(self, name: str, owner: str, parent: DatasetRecord, cut: str,
                   metadata: dict[str, str] | None = None, mode: str = "create",
                   level: dict[str, Any] | None = None) -> Upload:
        """A skim: the stored file holds only the passing base entry numbers (delta-encoded).
        ``level``: a level parent's tables and hit selection (``plan.levels.skim_meta``)."""
        names.check(name)
        if names.owner_of(name) != owner:
            raise PermissionDenied(f"{name!r} is not in your home namespace {names.home_of(owner)!r}")
        if mode not in ("create", "replace"):
            raise InvalidRequest("mode: a skim is 'create' or 'replace'")
        lock = self._take(name) if mode == "replace" else None
        try:
            existing = self.catalog.workspace_entry(name)
            if mode == "create" and (existing is not None or name in {d.name for d in self.catalog.datasets()}):
                raise AlreadyExists(f"{name!r}; choose another name, or use mode 'replace'")
            base, own = self.skim_base(parent)
            level_dir = None
            if level is None and LEVEL_KEY in base.rec.attributes:  # a skim of a level's skim: its tables
                entry = self.catalog.workspace_entry(parent.name)
                if entry is not None:
                    path = self.abs(entry.path)
                    level = json.loads(pq.read_schema(str(path)).metadata[OVERLAY_KEY])["base"].get("level")
                    level_dir = path.parent
            overlay = self.overlay_meta(base, own, owner, level, level_dir)
            parent_schema = pa.ipc.read_schema(pa.py_buffer(parent.schema))
            fields = [pa.field(ENTRY, pa.int64(), nullable=False)] + [parent_schema.field(c).remove_metadata() for c in own]
            schema = overlay_schema(pa.schema(fields), base.rec)
            up = Upload(self, name, owner, mode, schema, "skim", self.budget(owner, name if existing else None),
                        parent.name, {"metadata": dict(metadata or {}), "cut": cut}, overlay, lock,
                        encodings={ENTRY: "DELTA_BINARY_PACKED"}, row_group_rows=SKIM_ROW_GROUP)
            self._identify(up, existing)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        up.base_entries = base.rec.entries  # type: ignore[attr-defined]
        return up

    # -------------------------------------------------------- registering

    def register(self, up: Upload, size: int, provenance: dict[str, Any]) -> WorkspaceRecord:
        rel = self.rel(up.final)
        st = up.final.stat()
        info = scan_parquet(str(up.final))
        overlay = up.overlay
        base_name = overlay["base"]["name"] if overlay else None
        parent_version = overlay["base"]["version"] if overlay else up.extra.get("parent_version")
        boundaries = list(info.boundaries)
        if overlay:
            rec = self.catalog.dataset(base_name)
            columns, schema = overlay_columns(info, rec, overlay["own"])
            fmt, kind = OVERLAY_FORMAT, up.kind
            boundaries = overlay_boundaries(up.final, rec, boundaries)
        else:
            schema = info.schema
            columns = [ColumnRecord(c.name, str(c.arrow_type), c.source_type, (), c.compressed_bytes,
                                    c.uncompressed_bytes, True, "") for c in info.columns]
            fmt, kind = "parquet", PARQUET_KIND
        attrs = {"workspace": up.kind, "owner": up.owner}
        if up.parent:
            attrs["parent"] = up.parent
        ds = NewDataset(name=up.name, kind=kind, format=fmt, entries=info.entries,
                        schema=schema.with_metadata({b"arrowroot.attributes": json.dumps(attrs).encode()})
                        .serialize().to_pybytes(),
                        attributes=attrs, columns=columns,
                        parts=[(rel, OBJECT, info.entries, boundaries, None)], origin="workspace")
        entry = WorkspaceRecord(
            name=up.name, owner=up.owner, kind=up.kind, path=rel, bytes=size, parent=up.parent,
            parent_version=parent_version, base=base_name, cut=up.extra.get("cut") or None,
            columns=tuple(provenance["columns"] if "columns" in provenance else [c.name for c in columns]),
            created_at=time.time(),
            version=self.version, metadata=dict(up.extra.get("metadata") or {}),
            id=up.dataset_id, parent_id=up.parent_id,
        )
        update = FileUpdate(rel, fmt, st.st_size, st.st_mtime, (ds,))
        try:
            old = self.catalog.commit_workspace(update, entry, replace=up.mode != "create")
        except Conflict as exc:  # a concurrent create of the same name committed first
            raise AlreadyExists(str(exc).removeprefix("already exists: ")) from None
        if old:
            self.abs(old).unlink(missing_ok=True)
        with self._quota_lock:
            self._written[up.kind] = self._written.get(up.kind, 0) + 1
            self._written_bytes += size
        log.info("workspace: %s %s (%d rows, %d bytes)", up.kind, up.name, info.entries, size)
        return entry

    # -------------------------------------------------------- lifecycle

    def dependents(self, name: str) -> list[str]:
        return [e.name for e in self.catalog.workspace_entries() if e.base == name and e.name != name]

    def delete(self, name: str, owner: str) -> None:
        self._owned(name, owner)
        lock = self._take(name, timeout=30.0)  # not while an append still copies the file
        try:
            self._owned(name, owner)
            users = self.dependents(name)
            if users:
                raise InvalidRequest(f"{name!r} holds the data of {', '.join(map(repr, users[:5]))}; "
                                     "delete those first")
            path = self.catalog.drop_workspace(name)
            self.abs(path).unlink(missing_ok=True)
        finally:
            lock.release()

    def rename(self, old: str, new: str, owner: str) -> None:
        self._owned(old, owner)
        names.check(new, "new name")
        if names.owner_of(new) != owner:
            raise PermissionDenied(f"{new!r} is not in your home namespace {names.home_of(owner)!r}")
        try:
            self.catalog.rename_workspace(old, new)
        except Conflict as exc:
            raise AlreadyExists(str(exc).removeprefix("already exists: ")) from None

    def _owned(self, name: str, owner: str) -> WorkspaceRecord:
        entry = self.catalog.workspace_entry(name)
        if entry is None or entry.owner != owner:
            raise NotFound(f"no workspace dataset of yours named {name!r}")
        return entry

    def check_parent(self, name: str) -> None:
        """ParentChanged if an overlay's base files moved on since it was made."""
        entry = self.catalog.workspace_entry(name)
        if entry is None or entry.base is None:
            return
        try:
            base = self.catalog.dataset(entry.base)
        except NotFound:
            raise ParentChanged(f"parent changed since the {entry.kind} was made: {entry.base!r} is gone; "
                                f"re-run it, or materialise it while the parent exists") from None
        if version_of(base) != entry.parent_version:
            raise ParentChanged(f"parent changed since the {entry.kind} was made: {entry.base!r} has other files "
                                f"now (version {version_of(base)}, made from {entry.parent_version}); re-run it, "
                                "or make it with materialize=true to pin a copy")

    def lineage(self, name: str) -> list[dict[str, Any]]:
        """This dataset's provenance and its ancestors' (``lineage.py``)."""
        return lineage(self.catalog, name)

    def recover(self) -> dict[str, int]:
        """At start: delete temp files and files no catalog row references; drop rows whose
        file is gone (a crash can leave the first two, never a row without a complete file)."""
        known = {str(self.abs(e.path)): e for e in self.catalog.workspace_entries()}
        removed = orphans = 0
        home = self.dir / names.HOME
        if home.is_dir():
            for dirpath, _, filenames in os.walk(home):
                for fn in filenames:
                    full = os.path.join(dirpath, fn)
                    if fn.startswith(".tmp-"):
                        os.unlink(full)
                        removed += 1
                    elif fn.endswith(".parquet") and full not in known:
                        os.unlink(full)
                        orphans += 1
        missing = 0
        for full, e in known.items():
            if not os.path.exists(full):
                log.warning("workspace: %s lost its file; forgetting it", e.name)
                self.catalog.drop_workspace(e.name)
                missing += 1
        if removed or orphans or missing:
            log.info("workspace recovery: %d temp files, %d unreferenced files, %d rows without a file",
                     removed, orphans, missing)
        return {"temp": removed, "orphans": orphans, "missing": missing}


__all__ = ["Workspace", "Upload", "Limits", "QuotaExceeded", "ParentChanged", "version_of", "ENTRY", "MODES",
           "OVERLAY_FORMAT"]
