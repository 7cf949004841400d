"""Index time: levels, pygama's DataLoader levels as datasets (``[[level]]`` in arrowroot.toml).

A **hit level** joins entry-aligned tiers: for each file key and channel, row *i* of ``ch042/raw``,
``ch042/dsp`` and ``ch042/hit`` is the same waveform. The level is one dataset whose rows are
(file key, channel, entry), ordered like declared datasets (keys, then channel), and whose columns
are the union of the tiers' columns; a name found in several tiers is qualified by its tier
(``dsp.trapEmax``, ``hit.trapEmax``), as is a tier column named like the channel column.

An **event level** is a TCM tier (pygama's ``build_tcm``: per event, ``table_key`` and
``row_in_table`` lists pointing into the hit tables) plus optional event tiers (``evt``) aligned
with it, over a hit level: one row per event, the event tiers' columns flat and the hit level's
columns as lists of the event's hits (with the hit's channel as a list too).

Nothing is read here: each tier member is the catalog's single-file dataset of one table. The
level's row parts are, per (key, channel), the first tier present (per key, the TCM, for event
levels); the other tiers' tables are stored as *links* aligned with them (``catalog`` ``links``),
so a read task carries every file it touches and runs without the catalog. Per key the tiers'
presence is pygama's ``file_status`` (bit ``1 << (n - 1 - i)`` for tier *i*). Keys or channels
missing a tier are *incomplete*; tables whose tiers disagree on length are *misaligned*. Both are
reported by the indexer and kept in the level, so ``files`` lists them and the planner can leave
them out (incomplete, unless ``allow_missing``) or refuse them (misaligned, naming both files).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.catalog.models import ColumnRecord, DatasetRecord, NewDataset
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.datasets.config import (ATTR_CHANNEL, ATTR_FINGERPRINT, ATTR_KEYS, ATTR_LEVEL,
                                                     ATTR_MISSING, Level, Tier)
from arrowroot.flight_server.lang import filekeys

#: what an event level needs of a TCM table: per event, lists of the hits' table keys (channels) and
#: rows, as pygama's build_tcm writes them (VectorOfVectors sharing one cumulative_length); pygama
#: before 2.1 named them array_id/array_idx
TCM_COLUMNS = {"table_key": ("table_key", "row_in_table"), "array_id": ("array_id", "array_idx")}
MAX_REPORTED = 20


@dataclass
class TierMembers:
    """One tier's tables: key → channel (None for per-file tables) → the single-file dataset."""

    tier: Tier
    by_key: dict[tuple, dict[str | None, DatasetRecord]] = field(default_factory=dict)
    files: dict[tuple, str] = field(default_factory=dict)      # key → file path


@dataclass
class HitLevel:
    """What an event level needs of its hit level (derived in the same run)."""

    level: Level
    tiers: list[TierMembers]
    columns: dict[str, tuple[str, str]]     # level column → (tier, source column)
    fields: dict[str, pa.Field]             # level column → its (widened) field
    missing: dict[str, list[str]]           # level column → member names lacking it
    channel_type: pa.DataType


@dataclass
class LevelReport:
    errors: list[tuple[str, str]] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)   # file path → typed keys


def _object_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{ch}"), "(?P<ch>[^/]+)") + "$")


def sort_key(values: tuple) -> tuple:
    return tuple((v is None, v if v is not None else 0) for v in values)


