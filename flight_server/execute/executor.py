"""One read task → a stream of record batches, with bounded memory. Never touches the catalog.

The next chunk is read in a background thread while the current one is sent (at most one chunk
ahead), so decompression overlaps the network. Batches are split by bytes as well as rows: many
gRPC clients refuse messages over 16 MiB. With a cut, each chunk is read in two phases: the cut's
columns first; a chunk where nothing passes ends there. What a stream holds for a client that
stopped reading can be dropped (:class:`Held`) and is read again if it comes back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


MASK_ROWS = 1 << 18   # entries per slice of a cut's evaluation (a cancelled read stops after one)
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
        self._tables_lock = threading.Lock()  # a dropped chunk is read again while the next one is read ahead

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
            with self._tables_lock:
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

    def read_chunk(self, reader: Reader, part: PartRead, a: int, b: int, in_one_go: bool = False,
                   cancelled: Callable[[], bool] | None = None) -> Chunk:
        """Read one chunk; with a cut, in two phases.

        Phase one reads only the columns the cut needs and computes the mask; a chunk where
        nothing passes ends there. Phase two reads the other requested columns and keeps the
        passing rows. Columns used by both are read once. ``in_one_go`` reads both sets at
        once (in parallel): the caller asks for it while chunks keep having passing entries,
        where the two phases would only serialise the same reads. ``cancelled`` is asked between
        slices of the cut's evaluation and before phase two: a heavy cut over a large chunk stops
        within a slice of its client going away.
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
        passed = np.flatnonzero(self._mask(cut_table, cancelled))
        if len(passed) == 0:
            return Chunk(None, first, b - a, passed, part, a)
        if cancelled is not None and cancelled():
            raise Cancelled("the request was cancelled")
        if rest and rest_table is None:
            rest_table = self.read_part(reader, part, a, b, rest)
        keep = pa.array(passed)
        columns = [(cut_table if c in reuse else rest_table).column(c).take(keep) for c in task.columns]
        return Chunk(pa.Table.from_arrays(columns, names=list(task.columns)), first, b - a, passed, part, a)

    def _mask(self, table: pa.Table, cancelled: Callable[[], bool] | None) -> np.ndarray:
        """The cut's mask over ``table``, evaluated MASK_ROWS entries at a time (a cut is per entry)."""
        assert self.cut is not None
        n = table.num_rows
        if n <= MASK_ROWS or cancelled is None:
            return self.cut.mask(table).to_numpy(zero_copy_only=False)
        parts = []
        for start in range(0, n, MASK_ROWS):
            if cancelled():
                raise Cancelled("the request was cancelled")
            parts.append(self.cut.mask(table.slice(start, MASK_ROWS)).to_numpy(zero_copy_only=False))
        return np.concatenate(parts)

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


SLOW_CLIENT_S = 0.2    # a client that took longer than this to ask for the next batch gets copies ...
COPY_BATCH_BYTES = 1 << 20   # ... of at most this size: what a stalled stream leaves in gRPC's hands
#: A stream's first bytes are copies too: until this much has gone out, the client may not be reading
#: at all (gRPC and the sockets take ~9 MiB on loopback from a client that reads nothing). Past it,
#: a client that keeps asking quickly is reading, and gets zero-copy slices in full-size batches.
COPY_UNTIL_BYTES = 16 << 20


class Held:
    """What a stream holds for its client between batches, and a way to let it go.

    ``drop()`` is called from another thread (the stream slots' reaper) once the client has read
    nothing for a while: the chunk read ahead is given back and the rest of the current chunk is
    forgotten; both are read again if the client comes back. For that to free anything, the batch
    the transport still holds must not be a slice of the chunk: batches handed to a client that has
    not kept up (or not shown it reads yet: the stream's first ``COPY_UNTIL_BYTES``) are copies. A
    client that keeps up gets zero-copy slices. So a stalled stream holds a few batches, not two
    chunks (49 MB before).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self.dropped = False
        self.drops = 0

    def drop(self) -> None:
        with self._lock:
            if self._table is not None or not self.dropped:
                self.drops += 1
            self._table = None
            self.dropped = True

    def hold(self, table: pa.Table | None) -> None:
        with self._lock:
            self._table = table

    def resume(self) -> pa.Table | None:
        """The client is back: the current table, or None if it was dropped."""
        with self._lock:
            self.dropped = False
            return self._table


def _owned(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A copy of ``batch`` whose buffers hold only its own rows (a slice keeps its whole chunk)."""
    try:
        return pa.RecordBatch.from_arrays([pa.concat_arrays([c]) for c in batch.columns], schema=batch.schema)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # a type concat cannot copy
        return batch


