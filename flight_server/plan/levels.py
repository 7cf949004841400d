"""Plan a read of a level (``datasets/levels.py``) into self-contained tasks.

A level read is planned like any dataset's: columns and cut checked against the level's schema,
the selection (``files`` over the file keys, tier flags and ``file_status``; ``channels``; the
entry range counted within it), endpoints cut at the row tier's chunk boundaries. What differs is
what a task carries: every part lists each tier's table it reads (``PartRead.tiers``, files with
their size and mtime), and the task says where each column comes from, so a data node runs it
without the catalog, and the tier join happens in the executor (``levels/``), not in a door.

Parts whose key or channel lacks a tier are left out unless ``allow_missing`` (then the missing
tier's columns are nulls) and listed in the plan's notes; a selected part whose tiers disagree on
length is refused, naming both files. An event level's ``channels`` keep the hits of those
channels; ``hit_where``/``mode`` select hits as pygama's ``build_entry_list`` does, and events
left without a hit are dropped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.ranges import split_range
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.core.unreadable import UNSUPPORTED, without_reasons
from arrowroot.flight_server.core.task import (ENTRY_COLUMN, HIT_ENTRY_COLUMN, LevelColumn, PartRead, ReadTask,
                                              TierRead)
from arrowroot.flight_server.datasets.derive import natural_key
from arrowroot.flight_server.datasets.levels import LevelIndex, level_index, level_info
from arrowroot.flight_server.datasets.select import select_ranges
from arrowroot.flight_server.lang import filekeys
from arrowroot.flight_server.lang.cuts import ExprError, parse
from arrowroot.flight_server.plan.columns import bytes_per_entry, dataset_schema, resolve_columns

MAX_NOTED = 20


def _parse(text: str, schema: pa.Schema, what: str) -> Any:
    try:
        return parse(text, schema)
    except ExprError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None


def _channels(spec: ReadSpec, known: set[str], name: str) -> set[str] | None:
    """The channel ids a request names (``ch1084803`` or ``1084803``); None = every channel."""
    if not spec.channels:
        return None
    out: set[str] = set()
    unknown = []
    for c in spec.channels:
        c = c.strip()
        if c in known:
            out.add(c)
        elif c.startswith("ch") and c[2:] in known:
            out.add(c[2:])
        else:
            unknown.append(c)
    if unknown:
        raise InvalidRequest(f"channels: {unknown[:5]} not in {name!r} (e.g. {sorted(known, key=natural_key)[:5]})")
    return out


def _eligible(spec: ReadSpec, idx: LevelIndex, channel_of: list[set[str | None]],
              wanted: set[str] | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Which row parts the request reads: its ``files`` filter (over the files table), its channels,
    and completeness; incomplete parts are left out (and noted) unless ``allow_missing``, a
    misaligned one is refused."""
    rec = idx.rec
    n = len(rec.parts)
    keep = np.ones(n, dtype=bool)
    if spec.files:
        table, part_rows = idx.key_table()
        try:
            mask = filekeys.evaluate(spec.files, table).to_numpy(zero_copy_only=False)
        except filekeys.FilterError as exc:
            raise InvalidRequest(f"files: {exc}") from None
        keep &= np.asarray(mask, dtype=bool)[np.asarray(part_rows, dtype=np.int64)] if n else keep
    if wanted is not None and not idx.event:
        keep &= np.fromiter((bool(c & wanted) for c in channel_of), dtype=bool, count=n)
    notes: dict[str, Any] = {}
    if not spec.allow_missing:
        left = keep & ~idx.complete
        if left.any():
            fields = list(rec.attributes.get("key_fields") or [])
            by_key: dict[tuple, dict[str, Any]] = {}
            for i in np.flatnonzero(left):
                p = rec.parts[i]
                key = tuple(p.keys.get(f) for f in fields)
                item = by_key.get(key)
                if item is None:
                    if len(by_key) >= MAX_NOTED:
                        continue
                    item = by_key[key] = {"key": {f: p.keys.get(f) for f in fields}, "missing": [], "channels": 0}
                item["missing"] += [t for t in idx.missing[i] if t not in item["missing"]]
                item["channels"] += p.channel is not None
            items = list(by_key.values())
            notes["left_out"] = {"parts": int(left.sum()), "entries": int(sum(rec.parts[i].entries
                                                                              for i in np.flatnonzero(left))),
                                 "examples": items,
                                 "why": "these keys lack a tier; allow_missing reads them with nulls"}
            if not (keep & idx.complete).any():
                ex = items[0]
                raise InvalidRequest(f"files: every selected key of {rec.name!r} lacks a tier (e.g. {ex['key']} "
                                     f"lacks {', '.join(ex['missing'])}); set allow_missing to read them with "
                                     "the missing tiers' columns as nulls")
            keep &= idx.complete
    for i in np.flatnonzero(keep):
        if idx.misaligned[i] is not None:
            raise InvalidRequest(f"{rec.name!r}: {idx.misaligned[i]}; the level cannot align them (leave the key out "
                                 "with files=..., or re-process the tiers)")
    return keep, notes