def _members(level: Level, by_path: dict[str, list[DatasetRecord]], report: LevelReport,
             natural_key: Any) -> tuple[list[TierMembers], list[str], dict[str, str]]:
    """Each tier's tables by file key; the key fields and their types (declared or inferred over
    every tier's files)."""
    raw: dict[str, tuple[Tier, dict[str, str]]] = {}
    for tier in level.tiers:
        template = filekeys.Template(tier.keys)
        for p in sorted(by_path, key=natural_key):
            if not fnmatch.fnmatchcase(p, tier.files):
                continue
            got = template.match(p)
            if got is None:
                report.errors.append((p, f"level {level.name!r}: the name does not match tier {tier.name!r}'s key "
                                         f"template {tier.keys!r}; file left out"))
                continue
            raw[p] = (tier, got)
    fields: list[str] = []
    for tier in level.tiers:
        for f in filekeys.Template(tier.keys).fields:
            if f not in fields:
                fields.append(f)
    types = {f: level.types.get(f) or filekeys.infer_type(f, [g.get(f) for _, g in raw.values() if f in g])
             for f in fields}
    out = [TierMembers(t) for t in level.tiers]
    index = {t.name: m for t, m in zip(level.tiers, out)}
    for p, (tier, got) in raw.items():
        typed = {f: filekeys.convert(got[f], types[f]) for f in fields if f in got}
        report.keys[p] = typed
        key = tuple(typed.get(f) for f in fields)
        members = index[tier.name]
        if key in members.files:
            report.errors.append((p, f"level {level.name!r}: tier {tier.name!r} has two files for one key "
                                     f"({members.files[key]} and {p}); {p} left out"))
            continue
        obj_re = _object_regex(tier.object)
        tables: dict[str | None, DatasetRecord] = {}
        for d in by_path[p]:
            m = obj_re.match(d.parts[0].object_path)
            if m is None:
                continue
            if d.format != "lh5":
                report.errors.append((p, f"level {level.name!r}: {d.name} is {d.format}, levels read LH5 tables; "
                                         "left out"))
                continue
            tables[m.groupdict().get("ch")] = d
        if not tables:
            report.errors.append((p, f"level {level.name!r}: no table matches tier {tier.name!r}'s object "
                                     f"{tier.object!r}; file left out"))
            continue
        members.files[key] = p
        members.by_key[key] = tables
    return out, fields, types


@dataclass
class _Member:
    """A tier table as ``derive.unify`` takes its members."""

    rec: DatasetRecord
    channel: str | None = None

    @property
    def part(self) -> Any:
        return self.rec.parts[0]


def _tier_schema(members: TierMembers, unify: Any, schemas: Any) -> NewDataset:
    """One tier's columns over all its tables (types widened, drift recorded), via ``unify``."""
    recs = [_Member(d, ch) for key in members.by_key for ch, d in members.by_key[key].items()]
    return unify(f"tier {members.tier.name}", recs, schemas, None, {}, "level")[0]


def _qualified(names_by_tier: dict[str, list[str]], reserved: set[str]) -> dict[tuple[str, str], str]:
    """(tier, column) → level column name: the plain name when only one tier has it and it is not
    reserved, else ``tier.column``."""
    count: dict[str, int] = {}
    for names in names_by_tier.values():
        for n in set(names):
            count[n] = count.get(n, 0) + 1
    return {(t, n): n if count[n] == 1 and n not in reserved else f"{t}.{n}"
            for t, names in names_by_tier.items() for n in names}


def _rename(col: ColumnRecord, name: str, tier: str) -> ColumnRecord:
    return ColumnRecord(name, col.arrow_type, f"{tier}: {col.source_type}", col.shape, col.compressed_bytes,
                        col.uncompressed_bytes, col.readable, col.reason)


def _channel_type(channels: Sequence[str | None]) -> pa.DataType:
    return pa.int64() if all(c is not None and c.isdigit() for c in channels) else pa.string()


