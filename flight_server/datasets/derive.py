"""Index time: derive the multi-file datasets (declared and folder) from the catalog's
single-file ones. No data file is opened: members' schemas, entries and boundaries come from
the catalog. Rules: ``datasets/__init__``."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from arrowroot.catalog.models import ColumnRecord, DatasetRecord, NewDataset, PartRecord
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.timeranges import combine
from arrowroot.flight_server.datasets.config import (ATTR_CHANNEL, ATTR_FINGERPRINT, ATTR_KEYS, ATTR_MISSING,
                                                     ATTR_TIMESERIES_DQ, ATTR_TIMESERIES_PARTS, CONFIG_NAME,
                                                     TIMESERIES_KEY,
                                                     load_config)
from arrowroot.flight_server.datasets.drift import summary as drift_summary
from arrowroot.flight_server.datasets.levels import derive_levels
from arrowroot.flight_server.lang import filekeys

log = logging.getLogger("arrowroot.multifile")

MAX_DRIFT_EXAMPLES = 5


# ---------------------------------------------------------------- derivation


@dataclass
class Member:
    rec: DatasetRecord            # the single-file dataset
    channel: str | None = None

    @property
    def part(self) -> PartRecord:
        return self.rec.parts[0]


@dataclass
class DeriveReport:
    datasets: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    written: bool = False
    #: folder groups left as per-file datasets: {"dataset": would-be name, "files": n, "reason": why}
    not_merged: list[dict[str, Any]] = field(default_factory=list)


_NAT = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value (``f2`` before ``f10``)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in _NAT.split(text) if t)


def same_kind_width(a: pa.DataType, b: pa.DataType) -> bool:
    """Types a folder dataset may merge: equal, or numbers of one kind that differ in width
    only (int32/int64, uint8/uint16, float32/float64; likewise inside lists)."""
    if a.equals(b):
        return True
    for kind in (pa.types.is_signed_integer, pa.types.is_unsigned_integer, pa.types.is_floating):
        if kind(a) and kind(b):
            return True
    for is_list in (pa.types.is_list, pa.types.is_large_list):
        if is_list(a) and is_list(b):
            return same_kind_width(a.value_type, b.value_type)
    if pa.types.is_fixed_size_list(a) and pa.types.is_fixed_size_list(b) and a.list_size == b.list_size:
        return same_kind_width(a.value_type, b.value_type)
    return False


def _file_of(rec: DatasetRecord) -> str:
    return rec.parts[0].path.rsplit("/", 1)[-1]


def why_not_one(recs: Sequence[DatasetRecord]) -> str:
    """Why the same object in several files is not one table ('' when it is): the first
    difference in column names or readability (types: ``_why_not_one``)."""
    first = recs[0]
    cols = {c.name: c for c in first.columns}
    for other in recs[1:]:
        theirs = {c.name: c for c in other.columns}
        extra = [n for n in theirs if n not in cols]
        lacking = [n for n in cols if n not in theirs]
        if extra or lacking:
            bits = []
            if lacking:
                bits.append(f"{_file_of(other)} lacks {', '.join(map(repr, _sample(lacking)))}"
                            + (f" (and {len(lacking) - MAX_DRIFT_EXAMPLES} more)" if len(lacking) > MAX_DRIFT_EXAMPLES
                               else ""))
            if extra:
                bits.append(f"{_file_of(other)} has {', '.join(map(repr, _sample(extra)))} that "
                            f"{_file_of(first)} lacks"
                            + (f" (and {len(extra) - MAX_DRIFT_EXAMPLES} more)" if len(extra) > MAX_DRIFT_EXAMPLES
                               else ""))
            return "different columns: " + "; ".join(bits)
        for name, c in cols.items():
            o = theirs[name]
            if c.readable != o.readable:
                bad = other if c.readable else first
                return f"column {name!r} cannot be read in {_file_of(bad)}"
    return ""


def _widen(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The common type of two member types, or None when they cannot be reconciled."""
    if a.equals(b):
        return a
    num = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in num) and any(f(b) for f in num):
        if pa.types.is_floating(a) or pa.types.is_floating(b):
            return pa.float64()
        signed = pa.types.is_signed_integer(a) and pa.types.is_signed_integer(b)
        unsigned = pa.types.is_unsigned_integer(a) and pa.types.is_unsigned_integer(b)
        if signed or unsigned:
            return a if a.bit_width >= b.bit_width else b
        u = a if pa.types.is_unsigned_integer(a) else b
        return pa.int64() if u.bit_width < 64 else None
    for is_list, make in ((pa.types.is_list, pa.list_), (pa.types.is_large_list, pa.large_list)):
        if is_list(a) and is_list(b):
            inner = _widen(a.value_type, b.value_type)
            return make(a.value_field.with_type(inner)) if inner is not None else None
    if pa.types.is_fixed_size_list(a) and pa.types.is_fixed_size_list(b) and a.list_size == b.list_size:
        inner = _widen(a.value_type, b.value_type)
        return pa.list_(a.value_field.with_type(inner), a.list_size) if inner is not None else None
    return None