def _tier_read(tier: str, p: Any) -> TierRead:
    return TierRead(tier, p.path, p.size, p.mtime, p.object_path, (p.entries,))


def plan_level(spec: ReadSpec, rec: DatasetRecord, limits: Any, principal: str, expires: float,
               request_id: str = "") -> tuple:
    """A level read → what ``planner.Plan`` holds: (columns, schema, entry start, stop, tasks, bytes per
    entry, cut, notes, rows); raises NotFound/InvalidRequest."""
    if spec.slices:
        raise InvalidRequest("slices: apply to HDF5 N-D datasets only; levels are read by entries")
    if spec.by_time:
        raise InvalidRequest(f"time_start/time_stop: {rec.name!r} is a level, read by entries (or by a cut on its "
                             "timestamp column)")
    idx = level_index(rec)
    if not idx.event and (spec.hit_where or spec.mode or spec.orientation):
        field_name = "hit_where" if spec.hit_where else "mode" if spec.mode else "orientation"
        raise InvalidRequest(f"{field_name}: applies to event levels; {rec.name!r} is a hit level (one row per hit): "
                             "put the cut in where")
    if spec.mode and not spec.hit_where:
        raise InvalidRequest("mode: selects hits by a hit cut; give hit_where too")
    schema = without_reasons(dataset_schema(rec))
    columns = resolve_columns(spec.columns, rec, schema)
    if not columns:
        raise InvalidRequest(f"columns: {rec.name!r} has no readable columns")
    info = idx.info
    hit_orientation = idx.event and spec.orientation == "hit"
    for reserved in ((ENTRY_COLUMN, HIT_ENTRY_COLUMN) if hit_orientation else
                     (ENTRY_COLUMN,) if spec.with_entry_numbers else ()):
        if reserved in columns:
            raise InvalidRequest(f"columns: the level already has a column named {reserved!r}")
    cut = _parse(spec.where, schema, "where") if spec.where.strip() else None
    channel_column = rec.attributes.get("channel_column") or info.get("channel_column") or "channel"
    lc = info.get("columns") or {}
    if idx.event:
        hit_cols = [f for f in schema if (lc.get(f.name) or [None, None, None])[2] == "hit" or f.name == channel_column]
        hit_schema = pa.schema([f.with_type(f.type.value_type) for f in hit_cols])
        hit_cut = None
        if spec.hit_where.strip():
            try:
                hit_cut = parse(spec.hit_where, hit_schema)
            except ExprError as exc:
                evt = [f.name for f in schema if f.name not in hit_schema.names and f.name in spec.hit_where]
                hint = f"; {evt[0]!r} is an event column: cut on it with where" if evt else ""
                raise InvalidRequest(f"hit_where: {exc}{hint}") from None
        wanted = _channels(spec, idx.channels, rec.name)
        channel_of: list[set[str | None]] = []
    else:
        hit_cut = None
        wanted = _channels(spec, idx.channels, rec.name)
        channel_of = [{p.channel} for p in rec.parts]
    keep, notes = _eligible(spec, idx, channel_of, wanted)
    start, stop, pieces = select_ranges(replace(spec, files="", channels=()), rec, (), keep)
    cut_columns = [n for n in schema.names if cut is not None and n in cut.columns]
    hit_cut_columns = [n for n in schema.names if hit_cut is not None and n in hit_cut.columns]
    drop_empty = idx.event and bool(spec.hit_where.strip() or wanted is not None)
    extra = [channel_column] if drop_empty else []
    read_names = list(dict.fromkeys([*columns, *cut_columns, *hit_cut_columns, *extra]))
    read_schema = pa.schema([schema.field(n) for n in read_names], metadata=schema.metadata)
    per_entry = bytes_per_entry(rec, tuple(read_names))
    if idx.event:
        level_columns = tuple(
            LevelColumn(n, *(lc[n][:2]), lc[n][2]) if n in lc else LevelColumn(n, "", "", "hit") for n in read_names)
        per_entry *= max(1.0, idx.hits / max(rec.entries, 1))
    else:
        level_columns = tuple(LevelColumn(n, *lc[n][:2]) for n in read_names if n in lc)
    if not spec.columns:
        skipped = [{"name": c.name, "reason": c.reason or UNSUPPORTED} for c in rec.columns if not c.readable]
        if skipped:
            notes["skipped_columns"] = skipped
    template = ReadTask(
        dataset=rec.name, format=rec.format, kind=rec.kind, read_schema=read_schema, columns=columns, parts=(),
        where=spec.where if cut is not None else "", with_entry_numbers=spec.with_entry_numbers and not hit_orientation,
        channel_column=None if idx.event else channel_column, cast=not idx.event,
        batch_rows=min(spec.batch_rows or limits.batch_rows, limits.batch_rows * 8), batch_bytes=limits.batch_bytes,
        chunk_rows=max(1, int(limits.chunk_bytes / per_entry)), principal=principal, expires=expires,
        compression=spec.compression, request_id=request_id, level="event" if idx.event else "hit",
        level_columns=level_columns,
        hit_where=spec.hit_where if hit_cut is not None else "", mode=(spec.mode or "only") if hit_cut is not None else "",
        orientation="hit" if hit_orientation else "", tcm_layout=info.get("tcm_layout", ""), drop_empty=drop_empty)
    rows = max(1, int(limits.endpoint_bytes / per_entry))
    index = {id(p): i for i, p in enumerate(rec.parts)}
    missing = rec.attributes.get("arrowroot.missing") or {}
    hit_missing = info.get("hit_missing") or {}
    tasks = []
    for part, a, b in pieces:
        i = index[id(part)]
        if idx.event:
            tiers, absent = _event_tiers(idx, i, wanted, info, hit_missing if spec.allow_missing else {}, read_names), ()
        else:
            tiers = (_tier_read(idx.row_tier[i], part),) + tuple(_tier_read(ln.tier, ln) for ln in idx.links[i])
            present = {t.tier: f"{t.path}:{t.object_path}" for t in tiers}
            absent = tuple(c for c in read_names if c in lc and (lc[c][0] not in present
                                                                 or present[lc[c][0]] in missing.get(c, ())))
            if absent and not spec.allow_missing:
                c = absent[0]
                raise InvalidRequest(f"columns: {c!r} is missing from {present.get(lc[c][0], 'the ' + lc[c][0] + ' tier')} "
                                     f"in {rec.name!r}; set allow_missing to read it as nulls there, or narrow the "
                                     "files")
        local = tuple(part.entry_offset + x for x in part.boundaries)
        for x, y in split_range(a, b, local, rows, split_above=4 * rows):
            s, e = x - part.entry_offset, y - part.entry_offset
            inner = tuple(v for v in part.boundaries if s < v < e)
            tasks.append(template.with_parts((PartRead(part.path, part.size, part.mtime, part.object_path,
                                                           part.entry_offset, s, e, inner, part.channel, absent,
                                                           tiers=tiers),)))
    out_schema = template.output_schema()
    unknown_rows = cut is not None or drop_empty or hit_orientation
    return (columns, out_schema, start, stop, tuple(tasks), per_entry, cut, notes, -1 if unknown_rows else None)


