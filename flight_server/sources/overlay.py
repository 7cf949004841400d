"""Reading overlays: derived columns and skims, joined by entry with their base's files.

An overlay is a Parquet file holding an ``entry`` column (sorted base entry numbers) and,
for derived columns, the new columns. Its schema metadata records the base dataset (parts,
paths relative to the overlay file, sizes, mtimes, schema), so a reader needs nothing but
the file: this is a Source like any other, and the planner, the cut pushdown and SQL work
on overlays unchanged. A read of overlay entries [a, b):

* own columns (``entry``, derived ones) come from the overlay's row groups;
* base columns come from the base files, only the clusters that hold a selected entry:
  each run of adjacent selected clusters is one read from the first to the last selected
  entry in it, then ``take``. Clusters with no selected entry are never decompressed.

A cut on the overlay reads its columns first from whichever side holds them (the
executor's two-phase read asks the reader for the cut columns alone).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.files import change
from arrowroot.flight_server.core.task import LevelColumn, PartRead, TierRead
from arrowroot.flight_server.sources import source_for
from arrowroot.flight_server.sources.levels import TIER_KIND, AlignedReader, EventReader
from arrowroot.flight_server.sources.base import Reader, Source, SourceError
from arrowroot.flight_server.sources.parquet import ParquetReader

ENTRY = "entry"
OVERLAY_KEY = b"arrowroot.overlay"
MAX_SPAN_ROWS = 1 << 18     # base entries per read: bounds memory for sparse skims
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="overlay-own")


class OverlayReader(Reader):
    #: never answered from the column-chunk cache: the cache keys on this file's identity, but the
    #: parent columns come from the base files, which may change while this file does not
    cacheable = False

    def __init__(self, path: str):
        self.path = path
        self.own = ParquetReader(path)
        self.entries = self.own.entries
        meta = self.own._file.schema_arrow.metadata or {}
        if OVERLAY_KEY not in meta:
            raise SourceError(f"{os.path.basename(path)}: not an overlay file")
        info = json.loads(meta[OVERLAY_KEY])
        base = info["base"]
        self.base_name: str = base["name"]
        self.format: str = base["format"]
        self.kind: str = base["kind"]
        self.origin: str = base.get("origin", "file")
        self.own_columns = {ENTRY, *info["own"]}
        self.schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(base["schema"])))
        self.channel_column = base.get("channel_column")
        self.missing = {c: set(v) for c, v in (base.get("missing") or {}).items()}
        here = os.path.dirname(path)
        self.parts = base["parts"]
        for p in self.parts:
            p["abs"] = os.path.normpath(os.path.join(here, p["path"]))
        self.offsets = np.array([p["offset"] for p in self.parts], dtype=np.int64)
        self.level: dict[str, Any] | None = base.get("level")
        #: a skim of an event level stores its hit cut as text: the executor hands over the cut compiler
        self.wants_cut_compiler = bool(self.level and self.level.get("hit_where"))
        self.compile_cut: Any = None
        self._readers: dict[int, Reader] = {}
        self._tier_readers: list[Reader] = []
        self._lock = threading.Lock()

    # -------------------------------------------------------- base files

    def _base_reader(self, i: int) -> Reader:
        p = self.parts[i]
        _, changed = change(p["abs"], p["size"], p["mtime"])
        if changed:
            raise InvalidRequest(f"parent changed since this was made: a file of {self.base_name!r} was {changed}; "
                                 "re-run it, or make it with materialize=true to pin a copy")
        with self._lock:
            r = self._readers.get(i)
        if r is None:
            r = self._level_reader(i) if self.level else source_for(self.format).open(p["abs"], p["object"], self.kind)
            with self._lock:
                self._readers.setdefault(i, r)
                r = self._readers[i]
        return r

    def _level_reader(self, i: int) -> Reader:
        """A level base's part: its tiers' tables (and, for events, the skim's hit selection)."""
        lv = self.level
        assert lv is not None
        p = self.parts[i]
        here = os.path.dirname(self.path)
        tiers = tuple(TierRead(t["tier"], os.path.normpath(os.path.join(here, t["path"])), t["size"], t["mtime"],
                               t["object_path"], tuple(t["entries"]), tuple(t["channels"]), tuple(t["absent"]),
                               tuple(t["absent_channels"]))
                      for t in lv["parts"].get(f"{p['member']}:{p.get('channel') or ''}", ()))
        if not tiers:
            raise SourceError(f"{os.path.basename(self.path)}: no tables recorded for {p['member']}")

        def open_tier(tier: TierRead, channel: str | None, entries: int) -> Reader:
            if change(tier.path, tier.size, tier.mtime)[1]:
                raise InvalidRequest(f"parent changed since this was made: a {tier.tier} file of {self.base_name!r} "
                                     "was modified or deleted; re-run it, or make it with materialize=true to pin a copy")
            r = source_for(self.format).open(tier.path, tier.object_of(channel), TIER_KIND)
            with self._lock:
                self._tier_readers.append(r)
            return r

        columns = {c[0]: LevelColumn(c[0], c[1], c[2], c[3]) for c in lv["columns"]}
        if lv["kind"] == "hit":
            return AlignedReader([(t, None, t.entries[0] if t.entries else 0) for t in tiers],
                                 {k: (c.tier, c.source) for k, c in columns.items()}, open_tier,
                                 {k: self.schema.field(k).type for k in columns if k in self.schema.names})
        part = PartRead(tiers[0].path, tiers[0].size, tiers[0].mtime, tiers[0].object_path, p["offset"], 0,
                        p["entries"], (), None, (), tiers=tiers)
        return EventReader(part, columns, self.schema, open_tier, lv.get("hit_tiers") or [], lv.get("tcm_layout", ""),
                           lv.get("hit_where") or None, lv.get("mode") or "only", lv.get("channel_column", "channel"),
                           self.compile_cut)

    def _read_part(self, i: int, columns: list[str], local: np.ndarray) -> pa.Table:
        """``columns`` at sorted local entries of base part ``i``, reading only selected clusters."""
        p = self.parts[i]
        real = [c for c in columns if c != self.channel_column and not self._absent(c, p)]
        bounds = np.asarray(list(p["boundaries"]) + [p["entries"]], dtype=np.int64)
        cluster = np.searchsorted(bounds, local, side="right") - 1
        pieces = []
        if real:
            reader = self._base_reader(i)
            # runs of adjacent clusters that hold selected entries, capped in length
            starts = np.flatnonzero(np.diff(cluster, prepend=-2) != 0)  # first selected entry of each cluster
            k = 0
            while k < len(starts):
                first_sel = starts[k]
                j = k + 1
                while (j < len(starts) and cluster[starts[j]] == cluster[starts[j - 1]] + 1
                       and local[starts[j]] - local[first_sel] < MAX_SPAN_ROWS):
                    j += 1
                last_sel = (starts[j] if j < len(starts) else len(local)) - 1
                lo, hi = int(local[first_sel]), int(local[last_sel]) + 1
                got = reader.read(real, lo, hi)
                if hi - lo == last_sel + 1 - first_sel:  # every entry of the span: no copy
                    pieces.append(got)
                else:
                    pieces.append(got.take(pa.array(local[first_sel:last_sel + 1] - lo)))
                k = j
            table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        else:
            table = None
        n = len(local)
        arrays = []
        for c in columns:
            f = self.schema.field(c)
            if c == self.channel_column:
                v = int(p["channel"]) if pa.types.is_integer(f.type) else p["channel"]
                arrays.append(pa.array([v] * n, f.type))
            elif c not in real:
                arrays.append(pa.nulls(n, f.type))
            else:
                arr = table.column(c)
                if not arr.type.equals(f.type):
                    arr = arr.cast(f.type)
                arrays.append(arr)
        return pa.Table.from_arrays(arrays, names=columns)

    def _absent(self, column: str, part: dict[str, Any]) -> bool:
        """Multi-file bases: whether this member file lacks the column (read as nulls)."""
        lacking = self.missing.get(column)
        return bool(lacking) and part.get("member") in lacking

    def read_base(self, columns: list[str], entries: np.ndarray) -> pa.Table:
        """Base ``columns`` at sorted global base ``entries``."""
        part_of = np.searchsorted(self.offsets, entries, side="right") - 1
        cuts = np.flatnonzero(np.diff(part_of)) + 1
        tables = []
        for group in np.split(np.arange(len(entries)), cuts) if len(entries) else []:
            i = int(part_of[group[0]])
            local = entries[group] - self.parts[i]["offset"]
            tables.append(self._read_part(i, columns, local))
        if not tables:
            return pa.table({c: pa.array([], self.schema.field(c).type) for c in columns})
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    # -------------------------------------------------------- Reader

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int,
             slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise SourceError("slices: not available on workspace datasets")
        columns = list(columns)
        own = [c for c in columns if c in self.own_columns]
        base = [c for c in columns if c not in self.own_columns]
        own_t = base_t = None
        if base:
            entries = self.own.read([ENTRY], entry_start, entry_stop).column(ENTRY).to_numpy()
            rest = [c for c in own if c != ENTRY]
            # the overlay's own columns decode while the base files are read
            pending = _POOL.submit(self.own.read, rest, entry_start, entry_stop) if rest else None
            base_t = self.read_base(base, entries)
            own_t = pending.result() if pending is not None else None
            if ENTRY in own:
                column = pa.array(entries, pa.int64())
                own_t = pa.table({ENTRY: column}) if own_t is None else own_t.append_column(ENTRY, column)
        elif own:
            own_t = self.own.read(own, entry_start, entry_stop)
        arrays = [(own_t if c in self.own_columns else base_t).column(c) for c in columns]
        return pa.Table.from_arrays(arrays, names=columns)

    def close(self) -> None:
        self.own.close()
        with self._lock:
            for r in [*self._readers.values(), *self._tier_readers]:
                r.close()
            self._readers.clear()
            self._tier_readers.clear()


class OverlaySource(Source):
    """Opened by format name only (workspace datasets are registered, never detected)."""

    format = "overlay"

    @staticmethod
    def recognises(head: bytes) -> bool:
        return False

    def scan(self, path: str) -> list:
        raise SourceError("overlay files are registered by the workspace, not scanned")

    def open(self, path: str, object_path: str, kind: str) -> Reader:
        return OverlayReader(path)
