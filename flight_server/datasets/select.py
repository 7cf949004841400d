"""Plan time: which files and entries of a dataset a request selects (``files`` key filter,
``channels``, entry range counted within the selection), and the ``files`` action's table."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord, PartRecord
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.datasets.config import ATTR_CHANNEL, ATTR_KEYS, ATTR_MISSING
from arrowroot.flight_server.datasets.derive import natural_key
from arrowroot.flight_server.datasets.levels import level_info, list_level_files
from arrowroot.flight_server.lang import filekeys


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


def select_ranges(spec: ReadSpec, rec: DatasetRecord, columns: Sequence[str] = (),
                  eligible: np.ndarray | None = None) -> tuple[int, int, list[tuple[PartRecord, int, int]]]:
    """(start, stop, pieces): the request's entry range counted within its selection and the
    (part, global start, global stop) pieces it covers, in order. Checks missing columns.
    ``eligible`` (one bool per part) leaves parts out before entries are counted (levels: the
    incomplete ones)."""
    idx = index_of(rec)
    chosen = _selected_parts(spec, rec, idx)
    if eligible is not None and not eligible.all():
        chosen = [i for i in (range(len(rec.parts)) if chosen is None else chosen) if eligible[i]]
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


# ---------------------------------------------------------------- the files action


def list_files(rec: DatasetRecord, where: str | None, channels: Sequence[str] = ()) -> pa.Table:
    """One row per file of the dataset passing ``where``: path, key columns, entries, size
    (and the channels present, for per-channel datasets), in dataset order. A level has one row
    per file key with each tier's file, size and presence (``datasets/levels.py``)."""
    if level_info(rec) is not None:
        return list_level_files(rec, where)
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
