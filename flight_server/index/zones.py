"""Collecting zone maps: at index time for small files, lazily (in the background) for the rest.

Zones are the object's clusters/chunks as the catalog records them (``boundaries``), cut further
into blocks of at most ``ZONE_ROWS`` entries so that a contiguous HDF5 dataset or one huge cluster
still has zones to skip. Values are read through the same sources the server reads with, so the
statistics describe exactly what a cut will see.

Both go through the ``ZoneCollector``'s background thread (one file at a time, maps written in
batches of many files per transaction), so indexing and serving never wait for them: the indexer
queues every small file it records; planning a cut that finds no zone map for a column of a file
(``catalog.zones.want``) queues that column of that file (a bounded queue, each file identity,
object and column once). ``wait()`` blocks until the queue is done (the ``index`` command, tests).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord, PartRecord, ZoneMapRecord
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.files import change
from arrowroot.flight_server.core.zones import Zone, zone_of, zoneable
from arrowroot.flight_server.sources import source_for

log = logging.getLogger("arrowroot.zones")

ZONE_INDEX_BYTES = 32 << 20    # files up to this size get zone maps when they are indexed
ZONE_ROWS = 65_536             # the largest zone (clusters and chunks larger than this are cut)
READ_ROWS = 1 << 20            # entries read at once while collecting
FORMATS = ("root", "hdf5", "lh5", "parquet")
SKIP_KINDS = ("th1", "th2", "th3", "tprofile", "tprofile2d", "tprofile3d")   # histograms: bins, not events


def zone_edges(boundaries: Sequence[int], entries: int) -> list[tuple[int, int]]:
    """[start, stop) of each zone: between boundaries, cut into pieces of at most ZONE_ROWS."""
    starts = sorted({0, *(int(b) for b in boundaries if 0 < b < entries)})
    out: list[tuple[int, int]] = []
    for a, b in zip(starts, starts[1:] + [entries]):
        step = -(-(b - a) // -(-(b - a) // ZONE_ROWS)) if b > a else 1
        out.extend((x, min(b, x + step)) for x in range(a, b, step))
    return out


def zone_columns(schema: pa.Schema, wanted: Iterable[str] | None = None) -> list[str]:
    names = [f.name for f in schema if zoneable(f.type)]
    return names if wanted is None else [n for n in names if n in set(wanted)]


def to_record(column: str, zones: Sequence[Zone]) -> ZoneMapRecord:
    return ZoneMapRecord(column, tuple(z.start for z in zones), tuple(z.stop for z in zones),
                         tuple(z.min for z in zones), tuple(z.max for z in zones), tuple(z.nulls for z in zones),
                         tuple(z.nans for z in zones), tuple(z.value_nulls for z in zones),
                         tuple(z.min_len for z in zones), tuple(z.max_len for z in zones),
                         tuple(z.exact for z in zones))


def from_record(m: ZoneMapRecord) -> list[Zone]:
    return [Zone(*values) for values in zip(m.starts, m.stops, m.mins, m.maxs, m.nulls, m.nans, m.value_nulls,
                                            m.min_lens, m.max_lens, m.exact)]


def collect(path: str, fmt: str, kind: str, object_path: str, boundaries: Sequence[int], entries: int,
            columns: Sequence[str]) -> list[ZoneMapRecord]:
    """Zone maps of ``columns`` of one object, read with the format's own reader."""
    edges = zone_edges(boundaries, entries)
    if not columns or not edges:
        return []
    reader = source_for(fmt).open(path, object_path, kind)
    try:
        out = []
        for column in columns:
            zones: list[Zone] = []
            i = 0
            try:
                while i < len(edges):   # consecutive zones read together, up to READ_ROWS entries
                    j = i + 1
                    while j < len(edges) and edges[j][1] - edges[i][0] <= READ_ROWS:
                        j += 1
                    start, stop = edges[i][0], edges[j - 1][1]
                    values = reader.read([column], start, stop).column(0)
                    zones.extend(zone_of(values.slice(a - start, b - a), a, b) for a, b in edges[i:j])
                    i = j
            except Exception as exc:  # this column stays without a zone map; the others get theirs
                log.info("no zone map for %s:%s %s (%s: %s)", os.path.basename(path), object_path, column,
                         type(exc).__name__, exc)
                continue
            out.append(to_record(column, zones))
        return out
    finally:
        reader.close()


