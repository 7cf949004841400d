"""Open readers, keyed by file identity, and the check that a file is still the one planned."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from arrowroot.flight_server.core.errors import FileChanged, InvalidRequest
from arrowroot.flight_server.core.task import PartRead
from arrowroot.flight_server.core.files import FileIdentity, change, grown
from arrowroot.flight_server.execute.cache import ChunkCache
from arrowroot.flight_server.sources import Reader, source_for
from arrowroot.flight_server.sources.base import Units


class CachedReader(Reader):
    """A reader whose reads go through the column-chunk cache (one per ``get``): pieces are
    keyed by the file's identity and the reader's storage units, not by the read's range."""

    def __init__(self, reader: Reader, cache: ChunkCache, file: FileIdentity, object_path: str):
        self.reader = reader
        self.entries = getattr(reader, "entries", 0)
        self.cache = cache
        self.file = file
        self.object_path = object_path

    def units(self, column: str) -> Units | None:
        return self.reader.units(column)

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int,
             slices: Sequence[slice] = ()) -> pa.Table:
        variant = repr(tuple(slices)) if slices else ""
        return self.cache.read(self.file, self.object_path, columns, entry_start, entry_stop,
                               lambda cols, a, b: self.reader.read(cols, a, b, slices), self.reader.units,
                               variant)

    def close(self) -> None:
        """The wrapped reader belongs to the ReaderCache, which closes it."""