def _event_tiers(idx: LevelIndex, i: int, wanted: set[str] | None, info: dict[str, Any],
                 hit_missing: dict[str, list[str]], read_names: list[str]) -> tuple[TierRead, ...]:
    """An event part's tables: the TCM first, the event tiers, then one TierRead per hit tier with
    the selected channels' tables (``{ch}`` in the object path)."""
    rec = idx.rec
    p = rec.parts[i]
    out = [_tier_read(info["tcm"], p)]
    for ln in idx.links[i]:
        if ln.channel is None and ln.tier not in info["hit_tiers"]:
            out.append(_tier_read(ln.tier, ln))
    lc = info.get("columns") or {}
    by_source: dict[tuple[str, str], list[str]] = {}
    for name, members in hit_missing.items():
        if name in read_names and name in lc:
            by_source[(lc[name][0], lc[name][1])] = list(members)
    for tier in info["hit_tiers"]:
        links = sorted((ln for ln in idx.links[i] if ln.tier == tier and (wanted is None or ln.channel in wanted)),
                       key=lambda ln: natural_key(ln.channel or ""))
        if not links:
            continue
        template = info["hit_objects"][tier]
        paths = {ln.path for ln in links}
        if len(paths) != 1:
            raise InvalidRequest(f"{rec.name!r}: tier {tier!r} of one key is spread over several files "
                                 f"({sorted(paths)[:2]}); a key's hit tables live in one file per tier")
        skip, skip_ch = [], []
        for (t, source), members in by_source.items():
            if t != tier:
                continue
            for ln in links:
                if f"{ln.path}:{ln.object_path}" in members:
                    skip.append(source)
                    skip_ch.append(ln.channel or "")
        out.append(TierRead(tier, links[0].path, links[0].size, links[0].mtime, template,
                            tuple(ln.entries for ln in links), tuple(ln.channel or "" for ln in links),
                            tuple(skip), tuple(skip_ch)))
    return tuple(out)