@dataclass(frozen=True)
class Job:
    path: str           # relative to the served root
    size: int
    mtime: float
    fmt: str
    kind: str
    object_path: str
    boundaries: tuple[int, ...]
    entries: int
    columns: tuple[str, ...]


class ZoneCollector:
    """Collects zone maps for the catalog in a background thread: what the indexer queues
    (``queue``) and what planning finds missing (``want``, the catalog's ``zones.on_missing``)."""

    def __init__(self, root: Path, catalog: Catalog, max_queue: int = 50_000, batch: int = 64):
        self.root = Path(root)
        self.catalog = catalog
        self.batch = batch
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._seen: set[tuple] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.collected = 0
        catalog.zones.on_missing = self.want
        _COLLECTORS.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the file in hand, write nothing more, end the thread (at exit: a thread inside
        DuckDB when the interpreter ends aborts the process)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            try:
                self._queue.put_nowait(None)  # wakes it
            except queue.Full:
                pass
            thread.join(timeout)

    def want(self, rec: DatasetRecord, parts: Sequence[PartRecord], columns: tuple[str, ...]) -> None:
        """Queue the zone maps of ``columns`` in ``parts`` (each file and column once)."""
        if rec.format not in FORMATS or rec.kind in SKIP_KINDS:
            return
        schema = pa.ipc.read_schema(pa.py_buffer(rec.schema))
        names = tuple(zone_columns(schema, columns))
        if not names:
            return
        for p in parts:
            if not self.queue(Job(p.path, p.size, p.mtime, rec.format, rec.kind, p.object_path, tuple(p.boundaries),
                                  p.entries, names)):
                return

    def queue(self, job: Job) -> bool:
        """Queue one job (once per file identity, object and columns); False when the queue is full."""
        key = (job.path, job.size, job.mtime, job.object_path, job.columns)
        with self._lock:
            if self._stopping:
                return False
            if key in self._seen:
                return True
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen.add(key)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self._seen.discard(key)   # asked again by a later plan
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="zone-maps", daemon=True)
                self._thread.start()
        return True

    def _maps(self, job: Job) -> list[ZoneMapRecord]:
        """One job's zone maps ([] when the file could not be read or changed; never raises:
        zone maps are an optimisation)."""
        full = os.path.join(self.root, job.path)
        try:
            if change(full, job.size, job.mtime)[1]:
                return []
            return collect(full, job.fmt, job.kind, job.object_path, job.boundaries, job.entries, job.columns)
        except Exception as exc:
            log.info("no zone maps for %s:%s (%s: %s)", job.path, job.object_path, type(exc).__name__, exc)
            return []

    def _store(self, done: list[tuple[Job, list[ZoneMapRecord]]]) -> None:
        if self._stopping:
            return
        try:
            self.collected += self.catalog.zones.record_many(
                [(j.path, j.size, j.mtime, j.object_path, maps) for j, maps in done])
        except Exception:  # e.g. the catalog closed under a stopping server
            log.warning("zone maps could not be stored", exc_info=True)

    def wait(self, timeout: float = 300.0) -> None:
        """Until every queued job is done (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _loop(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=30)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            jobs = [job]
            while len(jobs) < self.batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if not self._stopping:
                    self._store([(j, self._maps(j)) for j in jobs if j is not None and not self._stopping])
            finally:
                for _ in jobs:
                    self._queue.task_done()
            if self._stopping:
                with self._lock:
                    self._thread = None
                return


_COLLECTORS: weakref.WeakSet[ZoneCollector] = weakref.WeakSet()


@atexit.register
def _stop_collectors() -> None:
    for collector in list(_COLLECTORS):
        collector.stop()