class _Mailbox:
    """One chunk between the read-ahead thread and the stream; the reader may take it back."""

    _EMPTY = object()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: object = self._EMPTY

    def put(self, item: object, gone: Callable[[], bool]) -> bool:
        with self._cond:
            while self._item is not self._EMPTY:
                if gone():
                    return False
                self._cond.wait(0.1)
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> object:
        with self._cond:
            if self._item is self._EMPTY:
                self._cond.wait(timeout)
            item, self._item = self._item, self._EMPTY
            self._cond.notify_all()
            return item

    def wait_empty(self, timeout: float) -> bool:
        with self._cond:
            if self._item is not self._EMPTY:
                self._cond.wait(timeout)
            return self._item is self._EMPTY

    def reclaim(self) -> bool:
        """Take back what was put and not taken; True if there was something."""
        with self._cond:
            had, self._item = self._item is not self._EMPTY, self._EMPTY
            self._cond.notify_all()
            return had


class _Reader:
    """Reads chunk ``i`` of a task (the same rows every time: a dropped chunk is read again)."""

    def __init__(self, task: ReadTask, readers: ReaderCache, ex: Execution, gone: Callable[[], bool]):
        self.task, self.readers, self.ex, self.gone = task, readers, ex, gone
        self.specs = ex.chunks()
        self.previous_passed = False

    def read(self, i: int) -> Chunk:
        if self.gone():
            raise Cancelled("the request was cancelled")
        part, a, b = self.specs[i]
        readers = self.readers
        reader = None if part.fill else self.ex.reader(readers, part)
        try:
            chunk = self.ex.read_chunk(reader, part, a, b, in_one_go=self.previous_passed, cancelled=self.gone)
        except (SourceError, OSError) as exc:  # the file broke, or went away under us
            if part.fill:
                raise
            readers.check(part, self.task.growing)  # FileChanged (UNAVAILABLE): deleted or rewritten
            if isinstance(exc, SourceError):
                raise SourceError(f"{exc} (file {part.path}, {_entries(part, a, b)})") from exc
            raise SourceError(f"cannot read {part.path}, {_entries(part, a, b)}: "
                              f"{type(exc).__name__}") from exc
        if not self.ex.selective and chunk.table is not None and chunk.table.num_rows != b - a:
            readers.check(part, self.task.growing)
            raise SourceError(f"{part.path}: {_entries(part, a, b)} gave {chunk.table.num_rows} rows, "
                              f"not {b - a}; the file may have changed")
        self.previous_passed = chunk.table is not None
        return chunk

    def inline(self) -> Iterator[tuple[int, Chunk]]:
        for i in range(len(self.specs)):
            yield i, self.read(i)


def _ahead(source: _Reader, held: Held, gone: Callable[[], bool], cancelled: Callable[[], bool] | None,
           stop: threading.Event, join: bool = False) -> Iterator[tuple[int, Chunk]]:
    """The chunks, read in a thread one chunk ahead of the stream (reading overlaps sending): the
    next is read only once the stream took the previous one, and given back when the client has
    gone quiet (``held.dropped``) — to be read again when it is back."""
    box = _Mailbox()
    done = object()

    def produce() -> None:
        try:
            i, n = 0, len(source.specs)
            while True:
                while not box.wait_empty(0.1):  # one chunk ahead, never two (the last one too)
                    if gone():
                        return
                    if held.dropped and box.reclaim():
                        i -= 1  # given back: read again when the client is back
                if i >= n:
                    break
                while held.dropped:  # a client that reads nothing gets nothing read ahead
                    if gone():
                        return
                    time.sleep(0.05)
                if not box.put((i, source.read(i)), gone):  # no local keeps the chunk: it can be given back
                    return
                i += 1
            box.put(done, gone)
        except BaseException as exc:  # handed to the consumer, which raises it
            box.put(exc, gone)

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = box.take(0.5)
            if item is _Mailbox._EMPTY:
                if cancelled is not None and cancelled():
                    raise Cancelled("the request was cancelled") from None
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            out = [item]
            item = None
            yield out.pop()  # type: ignore[misc]  # (no local of this frame keeps the chunk while suspended)
    finally:
        stop.set()
        box.reclaim()
        if join:  # what the reader thread uses is closed after this: let it finish first
            worker.join(timeout=30)