def derive_hit_level(level: Level, by_path: dict[str, list[DatasetRecord]], schemas: Any, unify: Any,
                     natural_key: Any, report: LevelReport) -> tuple[NewDataset | None, HitLevel | None]:
    """The hit level's dataset: row parts per (key, channel), links to the other tiers' tables."""
    tiers, fields, types = _members(level, by_path, report, natural_key)
    if not any(t.by_key for t in tiers):
        return None, None
    per_tier = {}
    for t in tiers:
        if t.by_key:
            per_tier[t.tier.name] = _tier_schema(t, unify, schemas)
    tier_fields = {name: list(pa.ipc.read_schema(pa.py_buffer(ds.schema))) for name, ds in per_tier.items()}
    tier_cols = {name: list(ds.columns) for name, ds in per_tier.items()}
    names = {t: [c.name for c in tier_cols[t]] for t in tier_cols}
    rename = _qualified(names, {level.channel_column})
    columns: dict[str, tuple[str, str]] = {}
    out_fields: list[pa.Field] = []
    records: list[ColumnRecord] = []
    level_fields: dict[str, pa.Field] = {}
    missing: dict[str, list[str]] = {}
    for t in level.tiers:
        if t.name not in per_tier:
            continue
        by_name = {f.name: f for f in tier_fields[t.name]}
        for col in tier_cols[t.name]:
            new = rename[(t.name, col.name)]
            records.append(_rename(col, new, t.name))
            if col.name in by_name:
                f = by_name[col.name].with_name(new)
                meta = dict(f.metadata or {})
                meta[b"arrowroot.tier"] = t.name.encode()
                f = f.with_metadata(meta)
                out_fields.append(f)
                level_fields[new] = f
                columns[new] = (t.name, col.name)
        for col, members in (per_tier[t.name].attributes.get(ATTR_MISSING) or {}).items():
            missing[rename[(t.name, col)]] = list(members)
    keys = sorted({k for t in tiers for k in t.by_key}, key=sort_key)
    all_channels = sorted({ch for t in tiers for tables in t.by_key.values() for ch in tables if ch is not None},
                          key=natural_key)
    channel_type = _channel_type(all_channels)
    out_fields.append(pa.field(level.channel_column, channel_type, nullable=False,
                               metadata={b"arrowroot.source_type": b"channel id (from the table name)"}))
    records.append(ColumnRecord(level.channel_column, str(channel_type), "channel id", (), None, None, True, ""))
    parts: list[tuple[str, str, int, list[int], str | None]] = []
    links: list[tuple[int, str, str, str, int, list[int], str | None]] = []
    incomplete: list[dict[str, Any]] = []
    misaligned: list[dict[str, Any]] = []
    for key in keys:
        present = [t for t in tiers if key in t.by_key]
        absent_tiers = [t.tier.name for t in tiers if key not in t.by_key]
        channels = sorted({ch for t in present for ch in t.by_key[key]}, key=natural_key)
        if absent_tiers:
            incomplete.append({"key": list(key), "tiers": absent_tiers,
                               "files": [t.files[key] for t in present]})
        for ch in channels:
            have = [t for t in present if ch in t.by_key[key]]
            lacking = [t.tier.name for t in present if ch not in t.by_key[key]]
            if lacking:
                incomplete.append({"key": list(key), "channel": ch, "tiers": lacking,
                                   "files": [t.files[key] for t in have]})
            first = have[0].by_key[key][ch].parts[0]
            row = len(parts)
            parts.append((first.path, first.object_path, first.entries, list(first.boundaries), ch))
            for t in have[1:]:
                p = t.by_key[key][ch].parts[0]
                links.append((row, t.tier.name, p.path, p.object_path, p.entries, list(p.boundaries), ch))
                if p.entries != first.entries:
                    misaligned.append({"key": list(key), "channel": ch,
                                       "files": [f"{first.path}:{first.object_path} ({first.entries} entries)",
                                                 f"{p.path}:{p.object_path} ({p.entries} entries)"]})
    for item in incomplete[:MAX_REPORTED]:
        where = f"channel {item['channel']} of " if "channel" in item else ""
        report.errors.append((item["files"][0] if item["files"] else level.name,
                              f"level {level.name!r}: {where}key {_key_text(fields, item['key'])} lacks tier(s) "
                              f"{', '.join(item['tiers'])}; left out of reads unless allow_missing"))
    for item in misaligned[:MAX_REPORTED]:
        report.errors.append((item["files"][0].split(":")[0],
                              f"level {level.name!r}: tiers disagree on length: {item['files'][0]} vs "
                              f"{item['files'][1]}; reads of this key and channel fail"))
    attrs: dict[str, Any] = {
        "level": "hit", "tiers": [t.name for t in level.tiers], "files": len({p[0] for p in parts}),
        "parts": len(parts), "keys": len(keys), "key_fields": fields,
        "tier_files": {t.name: t.files for t in level.tiers}, "tier_objects": {t.name: t.object for t in level.tiers},
        ATTR_KEYS: types, ATTR_CHANNEL: level.channel_column,
        "channels": all_channels if len(all_channels) <= 1000 else len(all_channels),
        "incomplete": len(incomplete), "misaligned": len(misaligned),
        ATTR_LEVEL: {"kind": "hit", "tiers": [t.name for t in level.tiers],
                     "columns": {k: list(v) for k, v in columns.items()}},
    }
    if missing:
        attrs[ATTR_MISSING] = missing
    ds = _dataset(level.name, out_fields, records, attrs, parts, links)
    hit = HitLevel(level, tiers, columns, level_fields, missing, channel_type)
    return ds, hit