def skim_meta(rec: DatasetRecord, spec: ReadSpec, tasks: tuple[ReadTask, ...]) -> dict[str, Any] | None:
    """What a workspace skim of a level records to read its entries again without the catalog: the
    level's columns (where each comes from), each selected part's tables (from the planned tasks),
    and, for events, the hit selection (hit cut, mode, channels) its rows were made with. None for
    any other dataset."""
    info = level_info(rec)
    if info is None:
        return None
    schema = without_reasons(dataset_schema(rec))
    lc = info.get("columns") or {}
    event = info.get("kind") == "event"
    channel_column = info.get("channel_column") or rec.attributes.get("channel_column") or "channel"
    columns = [[n, *lc[n][:2], lc[n][2] if event else ""] for n in schema.names if n in lc]
    if event:
        columns.append([channel_column, "", "", "hit"])
    parts: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        for p in t.parts:
            parts[f"{p.path}:{p.object_path}:{p.channel or ''}"] = [
                {"tier": x.tier, "path": x.path, "size": x.size, "mtime": x.mtime, "object_path": x.object_path,
                 "entries": list(x.entries), "channels": list(x.channels), "absent": list(x.absent),
                 "absent_channels": list(x.absent_channels)} for x in p.tiers]
    out: dict[str, Any] = {"kind": "event" if event else "hit", "columns": columns, "parts": parts,
                           "channel_column": channel_column}
    if event:
        out.update(tcm_layout=info.get("tcm_layout", ""), hit_tiers=list(info.get("hit_tiers") or []),
                   hit_where=spec.hit_where.strip(), mode=(spec.mode or "only") if spec.hit_where.strip() else "",
                   channels=list(spec.channels))
    return out


def level_selection(args: dict[str, Any]) -> dict[str, Any]:
    """A skim action's level selection (``files``, ``channels``, ``hit_where``, ``hit_mode``) as
    ReadSpec fields; InvalidRequest names a malformed one. Empty for a plain skim."""
    out: dict[str, Any] = {}
    files, channels = args.get("files"), args.get("channels")
    hit_where, hit_mode = args.get("hit_where"), args.get("hit_mode")
    if files is not None:
        if not isinstance(files, str):
            raise InvalidRequest("skim.files: a file-key filter string expected")
        if files.strip():
            out["files"] = files
    if channels is not None:
        if not isinstance(channels, list):
            raise InvalidRequest("skim.channels: a list of channel ids expected")
        if channels:
            out["channels"] = tuple(str(c) for c in channels)
    if hit_where is not None:
        if not isinstance(hit_where, str):
            raise InvalidRequest("skim.hit_where: a cut on each hit expected")
        if hit_where.strip():
            out["hit_where"] = hit_where
    if hit_mode is not None:
        if hit_mode not in ("any", "only"):
            raise InvalidRequest("skim.hit_mode: 'any' or 'only'")
        out["mode"] = hit_mode
    return out
