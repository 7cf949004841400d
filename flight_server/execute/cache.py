"""Decoded Arrow column chunks kept in memory, bounded in bytes, least recently used out.

Reading a ROOT basket or an HDF5 chunk means decompressing and deserialising it again
on every request; the hot columns of a popular dataset (a cut's columns first of all)
are read over and over. This cache keeps the decoded Arrow arrays, keyed by

    (file identity = path + size + mtime, object, column, entry range, variant)

so a second identical read is served from memory, and a rewritten file (new size or
mtime) can never be answered from the old bytes: its first sighting under a new
identity drops every chunk of the old one. ``variant`` separates decodings of the same
bytes that differ (HDF5 slices, the cut phase's source types).

Arrow arrays are immutable, so a cached chunk is handed out without copying.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import pyarrow as pa

MiB = 1 << 20
DEFAULT_CACHE_BYTES = 512 * MiB

Column = Union[pa.Array, pa.ChunkedArray]


@dataclass(frozen=True)
class FileIdentity:
    """What makes two reads of a path the same bytes."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str, size: int, mtime: float) -> "FileIdentity":
        return cls(path, int(size), int(round(mtime * 1e9)))


@dataclass(frozen=True)
class ChunkKey:
    file: FileIdentity
    object_path: str
    column: str
    entry_start: int
    entry_stop: int
    variant: str = ""


def column_bytes(column: Column) -> int:
    """Memory a cached column holds: its buffers, whole (a slice keeps its parent alive)."""
    return int(column.get_total_buffer_size())


class ChunkCache:
    """LRU cache of column chunks bounded by ``max_bytes`` (0 disables it)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max(0, int(max_bytes))
        self._lock = threading.Lock()
        self._chunks: OrderedDict[ChunkKey, tuple[Column, int]] = OrderedDict()
        self._files: dict[str, FileIdentity] = {}        # path → identity whose chunks are held
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._chunks)

    # ------------------------------------------------------------ single chunks

    def get(self, key: ChunkKey) -> Column | None:
        """The cached column, or None (a miss); counts either."""
        if not self.enabled:
            return None
        with self._lock:
            self._see(key.file)
            found = self._chunks.get(key)
            if found is None:
                self.misses += 1
                return None
            self._chunks.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: ChunkKey, column: Column) -> bool:
        """Keep ``column`` (False when it is larger than the whole cache)."""
        if not self.enabled:
            return False
        size = column_bytes(column)
        if size > self.max_bytes:
            return False
        with self._lock:
            self._see(key.file)
            old = self._chunks.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._chunks[key] = (column, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._chunks.popitem(last=False)
                self._bytes -= dropped
                self.evictions += 1
            return True

    def _see(self, ident: FileIdentity) -> None:
        """Note the identity a path has now; chunks of any earlier identity go (lock held)."""
        known = self._files.get(ident.path)
        if known == ident:
            return
        self._files[ident.path] = ident
        if known is not None:
            self._drop(lambda k: k.file == known)
            self.invalidations += 1

    def _drop(self, which: Callable[[ChunkKey], bool]) -> int:
        gone = [k for k in self._chunks if which(k)]
        for k in gone:
            self._bytes -= self._chunks.pop(k)[1]
        return len(gone)

    def invalidate(self, path: str) -> int:
        """Forget every chunk of ``path`` (e.g. after a rescan saw it change); returns how many."""
        with self._lock:
            self._files.pop(path, None)
            n = self._drop(lambda k: k.file.path == path)
            if n:
                self.invalidations += 1
            return n

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._files.clear()
            self._bytes = 0

    # ------------------------------------------------------------ tables

    def read(self, file: FileIdentity, object_path: str, columns: Sequence[str], entry_start: int,
             entry_stop: int, read: Callable[[list[str]], pa.Table], variant: str = "") -> pa.Table:
        """``columns`` of one chunk as a table: cached columns from memory, the others
        read together with one ``read(missing_columns)`` call and then kept."""
        columns = list(columns)
        if not self.enabled:
            return read(columns)
        found: dict[str, Column] = {}
        for c in columns:
            col = self.get(ChunkKey(file, object_path, c, entry_start, entry_stop, variant))
            if col is not None:
                found[c] = col
        missing = [c for c in columns if c not in found]
        if missing:
            table = read(missing)
            for c in missing:
                col = table.column(c)
                if col.num_chunks == 1:
                    col = col.chunk(0)
                found[c] = col
                self.put(ChunkKey(file, object_path, c, entry_start, entry_stop, variant), col)
        return pa.table({c: found[c] for c in columns})

    def stats(self) -> dict:
        """Counters for the ``stats`` action."""
        with self._lock:
            looked = self.hits + self.misses
            return {"max_bytes": self.max_bytes, "bytes": self._bytes, "chunks": len(self._chunks),
                    "hits": self.hits, "misses": self.misses,
                    "hit_rate": round(self.hits / looked, 4) if looked else None,
                    "evictions": self.evictions, "invalidations": self.invalidations}
