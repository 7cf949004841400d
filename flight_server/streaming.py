"""One read task → a stream of record batches, with bounded memory.

The next chunk is read in a background thread while the current one is sent (the
queue holds at most one chunk ahead), so decompression overlaps the network. Batches
are split by bytes as well as rows: many gRPC clients refuse messages over 16 MiB.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from arrowroot.catalog.models import PartRecord

from .multifile import read_part
from .planner import Plan, ReadTask, read_chunks
from .sources import Reader, source_for


class FileChanged(RuntimeError):
    """A file differs from what the catalog recorded (modified or deleted)."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{path}: {why} since it was indexed; it is being re-indexed, ask for a new FlightInfo")
        self.path = path


class ReaderCache:
    """Open readers keyed by file identity (path, size, mtime), least recently used dropped."""

    def __init__(self, root: Path, size: int = 32):
        self.root = root
        self.size = size
        self._lock = threading.Lock()
        self._readers: OrderedDict[tuple, Reader] = OrderedDict()

    def check(self, part: PartRecord) -> str:
        """Absolute path of the part's file, after checking it still matches the catalog."""
        path = str(self.root / part.path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileChanged(part.path, "the file was deleted") from None
        if st.st_size != part.size or abs(st.st_mtime - part.mtime) > 1e-6:
            raise FileChanged(part.path, "the file was modified")
        return path

    def get(self, part: PartRecord, fmt: str, kind: str) -> Reader:
        path = self.check(part)
        key = (part.path, part.object_path, part.size, part.mtime)
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
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


def split_batches(table: pa.Table, max_rows: int, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most max_rows rows and (about) max_bytes bytes each."""
    n = table.num_rows
    if n == 0:
        return
    total = max(table.nbytes, 1)
    rows = max(1, min(max_rows, int(n * max_bytes / total)))
    for batch in table.combine_chunks().to_batches(max_chunksize=rows):
        yield from _halve_until_small(batch, max_bytes)


def _halve_until_small(batch: pa.RecordBatch, max_bytes: int) -> Iterator[pa.RecordBatch]:
    # Jagged columns can make one slice far bigger than the average.
    if batch.num_rows > 1 and batch.nbytes > 2 * max_bytes:
        half = batch.num_rows // 2
        yield from _halve_until_small(batch.slice(0, half), max_bytes)
        yield from _halve_until_small(batch.slice(half), max_bytes)
    else:
        yield batch


@dataclass
class StreamStats:
    rows: int = 0
    bytes: int = 0
    entries_scanned: int = 0


Transform = Callable[[pa.Table, int], pa.Table]


def stream_task(
    plan: Plan,
    task: ReadTask,
    readers: ReaderCache,
    chunk_bytes: int,
    batch_bytes: int,
    batch_rows: int,
    stats: StreamStats,
) -> Iterator[pa.RecordBatch]:
    """Batches for one endpoint; reads one chunk ahead in a thread."""
    chunks = read_chunks(plan, task, chunk_bytes)
    rec = plan.dataset
    out_schema = plan.schema
    slices = plan.spec.slices
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for part, a, b in chunks:
                if stop.is_set():
                    return
                reader = readers.get(part, rec.format, rec.kind)
                table = read_part(reader, plan, part, a, b)  # multi-file: casts, nulls, channel
                while not stop.is_set():
                    try:
                        ahead.put((part.entry_offset + a, table), timeout=0.1)
                        break
                    except queue.Full:
                        continue
            ahead.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            ahead.put(exc)

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = ahead.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            first_entry, table = item
            stats.entries_scanned += table.num_rows
            if plan.spec.with_entry_numbers:
                entries = pa.array(np.arange(first_entry, first_entry + table.num_rows, dtype=np.int64))
                table = table.add_column(0, "entry", entries)
            table = pa.Table.from_arrays(table.columns, schema=out_schema)
            for batch in split_batches(table, batch_rows, batch_bytes):
                stats.rows += batch.num_rows
                stats.bytes += batch.nbytes
                yield batch
    finally:
        stop.set()
        # drain so the producer is never blocked on a full queue
        try:
            while True:
                ahead.get_nowait()
        except queue.Empty:
            pass
