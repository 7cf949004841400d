"""Reading levels (pygama's DataLoader levels; declared in arrowroot.toml, derived in
``datasets/levels.py``, planned in ``plan/levels.py``): a format made of several files.

* ``AlignedReader``: a hit level's part, the tiers' tables of one (file key, channel) read side by
  side. Row *i* of ``ch042/raw``, ``ch042/dsp`` and ``ch042/hit`` of one file key is the same
  waveform, so a read of entries [a, b) reads each tier's columns over [a, b) and sets the arrays
  side by side: nothing is copied or joined. A tier whose table has another length than the first
  tier's is an error naming both files, never a silent misalignment.
* ``EventReader``: an event level's part, one file key's TCM, event tiers and hit tables. pygama's
  ``build_tcm`` writes, per event, the table key (the channel) and the row of each of the event's
  hits (``table_key``/``row_in_table`` lists; ``array_id``/``array_idx`` before pygama 2.1). A read
  of events [a, b) reads those lists, keeps the hits of the selected channels (the part's hit
  tables), applies the hit cut to them (its columns read only at those hits' rows) and the mode
  ("any": every hit of an event in which one passes; "only": the passing hits), then gives one row
  per event: the event tiers' columns, and the hit columns as lists of the kept hits in TCM order
  (with their channel ids, and their rows as ``hit_entry``). A TCM row pointing past the end of a
  hit table is an error naming both files. Hits are read per channel, one read per run of nearby
  rows: events of one TCM chunk map onto nearby rows of each channel's tables, so a chunk of events
  costs a few contiguous reads per channel, never a read per hit.

Both are ``Reader``s: the executor runs them (two-phase cuts, batching, read-ahead), and workspace
skims of a level (``overlay``) read through them too. They open tier tables through a callback, so
the executor can go through its reader and column-chunk caches, while a skim opens the files
itself. The hit cut comes compiled (the executor and the skim's reader compile it with the cut
language; sources know no language). Neither needs the catalog: a read task carries every file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arrowroot.flight_server.core.errors import SourceError
from arrowroot.flight_server.core.task import HIT_ENTRY_COLUMN, LevelColumn, PartRead, TierRead
from arrowroot.flight_server.sources.base import Reader

#: opens one table of a tier: (the tier's files, the channel or None, its planned entries) → a reader
OpenTier = Callable[[TierRead, "str | None", int], Reader]
#: rows further apart than this are read separately (sparse row sets stay cheap)
GAP_ROWS = 4096
#: the kind of a tier's table (levels are made of LH5 tables)
TIER_KIND = "lh5.table"


def runs(rows: np.ndarray, gap: int = GAP_ROWS) -> list[tuple[int, int]]:
    """Index ranges [i, j) of sorted ``rows`` to read as one span each (split where rows jump)."""
    if len(rows) == 0:
        return []
    cuts = np.flatnonzero(np.diff(rows) > gap) + 1
    bounds = [0, *cuts.tolist(), len(rows)]
    return list(zip(bounds[:-1], bounds[1:]))


class AlignedReader(Reader):
    """Reads level columns from the tiers that hold them; ``columns`` maps each level column to
    (tier, source column), ``types`` casts to the level's (widened) types."""

    def __init__(self, tables: Sequence[tuple[TierRead, str | None, int]], columns: Mapping[str, tuple[str, str]],
                 open_tier: OpenTier, types: Mapping[str, pa.DataType] | None = None):
        if not tables:
            raise SourceError("a level part without tables")
        self.tables = {t.tier: (t, ch, n) for t, ch, n in tables}
        self.first = tables[0]
        self.entries = tables[0][2]
        self.columns = columns
        self.types = types or {}
        self._open = open_tier
        self._readers: dict[str, Reader] = {}

    def name(self, tier: str) -> str:
        t, ch, _ = self.tables[tier]
        return f"{t.path}:{t.object_of(ch)}"

    def reader(self, tier: str) -> Reader:
        r = self._readers.get(tier)
        if r is None:
            t, ch, n = self.tables[tier]
            r = self._open(t, ch, n)
            got = getattr(r, "entries", n)
            if n != self.entries or got != n:
                first = self.first[0].tier
                raise SourceError(f"tiers disagree on length: {self.name(first)} has {self.entries} entries, "
                                  f"{self.name(tier)} has {got if got != n else n}; the level cannot align them")
            self._readers[tier] = r
        return r

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int,
             slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise SourceError("slices: not available on levels")
        by_tier: dict[str, list[tuple[str, str]]] = {}
        for c in columns:
            tier, source = self.columns[c]
            by_tier.setdefault(tier, []).append((c, source))
        got: dict[str, pa.ChunkedArray] = {}
        n = entry_stop - entry_start
        for tier, pairs in by_tier.items():
            if tier not in self.tables:
                raise SourceError(f"level: no {tier} table for {self.name(self.first[0].tier)}")
            table = self.reader(tier).read(list(dict.fromkeys(s for _, s in pairs)), entry_start, entry_stop)
            if table.num_rows != n:
                raise SourceError(f"{self.name(tier)}: entries {entry_start}-{entry_stop} gave {table.num_rows} rows; "
                                  "the file may have changed")
            for c, s in pairs:
                arr = table.column(s)
                want = self.types.get(c)
                if want is not None and not arr.type.equals(want):
                    arr = arr.cast(want)
                got[c] = arr
        return pa.Table.from_arrays([got[c] for c in columns], names=list(columns))

    def read_rows(self, columns: Sequence[str], rows: np.ndarray) -> pa.Table:
        """``columns`` at sorted local ``rows`` (repeats allowed): one read per run of nearby rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return pa.table({c: pa.array([], self._type(c)) for c in columns})
        pieces = []
        for i, j in runs(rows):
            lo, hi = int(rows[i]), int(rows[j - 1]) + 1
            t = self.read(columns, lo, hi)
            pieces.append(t if hi - lo == j - i and np.all(np.diff(rows[i:j]) == 1)
                          else t.take(pa.array(rows[i:j] - lo)))
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    def _type(self, column: str) -> pa.DataType:
        if column in self.types:
            return self.types[column]
        tier, source = self.columns[column]
        return self.reader(tier).read([source], 0, 0).schema.field(source).type

    def close(self) -> None:
        """The tier readers belong to whoever opened them (the reader cache, or the skim)."""


_DIGITS = re.compile(r"\d+")
TCM_COLUMNS = {"table_key": ("table_key", "row_in_table"), "array_id": ("array_id", "array_idx")}


def table_key(channel: str) -> int | None:
    """The TCM table key of a channel: its first integer, as pygama's default ``hash_func``
    (``r"\\d+"`` on the table name) computes it (``ch1084803/raw`` → 1084803)."""
    m = _DIGITS.search(channel)
    return int(m.group()) if m else None


def hit_schema(columns: Mapping[str, LevelColumn], read_schema: pa.Schema) -> pa.Schema:
    """What a hit cut is compiled against: each hit column of an event read, as one hit's value."""
    hits = {c for c, lc in columns.items() if lc.role == "hit"}
    return pa.schema([f.with_type(f.type.value_type) for f in read_schema if f.name in hits])


