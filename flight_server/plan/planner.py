"""ReadSpec + catalog record → output schema and self-contained read tasks (one per endpoint).

Everything here is arithmetic on catalog records: no data file is opened, so GetFlightInfo
stays fast however large the dataset. This is the only place a request is planned; DoGet runs
the tasks it produced (``execute/``) without planning again and without the catalog.

Entry ranges are global (over all parts of a multi-file dataset). Endpoints never span two
parts and are cut at cluster/chunk boundaries, each holding about ``endpoint_bytes`` of the
requested columns.
"""

from __future__ import annotations


import json
from dataclasses import dataclass, field, replace

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord, PartRecord
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.ranges import split_range
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.core.shapes import sliced_field
from arrowroot.flight_server.core.task import ENTRY_COLUMN, TIME_COLUMN, PartRead, ReadTask
from arrowroot.flight_server.core.unreadable import (UNSUPPORTED, no_columns_text, without_reasons)
from arrowroot.flight_server.core.timeranges import (Gap, members_of, plan_time, time_type,
                                                      to_scale)
from arrowroot.flight_server.datasets.config import (ATTR_CHANNEL, ATTR_MISSING, ATTR_TIMESERIES_DQ,
                                                     ATTR_TIMESERIES_PARTS,
                                                     TIMESERIES_KEY)
from arrowroot.flight_server.datasets.levels import level_info
from arrowroot.flight_server.datasets.select import select_ranges
from arrowroot.flight_server.lang.dq import dq_segments
from arrowroot.flight_server.lang.cuts import Cut, ExprError, parse
from arrowroot.flight_server.plan.columns import bytes_per_entry, dataset_schema, resolve_columns
from arrowroot.flight_server.plan.levels import plan_level
from arrowroot.flight_server.plan.zones import skip_zones

META_TIMESERIES = b"arrowroot.timeseries"
MAX_FILL_ROWS = 1 << 31


@dataclass(frozen=True)
class Limits:
    """The size targets planning uses: the Settings fields of the same names (no defaults here)."""

    endpoint_bytes: int
    chunk_bytes: int
    batch_bytes: int
    batch_rows: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.endpoint_bytes, settings.chunk_bytes, settings.batch_bytes, settings.batch_rows)


@dataclass(frozen=True)
class Plan:
    dataset: DatasetRecord
    spec: ReadSpec
    columns: tuple[str, ...]      # source columns to read, in output order
    schema: pa.Schema             # what the stream carries
    entry_start: int
    entry_stop: int
    tasks: tuple[ReadTask, ...]   # one per endpoint, self-contained
    bytes_per_entry: float
    cut: Cut | None = None        # the parsed ``where`` (validated here; executors compile it again)
    #: what the client should know about the answer, sent as FlightInfo.app_metadata (JSON):
    #: e.g. {"skipped_columns": [{"name": ..., "reason": ...}]} when "all columns" left some out
    notes: dict = field(default_factory=dict)
    rows: int | None = None       # time reads: rows the stream carries (filled gaps included)

    @property
    def entries(self) -> int:
        """Entries scanned (before any cut)."""
        return self.entry_stop - self.entry_start

    @property
    def total_records(self) -> int:
        """Rows the stream will carry: -1 (unknown) when a cut decides."""
        if self.cut is not None:
            return -1
        return self.entries if self.rows is None else self.rows

    @property
    def total_bytes(self) -> int:
        rows = self.total_records
        return -1 if self.cut is not None or rows < 0 else int(rows * self.bytes_per_entry)

    def head(self, n: int) -> "Plan | None":
        """The first ``n`` entries of this plan without planning again (previews, capped plots), or
        None where rows are not entries (a cut, a time read with filled gaps, a level): plan those
        with an entry range instead."""
        if self.cut is not None or self.rows is not None or any(p.tiers or p.fill for t in self.tasks
                                                                 for p in t.parts):
            return None
        if n >= self.entries:
            return self
        tasks: list[ReadTask] = []
        left = n
        for task in self.tasks:
            parts = []
            for p in task.parts:
                if left <= 0:
                    break
                take = min(left, p.stop - p.start)
                stop = p.start + take
                parts.append(replace(p, stop=stop, boundaries=tuple(x for x in p.boundaries if x < stop)))
                left -= take
            if parts:
                tasks.append(task.with_parts(tuple(parts)))
            if left <= 0:
                break
        return replace(self, tasks=tuple(tasks), entry_stop=self.entry_start + n)




