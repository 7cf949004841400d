"""One read task → a stream of record batches, with bounded memory. Never touches the catalog.

The next chunk is read in a background thread while the current one is sent (the queue holds
at most one chunk ahead), so decompression overlaps the network. Batches are split by bytes as
well as rows: many gRPC clients refuse messages over 16 MiB. With a cut, each chunk is read in
two phases: the cut's columns first; a chunk where nothing passes ends there.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core.batches import split_batches
from arrowroot.flight_server.core.errors import Cancelled, InvalidRequest, SourceError
from arrowroot.flight_server.core.ranges import split_range
from arrowroot.flight_server.core.task import ENTRY_COLUMN, TIME_COLUMN, PartRead, ReadTask
from arrowroot.flight_server.core.timeranges import time_type
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.lang.cuts import Cut, ExprError, parse
from arrowroot.flight_server.sources import Reader


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
    part: PartRead | None = None      # where it was read (time reads: the time column comes from it)
    local_start: int = 0


_CUTS: dict[tuple[str, int], tuple[pa.Schema, Cut]] = {}
_CUTS_LOCK = threading.Lock()
MAX_CUTS = 256


def compile_cut(where: str, schema: pa.Schema) -> Cut:
    """The cut of a task, compiled once per (text, schema object): the endpoints of one FlightInfo
    share their schema object (tickets decode each distinct schema once), so a DoGet of the
    second endpoint reuses the first one's compiled cut. A compiled Cut is immutable."""
    key = (where, id(schema))
    with _CUTS_LOCK:
        hit = _CUTS.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    try:
        cut = parse(where, schema)
    except ExprError as exc:
        raise InvalidRequest(f"where: {exc}") from None
    with _CUTS_LOCK:
        if len(_CUTS) >= MAX_CUTS:
            _CUTS.pop(next(iter(_CUTS)))
        _CUTS[key] = (schema, cut)
    return cut


class Execution:
    """A task made ready to run: its cut compiled (once) and its chunks laid out."""

    def __init__(self, task: ReadTask):
        self.task = task
        self.schema = task.output_schema()
        self.cut: Cut | None = compile_cut(task.where, task.read_schema) if task.where.strip() else None
        names = task.read_schema.names
        self.cut_columns = tuple(n for n in names if self.cut is not None and n in self.cut.columns)

    def chunks(self) -> list[tuple[PartRead, int, int]]:
        """(part, local start, local stop) reads that make up the task, cluster-aligned."""
        rows = max(1, self.task.chunk_rows)
        out = []
        for part in self.task.parts:
            for x, y in split_range(part.start, part.stop, part.boundaries, rows, split_above=4 * rows):
                out.append((part, x, y))
        return out

    def read_part(self, reader: Reader, part: PartRead, start: int, stop: int,
                  columns: Sequence[str] | None = None, cut_phase: bool = False) -> pa.Table:
        """Read ``columns`` (default: the output columns) of one part: widened types cast, missing
        columns as nulls, the channel column filled in. ``cut_phase`` reads unsliced values."""
        task = self.task
        slices = () if cut_phase else task.slices
        columns = task.columns if columns is None else tuple(columns)
        if not task.cast:
            return reader.read(columns, start, stop, slices)
        schema = task.read_schema if cut_phase else self.schema
        channel_col = task.channel_column
        absent = set(part.absent)
        want = [c for c in columns if c != channel_col and c not in absent]
        got = reader.read(want, start, stop, slices) if want else None
        n = stop - start if got is None else got.num_rows
        arrays = []
        for c in columns:
            f = schema.field(c)
            if c == channel_col:
                if pa.types.is_integer(f.type):
                    arrays.append(pa.array(np.full(n, int(part.channel)), f.type))
                else:
                    arrays.append(pa.array([part.channel] * n, f.type))
            elif c in absent:
                arrays.append(pa.nulls(n, f.type))
            else:
                arr = got.column(c)
                if not arr.type.equals(f.type):
                    arr = arr.cast(f.type)
                arrays.append(arr)
        return pa.Table.from_arrays(arrays, names=list(columns))

    def read_chunk(self, reader: Reader, part: PartRead, a: int, b: int, in_one_go: bool = False) -> Chunk:
        """Read one chunk; with a cut, in two phases.

        Phase one reads only the columns the cut needs and computes the mask; a chunk where
        nothing passes ends there. Phase two reads the other requested columns and keeps the
        passing rows. Columns used by both are read once. ``in_one_go`` reads both sets at
        once (in parallel): the caller asks for it while chunks keep having passing entries,
        where the two phases would only serialise the same reads.
        """
        task = self.task
        first = part.entry_offset + a
        if part.fill:  # a gap of a time read, filled: null rows, no file
            nulls = [pa.nulls(b - a, self.schema.field(c).type) for c in task.columns]
            return Chunk(pa.Table.from_arrays(nulls, names=list(task.columns)), first, 0, None, part, a)
        if self.cut is None:
            return Chunk(self.read_part(reader, part, a, b), first, b - a, None, part, a)
        cut_columns = self.cut_columns or task.columns[:1]  # a constant cut still needs the row count
        reuse = set(cut_columns) if not task.slices else set()
        rest = [c for c in task.columns if c not in reuse]
        if in_one_go and not task.slices:
            both = self.read_part(reader, part, a, b, list(dict.fromkeys([*cut_columns, *rest])), cut_phase=True)
            cut_table, rest_table = both, both
        else:
            cut_table = self.read_part(reader, part, a, b, cut_columns, cut_phase=True)
            rest_table = None
        mask = self.cut.mask(cut_table)
        passed = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(passed) == 0:
            return Chunk(None, first, b - a, passed, part, a)
        if rest and rest_table is None:
            rest_table = self.read_part(reader, part, a, b, rest)
        keep = pa.array(passed)
        columns = [(cut_table if c in reuse else rest_table).column(c).take(keep) for c in task.columns]
        return Chunk(pa.Table.from_arrays(columns, names=list(task.columns)), first, b - a, passed, part, a)

    def time_column(self, chunk: Chunk, rows: int) -> pa.Array:
        """The ``time`` of a chunk's rows: the part's time of local entry 0 plus index / rate."""
        part, rate = chunk.part, self.task.time_rate
        assert part is not None
        index = (chunk.passed.astype(np.float64) if chunk.passed is not None
                 else np.arange(rows, dtype=np.float64)) + chunk.local_start
        if self.task.time_scale == "utc":
            ns = part.time0_ns + np.round(index * (1e9 / rate)).astype(np.int64)
            return pa.array(ns, type=time_type("utc"))
        return pa.array(part.time0 + index / rate, type=pa.float64())