class _SchemaCache:
    def __init__(self) -> None:
        self._by_bytes: dict[bytes, pa.Schema] = {}

    def get(self, data: bytes) -> pa.Schema:
        s = self._by_bytes.get(data)
        if s is None:
            s = self._by_bytes[data] = pa.ipc.read_schema(pa.py_buffer(data))
        return s


def _sample(names: list[str]) -> list[str]:
    return names[:MAX_DRIFT_EXAMPLES]


def unify(name: str, members: Sequence[Member], schemas: _SchemaCache, channel_column: str | None,
          extra_attrs: dict[str, Any], origin: str) -> tuple[NewDataset, dict[str, Any] | None]:
    """One dataset over ``members`` (ordered), with the drift report (None when none)."""
    first = members[0].rec
    member_names = [m.rec.name for m in members]
    fields: dict[str, list[tuple[int, pa.Field]]] = {}
    order: list[str] = []
    if all(m.rec.schema == first.schema for m in members):  # the common case: identical schemas
        s = schemas.get(first.schema)
        for f in s:
            fields[f.name] = [(i, f) for i in range(len(members))]
            order.append(f.name)
    else:
        for i, m in enumerate(members):
            s = schemas.get(m.rec.schema)
            for f in s:
                if f.name not in fields:
                    fields[f.name] = []
                    order.append(f.name)
                fields[f.name].append((i, f))
    missing: dict[str, list[str]] = {}
    widened: dict[str, dict[str, Any]] = {}
    conflicts: dict[str, str] = {}
    out_fields: list[pa.Field] = []
    columns: list[ColumnRecord] = []
    first_cols = {c.name: c for c in first.columns}
    for col in order:
        got = fields[col]
        present = {i for i, _ in got}
        if len(present) < len(members):
            missing[col] = [member_names[i] for i in range(len(members)) if i not in present]
        t = got[0][1].type
        types_seen = {str(f.type): member_names[i] for i, f in got}
        ok = True
        for _, f in got[1:]:
            w = _widen(t, f.type)
            if w is None:
                ok = False
                break
            t = w
        if not ok:
            conflicts[col] = "types differ between files: " + ", ".join(
                f"{ty} in {who}" for ty, who in list(types_seen.items())[:MAX_DRIFT_EXAMPLES])
        elif len(types_seen) > 1:
            widened[col] = {"type": str(t), "from": {ty: who for ty, who in types_seen.items()}}
        base = first_cols.get(col)
        src_type = base.source_type if base else (got[0][1].metadata or {}).get(b"arrowroot.source_type", b"").decode()
        total_unc = 0
        for m in members:
            c = m.rec.column(col)
            if c is not None and c.uncompressed_bytes:
                total_unc += c.uncompressed_bytes
        if ok:
            out_fields.append(pa.field(col, t, nullable=True, metadata=got[0][1].metadata))
        meta = got[0][1].metadata or {}
        shape = tuple(json.loads(meta.get(b"arrowroot.shape", b"[]")))
        columns.append(ColumnRecord(col, str(t) if ok else None, src_type, shape, None, total_unc or None, ok,
                                    conflicts.get(col, "")))
    # Unreadable columns of the members (listed with reasons, never silently dropped).
    for c in first.columns:
        if not c.readable and c.name not in fields:
            columns.append(ColumnRecord(c.name, None, c.source_type, c.shape, None, None, False, c.reason))
    if channel_column:
        out_fields.append(pa.field(channel_column, _channel_type(members), nullable=False,
                                   metadata={b"arrowroot.source_type": b"channel id (from the object path)"}))
        columns.append(ColumnRecord(channel_column, str(_channel_type(members)), "channel id", (), None, None,
                                    True, ""))
    drift = None
    if missing or widened or conflicts:
        drift = {"dataset": name}
        if missing:
            drift["missing"] = {c: {"count": len(w), "examples": _sample(w)} for c, w in missing.items()}
        if widened:
            drift["widened"] = widened
        if conflicts:
            drift["conflicts"] = conflicts
    attrs: dict[str, Any] = dict(extra_attrs)
    attrs["files"] = len({m.part.path for m in members})
    attrs["parts"] = len(members)
    if channel_column:
        attrs[ATTR_CHANNEL] = channel_column
        chans = sorted({m.channel for m in members}, key=natural_key)
        attrs["channels"] = chans if len(chans) <= 1000 else len(chans)
    series = combine([m.rec.attributes.get(TIMESERIES_KEY) for m in members])
    if series is not None:  # one channel over many files: its summary, and per-file times for the planner
        attrs[ATTR_TIMESERIES_PARTS] = series.pop("parts")
        if "dq" in series:
            attrs[ATTR_TIMESERIES_DQ] = series.pop("dq")
        attrs[TIMESERIES_KEY] = series
    if drift:
        attrs["schema_drift"] = {k: v for k, v in drift.items() if k != "dataset"}
    if missing:
        attrs[ATTR_MISSING] = missing
    schema = pa.schema(out_fields, metadata={b"arrowroot.attributes": json.dumps(
        {k: v for k, v in attrs.items() if not k.startswith("arrowroot.")}, default=str).encode()})
    parts = [(m.part.path, m.part.object_path, m.part.entries, list(m.part.boundaries), m.channel) for m in members]
    schema_bytes = schema.serialize().to_pybytes()
    fp = hashlib.sha256(json.dumps([name, first.kind, first.format, parts, attrs, [c.__dict__ for c in columns]],
                                   default=str, sort_keys=True).encode() + schema_bytes).hexdigest()[:24]
    attrs[ATTR_FINGERPRINT] = fp
    return NewDataset(name=name, kind=first.kind, format=first.format, entries=sum(m.part.entries for m in members),
                      schema=schema_bytes, attributes=attrs, columns=columns, parts=parts, origin=origin), drift


