"""The DuckDB catalog: the only module that holds the DuckDB connection.

One process owns the read-write catalog file; every thread gets its own cursor. Reads
of dataset records are served from an in-memory cache that is dropped whenever a write
commits, so a GetFlightInfo costs a dict lookup, not a query.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from arrowroot.flight_server.core.errors import InvalidRequest

from .errors import CatalogInUse, Conflict, NotFound, not_found
from .models import ColumnRecord, DatasetRecord, FileRecord, FileUpdate, NewDataset, PartRecord, WorkspaceRecord
from .zones import ZoneStore

SCHEMA_VERSION = "1"

#: Most attribute keys one search may compare (each is a JSON comparison per dataset).
MAX_SEARCH_ATTRIBUTES = 64


class Catalog:
    """Files, datasets, parts and columns of one served directory."""

    def __init__(self, path: str | Path = ":memory:", read_only: bool = False):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise CatalogInUse(
                    f"catalog {self.path} is in use by another process (an arrowroot server?): stop it, "
                    "or give this one its own file with --catalog"
                ) from None
            raise
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.closed = False
        self._cache_lock = threading.Lock()
        self.generation = 0
        self._by_name: dict[str, DatasetRecord] | None = None
        self.zones = ZoneStore(self)
        if not read_only:
            ddl = resources.files("arrowroot.catalog").joinpath("schema.sql").read_text()
            self._conn.execute(ddl)
            # users, groups, API keys, grants (identities.py); IF NOT EXISTS, so older catalogs gain them
            self._conn.execute(resources.files("arrowroot.catalog").joinpath("identities.sql").read_text())
            # workspace datasets and their provenance (flight_server/workspace); IF NOT EXISTS likewise
            self._conn.execute(resources.files("arrowroot.catalog").joinpath("workspace.sql").read_text())
            version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
            elif version[0] != SCHEMA_VERSION:
                raise RuntimeError(
                    f"catalog {self.path} has schema version {version[0]}, this arrowroot needs "
                    f"{SCHEMA_VERSION}: point --catalog at a new file (indexing rebuilds the data part; users, keys "
                    "and grants live in the old file too, so keep it)"
                )

    # ------------------------------------------------------------ plumbing

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the shared connection."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._conn.cursor()
            self._local.cursor = cur
        return cur

    def close(self) -> None:
        """Close the connection, after any write in progress (the zone-map collector writes from
        its own thread); writes asked for later are dropped."""
        with self._write_lock:
            self.closed = True
            self._conn.close()

    def _changed(self) -> None:
        if getattr(self._local, "holding", 0):  # inside this thread's ``consistent()``: shown at its end
            self._local.changed = True
            self._local.view = None
            return
        with self._cache_lock:
            self.generation += 1
            self._by_name = None
        self.zones.clear()

    @contextmanager
    def consistent(self) -> Iterator[None]:
        """This thread's writes inside are shown to readers together, when the block ends.

        Why: re-indexing a file is two commits — recording it drops every dataset made of it (a
        folder dataset too), then the derivation makes the folder again — and a reader between them
        found the folder gone (a live follower reconnecting while files were rewritten got 404).
        Readers keep the snapshot from before the block meanwhile (loaded now if none is)."""
        self._load()
        self._local.holding = getattr(self._local, "holding", 0) + 1
        try:
            yield
        finally:
            self._local.holding -= 1
            if not self._local.holding and getattr(self._local, "changed", False):
                self._local.changed = False
                self._local.view = None
                self._changed()

    # ------------------------------------------------------------ files

    def files(self) -> dict[str, FileRecord]:
        rows = self.cursor().execute(
            "SELECT file_id, path, format, size, mtime, status, error, keys FROM files ORDER BY path"
        ).fetchall()
        return {r[1]: FileRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]) if r[7] else {})
                for r in rows}

    def record_files(self, updates: Sequence[FileUpdate]) -> dict[str, int]:
        """Replace everything known about these files in one transaction; returns path → id.

        Column-wise inserts (``unnest`` of lists) keep this to a handful of statements per
        batch: per-row statements cost ~1 ms each and made indexing 10,000 files take minutes.
        """
        if not updates:
            return {}
        latest = {u.path: u for u in updates}  # the last update of a path wins
        updates = list(latest.values())
        paths = [u.path for u in updates]
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                self._drop_files(cur, paths)
                ids = [r[0] for r in cur.execute("SELECT nextval('file_ids') FROM range(?)", [len(updates)]).fetchall()]
                cur.execute(
                    "INSERT INTO files SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),"
                    " unnest(?::BIGINT[]), unnest(?::DOUBLE[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), now(),"
                    " unnest(?::VARCHAR[])::JSON",
                    [ids, paths, [u.format for u in updates], [u.size for u in updates],
                     [u.mtime for u in updates], ["error" if u.error else "ok" for u in updates],
                     [u.error for u in updates], [json.dumps(u.keys or {}, default=str) for u in updates]],
                )
                file_ids = dict(zip(paths, ids))
                self._insert_datasets(cur, [d for u in updates for d in u.datasets], file_ids)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self._changed()
        return file_ids

    def set_file_keys(self, keys: dict[str, dict[str, Any]]) -> int:
        """Store the file keys parsed from the names of these files (path → keys); one
        bulk update, so re-deriving the keys of 10,000 files stays cheap."""
        if not keys:
            return 0
        rows = [(p, json.dumps(k, default=str, sort_keys=True)) for p, k in keys.items()]
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS new_keys (path VARCHAR, keys VARCHAR)")
                cur.execute("DELETE FROM new_keys")
                cur.execute("INSERT INTO new_keys SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                            [[r[0] for r in rows], [r[1] for r in rows]])
                cur.execute("UPDATE files SET keys = new_keys.keys::JSON FROM new_keys WHERE files.path = new_keys.path")
                cur.execute("DELETE FROM new_keys")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self._changed()
        return len(rows)

    def remove_files(self, paths: Iterable[str]) -> int:
        """Forget files (deleted from disk); returns how many were known."""
        paths = list(paths)
        if not paths:
            return 0
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                n = self._drop_files(cur, paths)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        if n:
            self._changed()
        return n

    def _drop_files(self, cur: duckdb.DuckDBPyConnection, paths: list[str]) -> int:
        file_ids = [r[0] for r in cur.execute(
            "SELECT file_id FROM files WHERE path IN (SELECT unnest(?::VARCHAR[]))", [paths]).fetchall()]
        if not file_ids:
            return 0
        ids = [r[0] for r in cur.execute(
            "SELECT DISTINCT dataset_id FROM dataset_parts WHERE file_id IN (SELECT unnest(?::BIGINT[]))",
            [file_ids]).fetchall()]
        self._delete_datasets(cur, ids)
        self.zones.drop_files(cur, file_ids)
        cur.execute("DELETE FROM files WHERE file_id IN (SELECT unnest(?::BIGINT[]))", [file_ids])
        return len(file_ids)

    @staticmethod
    def _delete_datasets(cur: duckdb.DuckDBPyConnection, ids: list[int]) -> None:
        if not ids:
            return
        for table in ("columns", "dataset_parts", "datasets"):
            cur.execute(f"DELETE FROM {table} WHERE dataset_id IN (SELECT unnest(?::BIGINT[]))", [ids])

    def _insert_datasets(self, cur: duckdb.DuckDBPyConnection, datasets: Sequence[NewDataset],
                         file_ids: dict[str, int]) -> None:
        """Insert datasets with their parts and columns, column-wise (a few statements in all)."""
        if not datasets:
            return
        datasets = list({d.name: d for d in datasets}.values())  # a name is unique: the newest wins
        names = [d.name for d in datasets]
        taken = [r[0] for r in cur.execute(
            "SELECT dataset_id FROM datasets WHERE name IN (SELECT unnest(?::VARCHAR[]))", [names]).fetchall()]
        self._delete_datasets(cur, taken)
        missing = sorted(({p[0] for d in datasets for p in d.parts} | {k[2] for d in datasets for k in d.links})
                         - set(file_ids))
        if missing:
            file_ids.update(dict(cur.execute(
                "SELECT path, file_id FROM files WHERE path IN (SELECT unnest(?::VARCHAR[]))", [missing]).fetchall()))
        ids = [r[0] for r in cur.execute("SELECT nextval('dataset_ids') FROM range(?)", [len(datasets)]).fetchall()]
        cur.execute(
            "INSERT INTO datasets SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),"
            " unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::BLOB[]), unnest(?::VARCHAR[])::JSON,"
            " unnest(?::VARCHAR[])",
            [ids, names, [d.kind for d in datasets], [d.format for d in datasets], [d.entries for d in datasets],
             [d.schema for d in datasets], [json.dumps(d.attributes, default=str) for d in datasets],
             [d.origin for d in datasets]],
        )
        parts: list[list] = [[] for _ in range(9)]
        cols: list[list] = [[] for _ in range(10)]
        for dataset_id, ds in zip(ids, datasets):
            offset = 0
            offsets = []
            for i, (fpath, obj, entries, boundaries, channel) in enumerate(ds.parts):
                if fpath not in file_ids:
                    raise NotFound(f"dataset {ds.name!r} refers to unknown file {fpath!r}")
                row = [dataset_id, i, file_ids[fpath], obj, offset, entries, [int(b) for b in boundaries], channel,
                       None]
                for acc, value in zip(parts, row):
                    acc.append(value)
                offsets.append(offset)
                offset += entries
            for i, tier, fpath, obj, entries, boundaries, channel in ds.links:
                if fpath not in file_ids:
                    raise NotFound(f"dataset {ds.name!r} refers to unknown file {fpath!r}")
                row = [dataset_id, i, file_ids[fpath], obj, offsets[i], entries, [int(b) for b in boundaries],
                       channel, tier]
                for acc, value in zip(parts, row):
                    acc.append(value)
            for i, c in enumerate(ds.columns):
                row = [dataset_id, i, c.name, c.arrow_type, c.source_type, [int(x) for x in c.shape],
                       c.compressed_bytes, c.uncompressed_bytes, c.readable, c.reason]
                for acc, value in zip(cols, row):
                    acc.append(value)
        if parts[0]:
            cur.execute(
                "INSERT INTO dataset_parts (dataset_id, part_index, file_id, object_path, entry_offset, entries,"
                " boundaries, channel, tier) SELECT unnest(?::BIGINT[]), unnest(?::INTEGER[]), unnest(?::BIGINT[]),"
                " unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::BIGINT[][]),"
                " unnest(?::VARCHAR[]), unnest(?::VARCHAR[])", parts)
        if cols[0]:
            cur.execute(
                "INSERT INTO columns SELECT unnest(?::BIGINT[]), unnest(?::INTEGER[]), unnest(?::VARCHAR[]),"
                " unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[][]), unnest(?::BIGINT[]),"
                " unnest(?::BIGINT[]), unnest(?::BOOLEAN[]), unnest(?::VARCHAR[])", cols)

    def replace_derived(self, origin: str, datasets: Sequence[NewDataset]) -> None:
        """Replace every dataset of one origin ('folder', 'declared') by ``datasets``."""
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                ids = [r[0] for r in cur.execute(
                    "SELECT dataset_id FROM datasets WHERE origin = ?", [origin]).fetchall()]
                self._delete_datasets(cur, ids)
                # one query for every member file's id (derived datasets may have 10,000 parts)
                file_ids = dict(cur.execute("SELECT path, file_id FROM files").fetchall()) if datasets else {}
                self._insert_datasets(cur, datasets, file_ids)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self._changed()

    # ------------------------------------------------------------ datasets

    def _load(self) -> dict[str, DatasetRecord]:
        if getattr(self._local, "changed", False):  # inside ``consistent()`` after a write: its own view
            view = getattr(self._local, "view", None)
            if view is None:
                view = self._local.view = self._query_datasets()
            return view
        with self._cache_lock:
            if self._by_name is not None:
                return self._by_name
            generation = self.generation
        out = self._query_datasets()
        with self._cache_lock:
            if self.generation == generation:
                self._by_name = out
        return out

    def _query_datasets(self) -> dict[str, DatasetRecord]:
        cur = self.cursor()
        cols: dict[int, list[ColumnRecord]] = {}
        for r in cur.execute(
            "SELECT dataset_id, name, arrow_type, source_type, shape, compressed_bytes, uncompressed_bytes,"
            " readable, reason FROM columns ORDER BY dataset_id, position"
        ).fetchall():
            cols.setdefault(r[0], []).append(
                ColumnRecord(r[1], r[2], r[3], tuple(r[4] or ()), r[5], r[6], bool(r[7]), r[8] or ""))
        parts: dict[int, list[PartRecord]] = {}
        links: dict[int, list[PartRecord]] = {}
        for r in cur.execute(
            "SELECT p.dataset_id, p.file_id, f.path, p.object_path, p.entry_offset, p.entries, p.boundaries,"
            " f.size, f.mtime, p.channel, f.keys, p.tier, p.part_index FROM dataset_parts p JOIN files f"
            " USING (file_id) ORDER BY p.dataset_id, p.part_index, p.tier NULLS FIRST, p.channel, p.object_path"
        ).fetchall():
            (parts if r[11] is None else links).setdefault(r[0], []).append(
                PartRecord(r[1], r[2], r[3], r[4], r[5], tuple(r[6] or (0,)), r[7], r[8], r[9],
                           json.loads(r[10]) if r[10] else {}, r[11], r[12] if r[11] is not None else -1))
        out: dict[str, DatasetRecord] = {}
        for r in cur.execute(
            "SELECT dataset_id, name, kind, format, entries, schema, attributes, origin FROM datasets"
            " ORDER BY name"
        ).fetchall():
            rec = DatasetRecord(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), json.loads(r[6]) if r[6] else {},
                                r[7], tuple(parts.get(r[0], ())), tuple(cols.get(r[0], ())),
                                tuple(links.get(r[0], ())), self.zones)
            out[rec.name] = rec
        return out

    def datasets(self) -> list[DatasetRecord]:
        return list(self._load().values())

    def dataset(self, name: str) -> DatasetRecord:
        """The dataset by name; NotFound lists the closest names."""
        found = self._load()
        rec = found.get(name)
        if rec is None:
            raise not_found("dataset", name, found.keys())
        return rec

    def search(
        self,
        name: Callable[[str], bool] | None = None,
        fmt: str | None = None,
        kind: str | None = None,
        has_column: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> list[DatasetRecord]:
        """Datasets matching every given criterion (``name``: a predicate on dataset names, e.g.
        a compiled shell glob from ``flight_server.lang.glob``; attribute values compare equal
        as JSON, or as text for strings)."""
        if attributes and len(attributes) > MAX_SEARCH_ATTRIBUTES:
            raise InvalidRequest(f"criteria.attributes: {len(attributes)} keys; the limit is {MAX_SEARCH_ATTRIBUTES}")
        found = self._load()
        if not (has_column or attributes):
            ids = None
        else:
            sql = ["SELECT d.dataset_id FROM datasets d WHERE TRUE"]
            params: list[Any] = []
            if has_column:
                sql.append("AND EXISTS (SELECT 1 FROM columns c WHERE c.dataset_id = d.dataset_id AND c.name = ?)")
                params.append(has_column)
            for key, value in (attributes or {}).items():
                sql.append("AND json_extract(d.attributes, ?) = ?::JSON")
                params += ["$." + json.dumps(str(key)), json.dumps(value)]
            ids = {r[0] for r in self.cursor().execute(" ".join(sql), params).fetchall()}
        out = []
        for rec in found.values():
            if ids is not None and rec.dataset_id not in ids:
                continue
            if name is not None and not name(rec.name):
                continue
            if fmt and rec.format != fmt:
                continue
            if kind and rec.kind != kind:
                continue
            out.append(rec)
        return out

    def stats(self) -> dict[str, Any]:
        cur = self.cursor()
        files = dict(cur.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        by_format = dict(cur.execute("SELECT format, count(*) FROM datasets GROUP BY format").fetchall())
        n_bytes = cur.execute("SELECT coalesce(sum(size), 0) FROM files").fetchone()[0]
        return {
            "files": sum(files.values()),
            "files_with_errors": files.get("error", 0),
            "bytes": int(n_bytes),
            "datasets": sum(by_format.values()),
            "datasets_by_format": by_format,
            "generation": self.generation,
            "checked_at": time.time(),
        }

    def file_errors(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.cursor().execute(
            "SELECT path, error FROM files WHERE status = 'error' ORDER BY path").fetchall()]

    # ------------------------------------------------------------ workspace datasets

    _WS_COLUMNS = ("name, owner, kind, path, bytes, parent, parent_version, base, cut, columns, created_at,"
                   " version, metadata, id, parent_id")

    @staticmethod
    def _ws_record(r: tuple) -> WorkspaceRecord:
        return WorkspaceRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9] or ()), r[10],
                               r[11] or "", json.loads(r[12]) if r[12] else {}, r[13] or "", r[14])

    def workspace_entries(self, owner: str | None = None) -> list[WorkspaceRecord]:
        """Workspace datasets (of one owner), by name."""
        sql = f"SELECT {self._WS_COLUMNS} FROM workspace"
        params: list[Any] = []
        if owner is not None:
            sql += " WHERE owner = ?"
            params.append(owner)
        return [self._ws_record(r) for r in self.cursor().execute(sql + " ORDER BY name", params).fetchall()]

    def workspace_entry(self, name: str) -> WorkspaceRecord | None:
        r = self.cursor().execute(f"SELECT {self._WS_COLUMNS} FROM workspace WHERE name = ?", [name]).fetchone()
        return self._ws_record(r) if r else None

    def workspace_by_id(self, dataset_id: str) -> WorkspaceRecord | None:
        r = self.cursor().execute(f"SELECT {self._WS_COLUMNS} FROM workspace WHERE id = ?", [dataset_id]).fetchone()
        return self._ws_record(r) if r else None

    def workspace_removed(self, dataset_id: str) -> dict[str, Any] | None:
        """{name, kind, owner, removed_at} of a deleted workspace dataset, by its id."""
        r = self.cursor().execute("SELECT name, kind, owner, removed_at FROM workspace_removed WHERE id = ? "
                                  "ORDER BY removed_at DESC LIMIT 1", [dataset_id]).fetchone()
        return dict(zip(("name", "kind", "owner", "removed_at"), r)) if r else None

    def workspace_paths(self) -> set[str]:
        """Files the workspace owns: the indexer leaves them alone."""
        return {r[0] for r in self.cursor().execute("SELECT path FROM workspace").fetchall()}

    def workspace_totals(self) -> tuple[int, int]:
        """(datasets, bytes) of all workspaces."""
        n, size = self.cursor().execute("SELECT count(*), coalesce(sum(bytes), 0) FROM workspace").fetchone()
        return int(n), int(size)

    def workspace_bytes(self, owner: str) -> int:
        return int(self.cursor().execute(
            "SELECT coalesce(sum(bytes), 0) FROM workspace WHERE owner = ?", [owner]).fetchone()[0])

    def commit_workspace(self, update: FileUpdate, entry: WorkspaceRecord, replace: bool) -> str | None:
        """Register a workspace dataset (its file, dataset and provenance rows) in one transaction.

        ``replace`` False: Conflict if the name is taken (two concurrent creates: the first
        commit wins). Returns the path of the file it replaced, for the caller to delete.
        """
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                old = cur.execute("SELECT path FROM workspace WHERE name = ?", [entry.name]).fetchone()
                taken = cur.execute("SELECT 1 FROM datasets WHERE name = ?", [entry.name]).fetchone()
                if (old or taken) and not replace:
                    raise Conflict(f"already exists: {entry.name!r}; choose another name, or put with "
                                   "mode 'replace' or 'append'")
                if old:
                    self._drop_files(cur, [old[0]])
                    cur.execute("DELETE FROM workspace WHERE name = ?", [entry.name])
                self._drop_files(cur, [update.path])
                file_id = cur.execute("SELECT nextval('file_ids')").fetchone()[0]
                cur.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, 'ok', NULL, now(), '{}')",
                            [file_id, update.path, update.format, update.size, update.mtime])
                self._insert_datasets(cur, update.datasets, {update.path: file_id})
                self._insert_ws(cur, entry)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self._changed()
        return old[0] if old and old[0] != update.path else None

    def _insert_ws(self, cur: duckdb.DuckDBPyConnection, e: WorkspaceRecord) -> None:
        cur.execute(f"INSERT INTO workspace ({self._WS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [e.name, e.owner, e.kind, e.path, e.bytes, e.parent, e.parent_version, e.base, e.cut,
                     list(e.columns), e.created_at, e.version, json.dumps(e.metadata, default=str), e.id or None,
                     e.parent_id])

    def drop_workspace(self, name: str) -> str:
        """Forget a workspace dataset; returns its file's path (the caller deletes the file)."""
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                row = cur.execute("SELECT path, id, kind, owner FROM workspace WHERE name = ?", [name]).fetchone()
                if row is None:
                    raise NotFound(f"no workspace dataset named {name!r}")
                self._drop_files(cur, [row[0]])
                cur.execute("DELETE FROM workspace WHERE name = ?", [name])
                if row[1]:  # remembered for the lineage of what was made from it
                    cur.execute("INSERT INTO workspace_removed VALUES (?, ?, ?, ?, ?)",
                                [row[1], name, row[2], row[3], time.time()])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self._changed()
        return row[0]

    def rename_workspace(self, old: str, new: str) -> None:
        """Rename a workspace dataset (its file stays); provenance that names it follows."""
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                if cur.execute("SELECT 1 FROM workspace WHERE name = ?", [old]).fetchone() is None:
                    raise NotFound(f"no workspace dataset named {old!r}")
                if cur.execute("SELECT 1 FROM datasets WHERE name = ?", [new]).fetchone() is not None:
                    raise Conflict(f"already exists: {new!r}; choose another name")
                cur.execute("UPDATE datasets SET name = ? WHERE name = ?", [new, old])
                cur.execute("UPDATE workspace SET name = ? WHERE name = ?", [new, old])
                cur.execute("UPDATE workspace SET parent = ? WHERE parent = ?", [new, old])
                cur.execute("UPDATE workspace SET base = ? WHERE base = ?", [new, old])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        self._changed()