def _key_text(fields: list[str], key: list) -> str:
    return "(" + ", ".join(f"{f}={v}" for f, v in zip(fields, key)) + ")"


def _dataset(name: str, fields: list[pa.Field], records: list[ColumnRecord], attrs: dict[str, Any],
             parts: list, links: list) -> NewDataset:
    schema = pa.schema(fields, metadata={b"arrowroot.attributes": json.dumps(
        {k: v for k, v in attrs.items() if not k.startswith("arrowroot.")}, default=str).encode()})
    schema_bytes = schema.serialize().to_pybytes()
    fp = hashlib.sha256(json.dumps([name, parts, links, attrs, [c.__dict__ for c in records]], default=str,
                                   sort_keys=True).encode() + schema_bytes).hexdigest()[:24]
    attrs[ATTR_FINGERPRINT] = fp
    return NewDataset(name=name, kind="level", format="lh5", entries=sum(p[2] for p in parts), schema=schema_bytes,
                      attributes=attrs, columns=records, parts=parts, origin="level", links=links)


def derive_event_level(level: Level, hit: HitLevel | None, by_path: dict[str, list[DatasetRecord]],
                       schemas: Any, unify: Any, natural_key: Any, report: LevelReport) -> NewDataset | None:
    """The event level's dataset: one row part per key (its TCM table), links to the event tiers'
    tables and to every hit table of that key."""
    if hit is None:
        report.errors.append((level.name, f"level {level.name!r}: its hit level {level.hits!r} is not a hit level "
                                          "declared before it (or matched no file)"))
        return None
    tiers, fields, _types = _members(level, by_path, report, natural_key)
    tcm = next(t for t in tiers if t.tier.name == level.tcm)
    if not tcm.by_key:
        return None
    if fields != [f for f in fields if f in hit_fields(hit)] or set(fields) != set(hit_fields(hit)):
        report.errors.append((level.name, f"level {level.name!r}: its key fields {fields} differ from those of "
                                          f"{level.hits!r} ({hit_fields(hit)}); keys cannot be matched"))
        return None
    layout = None
    for key, tables in tcm.by_key.items():
        rec = tables[None]
        schema = schemas.get(rec.schema)
        found = next((k for k, cols in TCM_COLUMNS.items() if set(cols) <= set(schema.names)
                      and all(pa.types.is_list(schema.field(c).type) and pa.types.is_integer(schema.field(c).type.value_type)
                              for c in cols)), None)
        if found is None:
            report.errors.append((tcm.files[key], f"level {level.name!r}: {rec.name} is not a TCM (no "
                                                  "table_key/row_in_table lists of integers); file left out"))
            continue
        if layout is None:
            layout = found
        elif found != layout:
            report.errors.append((tcm.files[key], f"level {level.name!r}: TCM layouts differ between files; "
                                                  f"{rec.name} left out"))
    if layout is None:
        return None
    evt_tiers = [t for t in tiers if t.tier.name != level.tcm]
    per_tier = {t.tier.name: _tier_schema(t, unify, schemas) for t in evt_tiers if t.by_key}
    tier_fields = {name: list(pa.ipc.read_schema(pa.py_buffer(ds.schema))) for name, ds in per_tier.items()}
    evt_names = {t: [f.name for f in fs] for t, fs in tier_fields.items()}
    # a name of an event tier that is also a hit-level column, the channel column, or in two event
    # tiers is qualified on both sides
    hit_names = set(hit.columns) | {hit.level.channel_column}
    rename = _qualified(evt_names, hit_names)
    clash = {n for names in evt_names.values() for n in names if n in hit_names}
    columns: dict[str, list[str]] = {}
    out_fields: list[pa.Field] = []
    records: list[ColumnRecord] = []
    for t in evt_tiers:
        if t.tier.name not in per_tier:
            continue
        for f in tier_fields[t.tier.name]:
            new = rename[(t.tier.name, f.name)]
            out_fields.append(f.with_name(new))
            columns[new] = [t.tier.name, f.name, "event"]
        for c in per_tier[t.tier.name].columns:
            records.append(_rename(c, rename[(t.tier.name, c.name)], t.tier.name))
    hit_missing: dict[str, list[str]] = {}
    for name, (tier, source) in hit.columns.items():
        new = f"{tier}.{source}" if name in clash else name
        f = hit.fields[name]
        if name in hit.missing:
            hit_missing[new] = hit.missing[name]
        out_fields.append(pa.field(new, pa.list_(f.type), nullable=True, metadata=f.metadata))
        records.append(ColumnRecord(new, str(pa.list_(f.type)), f"hits of the event, {tier}: {source}", (), None,
                                    None, True, ""))
        columns[new] = [tier, source, "hit"]
    channel = hit.level.channel_column if hit.level.channel_column not in columns else f"hit.{hit.level.channel_column}"
    out_fields.append(pa.field(channel, pa.list_(hit.channel_type), nullable=True,
                               metadata={b"arrowroot.source_type": b"channel ids of the event's hits"}))
    records.append(ColumnRecord(channel, str(pa.list_(hit.channel_type)), "channel ids of the event's hits", (),
                                None, None, True, ""))
    parts: list[tuple[str, str, int, list[int], str | None]] = []
    links: list[tuple[int, str, str, str, int, list[int], str | None]] = []
    incomplete: list[dict[str, Any]] = []
    orphans: list[dict[str, Any]] = []
    sizes = {d.parts[0].path: d.parts[0].size for recs in by_path.values() for d in recs}
    hit_keys = {k for t in hit.tiers for k in t.by_key}
    for key in sorted(set(tcm.by_key) | {k for t in evt_tiers for k in t.by_key} | hit_keys, key=sort_key):
        lacking = [t.tier.name for t in evt_tiers if key not in t.by_key]
        lacking += [t.tier.name for t in hit.tiers if key not in t.by_key]
        if key not in tcm.by_key:
            present = {t.tier.name: t.files[key] for t in [*hit.tiers, *evt_tiers] if key in t.by_key}
            incomplete.append({"key": list(key), "tiers": [level.tcm] + lacking, "files": list(present.values())})
            orphans.append({"key": list(key), "files": present, "missing": [level.tcm] + lacking,
                            "sizes": {t: sizes.get(f) for t, f in present.items()}})
            continue
        rec = tcm.by_key[key][None]
        if set(TCM_COLUMNS[layout]) - set(schemas.get(rec.schema).names):
            continue
        p = rec.parts[0]
        row = len(parts)
        parts.append((p.path, p.object_path, p.entries, list(p.boundaries), None))
        for t in evt_tiers:
            if key in t.by_key:
                e = t.by_key[key][None].parts[0]
                links.append((row, t.tier.name, e.path, e.object_path, e.entries, list(e.boundaries), None))
                if e.entries != p.entries:
                    report.errors.append((e.path, f"level {level.name!r}: {e.path}:{e.object_path} has {e.entries} "
                                                  f"entries, the TCM {p.path}:{p.object_path} {p.entries}; reads of "
                                                  "this key fail"))
        for t in hit.tiers:
            for ch, d in sorted((t.by_key.get(key) or {}).items(), key=lambda x: natural_key(x[0] or "")):
                h = d.parts[0]
                links.append((row, t.tier.name, h.path, h.object_path, h.entries, list(h.boundaries), ch))
        if lacking:
            incomplete.append({"key": list(key), "tiers": lacking, "files": [p.path]})
    for item in incomplete[:MAX_REPORTED]:
        report.errors.append((item["files"][0] if item["files"] else level.name,
                              f"level {level.name!r}: key {_key_text(fields, item['key'])} lacks tier(s) "
                              f"{', '.join(item['tiers'])}; left out of reads unless allow_missing"))
    if not parts:
        return None
    hit_objects = {t.tier.name: t.tier.object for t in hit.tiers}
    attrs: dict[str, Any] = {
        "level": "event", "tiers": [t.name for t in level.tiers], "hits": level.hits,
        "hit_tiers": [t.tier.name for t in hit.tiers], "files": len(parts), "parts": len(parts),
        "keys": len(parts), "key_fields": fields, "tcm_layout": layout,
        "tier_files": {t.name: t.files for t in level.tiers}, "tier_objects": {t.name: t.object for t in level.tiers},
        ATTR_KEYS: {f: t for f, t in _types.items()}, "incomplete": len(incomplete),
        ATTR_LEVEL: {"kind": "event", "tiers": [t.name for t in level.tiers], "tcm": level.tcm,
                     "tcm_layout": layout, "hit_tiers": [t.tier.name for t in hit.tiers],
                     "hit_objects": hit_objects, "channel_column": channel,
                     "channel_type": str(hit.channel_type), "columns": columns,
                     "hit_missing": hit_missing},
    }
    if orphans:
        attrs[ORPHANS] = orphans
    return _dataset(level.name, out_fields, records, attrs, parts, links)


