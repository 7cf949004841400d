"""ReadSpec + catalog record → output schema and self-contained read tasks (one per endpoint).

Everything here is arithmetic on catalog records: no data file is opened, so GetFlightInfo
stays fast however large the dataset. This is the only place a request is planned; DoGet runs
the tasks it produced (``execute/``) without planning again and without the catalog.

Entry ranges are global (over all parts of a multi-file dataset). Endpoints never span two
parts and are cut at cluster/chunk boundaries, each holding about ``endpoint_bytes`` of the
requested columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa

from arrowroot.catalog.errors import not_found
from arrowroot.catalog.models import DatasetRecord, PartRecord
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.ranges import split_range
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.core.shapes import sliced_field
from arrowroot.flight_server.core.task import ENTRY_COLUMN, PartRead, ReadTask
from arrowroot.flight_server.datasets.config import ATTR_CHANNEL, ATTR_MISSING
from arrowroot.flight_server.datasets.select import select_ranges
from arrowroot.flight_server.lang import glob
from arrowroot.flight_server.lang.cuts import Cut, ExprError, parse

GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Limits:
    """The size targets planning uses (from Settings)."""

    endpoint_bytes: int = 64 << 20
    chunk_bytes: int = 16 << 20
    batch_bytes: int = 4 << 20
    batch_rows: int = 131_072


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

    @property
    def entries(self) -> int:
        """Entries scanned (before any cut)."""
        return self.entry_stop - self.entry_start

    @property
    def total_records(self) -> int:
        """Rows the stream will carry: -1 (unknown) when a cut decides."""
        return -1 if self.cut is not None else self.entries

    @property
    def total_bytes(self) -> int:
        return -1 if self.cut is not None else int(self.entries * self.bytes_per_entry)


def dataset_schema(rec: DatasetRecord) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(rec.schema))


def resolve_columns(requested: tuple[str, ...], rec: DatasetRecord, schema: pa.Schema) -> tuple[str, ...]:
    """Exact names first, then shell globs; unreadable columns only when named exactly."""
    readable = [f.name for f in schema]
    if not requested:
        return tuple(readable)
    everything = {c.name: c for c in rec.columns}
    out: list[str] = []
    for want in requested:
        if want in everything:
            col = everything[want]
            if not col.readable or want not in readable:
                raise InvalidRequest(f"columns: {want!r} cannot be read: {col.reason or 'unsupported type'}")
            matches = [want]
        elif GLOB_CHARS & set(want):
            pattern = glob.compile(want)  # linear; at most glob.MAX_PATTERN characters
            matches = [n for n in readable if pattern.match(n)]
            if not matches:
                raise not_found(f"column matching the pattern (in {rec.name!r})", want, readable)
        else:
            raise not_found(f"column in {rec.name!r}", want, readable)
        out.extend(m for m in matches if m not in out)
    return tuple(out)


def bytes_per_entry(rec: DatasetRecord, columns: tuple[str, ...]) -> float:
    total = 0.0
    for name in columns:
        col = rec.column(name)
        if col is not None and col.uncompressed_bytes and rec.entries:
            total += col.uncompressed_bytes / rec.entries
        else:
            total += 8.0
    return max(total, 1.0)


def _part_read(rec: DatasetRecord, part: PartRecord, a: int, b: int, absent: tuple[str, ...]) -> PartRead:
    """The global range [a, b) of ``part`` as a self-contained PartRead."""
    start, stop = a - part.entry_offset, b - part.entry_offset
    inner = tuple(x for x in part.boundaries if start < x < stop)
    return PartRead(part.path, part.size, part.mtime, part.object_path, part.entry_offset, start, stop, inner,
                    part.channel, absent)


def plan_read(spec: ReadSpec, rec: DatasetRecord, limits: Limits = Limits(), principal: str = "",
              expires: float = 0.0, slices_supported: bool = True) -> Plan:
    """Columns, schema and self-contained tasks for a request; raises NotFound/InvalidRequest.

    ``slices_supported``: whether the dataset's source reads per-axis slices (the source's
    capability, asked by the caller)."""
    if spec.slices and not slices_supported:
        raise InvalidRequest("slices: apply to HDF5 N-D datasets only; use entry_start/entry_stop for entries")
    schema = dataset_schema(rec)
    columns = resolve_columns(spec.columns, rec, schema)
    if not columns:
        raise InvalidRequest(f"columns: {rec.name!r} has no readable columns")
    try:
        fields = [sliced_field(schema.field(c), spec.slices) for c in columns]
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if spec.with_entry_numbers:
        if ENTRY_COLUMN in columns:
            raise InvalidRequest(f"with_entry_numbers: the dataset already has a column named {ENTRY_COLUMN!r}")
        fields.insert(0, pa.field(ENTRY_COLUMN, pa.int64(), nullable=False))
    out_schema = pa.schema(fields, metadata=schema.metadata)
    # entry range within the selected files/channels → global pieces, one part each
    start, stop, pieces = select_ranges(spec, rec, columns)
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
        principal=principal, expires=expires)
    rows = max(1, int(limits.endpoint_bytes / per_entry))
    tasks = []
    for part, a, b in pieces:
        member = f"{part.path}:{part.object_path}"
        absent = tuple(c for c in read_names if member in missing.get(c, ()))
        local = tuple(part.entry_offset + x for x in part.boundaries)
        for x, y in split_range(a, b, local, rows, split_above=4 * rows):
            tasks.append(replace(template, parts=(_part_read(rec, part, x, y, absent),)))
    notes: dict = {}
    if not spec.columns:
        skipped = [{"name": c.name, "reason": c.reason or "unsupported type"} for c in rec.columns if not c.readable]
        if skipped:
            notes["skipped_columns"] = skipped
    return Plan(rec, spec, columns, out_schema, start, stop, tuple(tasks), per_entry, cut, notes)


__all__ = ["Limits", "Plan", "plan_read", "split_range", "resolve_columns", "dataset_schema", "ENTRY_COLUMN"]