def _part_read(rec: DatasetRecord, part: PartRecord, a: int, b: int, absent: tuple[str, ...]) -> PartRead:
    """The global range [a, b) of ``part`` as a self-contained PartRead."""
    start, stop = a - part.entry_offset, b - part.entry_offset
    inner = tuple(x for x in part.boundaries if start < x < stop)
    return PartRead(part.path, part.size, part.mtime, part.object_path, part.entry_offset, start, stop, inner,
                    part.channel, absent)


def plan_read(spec: ReadSpec, rec: DatasetRecord, limits: Limits, principal: str = "",
              expires: float = 0.0, slices_supported: bool = True, request_id: str = "") -> Plan:
    """Columns, schema and self-contained tasks for a request; raises NotFound/InvalidRequest.

    ``slices_supported``: whether the dataset's source reads per-axis slices (the source's
    capability, asked by the caller)."""
    if level_info(rec) is not None:  # a level: several tiers, or events through a TCM (plan/levels.py)
        columns, out_schema, start, stop, tasks, per_entry, cut, notes, rows = plan_level(
            spec, rec, limits, principal, expires, request_id)
        return Plan(rec, spec, columns, out_schema, start, stop, tasks, per_entry, cut, notes, rows)
    if spec.hit_where or spec.mode or spec.orientation:
        raise InvalidRequest(f"hit_where/mode/orientation: apply to event levels; {rec.name!r} is not one")
    if spec.slices and not slices_supported:
        raise InvalidRequest("slices: apply to HDF5 N-D datasets only; use entry_start/entry_stop for entries")
    schema = without_reasons(dataset_schema(rec))
    columns = resolve_columns(spec.columns, rec, schema)
    if not columns:
        raise InvalidRequest("columns: " + no_columns_text(rec.name, [(c.name, c.reason) for c in rec.columns
                                                                     if not c.readable]))
    try:
        fields = [sliced_field(schema.field(c), spec.slices) for c in columns]
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if spec.with_entry_numbers:
        if ENTRY_COLUMN in columns:
            raise InvalidRequest(f"with_entry_numbers: the dataset already has a column named {ENTRY_COLUMN!r}")
        fields.insert(0, pa.field(ENTRY_COLUMN, pa.int64(), nullable=False))
    if spec.by_time:
        series = _series_of(rec)
        if spec.with_time:
            if TIME_COLUMN in columns:
                raise InvalidRequest(f"with_time: the dataset already has a column named {TIME_COLUMN!r}")
            fields.insert(1 if spec.with_entry_numbers else 0,
                          pa.field(TIME_COLUMN, time_type(series.get("scale", "gps")), nullable=False))
        if spec.fill_gaps and (spec.with_entry_numbers or spec.where.strip()):
            raise InvalidRequest("fill_gaps: filled rows have no entry number and no values to cut on; "
                                 "drop with_entry_numbers/where or fill_gaps")
    out_schema = pa.schema(fields, metadata=schema.metadata)
    # entry range within the selected files/channels → global pieces, one part each
    start, stop, pieces = select_ranges(replace(spec, time_start=None, time_stop=None) if spec.by_time else spec,
                                        rec, columns)
    cut = None
    if spec.where.strip():
        try:
            cut = parse(spec.where, schema)
        except ExprError as exc:
            raise InvalidRequest(f"where: {exc}") from None
    cut_columns = tuple(n for n in schema.names if cut is not None and n in cut.columns)
    read_names = list(dict.fromkeys(columns + cut_columns))
    per_entry = bytes_per_entry(rec, tuple(read_names))
    read_schema = pa.schema([schema.field(n) for n in read_names], metadata=schema.metadata)
    multi = rec.origin != "file"
    missing = rec.attributes.get(ATTR_MISSING) or {} if multi else {}
    template = ReadTask(
        dataset=rec.name, format=rec.format, kind=rec.kind, read_schema=read_schema, columns=columns, parts=(),
        where=spec.where if cut is not None else "", slices=spec.slices, with_entry_numbers=spec.with_entry_numbers,
        channel_column=(rec.attributes.get(ATTR_CHANNEL) or None) if multi else None, cast=multi,
        batch_rows=min(spec.batch_rows or limits.batch_rows, limits.batch_rows * 8),
        batch_bytes=limits.batch_bytes, chunk_rows=max(1, int(limits.chunk_bytes / per_entry)),
        principal=principal, expires=expires, compression=spec.compression, request_id=request_id)
    rows = max(1, int(limits.endpoint_bytes / per_entry))
    notes: dict = {}
    if not spec.columns:
        skipped = [{"name": c.name, "reason": c.reason or UNSUPPORTED} for c in rec.columns if not c.readable]
        if skipped:
            notes["skipped_columns"] = skipped
    if spec.by_time:
        return _plan_by_time(spec, rec, series, pieces, template, out_schema, columns, read_names, per_entry,
                             rows, cut, notes)
    tasks = []
    for part, a, b in pieces:
        member = f"{part.path}:{part.object_path}"
        absent = tuple(c for c in read_names if member in missing.get(c, ()))
        local = tuple(part.entry_offset + x for x in part.boundaries)
        for x, y in split_range(a, b, local, rows, split_above=4 * rows):
            tasks.append(template.with_parts((_part_read(rec, part, x, y, absent),)))
    if cut is not None:  # zones where no entry can pass are not read (plan/zones.py)
        tasks, skipped = skip_zones(tasks, rec, spec.where, schema)
        if skipped:
            notes["zone_skipped"] = skipped
    return Plan(rec, spec, columns, out_schema, start, stop, tuple(tasks), per_entry, cut, notes)


