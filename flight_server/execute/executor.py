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
import pyarrow.compute as pc

from arrowroot.flight_server.core.batches import split_batches
from arrowroot.flight_server.core.errors import Cancelled, InvalidRequest, SourceError
from arrowroot.flight_server.core.ranges import split_range
from arrowroot.flight_server.core.task import ENTRY_COLUMN, HIT_ENTRY_COLUMN, TIME_COLUMN, PartRead, ReadTask
from arrowroot.flight_server.core.timeranges import time_type
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.lang.cuts import Cut, ExprError, parse
from arrowroot.flight_server.sources.levels import TIER_KIND, AlignedReader, EventReader, hit_schema
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
        self.hit_cut: Cut | None = None
        if task.level == "event" and task.hit_where.strip():
            self.hit_cut = compile_hit_cut(task.hit_where,
                                           hit_schema({c.column: c for c in task.level_columns}, task.read_schema))
        #: rows are not one per entry read: a cut, events dropped for lack of hits, or a row per hit
        self.selective = self.cut is not None or task.drop_empty or task.orientation == "hit"
        #: levels: the tier tables this task holds, (path, object) → (reader, its pin in the reader cache)
        self._tables: dict[tuple[str, str], tuple[Reader, tuple]] = {}
        self._readers: ReaderCache | None = None

    def close(self) -> None:
        """Let go of the tier tables a level task held (the reader cache may close them again)."""
        tables, self._tables = self._tables, {}
        for _, pin in tables.values():
            assert self._readers is not None
            self._readers.release(pin)

    def reader(self, readers: ReaderCache, part: PartRead) -> Reader:
        """The reader of one part: the file's object, or a level's tiers (``levels/``)."""
        task = self.task
        if not task.level:
            reader = readers.get(part, task.format, task.kind, task.growing)
            if getattr(reader, "wants_cut_compiler", False):  # a skim of an event level: its stored hit cut
                reader.compile_cut = compile_hit_cut  # type: ignore[attr-defined]
            return reader

        self._readers = readers

        def open_tier(tier, channel, entries):  # each tier file's identity is checked when it is opened
            key = (tier.path, tier.object_of(channel))
            got = self._tables.get(key)
            if got is None:
                got = self._tables[key] = readers.acquire(tier.part(channel, entries), task.format, TIER_KIND)
            return got[0]

        if task.level == "hit":
            columns = {c.column: (c.tier, c.source) for c in task.level_columns}
            return AlignedReader([(t, None, t.entries[0] if t.entries else 0) for t in part.tiers], columns, open_tier)
        channel = next((c.column for c in task.level_columns if c.role == "hit" and not c.tier), "")
        hit_tiers = sorted({c.tier for c in task.level_columns if c.role == "hit" and c.tier}
                           | {t.tier for t in part.tiers[1:] if t.channels})
        return EventReader(part, {c.column: c for c in task.level_columns}, task.read_schema, open_tier, hit_tiers,
                           task.tcm_layout, self.hit_cut, task.mode, channel)

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
        if task.level == "event":
            return self.read_events(reader, part, a, b)
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

    def read_events(self, reader: Reader, part: PartRead, a: int, b: int) -> Chunk:
        """Events [a, b) of an event level: the cut's columns (and the hits' channels, when events
        without a kept hit are dropped) first, then the other columns of the passing events only."""
        task = self.task
        assert isinstance(reader, EventReader)
        first = part.entry_offset + a
        channel = reader.channel_column
        phase1 = list(dict.fromkeys([*self.cut_columns, *([channel] if task.drop_empty else [])]))
        passed = None
        head = None
        if phase1:
            head = reader.read(phase1, a, b)
            mask = self.cut.mask(head).to_numpy(zero_copy_only=False) if self.cut is not None \
                else np.ones(b - a, dtype=bool)
            mask = np.asarray(mask, dtype=bool)
            if task.drop_empty:
                mask &= pc.list_value_length(head.column(channel)).to_numpy(zero_copy_only=False) > 0
            passed = np.flatnonzero(mask)
            if len(passed) == 0:
                return Chunk(None, first, b - a, passed, part, a)
        want = list(task.columns) + ([HIT_ENTRY_COLUMN] if task.orientation == "hit" else [])
        rest = [c for c in want if head is None or c not in head.column_names]
        got = reader.read_events(rest, a, b, passed) if rest else None
        keep = pa.array(passed) if passed is not None and len(passed) != b - a else None
        arrays = []
        for c in want:
            if got is not None and c in got.column_names:
                arrays.append(got.column(c))
            else:
                col = head.column(c)  # type: ignore[union-attr]
                arrays.append(col.take(keep) if keep is not None else col)
        table = pa.Table.from_arrays(arrays, names=want)
        if task.orientation == "hit":
            numbers = first + (passed if passed is not None else np.arange(b - a, dtype=np.int64))
            table = explode_hits(table, numbers, {c.column for c in task.level_columns if c.role == "hit"})
            return Chunk(table, first, b - a, None, part, a)
        return Chunk(table, first, b - a, passed if passed is not None and len(passed) != b - a else None, part, a)

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


def compile_hit_cut(text: str, schema: pa.Schema) -> Cut:
    """An event level's hit cut, compiled on the hit columns (InvalidRequest says what is wrong)."""
    try:
        return parse(text, schema)
    except ExprError as exc:
        raise InvalidRequest(f"hit_where: {exc}") from None


def explode_hits(table: pa.Table, events: np.ndarray, hit_columns: set[str]) -> pa.Table:
    """Event rows → hit rows (pygama's ``orientation="hit"``): list columns flattened, event columns
    repeated per hit, the event's entry number first, then the hit's entry in its table."""
    hit_entry = table.column(HIT_ENTRY_COLUMN).combine_chunks()
    counts = pc.list_value_length(hit_entry).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pa.array(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
    arrays = [pa.array(np.repeat(np.asarray(events, dtype=np.int64), counts)), pc.list_flatten(hit_entry)]
    names = [ENTRY_COLUMN, HIT_ENTRY_COLUMN]
    for name in table.column_names:
        if name == HIT_ENTRY_COLUMN:
            continue
        col = table.column(name).combine_chunks()
        arrays.append(pc.list_flatten(col) if name in hit_columns else col.take(parents))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


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
                reader = None if part.fill else ex.reader(readers, part)
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
                if not ex.selective and chunk.table is not None and chunk.table.num_rows != b - a:
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
                yield (batch, stats.metadata()) if ex.selective else batch
        if ex.selective:
            yield pa.RecordBatch.from_pylist([], schema=out_schema), stats.metadata()
    finally:
        stop.set()
        # drain so the producer is never blocked on a full queue
        try:
            while True:
                ahead.get_nowait()
        except queue.Empty:
            pass
        if task.level:  # the tier tables are the task's own: close them once the producer is done
            worker.join(timeout=30)
            ex.close()