def _entries(part: PartRead, a: int, b: int) -> str:
    """Global entry range of a chunk (what the client asked for), for error messages."""
    return f"entries {part.entry_offset + a}-{part.entry_offset + b} of the dataset"


def stream_task(task: ReadTask, readers: ReaderCache, stats: StreamStats,
                execution: Execution | None = None,
                cancelled: Callable[[], bool] | None = None) -> Iterator[pa.RecordBatch | tuple[pa.RecordBatch, bytes]]:
    """Batches for one task; reads one chunk ahead in a thread.

    With a cut, every batch carries ``{"scanned": N, "passed": M}`` (cumulative) as
    app_metadata, and the stream ends with an empty batch carrying the totals.
    """
    ex = execution or Execution(task)
    chunks = ex.chunks()
    out_schema = ex.schema
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def gone() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    def produce() -> None:
        try:
            previous_passed = False
            for part, a, b in chunks:
                if gone():
                    ahead.put(Cancelled("the request was cancelled"))
                    return
                reader = None if part.fill else readers.get(part, task.format, task.kind, task.growing)
                try:
                    chunk = ex.read_chunk(reader, part, a, b, in_one_go=previous_passed)
                except (SourceError, OSError) as exc:  # the file broke, or went away under us
                    if part.fill:
                        raise
                    readers.check(part, task.growing)  # FileChanged (UNAVAILABLE): deleted or rewritten
                    if isinstance(exc, SourceError):
                        raise SourceError(f"{exc} (file {part.path}, {_entries(part, a, b)})") from exc
                    raise SourceError(f"cannot read {part.path}, {_entries(part, a, b)}: "
                                      f"{type(exc).__name__}") from exc
                if ex.cut is None and chunk.table is not None and chunk.table.num_rows != b - a:
                    readers.check(part, task.growing)
                    raise SourceError(f"{part.path}: {_entries(part, a, b)} gave {chunk.table.num_rows} rows, "
                                      f"not {b - a}; the file may have changed")
                previous_passed = chunk.table is not None
                while True:
                    if gone():  # a stalled or cancelled stream drops its read-ahead chunk
                        return
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
            try:
                item = ahead.get(timeout=0.5)
            except queue.Empty:
                if cancelled is not None and cancelled():
                    raise Cancelled("the request was cancelled") from None
                continue
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
            if task.with_entry_numbers:
                if chunk.passed is not None:
                    numbers = chunk.passed.astype(np.int64) + chunk.first_entry
                else:
                    numbers = np.arange(chunk.first_entry, chunk.first_entry + table.num_rows, dtype=np.int64)
                table = table.add_column(0, ENTRY_COLUMN, pa.array(numbers))
            if task.time_scale:
                table = table.add_column(1 if task.with_entry_numbers else 0, TIME_COLUMN,
                                         ex.time_column(chunk, table.num_rows))
            table = pa.Table.from_arrays(table.columns, schema=out_schema)
            for batch in split_batches(table, task.batch_rows, task.batch_bytes):
                stats.rows += batch.num_rows
                stats.bytes += batch.nbytes
                yield (batch, stats.metadata()) if ex.cut is not None else batch
        if ex.cut is not None:
            yield pa.RecordBatch.from_pylist([], schema=out_schema), stats.metadata()
    finally:
        stop.set()
        # drain so the producer is never blocked on a full queue
        try:
            while True:
                ahead.get_nowait()
        except queue.Empty:
            pass
