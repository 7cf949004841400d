"""Decoded column pieces kept in memory (and optionally on local disk), keyed by storage.

Reading a ROOT cluster or an HDF5 chunk means decompressing and deserialising it again on every
request. This cache keeps the decoded Arrow arrays keyed by *where they are stored*, not by who
asked:

    (file identity, object, column, storage piece, variant)

A storage piece is a ROOT cluster or a block of whole HDF5 chunks (``sources.base.Units``), so any
read that touches a cached piece hits: another column selection, another entry range, another
user's query, a SQL scan, an HTTP download, a skim or a data node (they all run tasks through
``execute/``). The cache sits below the access check: it only ever serves reads of tasks the caller
was allowed to get, and it holds nothing a task could not read from the file itself.

File identity is path + size + mtime + inode + ctime (all from the one ``stat`` the executor makes
before reading anyway): a rewritten or replaced file never answers from the old bytes, and its
first sighting under a new identity drops every piece of the old one. ``variant`` separates
decodings of the same bytes that differ (HDF5 per-axis slices).

Memory is bounded in bytes, least recently used out (``cachetools.LRUCache`` sized by each
array's buffers). The optional disk tier (``DiskTier``, ``--cache-dir``) keeps decoded pieces as
Arrow IPC files on local disk, bounded too, so a restarted server starts warm. Arrow arrays are
immutable, so a cached piece is handed out without copying.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import cachetools
import pyarrow as pa

from arrowroot.flight_server.core.files import FileIdentity
from arrowroot.flight_server.sources.base import Units

if TYPE_CHECKING:
    from arrowroot.flight_server.core.settings import Settings

log = logging.getLogger("arrowroot.cache")

MiB = 1 << 20
#: a storage piece only partly inside a read is read whole (and cached) when the read covers at
#: least this share of it, or the piece is this small; otherwise just the rows asked for are read
WHOLE_SHARE = 0.5
SMALL_PIECE_ROWS = 4096

Column = Union[pa.Array, pa.ChunkedArray]


@dataclass(frozen=True)
class ChunkKey:
    file: FileIdentity
    object_path: str
    column: str
    entry_start: int   # the storage piece (or, for a partial read, the rows read)
    entry_stop: int
    variant: str = ""

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:40]


def column_bytes(column: Column) -> int:
    """Memory a cached column holds: its buffers, whole (a slice keeps its parent alive)."""
    return int(column.get_total_buffer_size())


def _array(column: Column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _slice(arr: pa.Array, offset: int, length: int) -> pa.Array:
    """``arr.slice(offset, length)``; a fixed_size_list of fixed_size_lists (an HDF5 N-D column) is
    rebuilt over a slice of its values instead: pyarrow's ``take``/``filter`` misread such a slice
    (the offset is applied twice; seen with pyarrow 26), and the executor takes passing rows."""
    t = arr.type
    if not (pa.types.is_fixed_size_list(t) and pa.types.is_fixed_size_list(t.value_type)):
        return arr.slice(offset, length)
    if offset == 0 and length == len(arr):
        return arr
    sizes, level = [], arr
    while pa.types.is_fixed_size_list(level.type):
        if level.null_count:
            return pa.concat_arrays([arr.slice(offset, length)])   # a copy: nulls at a list level
        sizes.append(level.type.list_size)
        level = level.values
    flat = arr.slice(offset, length)
    for _ in sizes:
        flat = flat.flatten()
    for size in reversed(sizes):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


class _Memory(cachetools.LRUCache):
    """The LRU store, counting what it evicts."""

    def __init__(self, max_bytes: int):
        super().__init__(maxsize=max_bytes, getsizeof=lambda v: v[1])
        self.evictions = 0

    def popitem(self):  # called by cachetools when over maxsize
        item = super().popitem()
        self.evictions += 1
        return item


class DiskTier:
    """Decoded pieces as Arrow IPC files under one local directory, bounded in bytes.

    Layout: ``<dir>/v1/<path digest>/<identity digest>/<key digest>.arrow``. Writes go through a
    background thread (a bounded queue: when the disk falls behind, pieces are not written,
    never waited for) into a temporary file renamed into place, so nothing half-written is ever
    read. Least recently used files go first when the directory is over ``max_bytes``; a file's
    new identity removes its old identity's folder.
    """

    VERSION = "v1"

    def __init__(self, directory: Path, max_bytes: int, queue_size: int = 64):
        self.dir = Path(directory).expanduser().resolve() / self.VERSION
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max(0, int(max_bytes))
        self._lock = threading.Lock()
        self._index: OrderedDict[str, tuple[Path, int]] = OrderedDict()  # key digest → (file, bytes)
        self._identities: dict[str, str] = {}   # path digest → identity digest seen last
        self._bytes = 0
        self.hits = self.misses = self.writes = self.evictions = self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._load()
        self._writer = threading.Thread(target=self._write_loop, name="cache-disk", daemon=True)
        self._writer.start()

    def _load(self) -> None:
        """Index what an earlier run left (oldest first), removing leftovers of interrupted writes."""
        found = []
        for f in self.dir.glob("*/*/*"):
            if f.suffix != ".arrow":
                f.unlink(missing_ok=True)
                continue
            try:
                st = f.stat()
            except OSError:
                continue
            found.append((st.st_mtime_ns, f, st.st_size))
        for _, f, size in sorted(found):
            self._index[f.stem] = (f, size)
            self._bytes += size
        self._shrink()

    @staticmethod
    def _path_digest(path: str) -> str:
        return hashlib.sha256(path.encode()).hexdigest()[:24]

    def _file(self, key: ChunkKey) -> Path:
        return self.dir / self._path_digest(key.file.path) / key.file.digest() / (key.digest() + ".arrow")

    def get(self, key: ChunkKey) -> Column | None:
        digest = key.digest()
        with self._lock:
            found = self._index.get(digest)
            if found is None:
                self.misses += 1
                return None
            self._index.move_to_end(digest)
        try:
            with pa.OSFile(str(found[0])) as f:
                column = pa.ipc.open_file(f).get_batch(0).column(0)
            os.utime(found[0])  # recency survives a restart
        except (OSError, pa.ArrowInvalid, IndexError):
            with self._lock:
                if self._index.pop(digest, None) is not None:
                    self._bytes -= found[1]
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return column

    def put(self, key: ChunkKey, column: Column) -> None:
        """Queue ``column`` for writing; dropped (counted) when the writer is behind."""
        with self._lock:
            if key.digest() in self._index:
                return
        try:
            self._queue.put_nowait((key, column))
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def see(self, file: FileIdentity) -> None:
        """A path has this identity now: folders of its other identities go."""
        pd, ident = self._path_digest(file.path), file.digest()
        with self._lock:
            if self._identities.get(pd) == ident:
                return
            self._identities[pd] = ident
        folder = self.dir / pd
        if not folder.is_dir():
            return
        for old in folder.iterdir():
            if old.name != ident:
                self._forget(old)

    def forget_path(self, path: str) -> None:
        folder = self.dir / self._path_digest(path)
        if folder.is_dir():
            self._forget(folder)

    def _forget(self, folder: Path) -> None:
        with self._lock:
            for f in folder.rglob("*.arrow"):
                found = self._index.pop(f.stem, None)
                if found is not None:
                    self._bytes -= found[1]
        shutil.rmtree(folder, ignore_errors=True)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until queued pieces are written (tests, benchmarks, shutdown)."""
        done = threading.Event()
        self._queue.put((None, done), timeout=timeout)
        done.wait(timeout)

    def _write_loop(self) -> None:
        while True:
            key, column = self._queue.get()
            if key is None:
                column.set()
                continue
            try:
                self._write(key, column)
            except Exception:  # a full or broken disk must never break a read
                log.warning("chunk cache: cannot write to %s", self.dir, exc_info=True)
                with self._lock:
                    self.dropped += 1

    def _write(self, key: ChunkKey, column: Column) -> None:
        if self.max_bytes <= 0:
            return
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        batch = pa.record_batch([_array(column)], names=["v"])
        tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        os.replace(tmp, target)
        size = target.stat().st_size
        with self._lock:
            old = self._index.pop(target.stem, None)
            if old is not None:
                self._bytes -= old[1]
            self._index[target.stem] = (target, size)
            self._bytes += size
            self.writes += 1
        self._shrink()

    def _shrink(self) -> None:
        while True:
            with self._lock:
                if self._bytes <= self.max_bytes or not self._index:
                    return
                _, (f, size) = self._index.popitem(last=False)
                self._bytes -= size
                self.evictions += 1
            f.unlink(missing_ok=True)

    def stats(self) -> dict:
        with self._lock:
            return {"dir": str(self.dir.parent), "max_bytes": self.max_bytes, "bytes": self._bytes,
                    "chunks": len(self._index), "hits": self.hits, "misses": self.misses,
                    "writes": self.writes, "evictions": self.evictions, "dropped": self.dropped}


