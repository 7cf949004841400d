"""One read task → a stream of record batches, with bounded memory.

The next chunk is read in a background thread while the current one is sent (the
queue holds at most one chunk ahead), so decompression overlaps the network. Batches
are split by bytes as well as rows: many gRPC clients refuse messages over 16 MiB.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from arrowroot.catalog.models import PartRecord

from arrowroot.flight_server.datasets.multifile import read_part
from arrowroot.flight_server.plan.planner import Plan, ReadTask, read_chunks
from arrowroot.flight_server.sources import Reader, source_for


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
    entries_passed: int = 0

    def metadata(self) -> bytes:
        """What a cut stream reports in its batches' app_metadata (cumulative for the stream)."""
        return json.dumps({"scanned": self.entries_scanned, "passed": self.entries_passed}).encode()


@dataclass
class Chunk:
    """One read, ready to send: the rows that passed, and where they came from."""

    table: pa.Table | None      # None: no entry of the chunk passed the cut
    first_entry: int            # global entry number of the chunk's first entry
    scanned: int
    passed: np.ndarray | None = None  # indices (within the chunk) of the passing entries


def read_chunk(reader: Reader, plan: Plan, part: PartRecord, a: int, b: int, in_one_go: bool = False) -> Chunk:
    """Read one chunk; with a cut, in two phases.

    Phase one reads only the columns the cut needs and computes the mask; a chunk where
    nothing passes ends there. Phase two reads the other requested columns and keeps the
    passing rows. Columns used by both are read once. ``in_one_go`` reads both sets at
    once (in parallel): the caller asks for it while chunks keep having passing entries,
    where the two phases would only serialise the same reads.
    """
    first = part.entry_offset + a
    if plan.cut is None:
        return Chunk(read_part(reader, plan, part, a, b), first, b - a)
    cut_columns = plan.cut_columns or plan.columns[:1]  # a constant cut still needs the row count
    reuse = set(cut_columns) if not plan.spec.slices else set()
    rest = [c for c in plan.columns if c not in reuse]
    if in_one_go and not plan.spec.slices:
        both = read_part(reader, plan, part, a, b, list(dict.fromkeys([*cut_columns, *rest])), cut_phase=True)
        cut_table, rest_table = both, both
    else:
        cut_table = read_part(reader, plan, part, a, b, cut_columns, cut_phase=True)
        rest_table = None
    mask = plan.cut.mask(cut_table)
    passed = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    if len(passed) == 0:
        return Chunk(None, first, b - a, passed)
    if rest and rest_table is None:
        rest_table = read_part(reader, plan, part, a, b, rest)
    keep = pa.array(passed)
    columns = [(cut_table if c in reuse else rest_table).column(c).take(keep) for c in plan.columns]
    return Chunk(pa.Table.from_arrays(columns, names=list(plan.columns)), first, b - a, passed)


def stream_task(
    plan: Plan,
    task: ReadTask,
    readers: ReaderCache,
    chunk_bytes: int,
    batch_bytes: int,
    batch_rows: int,
    stats: StreamStats,
) -> Iterator[pa.RecordBatch | tuple[pa.RecordBatch, bytes]]:
    """Batches for one endpoint; reads one chunk ahead in a thread.

    With a cut, every batch carries ``{"scanned": N, "passed": M}`` (cumulative) as
    app_metadata, and the stream ends with an empty batch carrying the totals.
    """
    chunks = read_chunks(plan, task, chunk_bytes)
    rec = plan.dataset
    out_schema = plan.schema
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            previous_passed = False
            for part, a, b in chunks:
                if stop.is_set():
                    return
                reader = readers.get(part, rec.format, rec.kind)
                chunk = read_chunk(reader, plan, part, a, b, in_one_go=previous_passed)
                previous_passed = chunk.table is not None
                while not stop.is_set():
                    try:
                        ahead.put(chunk, timeout=0.1)
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
            chunk: Chunk = item
            stats.entries_scanned += chunk.scanned
            if chunk.table is None:
                continue
            table = chunk.table
            stats.entries_passed += table.num_rows
            if plan.spec.with_entry_numbers:
                if chunk.passed is not None:
                    numbers = chunk.passed.astype(np.int64) + chunk.first_entry
                else:
                    numbers = np.arange(chunk.first_entry, chunk.first_entry + table.num_rows, dtype=np.int64)
                table = table.add_column(0, "entry", pa.array(numbers))
            table = pa.Table.from_arrays(table.columns, schema=out_schema)
            for batch in split_batches(table, batch_rows, batch_bytes):
                stats.rows += batch.num_rows
                stats.bytes += batch.nbytes
                yield (batch, stats.metadata()) if plan.cut is not None else batch
        if plan.cut is not None:
            yield pa.RecordBatch.from_pylist([], schema=out_schema), stats.metadata()
    finally:
        stop.set()
        # drain so the producer is never blocked on a full queue
        try:
            while True:
                ahead.get_nowait()
        except queue.Empty:
            pass
