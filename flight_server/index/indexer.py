"""Walks the served directory and keeps the catalog in step with the files on disk.

Incremental: a file whose size and mtime are unchanged is skipped, deleted files are
dropped, new and changed files are (re)scanned. One unreadable file is recorded with
its error and never stops the rest.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from arrowroot.catalog.models import ColumnRecord, FileUpdate, NewDataset
from arrowroot.catalog.store import Catalog

from arrowroot.flight_server.core.files import matches
from arrowroot.flight_server.core.errors import InvalidRequest, quote
from arrowroot.flight_server.datasets.config import CONFIG_NAME, load_config
from arrowroot.flight_server.datasets.derive import derive
from arrowroot.flight_server.sources import DatasetInfo, detect, timeseries
from arrowroot.flight_server.sources.base import without_paths
from arrowroot.flight_server.index.zones import FORMATS, SKIP_KINDS, ZONE_INDEX_BYTES, Job, ZoneCollector, zone_columns

log = logging.getLogger("arrowroot.indexer")

#: file suffixes that claim a format: such a file that no source recognises is an error, not ignored
EXTENSIONS = {".root": "ROOT", ".h5": "HDF5", ".hdf5": "HDF5", ".hdf": "HDF5", ".he5": "HDF5", ".lh5": "HDF5"}
BATCH_FILES = 256


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    derived: int = 0                                   # multi-file datasets (declared + folder)
    drift: list[dict] = field(default_factory=list)   # schema drift found in them, by dataset
    not_merged: list[dict] = field(default_factory=list)  # folder groups that are not one table, and why
    held: list[str] = field(default_factory=list)      # refresh(): files left for later (still being written)
    derived_written: bool = False                      # the multi-file datasets changed

    def as_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged, "errors": [{"path": p, "error": e} for p, e in self.errors],
                "seconds": round(self.seconds, 3), "derived": self.derived, "drift": self.drift,
                "not_merged": self.not_merged}


def to_new_datasets(rel_path: str, fmt: str, infos: list[DatasetInfo]) -> list[NewDataset]:
    """Catalog rows for the datasets found in one file."""
    out = []
    for info in infos:
        columns = [
            ColumnRecord(c.name, str(c.arrow_type) if c.arrow_type is not None else None, c.source_type,
                         tuple(c.shape), c.compressed_bytes, c.uncompressed_bytes, c.readable, c.reason)
            for c in info.columns
        ]
        out.append(NewDataset(
            name=f"{rel_path}:{info.object_path}",
            kind=info.kind,
            format=fmt,
            entries=info.entries,
            schema=info.schema.serialize().to_pybytes(),
            attributes=info.attributes,
            columns=columns,
            parts=[(rel_path, info.object_path, info.entries, list(info.boundaries), None)],
        ))
    return out


class Indexer:
    """Indexes ``root`` into ``catalog``; one run at a time, callable from any thread."""

    def __init__(self, root: Path, catalog: Catalog, show_internal: bool = False, *,
                 links_outside_root: bool = False, zone_index_bytes: int = ZONE_INDEX_BYTES):
        self.root = Path(root)
        self.catalog = catalog
        #: zone maps: collected while indexing files up to this size, lazily (first cut read) for others
        self.zone_index_bytes = zone_index_bytes
        self.zones = ZoneCollector(self.root, catalog)
        #: list the internals of file libraries too (PyTables' index arrays, zero-column objects)
        self.show_internal = show_internal
        #: follow symbolic links whose target is outside the root (default: only links inside it)
        self.links_outside_root = links_outside_root
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.running = False
        # summed over runs, for the metrics (server/metrics.py); times are Unix seconds
        self._totals = {"runs": 0, "failed_runs": 0, "added": 0, "updated": 0, "removed": 0, "unchanged": 0,
                        "errors": 0, "last_start": None, "last_end": None}
        #: bumped after every run that changed the catalog; followers wait on it (``wait_change``)
        self.version = 0
        self._change = threading.Condition()

    def normalise(self, sub: str | None) -> str | None:
        """``sub`` as a clean relative posix path ("./hep/" → "hep"); None for the whole root.

        Rescans of "." or "./hep" must find the catalog's paths ("hep/x.root"), or every file
        looks new and its datasets get new ids (breaking outstanding tickets)."""
        if sub is None:
            return None
        if not isinstance(sub, str):
            raise InvalidRequest("path: a string expected")
        text = sub.replace("\\", "/").strip()
        if text.startswith("/") or "\x00" in text:
            raise InvalidRequest(f"path {quote(sub)}: give a path relative to the served directory")
        clean = posixpath.normpath(text) if text else "."
        if clean == ".":
            return None
        if clean == ".." or clean.startswith("../"):
            raise InvalidRequest(f"path {quote(sub)} is outside the served directory")
        return clean

    def _inside(self, target: str, root: str) -> bool:
        return target == root or target.startswith(root + os.sep)

    def _allowed(self, path: str, root: str) -> bool:
        """A path is walked if it is no link, or a link allowed by the policy."""
        if not os.path.islink(path):
            return True
        return self.links_outside_root or self._inside(os.path.realpath(path), root)

    def walk(self, sub: str | None = None) -> dict[str, os.stat_result]:
        """Relative path → stat of every regular file under root (or root/sub).

        Symbolic links (files and directories) are followed only when their target is inside
        the root, unless ``links_outside_root``; each real directory is walked once (no loops)."""
        rel_sub = self.normalise(sub)
        root = os.path.realpath(self.root)
        base = os.path.join(root, rel_sub) if rel_sub else root
        found: dict[str, os.stat_result] = {}
        if rel_sub:
            parts = rel_sub.split("/")
            for i in range(1, len(parts) + 1):  # every component of sub obeys the link policy
                if not self._allowed(os.path.join(root, *parts[:i]), root):
                    raise InvalidRequest(f"path {quote(sub)} leads outside the served directory (a link)")
        if os.path.isfile(base):
            found[rel_sub or os.path.basename(base)] = os.stat(base)
            return found
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d != "__pycache__" and self._allowed(os.path.join(dirpath, d), root)
            )
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                if not self._allowed(full, root):
                    log.warning("not indexed: %s is a link to outside the served directory",
                                os.path.relpath(full, root))
                    continue
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[Path(os.path.relpath(full, root)).as_posix()] = st
        return found

    def run(self, sub: str | None = None, progress: Callable[[str, int, int], None] | None = None) -> IndexReport:
        """Bring the catalog up to date for root (or one sub-path of it)."""
        with self._lock:
            self.running = True
            started = time.time()
            try:
                report = self._run(sub, progress)
            except BaseException:
                self._totals["failed_runs"] += 1
                raise
            finally:
                self.running = False
            t = self._totals
            t["runs"] += 1
            for k in ("added", "updated", "removed", "unchanged"):
                t[k] += getattr(report, k)
            t["errors"] += len(report.errors)
            if not sub:  # a whole-tree run: everything that changed before it started is in
                t["last_start"], t["last_end"] = started, time.time()
            self._changed(report)
            return report

    def _changed(self, report: IndexReport) -> None:
        if report.added or report.updated or report.removed or report.derived_written:
            with self._change:
                self.version += 1
                self._change.notify_all()

    def wake(self) -> None:
        """Wake every ``wait_change`` (the server is stopping)."""
        with self._change:
            self._change.notify_all()

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until the catalog changed after version ``seen`` (or ``timeout`` s); the version now."""
        with self._change:
            self._change.wait_for(lambda: self.version != seen, timeout)
            return self.version

    def refresh(self, paths: Iterable[str], hold: Callable[[str, os.stat_result], bool] | None = None) -> IndexReport:
        """Bring these files (relative paths; a directory means everything under it) up to date: the
        live indexer's step (``watch.py``), one transaction and one derivation for all of them.

        A file whose size or mtime moved while it was scanned is left for later (in ``held``), as is
        a file that failed to scan while ``hold(path, stat)`` says it may still be being written;
        its catalog entry stays as it was meanwhile."""
        with self._lock:
            self.running = True
            try:
                with self.catalog.consistent():  # readers see the files and the folders they make at once
                    report = self._refresh(list(paths), hold)
            finally:
                self.running = False
            t = self._totals
            t["runs"] += 1
            for k in ("added", "updated", "removed", "unchanged"):
                t[k] += getattr(report, k)
            t["errors"] += len(report.errors)
            self._changed(report)
            return report

    def _refresh(self, paths: list[str], hold: Callable[[str, os.stat_result], bool] | None) -> IndexReport:
        t0 = time.perf_counter()
        report = IndexReport()
        owned = self.catalog.workspace_paths()
        known = {p: r for p, r in self.catalog.files().items() if p not in owned}
        found: dict[str, os.stat_result] = {}
        gone: set[str] = set()
        root = os.path.realpath(self.root)
        for raw in paths:
            rel = self.normalise(raw)
            if rel is None:
                continue
            full = os.path.join(root, rel)
            if any(part.startswith(".") for part in rel.split("/")) or not self._allowed(full, root):
                continue
            try:
                st = os.stat(full)
            except OSError:
                st = None
            if st is None:  # deleted: the file, or everything under a deleted directory
                gone.update(p for p in known if p == rel or p.startswith(rel + "/"))
            elif stat.S_ISDIR(st.st_mode):  # a directory moved in, or created with files already in it
                inside = self.walk(rel)
                found.update((p, s) for p, s in inside.items() if p not in owned)
                gone.update(p for p in known if p.startswith(rel + "/") and p not in inside)
            elif stat.S_ISREG(st.st_mode) and rel not in owned:
                found[rel] = st
        if gone:
            report.removed = self.catalog.remove_files(sorted(gone))
        self._configure_timeseries(report)
        updates: list[FileUpdate] = []
        for rel, st in sorted(found.items()):
            rec = known.get(rel)
            if rec is not None and matches(st, rec.size, rec.mtime):
                report.unchanged += 1
                continue
            update = self.scan_file(rel, st)
            try:
                after = os.stat(self.root / rel)
            except OSError:
                after = None
            if after is None or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                report.held.append(rel)   # it moved under the scan: what we read may be torn
                continue
            if update.error and update.format is not None and hold is not None and hold(rel, st):
                report.held.append(rel)   # probably half-written: try again when it settles
                continue
            updates.append(update)
            if update.format is None:
                continue
            if rec is not None:
                report.updated += 1
            else:
                report.added += 1
            if update.error:
                report.errors.append((rel, update.error))
        for i in range(0, len(updates), BATCH_FILES):
            self.catalog.record_files(updates[i:i + BATCH_FILES])
        if report.added or report.updated or report.removed:
            derived = derive(self.catalog, self.root)
            report.derived, report.drift, report.not_merged = derived.datasets, derived.drift, derived.not_merged
            report.derived_written = derived.written
            report.errors.extend(derived.errors)
        report.seconds = time.perf_counter() - t0
        if report.added or report.updated or report.removed:
            log.info("live: %d added, %d updated, %d removed, %d held, %d errors in %.3fs", report.added,
                     report.updated, report.removed, len(report.held), len(report.errors), report.seconds)
        return report

    def totals(self) -> dict:
        """Runs, files by result and errors summed over runs; start and end of the last whole run."""
        return dict(self._totals)

    def _run(self, sub: str | None, progress: Callable[[str, int, int], None] | None) -> IndexReport:
        t0 = time.perf_counter()
        report = IndexReport()
        sub = self.normalise(sub)
        self._configure_timeseries(report)
        on_disk = self.walk(sub)
        # workspace files (uploads, skims) are registered by the workspace, never indexed here
        owned = self.catalog.workspace_paths()
        on_disk = {p: st for p, st in on_disk.items() if p not in owned}
        known = {p: r for p, r in self.catalog.files().items() if p not in owned}
        prefix = (sub + "/") if sub else ""
        in_scope = {p: r for p, r in known.items() if not sub or p == sub or p.startswith(prefix)}
        gone = [p for p in in_scope if p not in on_disk]
        if gone:
            report.removed = self.catalog.remove_files(gone)
        todo = []
        for rel, st in on_disk.items():
            rec = in_scope.get(rel)
            if rec is not None and matches(st, rec.size, rec.mtime):
                report.unchanged += 1
                if rec.status == "error":  # still broken: a warm restart says so too
                    report.errors.append((rel, rec.error or "unknown error"))
            else:
                todo.append((rel, st, rec is not None))
        batch: list[FileUpdate] = []
        flushed = time.monotonic()
        for i, (rel, st, existed) in enumerate(todo):
            if progress:
                progress(rel, i, len(todo))
            update = self.scan_file(rel, st)
            # Written in batches (one transaction each), at least every second so a
            # server that is indexing in the background shows datasets as they come.
            batch.append(update)
            if len(batch) >= BATCH_FILES or time.monotonic() - flushed > 1.0:
                self.catalog.record_files(batch)
                self._zone_maps(batch)
                batch, flushed = [], time.monotonic()
            if update.format is None:
                continue
            if existed:
                report.updated += 1
            else:
                report.added += 1
            if update.error:
                report.errors.append((rel, update.error))
        self.catalog.record_files(batch)
        self._zone_maps(batch)
        if progress:
            progress("", len(todo), len(todo))
        derived = derive(self.catalog, self.root)  # multi-file datasets, from the catalog alone
        report.derived, report.drift, report.not_merged = derived.datasets, derived.drift, derived.not_merged
        report.derived_written = derived.written
        report.errors.extend(derived.errors)
        report.seconds = time.perf_counter() - t0
        log.info("indexed %s: %d added, %d updated, %d removed, %d unchanged, %d errors in %.2fs",
                 sub or str(self.root), report.added, report.updated, report.removed, report.unchanged,
                 len(report.errors), report.seconds)
        return report

    def _zone_maps(self, updates: list[FileUpdate]) -> None:
        """Queue the zone maps of every zoneable column of the small files just recorded (the
        collector's thread reads them; ``zones.wait()`` for them to be there)."""
        import pyarrow as pa

        for u in updates:
            if u.error or u.format not in FORMATS or u.size > self.zone_index_bytes:
                continue
            for ds in u.datasets:
                if ds.kind in SKIP_KINDS or not ds.entries:
                    continue
                columns = tuple(zone_columns(pa.ipc.read_schema(pa.py_buffer(ds.schema))))
                if columns:
                    _, obj, entries, boundaries, _ = ds.parts[0]
                    self.zones.queue(Job(u.path, u.size, u.mtime, u.format, ds.kind, obj, tuple(boundaries), entries,
                                         columns))

    def _configure_timeseries(self, report: IndexReport) -> None:
        """arrowroot.toml's [timeseries.*] site mappings for this run's scans (errors reported)."""
        timeseries.configure(())
        try:
            sites = load_config(self.root).timeseries
        except ValueError:
            return  # derive() reports a faulty arrowroot.toml
        try:
            timeseries.configure(sites)
        except ValueError as exc:
            report.errors.append((CONFIG_NAME, str(exc)))
            log.warning("%s: %s", CONFIG_NAME, exc)

    def scan_file(self, rel: str, st: os.stat_result) -> FileUpdate:
        """What the catalog should hold for one file (nothing is written here)."""
        full = self.root / rel
        source = detect(str(full))
        if source is None:
            claimed = EXTENSIONS.get(full.suffix.lower())
            if claimed is not None:  # named like ours, but the bytes say otherwise: tell the user
                msg = f"not a {claimed} file: its first bytes are not the {claimed} signature (truncated or renamed?)"
                log.warning("cannot index %s: %s", rel, msg)
                return FileUpdate(rel, claimed.lower(), st.st_size, st.st_mtime, error=msg)
            # Not a format we serve; remembered so it is not re-read on every scan.
            return FileUpdate(rel, None, st.st_size, st.st_mtime)
        if self.show_internal and getattr(source, "show_internal", None) is False:
            source = type(source)(show_internal=True)
        try:
            infos = source.scan(str(full))
            datasets = to_new_datasets(rel, source.format, infos)
        except Exception as exc:  # any failure is this file's problem, not the index's
            # clients read this message: the file by its served name, no server path, one line
            text = str(exc)
            for p in {str(full), str(full.resolve())}:
                text = text.replace(p, rel)
            msg = " ".join(f"{type(exc).__name__}: {without_paths(text, str(full))}".split())
            log.warning("cannot index %s: %s", rel, msg)
            return FileUpdate(rel, source.format, st.st_size, st.st_mtime, error=msg)
        if not datasets:
            msg = f"no datasets: the {source.format} file holds nothing arrowroot serves as a table"
            return FileUpdate(rel, source.format, st.st_size, st.st_mtime, error=msg)
        return FileUpdate(rel, source.format, st.st_size, st.st_mtime, tuple(datasets))

    def start(self, sub: str | None = None) -> threading.Thread:
        """Index in a background thread (the server answers meanwhile)."""
        t = threading.Thread(target=self._background, args=(sub,), name="indexer", daemon=True)
        self._thread = t
        self.running = True
        t.start()
        return t

    def _background(self, sub: str | None) -> None:
        try:
            self.run(sub)
        except Exception:
            log.exception("background indexing failed")

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
