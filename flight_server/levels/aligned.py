"""A hit level's part: the tiers' tables of one (file key, channel), entry-aligned.

Row *i* of ``ch042/raw``, ``ch042/dsp`` and ``ch042/hit`` of one file key is the same waveform, so
a read of entries [a, b) reads each tier's columns over [a, b) and sets the arrays side by side:
nothing is copied or joined. A tier whose table has another length than the first tier's is an
error naming both files, never a silent misalignment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core.errors import SourceError
from arrowroot.flight_server.core.task import TierRead
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