def _series_of(rec: DatasetRecord) -> dict:
    """The dataset's time-series record; InvalidRequest when it has none."""
    series = rec.attributes.get(TIMESERIES_KEY)
    if not isinstance(series, dict) or "rate" not in series or "t0" not in series:
        why = ("its waveforms are one per entry, not a continuous series" if isinstance(series, dict)
               else "it follows no time-series convention arrowroot recognises (gwpy, GWDama, GWOSC, ASDF, "
                    "or a [timeseries.*] mapping in arrowroot.toml)")
        raise InvalidRequest(f"time_start/time_stop: {rec.name!r} cannot be read by time: {why}; "
                             "read it by entries")
    return series


def _plan_by_time(spec: ReadSpec, rec: DatasetRecord, series: dict, pieces: list, template: ReadTask,
                  out_schema: pa.Schema, columns: tuple[str, ...], read_names: list[str], per_entry: float,
                  rows: int, cut: Cut | None, notes: dict) -> Plan:
    """A read by time: [time_start, time_stop) → entry ranges over the selected files in time
    order, gaps reported (and filled with null rows if asked), overlaps refused naming the files."""
    scale = series.get("scale", "gps")
    try:
        lo, hi = to_scale(spec.time_start, scale), to_scale(spec.time_stop, scale)
    except ValueError as exc:
        raise InvalidRequest(f"time_start/time_stop: {exc}") from None
    parts_times = rec.attributes.get(ATTR_TIMESERIES_PARTS)
    per_part = members_of(series, parts_times) if parts_times is not None else [series]
    if len(per_part) != len(rec.parts):
        raise InvalidRequest(f"time_start/time_stop: {rec.name!r} has files without a time record; "
                             "re-index it")
    where = {(p.path, p.object_path, p.channel): i for i, p in enumerate(rec.parts)}
    chosen = [where[(p.path, p.object_path, p.channel)] for p, _, _ in pieces]
    chosen.sort(key=lambda i: (per_part[i]["t0"], rec.parts[i].path))   # time order (plan_time's too)
    members = [(f"{rec.parts[i].path}:{rec.parts[i].object_path}", per_part[i]) for i in chosen]
    windows: list[tuple[float | None, float | None]] = [(lo, hi)]
    kept = None
    if spec.dq.strip():
        flags = ((rec.attributes.get(ATTR_TIMESERIES_DQ) if parts_times is not None else series.get("dq")) or {})
        flags = flags.get("flags") if isinstance(flags, dict) else None
        if not flags:
            raise InvalidRequest(f"dq: {rec.name!r} has no data-quality flags (a GWOSC quality/simple/DQmask "
                                 "beside the channel)")
        a = series["t0"] if lo is None else lo
        b = series["t_end"] if hi is None else hi
        try:
            kept = dq_segments(spec.dq, {k: [tuple(x) for x in v] for k, v in flags.items()}, a, b)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        windows = list(kept)
    try:
        tplan = None
        for w_lo, w_hi in windows if members else ():
            one = plan_time(members, w_lo, w_hi)
            tplan = one if tplan is None else replace(tplan, parts=tplan.parts + one.parts)
    except ValueError as exc:
        raise InvalidRequest(f"time_start/time_stop: {exc}") from None
    multi = rec.origin != "file"
    missing = rec.attributes.get(ATTR_MISSING) or {} if multi else {}
    template = replace(template, time_scale=scale if spec.with_time else "", time_rate=float(series["rate"]))
    tasks: list[ReadTask] = []
    filled = 0
    for item in tplan.parts if tplan else ():
        if isinstance(item, Gap):
            if not spec.fill_gaps or not item.samples:
                continue
            filled += item.samples
            if filled > MAX_FILL_ROWS:
                raise InvalidRequest(f"fill_gaps: over {MAX_FILL_ROWS} null rows; narrow the time range")
            for x, y in split_range(0, item.samples, (), rows):
                tasks.append(template.with_parts((PartRead(
                    "", 0, 0.0, "", 0, x, y, (), None, (), item.first, item.t0_ns, y - x),)))
            continue
        part = rec.parts[chosen[item.member]]
        t0, t0_ns = members[item.member][1]["t0"], members[item.member][1]["t0_ns"]
        member = f"{part.path}:{part.object_path}"
        absent = tuple(c for c in read_names if member in missing.get(c, ()))
        local = tuple(part.entry_offset + x for x in part.boundaries)
        a, b = part.entry_offset + item.start, part.entry_offset + item.stop
        for x, y in split_range(a, b, local, rows, split_above=4 * rows):
            tasks.append(template.with_parts((replace(_part_read(rec, part, x, y, absent), time0=t0,
                                                      time0_ns=t0_ns),)))
    gaps = [g.as_dict() for g in tplan.gaps] if tplan else []
    first = next((p for p in tplan.parts if not isinstance(p, Gap) or spec.fill_gaps), None) if tplan else None
    info = {"channel": series.get("channel"), "unit": series.get("unit"), "rate": series["rate"], "scale": scale,
            "start": lo, "stop": hi, "t0": getattr(first, "t0", getattr(first, "first", None)),
            "gaps": gaps, "filled": spec.fill_gaps}
    if kept is not None:
        info["dq"], info["dq_segments"] = spec.dq, [list(x) for x in kept]
    meta = dict(out_schema.metadata or {})
    meta[META_TIMESERIES] = json.dumps(info).encode()
    total = (tplan.rows if tplan else 0) + filled
    entry_start = tasks[0].entry_start if tasks else 0
    return Plan(rec, spec, columns, out_schema.with_metadata(meta), entry_start, entry_start + total,
                tuple(tasks), per_entry, cut, {**notes, "gaps": gaps}, rows=total)


__all__ = ["Limits", "Plan", "plan_read", "split_range", "resolve_columns", "dataset_schema", "ENTRY_COLUMN"]