@dataclass
class Selection:
    """The kept hits of events [a, b), in TCM order."""

    events: np.ndarray       # local event index (0 .. b-a) of each kept hit
    channels: np.ndarray     # index into the reader's channel list
    rows: np.ndarray         # entry in the channel's tables
    counts: np.ndarray       # kept hits per event


class EventReader(Reader):
    """One row per event of a TCM table; see the module docstring. ``part.tiers[0]`` is the TCM."""

    def __init__(self, part: PartRead, columns: Mapping[str, LevelColumn], read_schema: pa.Schema,
                 open_tier: OpenTier, hit_tiers: Sequence[str], tcm_layout: str = "table_key",
                 hit_cut: object | None = None, mode: str = "only", channel_column: str = "channel",
                 compile_cut: Callable[[str, pa.Schema], object] | None = None):
        self.tcm = part.tiers[0]
        self.tcm_name = f"{self.tcm.path}:{self.tcm.object_path}"
        self.entries = self.tcm.entries[0] if self.tcm.entries else part.stop
        self.columns = dict(columns)
        self.schema = read_schema
        self._open = open_tier
        self.key_column, self.row_column = TCM_COLUMNS.get(tcm_layout, TCM_COLUMNS["table_key"])
        if isinstance(hit_cut, str):  # a skim's stored selection: compiled on the hit columns by the caller's
            if compile_cut is None:  # cut language (sources know none)
                raise SourceError("level: a hit cut given as text needs a cut compiler")
            hit_cut = compile_cut(hit_cut, hit_schema(self.columns, read_schema))
        self.hit_cut = hit_cut
        self.mode = mode or "only"
        self.channel_column = channel_column
        hit_set = set(hit_tiers)
        self.evt = {t.tier: t for t in part.tiers[1:] if t.tier not in hit_set}
        hits = [t for t in part.tiers[1:] if t.tier in hit_set]
        chans: list[str] = []
        for t in hits:
            chans.extend(c for c in t.channels if c not in chans)
        self.channel_ids = chans
        self.key_of: dict[int, int] = {}
        for i, ch in enumerate(chans):
            k = table_key(ch)
            if k is not None:
                self.key_of.setdefault(k, i)
        self.hit_tables: list[list[tuple[TierRead, str, int]]] = [[] for _ in chans]
        self.absent: list[set[str]] = [set() for _ in chans]
        index = {c: i for i, c in enumerate(chans)}
        for t in hits:
            for ch, n in zip(t.channels, t.entries):
                self.hit_tables[index[ch]].append((t, ch, n))
            for col, ch in zip(t.absent, t.absent_channels or [""] * len(t.absent)):
                for i in ([index[ch]] if ch else range(len(chans))):
                    self.absent[i].add(f"{t.tier}\0{col}")
        self.hit_columns = {c: (lc.tier, lc.source) for c, lc in self.columns.items() if lc.role == "hit" and lc.tier}
        self._aligned: dict[int, AlignedReader] = {}
        self._tcm: Reader | None = None
        self._evt_readers: dict[str, Reader] = {}
        self._cached: tuple[int, int, Selection] | None = None

    # -------------------------------------------------------- the hits of a chunk

    def _hits(self, i: int) -> AlignedReader:
        r = self._aligned.get(i)
        if r is None:
            types = {c: self.schema.field(c).type.value_type for c in self.hit_columns if c in self.schema.names}
            r = self._aligned[i] = AlignedReader(self.hit_tables[i], self.hit_columns, self._open, types)
        return r

    def _tcm_reader(self) -> Reader:
        if self._tcm is None:
            self._tcm = self._open(self.tcm, None, self.entries)
        return self._tcm

    def select(self, a: int, b: int) -> Selection:
        """The kept hits of events [a, b): selected channels, hit cut, mode (cached per range)."""
        if self._cached is not None and self._cached[:2] == (a, b):
            return self._cached[2]
        tcm = self._tcm_reader().read([self.key_column, self.row_column], a, b)
        keys = tcm.column(self.key_column).combine_chunks()
        rows = tcm.column(self.row_column).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(keys), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if not np.array_equal(lengths, pc.fill_null(pc.list_value_length(rows), 0).to_numpy(zero_copy_only=False)):
            raise SourceError(f"{self.tcm_name}: {self.key_column} and {self.row_column} differ in length in events "
                              f"{a}-{b}; not a TCM")
        flat_keys = pc.list_flatten(keys).to_numpy(zero_copy_only=False).astype(np.int64)
        flat_rows = pc.list_flatten(rows).to_numpy(zero_copy_only=False).astype(np.int64)
        events = np.repeat(np.arange(b - a, dtype=np.int64), lengths)
        uniq, inverse = np.unique(flat_keys, return_inverse=True)
        chan_of_key = np.array([self.key_of.get(int(k), -1) for k in uniq], dtype=np.int64)
        channels = chan_of_key[inverse] if len(uniq) else np.zeros(0, dtype=np.int64)
        keep = channels >= 0
        passed = keep.copy()
        for i in np.unique(channels[keep]) if keep.any() else ():
            at = np.flatnonzero(channels == i)
            r = flat_rows[at]
            n = self.hit_tables[i][0][2]
            bad = (r < 0) | (r >= n)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                t, ch, _ = self.hit_tables[i][0]
                raise SourceError(f"{self.tcm_name}: event {a + int(events[at[k]])} points at entry {int(r[k])} of "
                                  f"{t.path}:{t.object_of(ch)}, which has {n} entries")
            if self.hit_cut is not None:
                passed[at] = self._cut(i, r)
        if self.hit_cut is not None:
            if self.mode == "any":
                event_pass = np.bincount(events[passed], minlength=b - a) > 0
                keep &= event_pass[events]
            else:
                keep = passed
        idx = np.flatnonzero(keep)
        sel = Selection(events[idx], channels[idx], flat_rows[idx], np.bincount(events[idx], minlength=b - a))
        self._cached = (a, b, sel)
        return sel

    def _cut(self, i: int, rows: np.ndarray) -> np.ndarray:
        """The hit cut at ``rows`` of channel ``i`` (null counts as failing)."""
        cut = self.hit_cut
        names = sorted(cut.columns)  # type: ignore[attr-defined]
        uniq, inverse = np.unique(rows, return_inverse=True)
        table = self._hit_values(i, names, uniq)
        mask = cut.mask(table).to_numpy(zero_copy_only=False)  # type: ignore[attr-defined]
        return np.asarray(mask, dtype=bool)[inverse]

    def _hit_values(self, i: int, names: Sequence[str], rows: np.ndarray) -> pa.Table:
        """Hit columns at sorted unique ``rows`` of channel ``i``; columns the channel's tables lack
        (allow_missing) are nulls."""
        reader = self._hits(i)
        have = [c for c in names if c in self.hit_columns and self.hit_columns[c][0] in reader.tables
                and f"{self.hit_columns[c][0]}\0{self.hit_columns[c][1]}" not in self.absent[i]]
        got = reader.read_rows(have, rows) if have else None
        arrays = []
        for c in names:
            if got is not None and c in have:
                arrays.append(got.column(c))
            elif c == self.channel_column:
                arrays.append(self._channel_values(c, np.full(len(rows), i, dtype=np.int64)))
            else:
                arrays.append(pa.nulls(len(rows), self.schema.field(c).type.value_type))
        return pa.Table.from_arrays(arrays, names=list(names))

    # -------------------------------------------------------- Reader

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int,
             slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise SourceError("slices: not available on levels")
        return self.read_events(columns, entry_start, entry_stop, None)

    def read_events(self, columns: Sequence[str], a: int, b: int, events: np.ndarray | None) -> pa.Table:
        """Event rows for events [a, b), or only those at local indices ``events`` (sorted). The TCM
        and the hits are read only when a hit column is asked for."""
        if all(c in self.columns and self.columns[c].role == "event" for c in columns):
            return pa.Table.from_arrays([self._event_column(c, a, b, events) for c in columns], names=list(columns))
        sel = self.select(a, b)
        n_events = b - a if events is None else len(events)
        if events is not None:
            wanted = np.zeros(b - a, dtype=bool)
            wanted[events] = True
            hit_keep = wanted[sel.events]
            counts = sel.counts[events]
        else:
            hit_keep = None
            counts = sel.counts
        h_channels = sel.channels if hit_keep is None else sel.channels[hit_keep]
        h_rows = sel.rows if hit_keep is None else sel.rows[hit_keep]
        offsets = np.zeros(n_events + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        hit_names = [c for c in columns if c in self.hit_columns]
        flat = self._flat_hits(hit_names, h_channels, h_rows) if hit_names else {}
        out = []
        for c in columns:
            role = self.columns[c].role if c in self.columns else ""
            if c in flat:
                out.append(self._lists(c, offsets, flat[c]))
            elif c == HIT_ENTRY_COLUMN:
                out.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(h_rows, pa.int64())))
            elif c == self.channel_column or (role == "hit" and not self.columns[c].tier):
                out.append(self._lists(c, offsets, self._channel_values(c, h_channels)))
            elif role == "event":
                out.append(self._event_column(c, a, b, events))
            else:
                raise SourceError(f"level: no column {c!r}")
        return pa.Table.from_arrays(out, names=list(columns))

    def _lists(self, column: str, offsets: np.ndarray, values: pa.Array) -> pa.Array:
        t = self.schema.field(column).type
        if not values.type.equals(t.value_type):
            values = values.cast(t.value_type)
        return pa.ListArray.from_arrays(pa.array(offsets), values, type=t)

    def _channel_values(self, column: str, h_channels: np.ndarray) -> pa.Array:
        t = self.schema.field(column).type
        t = t.value_type if pa.types.is_list(t) else t
        if pa.types.is_integer(t):
            ids = np.array([int(c) for c in self.channel_ids], dtype=np.int64)
            return pa.array(ids[h_channels] if len(ids) else np.zeros(0, np.int64), t)
        ids_s = np.array(self.channel_ids, dtype=object)
        return pa.array(ids_s[h_channels].tolist() if len(ids_s) else [], t)

    def _flat_hits(self, names: list[str], h_channels: np.ndarray, h_rows: np.ndarray) -> dict[str, pa.Array]:
        """Hit columns of the kept hits, in TCM order: read per channel at unique rows, then put
        back in order."""
        pieces: dict[str, list[pa.Array]] = {c: [] for c in names}
        positions = []
        for i in np.unique(h_channels) if len(h_channels) else ():
            at = np.flatnonzero(h_channels == i)
            uniq, inverse = np.unique(h_rows[at], return_inverse=True)
            table = self._hit_values(int(i), names, uniq)
            take = pa.array(inverse)
            for c in names:
                pieces[c].append(table.column(c).combine_chunks().take(take))
            positions.append(at)
        out = {}
        order = pa.array(np.argsort(np.concatenate(positions), kind="stable")) if positions else None
        for c in names:
            t = self.schema.field(c).type.value_type
            if not pieces[c]:
                out[c] = pa.array([], t)
                continue
            cat = pa.concat_arrays([p.cast(t) if not p.type.equals(t) else p for p in pieces[c]])
            out[c] = cat.take(order)
        return out

    def _event_column(self, column: str, a: int, b: int, events: np.ndarray | None) -> pa.Array:
        lc = self.columns[column]
        t = self.schema.field(column).type
        n = b - a if events is None else len(events)
        tier = self.evt.get(lc.tier)
        if tier is None or lc.source in tier.absent:
            return pa.nulls(n, t)
        reader = self._evt_readers.get(lc.tier)
        if reader is None:
            entries = tier.entries[0] if tier.entries else self.entries
            reader = self._open(tier, None, entries)
            got = getattr(reader, "entries", entries)
            if got != self.entries or entries != self.entries:
                raise SourceError(f"tiers disagree on length: {self.tcm_name} has {self.entries} events, "
                                  f"{tier.path}:{tier.object_path} has {got}; the level cannot align them")
            self._evt_readers[lc.tier] = reader
        lo, hi = (a, b) if events is None or not len(events) else (a + int(events[0]), a + int(events[-1]) + 1)
        arr = reader.read([lc.source], lo, hi).column(lc.source).combine_chunks() if hi > lo else pa.array([], t)
        if events is not None and len(events) and hi - lo != len(events):
            arr = arr.take(pa.array(events - (lo - a)))
        elif events is not None and not len(events):
            arr = pa.array([], t)
        return arr.cast(t) if not arr.type.equals(t) else arr

    def close(self) -> None:
        """The tier readers belong to whoever opened them."""