class ChunkCache:
    """Column pieces by storage key: memory (LRU, ``max_bytes``; 0 = none) over an optional disk tier."""

    def __init__(self, max_bytes: int, disk: DiskTier | None = None):  # max_bytes: Settings.cache_bytes
        self.max_bytes = max(0, int(max_bytes))
        self.disk = disk
        self._lock = threading.Lock()
        self._chunks = _Memory(max(1, self.max_bytes))
        self._files: dict[str, FileIdentity] = {}        # path → identity whose pieces are held
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 or self.disk is not None

    @property
    def bytes(self) -> int:
        return int(self._chunks.currsize) if self.max_bytes else 0

    @property
    def evictions(self) -> int:
        return self._chunks.evictions

    def __len__(self) -> int:
        return len(self._chunks)

    # ------------------------------------------------------------ single pieces

    def get(self, key: ChunkKey) -> Column | None:
        """The cached column (memory, then disk), or None (a miss); counts either."""
        if not self.enabled:
            return None
        with self._lock:
            self._see(key.file)
            found = self._chunks.get(key) if self.max_bytes else None
            if found is not None:
                self.hits += 1
                return found[0]
        column = self.disk.get(key) if self.disk is not None else None
        with self._lock:
            if column is None:
                self.misses += 1
                return None
            self.hits += 1
        self._keep(key, column)
        return column

    def put(self, key: ChunkKey, column: Column) -> bool:
        """Keep ``column`` in memory (False when it is larger than the whole memory tier) and,
        with a disk tier, on disk."""
        if not self.enabled:
            return False
        with self._lock:
            self._see(key.file)
        if self.disk is not None:
            self.disk.put(key, column)
        return self._keep(key, column)

    def _keep(self, key: ChunkKey, column: Column) -> bool:
        size = column_bytes(column)
        if not self.max_bytes or size > self.max_bytes:
            return False
        with self._lock:
            self._chunks[key] = (column, size)
        return True

    def _see(self, ident: FileIdentity) -> None:
        """Note the identity a path has now; pieces of any earlier identity go (lock held)."""
        known = self._files.get(ident.path)
        if known == ident:
            return
        self._files[ident.path] = ident
        if self.disk is not None:
            self.disk.see(ident)
        if known is not None:
            self._drop(lambda k: k.file == known)
            self.invalidations += 1

    def _drop(self, which: Callable[[ChunkKey], bool]) -> int:
        gone = [k for k in list(self._chunks.keys()) if which(k)]
        for k in gone:
            self._chunks.pop(k, None)
        return len(gone)

    def invalidate(self, path: str) -> int:
        """Forget every piece of ``path`` (e.g. after a rescan saw it change); returns how many."""
        with self._lock:
            self._files.pop(path, None)
            n = self._drop(lambda k: k.file.path == path)
            if n:
                self.invalidations += 1
        if self.disk is not None:
            self.disk.forget_path(path)
        return n

    def clear(self) -> None:
        """Empty the memory tier (the disk tier stays: it is what a restart would find)."""
        with self._lock:
            self._chunks.clear()
            self._files.clear()

    # ------------------------------------------------------------ tables

    def read(self, file: FileIdentity, object_path: str, columns: Sequence[str], entry_start: int,
             entry_stop: int, read: Callable[[list[str], int, int], pa.Table],
             units: Callable[[str], Units | None] = lambda c: None, variant: str = "") -> pa.Table:
        """``columns`` over [entry_start, entry_stop) as a table, assembled from cached storage
        pieces; the missing ones read with as few ``read(columns, start, stop)`` calls as the
        pieces allow (columns missing the same pieces together) and then kept.

        ``units(column)``: the column's storage pieces; None caches the exact range read.
        """
        columns = list(columns)
        if not self.enabled:
            return read(columns, entry_start, entry_stop)
        a, b = entry_start, entry_stop
        # per column: (lo, hi) = the rows of each piece inside the read, (rs, re) = what a miss reads
        plans: dict[str, list[tuple[int, int, int, int]]] = {}
        found: dict[tuple[str, int, int], Column] = {}
        for c in columns:
            u = units(c) if b > a else None
            plan = []
            for s, e in (u.covering(a, b) if u is not None else [(a, b)]):
                lo, hi = max(s, a), min(e, b)
                whole = (lo, hi) == (s, e) or hi - lo >= WHOLE_SHARE * (e - s) or e - s <= SMALL_PIECE_ROWS
                got = self.get(ChunkKey(file, object_path, c, s, e, variant))
                if got is not None and len(got) == e - s:
                    found[(c, lo, hi)] = got if (lo, hi) == (s, e) else _slice(_array(got), lo - s, hi - lo)
                elif not whole and (got := self.get(ChunkKey(file, object_path, c, lo, hi, variant))) is not None:
                    found[(c, lo, hi)] = got
                plan.append((lo, hi) + ((s, e) if whole else (lo, hi)))
            plans[c] = plan
        # runs of consecutive missing pieces per column; columns missing the same run are read together
        runs: dict[tuple[int, int], list[tuple[str, list[tuple[int, int, int, int]]]]] = {}
        for c, plan in plans.items():
            run: list[tuple[int, int, int, int]] = []
            for piece in plan + [None]:
                if piece is not None and (c, piece[0], piece[1]) not in found:
                    run.append(piece)
                    continue
                if run:
                    runs.setdefault((run[0][2], run[-1][3]), []).append((c, run))
                    run = []
        for (s, e), items in runs.items():
            table = read([c for c, _ in items], s, e)
            for c, pieces in items:
                col = _array(table.column(c))
                for lo, hi, rs, re in pieces:
                    # a piece of a longer read is copied, so the cache holds (and counts) only its rows
                    piece = col if (rs, re) == (s, e) else pa.concat_arrays([_array(col.slice(rs - s, re - rs))])
                    self.put(ChunkKey(file, object_path, c, rs, re, variant), piece)
                    found[(c, lo, hi)] = piece if (lo, hi) == (rs, re) else _slice(piece, lo - rs, hi - lo)
        out = {}
        for c in columns:
            parts = [found[(c, lo, hi)] for lo, hi, _, _ in plans[c]]
            out[c] = parts[0] if len(parts) == 1 else pa.chunked_array(parts)
        return pa.table(out)

    def stats(self) -> dict:
        """Counters for the ``stats`` action (and the metrics that read it)."""
        with self._lock:
            looked = self.hits + self.misses
            out = {"max_bytes": self.max_bytes, "bytes": self.bytes, "chunks": len(self._chunks) if self.max_bytes else 0,
                   "hits": self.hits, "misses": self.misses,
                   "hit_rate": round(self.hits / looked, 4) if looked else None,
                   "evictions": self.evictions, "invalidations": self.invalidations}
        if self.disk is not None:
            out["disk"] = self.disk.stats()
        return out


def chunk_cache(settings: Settings) -> ChunkCache:
    """The cache a server or data node runs with: ``cache_mb`` of memory, and a disk tier when
    ``cache_dir`` is set (``cache_dir_mb`` bounds it)."""
    disk = None
    if settings.cache_dir:
        disk = DiskTier(Path(settings.cache_dir), int(settings.cache_dir_mb * MiB))
    return ChunkCache(settings.cache_bytes, disk)


__all__ = ["ChunkCache", "ChunkKey", "DiskTier", "FileIdentity", "chunk_cache", "column_bytes"]
