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
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arrowroot.catalog.errors import Conflict
from arrowroot.catalog.models import ColumnRecord, DatasetRecord, FileUpdate, NewDataset, WorkspaceRecord
from arrowroot.catalog.store import Catalog

from arrowroot.flight_server.core.errors import (AlreadyExists, Cancelled, InvalidRequest, NotFound, PermissionDenied,
                                                ResourceExhausted)
from arrowroot.flight_server.sources.base import META_SOURCE_TYPE
from arrowroot.flight_server.sources.parquet import KIND as PARQUET_KIND, OBJECT, scan_parquet, wire_type
from arrowroot.flight_server.workspace import names
from arrowroot.flight_server.workspace.types import storable_schema

log = logging.getLogger("arrowroot.workspace")

MODES = ("create", "append", "replace")
ENTRY = "entry"
OVERLAY_KEY = b"arrowroot.overlay"
OVERLAY_FORMAT = "overlay"
LEVEL_KEY = "arrowroot.level"     # a level's dataset attribute (datasets/levels.py)
ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 32 << 20
SKIM_ROW_GROUP = 1 << 20
MOUNT = "@workspace"        # catalog path prefix of workspace files outside the served root


class QuotaExceeded(ResourceExhausted):
    """The upload would take the owner over their byte quota or the per-request limit."""


class ParentChanged(InvalidRequest):
    """The files of an overlay's parent differ from when it was made."""


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int     # Arrow bytes received by one DoPut (Settings.max_upload_bytes)
    quota_bytes: int          # stored bytes per owner, all their workspace datasets (Settings.quota_bytes)


@dataclass(frozen=True)
class Base:
    """The dataset whose files hold an overlay's parent columns (never itself an overlay)."""

    rec: DatasetRecord
    version: str


def version_of(rec: DatasetRecord) -> str:
    """Digest of a dataset's file identities: changes whenever any of its files does."""
    h = hashlib.sha256()  # not the name: a renamed parent is the same data
    for p in rec.parts:
        h.update(json.dumps([p.path, p.object_path, p.size, p.mtime, p.entries, p.channel]).encode())
    for p in sorted(rec.links, key=lambda p: (p.row, p.tier or "", p.path, p.object_path)):  # levels' other tiers
        h.update(json.dumps([p.tier, p.row, p.path, p.object_path, p.size, p.mtime, p.entries, p.channel]).encode())
    return h.hexdigest()[:20]


def _wire(t: pa.DataType) -> pa.DataType:
    return wire_type(t)