class ReaderCache:
    """Open readers keyed by file identity (path, object, size, mtime), least recently used dropped."""

    #: open readers kept: a level read holds one per tier and channel table (a LEGEND key has tens to
    #: hundreds), and reopening an LH5 table costs milliseconds; each open HDF5 table holds ~1 MiB of
    #: chunk cache at most
    SIZE = 128

    def __init__(self, root: Path, size: int = SIZE, chunks: ChunkCache | None = None,
                 links_outside_root: bool = False):
        self.root = Path(root).resolve()
        #: a symlink inside the root may point outside it only when the indexer was told to follow such links
        self.links_outside_root = links_outside_root
        self.size = size
        self.chunks = chunks if chunks is not None else ChunkCache(0)
        self._lock = threading.Lock()
        # open readers, with the identity (size, mtime, inode, ctime) their file had when opened
        self._readers: OrderedDict[tuple, tuple[Reader, FileIdentity]] = OrderedDict()
        self._pins: dict[tuple, int] = {}     # readers in use by a level task: not evicted
        self._mounts: dict[str, Path] = {}
        self._inside_seen: dict[str, tuple[int, int]] = {}  # path → (device, inode) found inside the root

    def mount(self, prefix: str, directory: Path) -> None:
        """Serve files under ``directory`` as ``<prefix>/...`` (the workspace, when it lies
        outside the served root)."""
        self._mounts[prefix] = Path(directory).resolve()

    def path_of(self, rel: str) -> tuple[str, str]:
        """Absolute path of a served file and the root it must stay in; a path whose name leaves
        the root is refused (``_inside`` checks where its symlinks lead)."""
        root = str(self.root)
        head, sep, tail = rel.partition("/")
        if sep and head in self._mounts:
            root, rel = str(self._mounts[head]), tail
        path = os.path.normpath(os.path.join(root, rel))
        if os.path.isabs(rel) or not path.startswith(root + os.sep):
            raise InvalidRequest("ticket: the file is outside the served directory")
        return path, root

    def _inside(self, path: str, root: str, st: os.stat_result | None) -> None:
        """A symlink in the directory must not lead out of it. ``realpath`` costs a system call
        per path component (5% of a small HTTP read), so a file found inside once is remembered by
        its device and inode: a link swapped to lead elsewhere reaches another file, which is
        checked again (the same file through a new route is still the file checked)."""
        if self.links_outside_root:
            return
        identity = (st.st_dev, st.st_ino) if st is not None else None
        if identity is not None and self._inside_seen.get(path) == identity:
            return
        if not os.path.realpath(path).startswith(root + os.sep):
            raise InvalidRequest("ticket: the file is outside the served directory")
        if identity is not None:
            if len(self._inside_seen) >= 65536:
                self._inside_seen.clear()
            self._inside_seen[path] = identity

    def check(self, part: PartRead, growing: bool = False) -> str:
        """Absolute path of the part's file, after checking it still matches the plan.

        ``growing`` (live data): a file at least as large and as new as planned passes too — it was
        appended to (or flushed in HDF5 SWMR mode), and the planned entries are read as they were."""
        return self._stat(part, growing)[0]

    def _stat(self, part: PartRead, growing: bool = False) -> tuple[str, os.stat_result]:
        path, root = self.path_of(part.path)
        st, changed = change(path, part.size, part.mtime)
        self._inside(path, root, st)
        if changed == "modified" and growing and st is not None and grown(st, part.size, part.mtime):
            changed = None
        if changed or st is None:
            raise FileChanged(part.path, f"the file was {changed}")
        return path, st

    def get(self, part: PartRead, fmt: str, kind: str, growing: bool = False) -> Reader:
        """The open reader of a part's file, reading through the chunk cache when it is on."""
        reader, identity = self._open(part, fmt, kind, growing=growing)
        if not self.chunks.enabled or not getattr(reader, "cacheable", True):
            return reader  # (workspace overlays: their bytes live in other files, checked on every read)
        return CachedReader(reader, self.chunks, identity, part.object_path)

    def acquire(self, part: PartRead, fmt: str, kind: str) -> tuple[Reader, tuple]:
        """Like ``get``, for a caller that keeps the reader across reads (a level task holds the
        tables of several tiers and channels): the reader is pinned, never closed by the LRU, until
        ``release(key)`` with the key returned here."""
        reader, identity = self._open(part, fmt, kind, pin=True)
        key = (part.path, part.object_path, part.size, part.mtime)
        if not self.chunks.enabled or not getattr(reader, "cacheable", True):
            return reader, key
        return CachedReader(reader, self.chunks, identity, part.object_path), key

    def release(self, key: tuple) -> None:
        """Unpin a reader ``acquire`` handed out (the LRU may close it again)."""
        with self._lock:
            n = self._pins.get(key, 0) - 1
            if n > 0:
                self._pins[key] = n
            else:
                self._pins.pop(key, None)
            self._evict()

    def _evict(self) -> None:
        """Close least recently used readers over the bound, skipping pinned ones (lock held)."""
        if len(self._readers) <= self.size:
            return
        for key in [k for k in self._readers if k not in self._pins]:
            if len(self._readers) <= self.size:
                break
            old, _ = self._readers.pop(key)
            old.close()

    def _open(self, part: PartRead, fmt: str, kind: str, pin: bool = False,
              growing: bool = False) -> tuple[Reader, FileIdentity]:
        # an open reader of this identity: the caller checked the file when it opened the task
        # (Reads.prepare: the part's file and a level's tier files), so no stat per chunk; a new
        # reader checks the file before opening it
        key = (part.path, part.object_path, part.size, part.mtime)
        with self._lock:
            found = self._readers.get(key)
            if found is not None:
                self._readers.move_to_end(key)
                if pin:
                    self._pins[key] = self._pins.get(key, 0) + 1
                return found
        path, st = self._stat(part, growing)  # the identity as opened: a grown file is another
        reader = source_for(fmt).open(path, part.object_path, kind)
        found = (reader, FileIdentity.from_stat(part.path, st))
        with self._lock:
            if key in self._readers:  # opened meanwhile by another thread: use that one
                reader.close()
                found = self._readers[key]
                self._readers.move_to_end(key)
            else:
                self._readers[key] = found
            if pin:
                self._pins[key] = self._pins.get(key, 0) + 1
            self._evict()
        return found

    def close(self) -> None:
        with self._lock:
            for r, _ in self._readers.values():
                r.close()
            self._readers.clear()
