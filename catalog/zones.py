"""The catalog's zone maps: stored per (file, object, column), read through a bounded in-memory
cache so planning a cut costs a dict lookup, written by the indexer and the lazy collector.

Planning (``plan/zones.py``) reaches this through ``DatasetRecord.zones``; when it finds maps
missing it calls ``want(...)``, and whoever collects them (the indexer's collector, which knows the
file formats the catalog does not) registers as ``on_missing``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .models import DatasetRecord, PartRecord, ZoneMapRecord

Key = tuple[int, str]   # (file_id, object_path)

_COLUMNS = ("column_name, starts, stops, mins, maxs, nulls, nans, value_nulls, min_lens, max_lens, exact")
_FIELDS = ("column", "starts", "stops", "mins", "maxs", "nulls", "nans", "value_nulls", "min_lens", "max_lens",
           "exact")


class ZoneStore:
    """Zone maps of one catalog."""

    def __init__(self, catalog: Any, cache_keys: int = 8192):
        """``catalog``: the ``store.Catalog`` owning the connection (its cursor and write lock)."""
        self.catalog = catalog
        self.cache_keys = cache_keys
        self._lock = threading.Lock()
        self._cache: OrderedDict[Key, dict[str, ZoneMapRecord]] = OrderedDict()
        #: off: plans read everything and SQL scans for count/min/max (the stored maps stay)
        self.enabled = True
        #: called with (dataset, parts, columns) when planning found no maps for them
        self.on_missing: Callable[[DatasetRecord, Sequence[PartRecord], tuple[str, ...]], None] | None = None

    def get(self, parts: Sequence[PartRecord]) -> dict[Key, dict[str, ZoneMapRecord]]:
        """Column → zone map, for each part's (file, object); one query for the ones not cached."""
        keys = list(dict.fromkeys((p.file_id, p.object_path) for p in parts))
        out: dict[Key, dict[str, ZoneMapRecord]] = {}
        if not self.enabled:
            return {k: {} for k in keys}
        with self._lock:
            for k in keys:
                found = self._cache.get(k)
                if found is not None:
                    self._cache.move_to_end(k)
                    out[k] = found
        missing = [k for k in keys if k not in out]
        if missing:
            loaded: dict[Key, dict[str, ZoneMapRecord]] = {k: {} for k in missing}
            rows = self.catalog.cursor().execute(
                f"SELECT z.file_id, z.object_path, {_COLUMNS} FROM zone_maps z JOIN "
                "(SELECT unnest(?::BIGINT[]) AS f, unnest(?::VARCHAR[]) AS o) k "
                "ON z.file_id = k.f AND z.object_path = k.o",
                [[k[0] for k in missing], [k[1] for k in missing]]).fetchall()
            for r in rows:
                loaded[(r[0], r[1])][r[2]] = _record(r[2:])
            with self._lock:
                for k, maps in loaded.items():
                    self._cache[k] = maps
                    self._cache.move_to_end(k)
                while len(self._cache) > self.cache_keys:
                    self._cache.popitem(last=False)
            out.update(loaded)
        return out

    def record(self, path: str, size: int, mtime: float, object_path: str, maps: Sequence[ZoneMapRecord]) -> bool:
        """Store zone maps taken from ``path`` at this size and mtime; False (nothing stored) when
        the catalog knows the file with another identity by now, or not at all."""
        return self.record_many([(path, size, mtime, object_path, maps)]) == 1

    def record_many(self, items: Sequence[tuple[str, int, float, str, Sequence[ZoneMapRecord]]]) -> int:
        """Store the zone maps of many (path, size, mtime, object, maps) in one transaction
        (column-wise, a few statements in all); returns how many items were stored."""
        items = [i for i in items if i[4]]
        if not items:
            return 0
        with self.catalog._write_lock:
            if self.catalog.closed:
                return 0
            cur = self.catalog.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                paths = sorted({i[0] for i in items})
                known = {r[0]: (r[1], r[2], r[3]) for r in cur.execute(
                    "SELECT path, file_id, size, mtime FROM files WHERE path IN (SELECT unnest(?::VARCHAR[]))",
                    [paths]).fetchall()}
                rows: list[tuple[int, str, ZoneMapRecord]] = []
                stored = 0
                for path, size, mtime, object_path, maps in items:
                    found = known.get(path)
                    if found is None or found[1] != size or abs(found[2] - mtime) > 1e-6:
                        continue   # the file changed (or went) since the maps were taken
                    stored += 1
                    rows.extend((found[0], object_path, m) for m in maps)
                if rows:
                    cur.execute("DELETE FROM zone_maps USING (SELECT unnest(?::BIGINT[]) AS f, unnest(?::VARCHAR[]) AS o,"
                                " unnest(?::VARCHAR[]) AS c) k WHERE zone_maps.file_id = k.f AND"
                                " zone_maps.object_path = k.o AND zone_maps.column_name = k.c",
                                [[r[0] for r in rows], [r[1] for r in rows], [r[2].column for r in rows]])
                    columns = [[r[0] for r in rows], [r[1] for r in rows]] + [
                        [list(getattr(r[2], f)) if f != "column" else r[2].column for r in rows]
                        for f in _FIELDS]
                    cur.execute(
                        f"INSERT INTO zone_maps (file_id, object_path, {_COLUMNS}) SELECT unnest(?::BIGINT[]), "
                        "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[][]), unnest(?::BIGINT[][]), "
                        "unnest(?::DOUBLE[][]), unnest(?::DOUBLE[][]), unnest(?::BIGINT[][]), unnest(?::BIGINT[][]), "
                        "unnest(?::BIGINT[][]), unnest(?::BIGINT[][]), unnest(?::BIGINT[][]), unnest(?::BOOLEAN[][])",
                        columns)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        with self._lock:
            for file_id, object_path, m in rows:
                known_maps = self._cache.get((file_id, object_path))
                if known_maps is not None:
                    self._cache[(file_id, object_path)] = {**known_maps, m.column: m}
        return stored

    def want(self, rec: DatasetRecord, parts: Sequence[PartRecord], columns: tuple[str, ...]) -> None:
        """Planning found no zone maps for these columns of these parts: ask for them."""
        hook = self.on_missing
        if hook is not None and self.enabled:
            hook(rec, parts, columns)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def drop_files(self, cur, file_ids: list[int]) -> None:
        """Inside the catalog's transaction that forgets these files."""
        cur.execute("DELETE FROM zone_maps WHERE file_id IN (SELECT unnest(?::BIGINT[]))", [file_ids])


def _record(r: Sequence) -> ZoneMapRecord:
    return ZoneMapRecord(r[0], tuple(r[1]), tuple(r[2]), tuple(r[3]), tuple(r[4]), tuple(r[5]), tuple(r[6]),
                         tuple(r[7]), tuple(r[8]), tuple(r[9]), tuple(r[10]))