def _output(task: ReadTask, ex: Execution, chunk: Chunk) -> pa.Table:
    """A chunk's rows as the stream sends them: entry numbers and time added, the output schema."""
    table = chunk.table
    assert table is not None
    if task.with_entry_numbers:
        if chunk.passed is not None:
            numbers = chunk.passed.astype(np.int64) + chunk.first_entry
        else:
            numbers = np.arange(chunk.first_entry, chunk.first_entry + table.num_rows, dtype=np.int64)
        table = table.add_column(0, ENTRY_COLUMN, pa.array(numbers))
    if task.time_scale:
        table = table.add_column(1 if task.with_entry_numbers else 0, TIME_COLUMN,
                                 ex.time_column(chunk, table.num_rows))
    return pa.Table.from_arrays(table.columns, schema=ex.schema).combine_chunks()


def _next_batch(table: pa.Table, offset: int, rows: int, max_bytes: int) -> pa.RecordBatch:
    """The batch at ``offset``: ``rows`` rows, halved until it is at most ``max_bytes`` (or one row)."""
    batch = table.slice(offset, rows).to_batches()[0]
    while batch.num_rows > 1 and batch.nbytes > max_bytes:
        batch = batch.slice(0, batch.num_rows // 2)
    return batch


def stream_task(task: ReadTask, readers: ReaderCache, stats: StreamStats,
                execution: Execution | None = None,
                cancelled: Callable[[], bool] | None = None,
                read_ahead: bool = True,
                held: Held | None = None) -> Iterator[pa.RecordBatch | tuple[pa.RecordBatch, bytes]]:
    """Batches for one task; reads one chunk ahead in a thread (``read_ahead``, when the task has
    more than one chunk), or in the caller's thread (a bounded pool's worker: the HTTP door's reads
    stay within its pool).
    ``held`` lets the stream's owner drop what it holds for a client gone quiet (:class:`Held`).

    With a cut, every batch carries ``{"scanned": N, "passed": M}`` (cumulative) as
    app_metadata, and the stream ends with an empty batch carrying the totals.
    """
    ex = execution or Execution(task)
    out_schema = ex.schema
    stop = threading.Event()
    held = held if held is not None else Held()

    def gone() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    source = _Reader(task, readers, ex, gone)
    # one chunk has nothing to read ahead of: reading it here spares a tiny read a thread's start
    ahead = read_ahead and len(source.specs) > 1
    chunks = _ahead(source, held, gone, cancelled, stop, join=bool(task.level)) if ahead else source.inline()
    try:
        for i, chunk in chunks:
            stats.entries_scanned += chunk.scanned
            if chunk.table is None:
                continue
            table = _output(task, ex, chunk)
            del chunk
            n = table.num_rows
            stats.entries_passed += n
            rows = max(1, min(task.batch_rows, int(n * task.batch_bytes / max(table.nbytes, 1))))
            held.hold(table)
            del table
            offset = 0
            copy = stats.bytes < COPY_UNTIL_BYTES  # the client has not shown it reads at all
            while offset < n:
                current = held.resume()
                if current is None:  # dropped while the client was quiet: read it again
                    current = _output(task, ex, source.read(i))
                    held.hold(current)
                batch = _next_batch(current, offset, rows, min(task.batch_bytes, COPY_BATCH_BYTES) if copy
                                    else task.batch_bytes)
                del current
                offset += batch.num_rows
                if copy:
                    batch = _owned(batch)
                stats.rows += batch.num_rows
                stats.bytes += batch.nbytes
                asked = time.monotonic()
                yield (batch, stats.metadata()) if ex.selective else batch
                del batch
                # not shown it reads yet, or fell behind: copies
                copy = stats.bytes < COPY_UNTIL_BYTES or time.monotonic() - asked > SLOW_CLIENT_S
            held.hold(None)
        if ex.selective:
            yield pa.RecordBatch.from_pylist([], schema=out_schema), stats.metadata()
    finally:
        stop.set()
        held.hold(None)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if task.level:  # the tier tables are the task's own: close them once the producer is done
            ex.close()