def _why_not_one(recs: Sequence[DatasetRecord], schemas: _SchemaCache) -> str:
    """``why_not_one``, then the readable columns' Arrow types (beyond numeric width)."""
    why = why_not_one(recs)
    if why:
        return why
    first = schemas.get(recs[0].schema)
    for other in recs[1:]:
        s = schemas.get(other.schema)
        for f in first:
            g = s.field(f.name)
            if not same_kind_width(f.type, g.type):
                return f"column {f.name!r} is {f.type} in {_file_of(recs[0])} but {g.type} in {_file_of(other)}"
    return ""


def _channel_type(members: Sequence[Member]) -> pa.DataType:
    return pa.int64() if all(m.channel is not None and m.channel.isdigit() for m in members) else pa.string()


def _object_regex(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(re.escape("{ch}"), "(?P<ch>[^/]+)") + "$")


def derive(catalog: Catalog, root: Path) -> DeriveReport:
    """Recompute every 'declared' and 'folder' dataset from the catalog's single-file ones."""
    report = DeriveReport()
    try:
        config = load_config(root)
    except ValueError as exc:
        report.errors.append((CONFIG_NAME, str(exc)))
        log.warning("%s", exc)
        config = None
    files = catalog.files()
    singles = [d for d in catalog.datasets() if d.origin == "file" and len(d.parts) == 1]
    by_path: dict[str, list[DatasetRecord]] = {}
    for d in singles:
        by_path.setdefault(d.parts[0].path, []).append(d)
    schemas = _SchemaCache()
    declared: list[NewDataset] = []
    folder: list[NewDataset] = []
    new_keys: dict[str, dict[str, Any]] = {}
    taken: set[str] = {d.name for d in singles}

    for decl in (config.datasets if config else ()):
        if decl.name in taken:
            report.errors.append((CONFIG_NAME, f"dataset {decl.name!r}: the name is taken by a file's dataset"))
            continue
        paths = [p for p in by_path if fnmatch.fnmatchcase(p, decl.files)]
        template = filekeys.Template(decl.keys) if decl.keys else None
        raw: dict[str, dict[str, str]] = {}
        if template:
            for p in list(paths):
                got = template.match(p)
                if got is None:
                    report.errors.append((p, f"dataset {decl.name!r}: the name does not match the key "
                                              f"template {decl.keys!r}; file left out"))
                    paths.remove(p)
                else:
                    raw[p] = got
        types = {f: decl.types.get(f) or filekeys.infer_type(f, [raw[p][f] for p in paths])
                 for f in (template.fields if template else [])}
        typed = {p: {f: filekeys.convert(raw[p][f], t) for f, t in types.items()} for p in paths}
        for p, k in typed.items():
            merged = {**new_keys.get(p, {}), **k}
            new_keys[p] = merged
        obj_re = _object_regex(decl.object) if "{ch}" in decl.object else None
        members: list[tuple[tuple, Member]] = []
        kind_format = None
        for p in paths:
            for d in by_path[p]:
                obj = d.parts[0].object_path
                if obj_re is not None:
                    m = obj_re.match(obj)
                    if not m:
                        continue
                    ch = m.group("ch")
                elif obj != decl.object:
                    continue
                else:
                    ch = None
                if kind_format is None:
                    kind_format = (d.kind, d.format)
                elif (d.kind, d.format) != kind_format:
                    report.errors.append((p, f"dataset {decl.name!r}: {d.name} is a {d.format} {d.kind}, "
                                             f"the others are {kind_format[1]} {kind_format[0]}; left out"))
                    continue
                keyvals = tuple((v is None, v if v is not None else 0) for v in typed[p].values())
                members.append(((keyvals, natural_key(p), natural_key(ch or "")), Member(d, ch)))
        if not members:
            log.info("declared dataset %r matches no file", decl.name)
            continue
        members.sort(key=lambda x: x[0])
        extra = {"origin_files": decl.files, "origin_object": decl.object}
        if template:
            extra["key_template"] = decl.keys
            extra[ATTR_KEYS] = types
        channel_col = None
        if obj_re is not None:
            names = {n for m in members for n in schemas.get(m[1].rec.schema).names}
            channel_col = decl.channel_column
            if channel_col in names:
                report.errors.append((CONFIG_NAME, f"dataset {decl.name!r}: the data has a column "
                                                   f"{channel_col!r}; set channel_column to another name"))
                channel_col = decl.channel_column + "_id"
        ds, drift = unify(decl.name, [m for _, m in members], schemas, channel_col, extra, "declared")
        declared.append(ds)
        taken.add(decl.name)
        if drift:
            report.drift.append(drift)

    levels: list[NewDataset] = []
    if config is not None and config.levels:
        levels, level_report = derive_levels(config.levels, by_path, schemas, unify, natural_key, taken)
        report.errors.extend(level_report.errors)
        for p, k in level_report.keys.items():
            new_keys[p] = {**new_keys.get(p, {}), **k}

    if config is None or config.folder_datasets:
        groups: dict[tuple[str, str, str, str, str], list[DatasetRecord]] = {}
        for p, recs in by_path.items():
            folder_name, _, base = p.rpartition("/")
            ext = "." + base.rsplit(".", 1)[-1] if "." in base else ""
            for d in recs:
                groups.setdefault((folder_name, ext, d.parts[0].object_path, d.kind, d.format), []).append(d)
        for (folder_name, ext, obj, _kind, _fmt), recs in sorted(groups.items()):
            if len(recs) < 2:
                continue
            name = f"{folder_name + '/' if folder_name else ''}*{ext}:{obj}"
            if name in taken:
                continue
            recs.sort(key=lambda d: natural_key(d.parts[0].path))
            members = [Member(d) for d in recs]
            why = _why_not_one(recs, schemas)
            if why:  # listed per file; declare it in arrowroot.toml to read it with drift handling
                report.not_merged.append({"dataset": name, "files": len(recs), "reason": why})
                continue
            extra = {"origin_files": f"{folder_name + '/' if folder_name else ''}*{ext}", "origin_object": obj}
            ds, drift = unify(name, members, schemas, None, extra, "folder")
            folder.append(ds)
            taken.add(name)
            if drift:
                report.drift.append(drift)

    changed_keys = {p: k for p, k in new_keys.items() if p in files and files[p].keys != k}
    stale = {p: {} for p, r in files.items() if r.keys and p not in new_keys}
    if changed_keys or stale:
        catalog.set_file_keys({**changed_keys, **stale})
        report.written = True
    existing = catalog.datasets()
    for origin, wanted in (("declared", declared), ("folder", folder), ("level", levels)):
        have = sorted(d.attributes.get(ATTR_FINGERPRINT, "") for d in existing if d.origin == origin)
        want = sorted(d.attributes[ATTR_FINGERPRINT] for d in wanted)
        if have != want:
            catalog.replace_derived(origin, wanted)
            report.written = True
    report.datasets = len(declared) + len(folder) + len(levels)
    # logged when the derived datasets change, not at every start (the report keeps it all)
    for d in report.not_merged if report.written else ():
        log.info("%s: %d files not merged into one dataset: %s", d["dataset"], d["files"], d["reason"])
    for d in report.drift if report.written else ():  # one short line each; the details: `arrowroot ls --errors`
        log.warning("schema drift in %s: %s", d["dataset"], drift_summary(d))
    return report
