"""Datasets that span many files: one table, one schema, one global entry numbering.

Two kinds are derived from the catalog after every indexing run (no data file is opened:
each member's schema, entries and boundaries come from its single-file dataset):

* **declared** datasets, from an optional ``arrowroot.toml`` in the served directory::

      folder_datasets = true                # default; false turns the folder rule off

      [[dataset]]
      name = "l200/dsp"                     # what clients ask for
      files = "lh5/**/*-tier_dsp.lh5"       # glob over paths relative to the served directory
      object = "ch{ch}/dsp"                 # object in each file; {ch} = one table per channel
      keys = "{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5"   # optional
      channel_column = "channel"            # optional, the column holding the channel id
      [dataset.types]                       # optional: key types (int, float, str, timestamp)
      run = "int"

* **folder** datasets: two or more files directly in one folder, with the same extension
  and format, holding an object of the same path and kind, are offered together as
  ``<folder>/*<ext>:<object>`` (``*.root:events`` at the top level), besides the
  per-file datasets. Members are in natural path order (``f2`` before ``f10``).

Declared members are ordered by their file keys (in template order), then path, then
channel. Columns are the union over members; a column missing from some members or whose
type differs is *schema drift*: it is recorded in the dataset's ``schema_drift``
attribute and the indexer report. Integer/float types are widened (int32+int64 → int64,
int+float → float64, float32+float64 → float64, likewise inside lists); other
differences make the column unreadable with the reason.

At read time (``select``): ``ReadRequest.files`` filters members by key, ``channels``
picks per-channel tables, and ``entry_start``/``entry_stop`` count entries of that
selection (the table the request describes). The ``entry`` column of
``with_entry_numbers`` is the dataset-wide global entry number. Requesting a column that
some selected member lacks fails (naming the column and a file) unless ``allow_missing``,
which fills it with nulls.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import json
import logging
import re
import threading
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.catalog.models import ColumnRecord, DatasetRecord, NewDataset, PartRecord
from arrowroot.catalog.store import Catalog

from arrowroot.flight_server.lang import filekeys
from arrowroot.flight_server.server.codec import InvalidRequest, ReadSpec

log = logging.getLogger("arrowroot.multifile")

CONFIG_NAME = "arrowroot.toml"
ATTR_MISSING = "arrowroot.missing"        # column → member names ("path:object") lacking it
ATTR_FINGERPRINT = "arrowroot.fingerprint"
ATTR_KEYS = "file_keys"                   # key field → type
ATTR_CHANNEL = "channel_column"
MAX_DRIFT_EXAMPLES = 5


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Declared:
    name: str
    files: str
    object: str
    keys: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    channel_column: str = "channel"


@dataclass(frozen=True)
class Config:
    datasets: tuple[Declared, ...] = ()
    folder_datasets: bool = True


def load_config(root: Path) -> Config:
    """Parse ``<root>/arrowroot.toml``; ValueError names the faulty entry."""
    path = Path(root) / CONFIG_NAME
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{CONFIG_NAME}: {exc}") from None
    unknown = set(data) - {"dataset", "folder_datasets"}
    if unknown:
        raise ValueError(f"{CONFIG_NAME}: unknown top-level keys {sorted(unknown)}; known: dataset, folder_datasets")
    out = []
    for i, d in enumerate(data.get("dataset", [])):
        where = f"{CONFIG_NAME}: dataset[{i}]"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a table expected ([[dataset]])")
        extra = set(d) - {"name", "files", "object", "keys", "types", "channel_column"}
        if extra:
            raise ValueError(f"{where}: unknown keys {sorted(extra)}")
        for req in ("name", "files", "object"):
            if not isinstance(d.get(req), str) or not d[req]:
                raise ValueError(f"{where}.{req}: a non-empty string is required")
        types = d.get("types", {})
        if not isinstance(types, dict) or any(v not in filekeys.KEY_TYPES for v in types.values()):
            raise ValueError(f"{where}.types: a table of key → one of {sorted(filekeys.KEY_TYPES)}")
        if d.get("keys") is not None:
            try:
                filekeys.Template(d["keys"])
            except ValueError as exc:
                raise ValueError(f"{where}.keys: {exc}") from None
        obj_fields = re.findall(r"\{(\w*)\}", d["object"])
        if obj_fields not in ([], ["ch"]):
            raise ValueError(f"{where}.object: the only placeholder allowed is {{ch}} (got {obj_fields})")
        out.append(Declared(d["name"], d["files"], d["object"], d.get("keys"), dict(types),
                            d.get("channel_column", "channel")))
    folder = data.get("folder_datasets", True)
    if not isinstance(folder, bool):
        raise ValueError(f"{CONFIG_NAME}: folder_datasets must be true or false")
    return Config(tuple(out), folder)


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


_NAT = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value (``f2`` before ``f10``)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in _NAT.split(text) if t)


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
            return make(inner) if inner is not None else None
    if pa.types.is_fixed_size_list(a) and pa.types.is_fixed_size_list(b) and a.list_size == b.list_size:
        inner = _widen(a.value_type, b.value_type)
        return pa.list_(inner, a.list_size) if inner is not None else None
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
            common = set.intersection(*(set(schemas.get(d.schema).names) for d in recs))
            if not common:
                continue  # same object name, nothing in common: not one table
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
    for origin, wanted in (("declared", declared), ("folder", folder)):
        have = sorted(d.attributes.get(ATTR_FINGERPRINT, "") for d in existing if d.origin == origin)
        want = sorted(d.attributes[ATTR_FINGERPRINT] for d in wanted)
        if have != want:
            catalog.replace_derived(origin, wanted)
            report.written = True
    report.datasets = len(declared) + len(folder)
    for d in report.drift:
        log.warning("schema drift in %s: %s", d["dataset"], json.dumps({k: v for k, v in d.items() if k != "dataset"},
                                                                        default=str)[:2000])
    return report


# ---------------------------------------------------------------- selection (plan time)


@dataclass
class _Index:
    """Per-dataset lookup structures, built once per catalog record."""

    rec: DatasetRecord
    offsets: list[int]                      # global first entry of each part
    keys: pa.Table | None = None
    missing: dict[str, frozenset[str]] = field(default_factory=dict)
    file_rows: list[int] | None = None       # part → row in ``keys``
    filters: dict[tuple, list[int]] = field(default_factory=dict)

    def key_table(self) -> tuple[pa.Table, list[int]]:
        """One row per distinct file of the dataset (``path`` + typed key columns)."""
        if self.keys is None:
            paths: list[str] = []
            rows: list[dict[str, Any]] = []
            where: dict[str, int] = {}
            part_rows = []
            for p in self.rec.parts:
                i = where.get(p.path)
                if i is None:
                    i = where[p.path] = len(paths)
                    paths.append(p.path)
                    rows.append(p.keys)
                part_rows.append(i)
            types = dict(self.rec.attributes.get(ATTR_KEYS) or filekeys.types_of(rows))
            self.keys = filekeys.key_table(rows, types, paths)
            self.file_rows = part_rows
        return self.keys, self.file_rows  # type: ignore[return-value]


_INDEX: dict[int, _Index] = {}
_INDEX_LOCK = threading.Lock()
MAX_CACHED_FILTERS = 64


def index_of(rec: DatasetRecord) -> _Index:
    """The cached lookup structures of a dataset record (rebuilt when the record changes)."""
    idx = _INDEX.get(rec.dataset_id)
    if idx is not None and idx.rec is rec:
        return idx
    missing = {c: frozenset(v) for c, v in (rec.attributes.get(ATTR_MISSING) or {}).items()}
    idx = _Index(rec, [p.entry_offset for p in rec.parts], missing=missing)
    with _INDEX_LOCK:
        if len(_INDEX) > 4096:
            _INDEX.clear()
        _INDEX[rec.dataset_id] = idx
    return idx


def _selected_parts(spec: ReadSpec, rec: DatasetRecord, idx: _Index) -> list[int] | None:
    """Indices of the parts the request selects; None = all of them."""
    if not spec.files and not spec.channels:
        return None
    cache_key = (spec.files, spec.channels)
    got = idx.filters.get(cache_key)
    if got is not None:
        return got
    keep = np.ones(len(rec.parts), dtype=bool)
    if spec.files:
        table, part_rows = idx.key_table()
        try:
            mask = filekeys.evaluate(spec.files, table).to_numpy(zero_copy_only=False)
        except filekeys.FilterError as exc:
            raise InvalidRequest(f"files: {exc}") from None
        keep &= mask[np.asarray(part_rows, dtype=np.int64)] if part_rows else keep
    if spec.channels:
        channel_col = rec.attributes.get(ATTR_CHANNEL)
        if not channel_col:
            raise InvalidRequest(f"channels: {rec.name!r} has no per-channel tables")
        wanted = {c.strip() for c in spec.channels}
        wanted |= {c[2:] for c in wanted if c.startswith("ch")}
        known = {p.channel for p in rec.parts}
        unknown = [c for c in spec.channels if c.strip() not in known and c.strip()[2:] not in known]
        if unknown:
            raise InvalidRequest(f"channels: {unknown[:5]} not in {rec.name!r} "
                                 f"(e.g. {sorted(known, key=natural_key)[:5]})")
        keep &= np.fromiter((p.channel in wanted for p in rec.parts), dtype=bool, count=len(rec.parts))
    out = np.flatnonzero(keep).tolist()
    if len(idx.filters) >= MAX_CACHED_FILTERS:
        idx.filters.clear()
    idx.filters[cache_key] = out
    return out


def _resolve(spec: ReadSpec, entries: int) -> tuple[int, int]:
    def norm(value: int | None, default: int) -> int:
        if value is None:
            return default
        if value < 0:
            value += entries
        return min(max(value, 0), entries)

    start = norm(spec.entry_start, 0)
    stop = norm(spec.entry_stop, entries)
    if spec.entry_start is not None and spec.entry_stop is not None and stop < start:
        raise InvalidRequest(f"entry_stop ({spec.entry_stop}) is before entry_start ({spec.entry_start})")
    return start, max(start, stop)


def select_ranges(spec: ReadSpec, rec: DatasetRecord,
                  columns: Sequence[str] = ()) -> tuple[int, int, list[tuple[PartRecord, int, int]]]:
    """(start, stop, pieces): the request's entry range counted within its selection and the
    (part, global start, global stop) pieces it covers, in order. Checks missing columns."""
    idx = index_of(rec)
    chosen = _selected_parts(spec, rec, idx)
    parts = rec.parts
    pieces: list[tuple[PartRecord, int, int]] = []
    if chosen is None:
        start, stop = _resolve(spec, rec.entries)
        i = max(0, bisect.bisect_right(idx.offsets, start) - 1)
        while i < len(parts) and parts[i].entry_offset < stop:
            p = parts[i]
            a, b = max(start, p.entry_offset), min(stop, p.entry_offset + p.entries)
            if a < b:
                pieces.append((p, a, b))
            i += 1
    else:
        total = sum(parts[i].entries for i in chosen)
        start, stop = _resolve(spec, total)
        seen = 0
        for i in chosen:
            p = parts[i]
            lo, hi = seen, seen + p.entries
            seen = hi
            if hi <= start:
                continue
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            if a < b:
                pieces.append((p, p.entry_offset + a, p.entry_offset + b))
    if idx.missing and not spec.allow_missing:
        for col in columns:
            lacking = idx.missing.get(col)
            if not lacking:
                continue
            for p, _, _ in pieces:
                if f"{p.path}:{p.object_path}" in lacking:
                    raise InvalidRequest(
                        f"columns: {col!r} is missing from {p.path} ({p.object_path}) in {rec.name!r}; "
                        "set allow_missing to read it as nulls there, or narrow the files")
    return start, stop, pieces


# ---------------------------------------------------------------- reading (do_get)


def read_part(reader: Any, plan: Any, part: PartRecord, start: int, stop: int,
              columns: Sequence[str] | None = None, cut_phase: bool = False) -> pa.Table:
    """Read ``columns`` (default ``plan.columns``) of one part: widened types cast, missing
    columns as nulls, the channel column filled in. Single-file datasets go straight to the
    reader. ``cut_phase`` reads unsliced values typed as in the dataset (for the cut)."""
    rec: DatasetRecord = plan.dataset
    slices = () if cut_phase else plan.spec.slices
    schema = plan.source_schema if cut_phase else plan.schema
    columns = plan.columns if columns is None else tuple(columns)
    if rec.origin == "file":
        return reader.read(columns, start, stop, slices)
    idx = index_of(rec)
    channel_col = rec.attributes.get(ATTR_CHANNEL)
    member = f"{part.path}:{part.object_path}"
    absent = {c for c, who in idx.missing.items() if member in who}
    want = [c for c in columns if c != channel_col and c not in absent]
    got = reader.read(want, start, stop, slices) if want else None
    n = stop - start if got is None else got.num_rows
    arrays = []
    for c in columns:
        f = schema.field(c)
        if c == channel_col:
            value = int(part.channel) if pa.types.is_integer(f.type) else part.channel
            arrays.append(pa.array(np.full(n, value), f.type) if pa.types.is_integer(f.type)
                          else pa.array([value] * n, f.type))
        elif c in absent:
            arrays.append(pa.nulls(n, f.type))
        else:
            arr = got.column(c)
            if not arr.type.equals(f.type):
                arr = arr.cast(f.type)
            arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=list(columns))


# ---------------------------------------------------------------- the files action


def list_files(rec: DatasetRecord, where: str | None, channels: Sequence[str] = ()) -> pa.Table:
    """One row per file of the dataset passing ``where``: path, key columns, entries, size
    (and the channels present, for per-channel datasets), in dataset order."""
    idx = index_of(rec)
    spec = ReadSpec(dataset=rec.name, files=where or "", channels=tuple(channels))
    chosen = _selected_parts(spec, rec, idx)
    table, part_rows = idx.key_table()
    rows = range(len(rec.parts)) if chosen is None else chosen
    entries: dict[int, int] = {}
    chans: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for i in rows:
        p = rec.parts[i]
        r = part_rows[i]
        entries[r] = entries.get(r, 0) + p.entries
        sizes[r] = p.size
        if p.channel is not None:
            chans.setdefault(r, []).append(p.channel)
    order = list(entries)
    out = table.take(pa.array(order, pa.int64()))
    out = out.append_column("entries", pa.array([entries[r] for r in order], pa.int64()))
    out = out.append_column("size", pa.array([sizes[r] for r in order], pa.int64()))
    if rec.attributes.get(ATTR_CHANNEL):
        out = out.append_column("channels", pa.array([chans.get(r, []) for r in order], pa.list_(pa.string())))
    return out
