"""Zone maps at plan time: cut the zones no entry of which can pass out of the tasks, and answer
whole-dataset ``count``/``min``/``max`` without reading.

Why at plan time (and not in the task): a task is planned once and run anywhere — a data node has
no catalog — so the skipping must be decided where the zone maps are. Dropping zones from the
tasks' entry ranges keeps tickets small (no statistics travel), lets a FlightInfo lose endpoints
that would stream nothing, and needs nothing new from executors: a task simply holds several
entry ranges of one file (``ReadTask.parts``), with the entry numbers they always had.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord, PartRecord, ZoneMapRecord
from arrowroot.flight_server.core.task import PartRead, ReadTask
from arrowroot.flight_server.core.zones import Zone, merge, zoneable
from arrowroot.flight_server.lang.zones import ZoneCut

log = logging.getLogger("arrowroot.plan")


@lru_cache(maxsize=256)
def _zone_cut(where: str, schema: pa.Schema) -> ZoneCut:
    """Compiled once per cut and schema (a repeated query plans in microseconds)."""
    return ZoneCut(where, schema)


def _zones(m: ZoneMapRecord) -> list[Zone]:
    return [Zone(*v) for v in zip(m.starts, m.stops, m.mins, m.maxs, m.nulls, m.nans, m.value_nulls,
                                  m.min_lens, m.max_lens, m.exact)]


def _passing(zc: ZoneCut, maps: dict[str, ZoneMapRecord], columns: Sequence[str]) -> list[tuple[int, int, bool]]:
    """(start, stop, may pass) per zone of one part, the zones of the first column with a map as
    the grid (other columns' zones overlapping each one merged onto it)."""
    present = [c for c in columns if c in maps]
    if not present:
        return []
    grids = {c: _zones(maps[c]) for c in present}
    out = []
    for z in grids[present[0]]:
        env: dict[str, Zone] = {present[0]: z}
        for c in present[1:]:
            over = [o for o in grids[c] if o.start < z.stop and z.start < o.stop]
            if over:
                env[c] = merge(over)
        out.append((z.start, z.stop, zc.may_pass(env)))
    return out


def _ranges(start: int, stop: int, zones: list[tuple[int, int, bool]]) -> tuple[list[tuple[int, int]], int]:
    """[start, stop) without the zones that cannot pass: the ranges left, and how many entries went."""
    keep: list[tuple[int, int]] = []
    skipped = 0
    pos = start
    for a, b, ok in zones:
        lo, hi = max(a, start), min(b, stop)
        if hi <= lo or ok:
            continue
        if lo > pos:
            keep.append((pos, lo))
        skipped += hi - lo
        pos = max(pos, hi)
    if pos < stop:
        keep.append((pos, stop))
    return keep, skipped


def _piece(part: PartRead, x: int, y: int) -> PartRead:
    return replace(part, start=x, stop=y, boundaries=tuple(b for b in part.boundaries if x < b < y))


def skip_zones(tasks: Sequence[ReadTask], rec: DatasetRecord, where: str, schema: pa.Schema) -> tuple[list[ReadTask], int]:
    """Tasks without the zones the cut ``where`` cannot pass (tasks left empty are dropped), and
    the number of entries skipped. Parts whose zone maps are missing are read whole, and the
    catalog is asked to collect their maps."""
    store = rec.zones
    if store is None or not tasks:
        return list(tasks), 0
    try:
        zc = _zone_cut(where, schema)
    except Exception:  # the planner validated the cut already; never fail a plan over zones
        return list(tasks), 0
    columns = [c for c in schema.names if c in zc.columns and zoneable(schema.field(c).type)]
    if not columns:
        return list(tasks), 0
    by_key = {(p.path, p.object_path, p.entry_offset): p for p in rec.parts}
    used = [by_key[k] for k in dict.fromkeys((q.path, q.object_path, q.entry_offset)
                                             for t in tasks for q in t.parts) if k in by_key]
    try:
        maps = store.get(used)
    except Exception:
        log.warning("zone maps of %s could not be read", rec.name, exc_info=True)
        return list(tasks), 0
    missing = [p for p in used if any(c not in maps.get((p.file_id, p.object_path), {}) for c in columns)]
    if missing:
        store.want(rec, missing, tuple(columns))
    verdicts: dict[tuple, list[tuple[int, int, bool]]] = {}
    out: list[ReadTask] = []
    skipped = 0
    for task in tasks:
        parts: list[PartRead] = []
        for q in task.parts:
            p = by_key.get((q.path, q.object_path, q.entry_offset))
            if p is None or q.fill or (q.size, q.mtime) != (p.size, p.mtime):
                parts.append(q)
                continue
            key = (p.file_id, p.object_path)
            if key not in verdicts:
                verdicts[key] = _passing(zc, maps.get(key, {}), columns)
            keep, gone = _ranges(q.start, q.stop, verdicts[key])
            skipped += gone
            parts.extend(_piece(q, x, y) for x, y in keep)
        if parts:
            out.append(task.with_parts(tuple(parts)))
    return out, skipped


def summary(rec: DatasetRecord, columns: Sequence[str]) -> dict[str, dict] | None:
    """{column: {"count": non-null values, "min": .., "max": ..}} over the whole dataset, from zone
    maps — or None unless every part has an exact, NaN-free map of every column covering all its
    entries (flat numeric and boolean columns only). Missing maps are asked for."""
    store = rec.zones
    if store is None or not rec.parts:
        return None
    schema = pa.ipc.read_schema(pa.py_buffer(rec.schema))
    for c in columns:
        if c not in schema.names:
            return None
        t = schema.field(c).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            return None
    maps = store.get(rec.parts)
    missing = [p for p in rec.parts if any(c not in maps.get((p.file_id, p.object_path), {}) for c in columns)]
    if missing:
        store.want(rec, missing, tuple(columns))
        return None
    out: dict[str, dict] = {}
    for c in columns:
        count, lo, hi = 0, None, None
        for p in rec.parts:
            zones = _zones(maps[(p.file_id, p.object_path)][c])
            if not _covers(zones, p.entries) or any(not z.exact or z.nans for z in zones):
                return None
            count += sum(z.rows - z.nulls for z in zones)
            mins = [z.min for z in zones if z.min is not None]
            maxs = [z.max for z in zones if z.max is not None]
            if mins:
                lo = min(mins) if lo is None else min(lo, min(mins))
                hi = max(maxs) if hi is None else max(hi, max(maxs))
        out[c] = {"count": count, "min": lo, "max": hi}
    return out


def _covers(zones: list[Zone], entries: int) -> bool:
    pos = 0
    for z in sorted(zones, key=lambda z: z.start):
        if z.start != pos:
            return False
        pos = z.stop
    return pos == entries


__all__ = ["skip_zones", "summary", "PartRecord"]