class Upload:
    """One Parquet file being written; ``commit`` makes it a dataset, ``abort`` removes it."""

    def __init__(self, ws: Workspace, name: str, owner: str, mode: str, schema: pa.Schema, kind: str,
                 budget: int, parent: str | None = None, extra: dict[str, Any] | None = None,
                 overlay: dict[str, Any] | None = None, lock: threading.Lock | None = None,
                 encodings: dict[str, str] | None = None, row_group_rows: int = ROW_GROUP_ROWS):
        self.ws, self.name, self.owner, self.mode, self.kind = ws, name, owner, mode, kind
        self.parent, self.extra, self.overlay = parent, dict(extra or {}), overlay
        self.budget = budget
        self.rows = 0
        self.copied = 0            # rows carried over from the dataset appended to
        self.received = 0
        self.lock = lock
        self._rg_rows = row_group_rows
        self.dir = ws.owner_dir(owner)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4().hex
        self.dataset_id = self.id      # the dataset's identity; an append or replace keeps the old one
        self.parent_id: str | None = None
        self.tmp = self.dir / f".tmp-{self.id}.parquet"
        self.final = self.dir / f"{self.id}.parquet"
        meta = dict(schema.metadata or {})
        if overlay is not None:
            meta[OVERLAY_KEY] = json.dumps(overlay).encode()
        self.schema = schema.with_metadata(meta)
        kwargs: dict[str, Any] = {"compression": "zstd"}
        if encodings:
            kwargs.update(use_dictionary=False, column_encoding=encodings)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(str(self.tmp), self.schema, **kwargs)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._last_entry = -1
        self.done = False
        #: the slots' reaper may abort an idle upload from its own thread
        self._guard = threading.RLock()

    # -------------------------------------------------------- writing

    def write(self, batch: pa.RecordBatch) -> None:
        """Add one batch (its schema must be the upload's); flushes a row group when full."""
        with self._guard:
            if self.done:
                raise Cancelled("upload: it was ended (idle past the timeout); nothing was stored")
            self._write(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        batch = self._conform(batch)
        self.received += batch.nbytes
        if self.received > self.ws.limits.max_upload_bytes:
            raise QuotaExceeded(f"upload: more than the {self.ws.limits.max_upload_bytes}-byte limit per request; "
                                "split it and append")
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self._pending_rows >= self._rg_rows or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch in the upload's column order and types; ValueError names a mismatch."""
        if batch.schema.equals(self.schema, check_metadata=False):
            return batch
        extra = [n for n in batch.schema.names if n not in self.schema.names]
        if extra:
            raise InvalidRequest(f"schema: column {extra[0]!r} is not in the dataset")
        arrays = []
        for f in self.schema:
            if f.name not in batch.schema.names:
                raise InvalidRequest(f"schema: column {f.name!r} is missing from the batch")
            arr = batch.column(f.name)
            if not arr.type.equals(f.type):
                try:
                    arr = arr.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise InvalidRequest(f"schema: column {f.name!r} is {arr.type}, the dataset has {f.type}") from None
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def write_table(self, table: pa.Table) -> None:
        for b in table.to_batches(max_chunksize=self._rg_rows):
            self.write(b)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.ws.reserve(self, self.tmp.stat().st_size)

    def check_entries(self, entries: np.ndarray, limit: int) -> None:
        """Overlay entry numbers: sorted, unique, inside the base (across batches too)."""
        if len(entries) == 0:
            return
        if entries[0] <= self._last_entry or (len(entries) > 1 and np.any(np.diff(entries) <= 0)):
            raise InvalidRequest(f"columns: {ENTRY!r} must hold strictly increasing entry numbers of the parent")
        if entries[0] < 0 or entries[-1] >= limit:
            raise InvalidRequest(f"columns: {ENTRY!r} holds entry {int(entries[-1] if entries[-1] >= limit else entries[0])}"
                             f", outside the parent's 0..{limit - 1}")
        self._last_entry = int(entries[-1])

    # -------------------------------------------------------- finishing

    def commit(self, provenance: dict[str, Any] | None = None) -> WorkspaceRecord:
        """Close, fsync and rename the file, then register it; the name may be taken meanwhile
        (Conflict for 'create')."""
        with self._guard:
            if self.done:
                raise Cancelled("upload: it was ended (idle past the timeout); nothing was stored")
            return self._commit(provenance)

    def _commit(self, provenance: dict[str, Any] | None) -> WorkspaceRecord:
        try:
            self._flush()
            assert self._writer is not None
            self._writer.close()
            self._writer = None
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            size = self.tmp.stat().st_size
            self.ws.reserve(self, size)
            os.replace(self.tmp, self.final)
            _fsync_dir(self.dir)
        except BaseException:
            self.abort()
            raise
        try:
            entry = self.ws.register(self, size, provenance or {})
        except BaseException:
            self.final.unlink(missing_ok=True)
            self.done = True
            self._release()
            raise
        self.done = True
        self._release()
        return entry

    def abort(self) -> None:
        """Remove everything written; safe to call twice, and from another thread."""
        with self._guard:
            self._abort()

    def _abort(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:
            pass
        self._writer = None
        self.tmp.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        self.ws.release(self)
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
            _check_same_schema(old_schema, schema)
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
            schema = _overlay_schema(schema, base.rec)
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
                         **({"level": _level_paths(level, level_dir or self.root, here)} if level else {})},
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
            schema = _overlay_schema(pa.schema(fields), base.rec)
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
            columns, schema = _overlay_columns(info, rec, overlay["own"])
            fmt, kind = OVERLAY_FORMAT, up.kind
            boundaries = _overlay_boundaries(up.final, rec, boundaries)
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

    def lineage(self, name: str) -> list[dict[str, Any]]:
        """This dataset's provenance and its ancestors', nearest first. Workspace parents are
        followed by id, so a renamed parent shows its current name and a deleted one says when."""
        out: list[dict[str, Any]] = []
        seen = set()
        e = self.catalog.workspace_entry(name)
        while name and name not in seen:
            seen.add(name)
            if e is None:
                try:
                    rec = self.catalog.dataset(name)
                    out.append({"name": name, "kind": "source", "format": rec.format, "entries": rec.entries,
                                "version": version_of(rec)})
                except NotFound:
                    out.append({"name": name, "kind": "missing"})
                break
            out.append(provenance_dict(e))
            name, parent_id = e.parent or "", e.parent_id
            e = self.catalog.workspace_by_id(parent_id) if parent_id else self.catalog.workspace_entry(name)
            if e is not None:
                name = e.name
            elif parent_id and (gone := self.catalog.workspace_removed(parent_id)) is not None:
                out.append({"name": gone["name"], "kind": "deleted", "owner": gone["owner"],
                            "was": gone["kind"], "deleted_at": gone["removed_at"]})
                break
        return out


def provenance_dict(e: WorkspaceRecord) -> dict[str, Any]:
    return {"name": e.name, "id": e.id or None, "kind": e.kind, "owner": e.owner, "parent": e.parent,
            "parent_id": e.parent_id,
            "parent_version": e.parent_version, "base": e.base, "cut": e.cut, "columns": list(e.columns),
            "bytes": e.bytes, "created_at": e.created_at, "arrowroot_version": e.version,
            "metadata": e.metadata}


def _level_paths(level: dict[str, Any], src: Path, here: Path) -> dict[str, Any]:
    """A level's table paths (relative to ``src``) made relative to the overlay's folder ``here``."""
    out = dict(level)
    out["parts"] = {k: [{**t, "path": os.path.relpath(os.path.normpath(os.path.join(src, t["path"])), here)}
                        for t in tiers] for k, tiers in level["parts"].items()}
    return out


def _check_same_schema(old: pa.Schema, new: pa.Schema) -> None:
    """Appends must send the stored columns with the same types: ValueError names the column."""
    old_names = [n for n in old.names]
    for f in new:
        if f.name not in old_names:
            raise InvalidRequest(f"schema: column {f.name!r} is not in the dataset (it has {', '.join(old_names[:20])})")
        want = old.field(f.name).type
        if not _wire(f.type).equals(_wire(want)):
            raise InvalidRequest(f"schema: column {f.name!r} is {f.type} here but {want} in the dataset")
    missing = [n for n in old_names if n not in new.names]
    if missing:
        raise InvalidRequest(f"schema: column {missing[0]!r} is missing from the appended batches")
    if new.names != old_names:
        raise InvalidRequest(f"schema: columns must come in the dataset's order ({', '.join(old_names[:20])})")


def _overlay_schema(schema: pa.Schema, base: DatasetRecord) -> pa.Schema:
    """Derived columns: ``entry`` must be an integer column (stored as int64, first)."""
    if ENTRY not in schema.names:
        raise InvalidRequest(f"columns: derived columns need an {ENTRY!r} column with the parent's entry numbers "
                         "(read the parent with with_entry_numbers)")
    t = schema.field(ENTRY).type
    if not pa.types.is_integer(t):
        raise InvalidRequest(f"columns: {ENTRY!r} must be an integer column (got {t})")
    rest = [f for f in schema if f.name != ENTRY]
    return pa.schema([pa.field(ENTRY, pa.int64(), nullable=False)] + rest, metadata=schema.metadata)


def _overlay_columns(info: Any, base: DatasetRecord, own: list[str]) -> tuple[list[ColumnRecord], pa.Schema]:
    """Catalog columns and schema of an overlay: the base's columns, then ``entry`` and its own."""
    base_schema = pa.ipc.read_schema(pa.py_buffer(base.schema))
    # Base columns keep the base's byte counts: reading a skim decompresses the base clusters
    # holding its entries, so planning by these bytes sizes endpoints by the work they cost.
    cols: list[ColumnRecord] = []
    fields: list[pa.Field] = []
    for c in base.columns:
        if not c.readable or c.name not in base_schema.names:
            cols.append(c)
            continue
        cols.append(replace(c, compressed_bytes=None))
        fields.append(base_schema.field(c.name))
    own_info = {c.name: c for c in info.columns}
    for name in [ENTRY] + list(own):
        c = own_info[name]
        src = "entry number in the parent" if name == ENTRY else c.source_type
        cols.append(ColumnRecord(name, str(c.arrow_type), src, (), c.compressed_bytes, c.uncompressed_bytes, True, ""))
        fields.append(pa.field(name, c.arrow_type, nullable=name != ENTRY, metadata={META_SOURCE_TYPE: src.encode()}))
    return cols, pa.schema(fields)


def _overlay_boundaries(path: Path, base: DatasetRecord, own: list[int]) -> list[int]:
    """Overlay entries where a base cluster starts: endpoints and reads are cut there, so
    each base cluster is decompressed by one read only (a row group of the overlay's own,
    cheap columns may be read twice instead)."""
    starts = np.asarray([p.entry_offset + b for p in base.parts for b in p.boundaries], dtype=np.int64)
    entries = pq.read_table(str(path), columns=[ENTRY]).column(ENTRY).to_numpy()  # 8 bytes a row
    cuts = np.unique(np.searchsorted(entries, starts))
    return [0] + [int(c) for c in cuts if 0 < c < len(entries)]



__all__ = ["Workspace", "Upload", "Limits", "QuotaExceeded", "ParentChanged", "version_of", "provenance_dict",
           "ENTRY", "MODES", "OVERLAY_FORMAT", "field"]
