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
from arrowroot.flight_server.execute.cache import ChunkCache, FileIdentity
from arrowroot.flight_server.sources import Reader, source_for


class CachedReader(Reader):
    """A reader whose reads go through the column-chunk cache (one per ``get``)."""

    def __init__(self, reader: Reader, cache: ChunkCache, file: FileIdentity, object_path: str):
        self.reader = reader
        self.entries = getattr(reader, "entries", 0)
        self.cache = cache
        self.file = file
        self.object_path = object_path

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int,
             slices: Sequence[slice] = ()) -> pa.Table:
        variant = repr(tuple(slices)) if slices else ""
        return self.cache.read(self.file, self.object_path, columns, entry_start, entry_stop,
                               lambda cols: self.reader.read(cols, entry_start, entry_stop, slices), variant)

    def close(self) -> None:
        """The wrapped reader belongs to the ReaderCache, which closes it."""


class ReaderCache:
    """Open readers keyed by file identity (path, object, size, mtime), least recently used dropped."""

    def __init__(self, root: Path, size: int = 32, chunks: ChunkCache | None = None,
                 links_outside_root: bool = False):
        self.root = Path(root).resolve()
        #: a symlink inside the root may point outside it only when the indexer was told to follow such links
        self.links_outside_root = links_outside_root
        self.size = size
        self.chunks = chunks if chunks is not None else ChunkCache(0)
        self._lock = threading.Lock()
        self._readers: OrderedDict[tuple, Reader] = OrderedDict()
        self._mounts: dict[str, Path] = {}

    def mount(self, prefix: str, directory: Path) -> None:
        """Serve files under ``directory`` as ``<prefix>/...`` (the workspace, when it lies
        outside the served root)."""
        self._mounts[prefix] = Path(directory).resolve()

    def path_of(self, rel: str) -> str:
        """Absolute path of a served file; a path leaving the served root is refused."""
        root = str(self.root)
        head, sep, tail = rel.partition("/")
        if sep and head in self._mounts:
            root, rel = str(self._mounts[head]), tail
        path = os.path.normpath(os.path.join(root, rel))
        if os.path.isabs(rel) or not path.startswith(root + os.sep):
            raise InvalidRequest("ticket: the file is outside the served directory")
        if not self.links_outside_root:  # a symlink in the directory must not lead out of it
            real = os.path.realpath(path)
            if not real.startswith(root + os.sep):
                raise InvalidRequest("ticket: the file is outside the served directory")
        return path

    def check(self, part: PartRead, growing: bool = False) -> str:
        """Absolute path of the part's file, after checking it still matches the plan.

        ``growing`` (live data): a file at least as large and as new as planned passes too — it was
        appended to (or flushed in HDF5 SWMR mode), and the planned entries are read as they were."""
        path = self.path_of(part.path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileChanged(part.path, "the file was deleted") from None
        if st.st_size == part.size and abs(st.st_mtime - part.mtime) <= 1e-6:
            return path
        if growing and st.st_size >= part.size and st.st_mtime >= part.mtime - 1e-6:
            return path
        raise FileChanged(part.path, "the file was modified")

    def get(self, part: PartRead, fmt: str, kind: str, growing: bool = False) -> Reader:
        """The open reader of a part's file, reading through the chunk cache when it is on."""
        reader = self._open(part, fmt, kind, growing)
        if not self.chunks.enabled or not getattr(reader, "cacheable", True):
            return reader  # (workspace overlays: their bytes live in other files, checked on every read)
        return CachedReader(reader, self.chunks, FileIdentity.of(part.path, part.size, part.mtime),
                            part.object_path)

    def _open(self, part: PartRead, fmt: str, kind: str, growing: bool = False) -> Reader:
        # an open reader of this identity: the caller checked the file when it opened the task
        # (Reads.prepare), so no stat per chunk; a new reader checks the file before opening it
        key = (part.path, part.object_path, part.size, part.mtime)
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        path = self.check(part, growing)
        reader = source_for(fmt).open(path, part.object_path, kind)
        with self._lock:
            self._readers[key] = reader
            while len(self._readers) > self.size:
                _, old = self._readers.popitem(last=False)
                old.close()
        return reader

    def close(self) -> None:
        with self._lock:
            for r in self._readers.values():
                r.close()
            self._readers.clear()