def hit_fields(hit: HitLevel) -> list[str]:
    fields: list[str] = []
    for t in hit.level.tiers:
        for f in filekeys.Template(t.keys).fields:
            if f not in fields:
                fields.append(f)
    return fields


def derive_levels(levels: Sequence[Level], by_path: dict[str, list[DatasetRecord]], schemas: Any, unify: Any,
                  natural_key: Any, taken: set[str]) -> tuple[list[NewDataset], LevelReport]:
    """Every level's dataset, hit levels first (event levels name theirs)."""
    report = LevelReport()
    out: list[NewDataset] = []
    hits: dict[str, HitLevel] = {}
    for level in sorted(levels, key=lambda lv: lv.kind != "hit"):
        if level.name in taken:
            report.errors.append(("arrowroot.toml", f"level {level.name!r}: the name is taken by another dataset"))
            continue
        if level.kind == "hit":
            ds, hit = derive_hit_level(level, by_path, schemas, unify, natural_key, report)
            if hit is not None:
                hits[level.name] = hit
        else:
            ds = derive_event_level(level, hits.get(level.hits), by_path, schemas, unify, natural_key, report)
        if ds is not None:
            out.append(ds)
            taken.add(level.name)
    return out, report


def level_info(rec: DatasetRecord) -> dict[str, Any] | None:
    """The level description a dataset record carries (None: not a level)."""
    info = rec.attributes.get(ATTR_LEVEL)
    return info if isinstance(info, dict) else None


