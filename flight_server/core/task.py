"""A read task: everything one endpoint's stream needs, and nothing that needs the catalog.

``plan/`` builds tasks from a request and catalog records; ``server/tickets.py`` signs them into
tickets; ``execute/`` runs them — in the process that planned them or on a data node that only
shares the files and the signing key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from arrowroot.flight_server.core.shapes import sliced_field
from arrowroot.flight_server.core.timeranges import time_type

ENTRY_COLUMN = "entry"
TIME_COLUMN = "time"
HIT_ENTRY_COLUMN = "hit_entry"   # event levels read by hit: the hit's entry in its channel's table


@dataclass(frozen=True)
class TierRead:
    """One tier's table(s) of a level part (see protos/arrowroot.proto, TierRead)."""

    tier: str
    path: str                      # relative to the served root
    size: int                      # file identity, checked before reading
    mtime: float
    object_path: str               # "{ch}" stands for each of ``channels``
    entries: tuple[int, ...] = ()  # entries of the table (one per channel when ``channels``)
    channels: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()            # event levels: source columns a table lacks ...
    absent_channels: tuple[str, ...] = ()   # ... and the channel each applies to ("" = all)

    def object_of(self, channel: str | None) -> str:
        return self.object_path.replace("{ch}", channel) if channel is not None else self.object_path

    def part(self, channel: str | None = None, entries: int = 0) -> "PartRead":
        """This tier's table as a PartRead (what the reader cache opens and checks)."""
        return PartRead(self.path, self.size, self.mtime, self.object_of(channel), 0, 0, entries, (), channel)


@dataclass(frozen=True)
class LevelColumn:
    """Levels: where a column of the read schema comes from."""

    column: str
    tier: str
    source: str
    role: str = ""                 # event levels: "hit" (a list of the event's hits) or "event"


@dataclass(frozen=True)
class PartRead:
    """A contiguous entry range of one object in one file."""

    path: str                      # relative to the served root
    size: int                      # file identity, checked before reading
    mtime: float
    object_path: str
    entry_offset: int              # global entry number of the object's first entry
    start: int                     # local range [start, stop) within the object
    stop: int
    boundaries: tuple[int, ...] = ()   # local cluster/chunk starts inside (start, stop)
    channel: str | None = None         # per-channel datasets: this part's channel id
    absent: tuple[str, ...] = ()       # columns this file lacks (read as nulls)
    time0: float = 0.0                 # time reads: time of local entry 0 (seconds) ...
    time0_ns: int = 0                  # ... and as integer ns (UTC time columns)
    fill: int = 0                      # time reads with fill_gaps: this many null rows, no file
    tiers: tuple[TierRead, ...] = ()   # levels: every tier's table this part reads

    @property
    def global_start(self) -> int:
        return self.entry_offset + self.start

    @property
    def global_stop(self) -> int:
        return self.entry_offset + self.stop


@dataclass(frozen=True)
class ReadTask:
    """One endpoint's read, self-contained."""

    dataset: str                   # for logs and messages only
    format: str                    # source format: root, hdf5, lh5, ...
    kind: str                      # object kind within the format (ttree, rntuple, ...)
    read_schema: pa.Schema         # dataset types of every column read (output + cut columns)
    columns: tuple[str, ...]       # output columns, in order
    parts: tuple[PartRead, ...]
    where: str = ""                # the cut's text; compiled once per task by the executor
    slices: tuple[slice, ...] = ()
    with_entry_numbers: bool = False
    channel_column: str | None = None  # per-channel datasets: the column filled from PartRead.channel
    cast: bool = False             # multi-file datasets: cast each file's types to the dataset's
    batch_rows: int = field(kw_only=True)   # the planner's limits (Settings); no defaults here
    batch_bytes: int = field(kw_only=True)
    chunk_rows: int = field(kw_only=True)   # rows per read from a file (read one ahead)
    principal: str = ""
    expires: float = 0.0           # unix time after which the ticket is refused (0 = never)
    time_scale: str = ""           # with_time: "gps" (float64 seconds) or "utc" (timestamp[ns]) time column
    time_rate: float = 0.0         # time reads: samples per second
    compression: str = ""          # IPC body codec: "" (the serving node's default), "none", "lz4", "zstd"
    level: str = ""                # levels: "hit" (aligned tiers) or "event" (through the TCM)
    level_columns: tuple[LevelColumn, ...] = ()
    hit_where: str = ""            # event levels: the cut on each hit ...
    mode: str = ""                 # ... "any" | "only" ...
    orientation: str = ""          # ... "" (a row per event) | "hit" (a row per hit) ...
    tcm_layout: str = ""           # ... the TCM's column names ("table_key" or "array_id") ...
    drop_empty: bool = False       # ... and whether events left without hits are dropped
    request_id: str = ""           # the planning call's id (its DoGets log it too)
    growing: bool = False          # live data: files may have grown since planning (readers.check)

    def with_parts(self, parts: tuple[PartRead, ...]) -> ReadTask:
        """This task with other parts: the planner makes one per endpoint from one template. A plain
        copy of the fields (``dataclasses.replace`` re-runs ``__init__``: half of planning 237
        endpoints went there)."""
        task = object.__new__(ReadTask)
        task.__dict__.update(self.__dict__)
        task.__dict__["parts"] = parts
        return task

    @property
    def entry_start(self) -> int:
        return self.parts[0].global_start if self.parts else 0

    @property
    def entry_stop(self) -> int:
        return self.parts[-1].global_stop if self.parts else 0

    @property
    def entries(self) -> int:
        return sum(p.stop - p.start for p in self.parts)

    def output_schema(self) -> pa.Schema:
        """What the stream carries: the output columns (sliced), the entry column first if asked."""
        fields = [sliced_field(self.read_schema.field(c), self.slices) for c in self.columns]
        if self.orientation == "hit":  # event levels, a row per hit: hit columns are scalars
            hits = {c.column for c in self.level_columns if c.role == "hit"}
            fields = [f.with_type(f.type.value_type) if f.name in hits else f for f in fields]
            fields[:0] = [pa.field(ENTRY_COLUMN, pa.int64(), nullable=False),
                          pa.field(HIT_ENTRY_COLUMN, pa.int64(), nullable=False)]
            return pa.schema(fields, metadata=self.read_schema.metadata)
        if self.time_scale:
            fields.insert(0, pa.field(TIME_COLUMN, time_type(self.time_scale), nullable=False))
        if self.with_entry_numbers:
            fields.insert(0, pa.field(ENTRY_COLUMN, pa.int64(), nullable=False))
        return pa.schema(fields, metadata=self.read_schema.metadata)