# ---------------------------------------------------------------- plan time: what each part holds


@dataclass
class LevelIndex:
    """Per row part of a level record: its tiers' tables, whether every tier is there (complete)
    and whether their lengths agree; and the per-key table ``files`` shows. Built once per record."""

    rec: DatasetRecord
    info: dict[str, Any]
    tiers: list[str]                                   # every tier, in files-table order
    links: list[list[Any]]                             # row part → its links
    row_tier: list[str]
    complete: np.ndarray
    missing: list[list[str]]                           # row part → the tiers it lacks
    misaligned: list[str | None]                       # row part → why it cannot be aligned, or None
    channels: set[str] = field(default_factory=set)   # every channel id of the level's tables
    hits: int = 0                                       # event levels: hits in the first hit tier's tables
    _keys: pa.Table | None = None
    _key_rows: list[int] | None = None

    @property
    def event(self) -> bool:
        return self.info.get("kind") == "event"

    def key_table(self) -> tuple[pa.Table, list[int]]:
        """One row per file key: the typed keys, each tier's file, size and presence (pygama's
        ``file_status`` bits as columns named after the tiers, and the bits themselves), entries,
        channels, and whether the key is complete; and each row part's row in it."""
        if self._keys is not None:
            return self._keys, self._key_rows  # type: ignore[return-value]
        rec = self.rec
        fields = list(rec.attributes.get("key_fields") or [])
        types = dict(rec.attributes.get(ATTR_KEYS) or {})
        rows: dict[tuple, dict[str, Any]] = {}
        part_rows: list[int] = []
        order: list[tuple] = []
        where: dict[tuple, int] = {}
        for i, p in enumerate(rec.parts):
            key = tuple(p.keys.get(f) for f in fields)
            row = rows.get(key)
            if row is None:
                row = rows[key] = {"keys": p.keys, "files": {}, "sizes": {}, "entries": 0, "channels": [],
                                   "complete": True, "missing": set(), "misaligned": False}
                where[key] = len(order)
                order.append(key)
            part_rows.append(where[key])
            row["files"].setdefault(self.row_tier[i], p.path)
            row["sizes"].setdefault(self.row_tier[i], p.size)
            for ln in self.links[i]:
                row["files"].setdefault(ln.tier, ln.path)
                row["sizes"].setdefault(ln.tier, ln.size)
            row["entries"] += p.entries
            if p.channel is not None:
                row["channels"].append(p.channel)
            row["complete"] &= bool(self.complete[i])
            row["missing"].update(self.missing[i])
            row["misaligned"] |= self.misaligned[i] is not None
        for orphan in rec.attributes.get(ORPHANS) or []:
            key = tuple(orphan["key"])
            rows[key] = {"keys": dict(zip(fields, orphan["key"])), "files": dict(orphan["files"]),
                         "sizes": dict(orphan.get("sizes") or {}), "entries": 0, "channels": [], "complete": False,
                         "missing": set(orphan["missing"]), "misaligned": False}
            order.append(key)
        table = filekeys.key_table([rows[k]["keys"] for k in order], {f: types.get(f, "str") for f in fields},
                                   [next(iter(rows[k]["files"].values()), "") for k in order])
        table = table.drop_columns(["path"])
        n = len(self.tiers)
        status = [sum(1 << (n - 1 - j) for j, t in enumerate(self.tiers) if t in rows[k]["files"]) for k in order]
        for t in self.tiers:
            table = table.append_column(t, pa.array([t in rows[k]["files"] for k in order], pa.bool_()))
        table = table.append_column("file_status", pa.array(status, pa.int64()))
        for t in self.tiers:
            table = table.append_column(f"{t}_file", pa.array([rows[k]["files"].get(t) for k in order], pa.string()))
            table = table.append_column(f"{t}_size", pa.array([rows[k]["sizes"].get(t) for k in order], pa.int64()))
        table = table.append_column("entries", pa.array([rows[k]["entries"] for k in order], pa.int64()))
        if not self.event:
            table = table.append_column("channels", pa.array([rows[k]["channels"] for k in order],
                                                             pa.list_(pa.string())))
        table = table.append_column("complete", pa.array([rows[k]["complete"] for k in order], pa.bool_()))
        table = table.append_column("missing", pa.array([sorted(rows[k]["missing"], key=self.tiers.index)
                                                         for k in order], pa.list_(pa.string())))
        table = table.append_column("misaligned", pa.array([rows[k]["misaligned"] for k in order], pa.bool_()))
        self._keys, self._key_rows = table, part_rows
        return table, part_rows


ORPHANS = "arrowroot.orphans"     # event levels: keys with event or hit tiers but no TCM
_INDEX: dict[int, LevelIndex] = {}


def level_index(rec: DatasetRecord) -> LevelIndex:
    """The cached LevelIndex of a level record (rebuilt when the record changes)."""
    idx = _INDEX.get(rec.dataset_id)
    if idx is not None and idx.rec is rec:
        return idx
    info = level_info(rec) or {}
    links: list[list[Any]] = [[] for _ in rec.parts]
    for ln in rec.links:
        if 0 <= ln.row < len(links):
            links[ln.row].append(ln)
    n = len(rec.parts)
    complete = np.ones(n, dtype=bool)
    missing: list[list[str]] = [[] for _ in range(n)]
    misaligned: list[str | None] = [None] * n
    row_tier: list[str] = []
    if info.get("kind") == "event":
        evt_tiers = [t for t in info["tiers"] if t != info["tcm"]]
        hit_tiers = list(info["hit_tiers"])
        tiers = hit_tiers + [info["tcm"]] + evt_tiers
        for i, p in enumerate(rec.parts):
            row_tier.append(info["tcm"])
            have = {ln.tier for ln in links[i]}
            lack = [t for t in evt_tiers + hit_tiers if t not in have]
            chans = {t: {ln.channel: ln for ln in links[i] if ln.tier == t} for t in hit_tiers}
            sets = [set(c) for c in chans.values()]
            if sets and any(s != sets[0] for s in sets):
                lack += [t for t in hit_tiers if chans[t].keys() != set.union(*sets) and t not in lack]
            missing[i], complete[i] = lack, not lack
            for ln in links[i]:
                if ln.tier in evt_tiers and ln.entries != p.entries:
                    misaligned[i] = (f"tiers disagree on length: {p.path}:{p.object_path} has {p.entries} events, "
                                     f"{ln.path}:{ln.object_path} has {ln.entries}")
            for ch in set.union(*sets) if sets else ():
                lens = [(chans[t][ch], t) for t in hit_tiers if ch in chans[t]]
                if any(x.entries != lens[0][0].entries for x, _ in lens):
                    a, b = lens[0][0], next(x for x, _ in lens if x.entries != lens[0][0].entries)
                    misaligned[i] = (f"tiers disagree on length: {a.path}:{a.object_path} has {a.entries} entries, "
                                     f"{b.path}:{b.object_path} has {b.entries}")
    else:
        tiers = list(info.get("tiers") or [])
        for i, p in enumerate(rec.parts):
            have = {ln.tier for ln in links[i]}
            rt = next((t for t in tiers if t not in have), tiers[0] if tiers else "")
            row_tier.append(rt)
            lack = [t for t in tiers if t != rt and t not in have]
            missing[i], complete[i] = lack, not lack
            for ln in links[i]:
                if ln.entries != p.entries:
                    misaligned[i] = (f"tiers disagree on length: {p.path}:{p.object_path} has {p.entries} entries, "
                                     f"{ln.path}:{ln.object_path} has {ln.entries}")
                    break
    idx = LevelIndex(rec, info, tiers, links, row_tier, complete, missing, misaligned)
    idx.channels = {p.channel for p in [*rec.parts, *rec.links] if p.channel is not None}
    first_hit = (info.get("hit_tiers") or [None])[0]
    idx.hits = sum(ln.entries for ln in rec.links if ln.tier == first_hit) if first_hit else 0
    if len(_INDEX) > 1024:
        _INDEX.clear()
    _INDEX[rec.dataset_id] = idx
    return idx


def list_level_files(rec: DatasetRecord, where: str | None) -> pa.Table:
    """The ``files`` action on a level: one row per file key (``LevelIndex.key_table``), filtered
    by ``where`` over its columns (keys, tier flags, ``file_status``, ``complete``...)."""
    table, _ = level_index(rec).key_table()
    if where:
        try:
            mask = filekeys.evaluate(where, table)
        except filekeys.FilterError as exc:
            raise InvalidRequest(f"files: {exc}") from None
        table = table.filter(mask)
    return table
