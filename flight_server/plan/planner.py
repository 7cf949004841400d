"""ReadSpec + catalog record → output schema and read tasks (one per Flight endpoint).

Everything here is arithmetic on catalog records: no data file is opened, so
GetFlightInfo stays fast however large the dataset.

Entry ranges are global (over all parts of a multi-file dataset). Endpoints never span
two parts and are cut at cluster/chunk boundaries, each holding about
``endpoint_bytes`` of the requested columns.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass

import pyarrow as pa

from arrowroot.catalog.errors import NotFound, not_found
from arrowroot.catalog.models import DatasetRecord, PartRecord

from arrowroot.flight_server.server.codec import InvalidRequest, ReadSpec
from arrowroot.flight_server.lang.cuts import Cut, ExprError, parse
from arrowroot.flight_server.datasets.multifile import select_ranges
from arrowroot.flight_server.sources.base import META_SHAPE, fixed_shape_type, sliced_shape

ENTRY_COLUMN = "entry"
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class ReadTask:
    """One endpoint: a global entry range inside a single part."""

    entry_start: int
    entry_stop: int


@dataclass(frozen=True)
class Plan:
    dataset: DatasetRecord
    spec: ReadSpec
    columns: tuple[str, ...]      # source columns to read, in output order
    schema: pa.Schema             # what the stream carries
    entry_start: int
    entry_stop: int
    tasks: tuple[ReadTask, ...]
    bytes_per_entry: float
    source_schema: pa.Schema | None = None  # the dataset's full schema (cut columns come from it)
    cut: Cut | None = None                  # the parsed ``where``; None = every entry passes

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

    @property
    def cut_columns(self) -> tuple[str, ...]:
        """Columns the cut reads, in dataset order (phase one of the pushdown)."""
        if self.cut is None:
            return ()
        names = self.source_schema.names if self.source_schema is not None else sorted(self.cut.columns)
        return tuple(n for n in names if n in self.cut.columns)


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
            matches = [n for n in readable if fnmatch.fnmatchcase(n, want)]
            if not matches:
                raise not_found(f"column matching the pattern (in {rec.name!r})", want, readable)
        else:
            raise not_found(f"column in {rec.name!r}", want, readable)
        out.extend(m for m in matches if m not in out)
    return tuple(out)


def _resolve_range(spec: ReadSpec, entries: int) -> tuple[int, int]:
    """uproot's rules: negative numbers count from the end; ranges are clipped."""
    def norm(value: int | None, default: int, field: str) -> int:
        if value is None:
            return default
        if value < 0:
            value += entries
        return min(max(value, 0), entries)

    start = norm(spec.entry_start, 0, "entry_start")
    stop = norm(spec.entry_stop, entries, "entry_stop")
    if spec.entry_start is not None and spec.entry_stop is not None and stop < start:
        raise InvalidRequest(f"entry_stop ({spec.entry_stop}) is before entry_start ({spec.entry_start})")
    return start, max(start, stop)


def _output_field(field: pa.Field, slices: tuple[slice, ...]) -> pa.Field:
    meta = field.metadata or {}
    if not slices:
        return field
    shape = json.loads(meta.get(META_SHAPE, b"[]"))
    if not shape:
        raise InvalidRequest(f"slices: column {field.name!r} has no axes after the first")
    try:
        new_shape = sliced_shape(shape, slices)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    base = field.type
    for _ in shape:
        base = base.value_type
    meta = dict(meta)
    meta[META_SHAPE] = json.dumps(list(new_shape)).encode()
    return pa.field(field.name, fixed_shape_type(base, new_shape), nullable=True, metadata=meta)


def split_range(start: int, stop: int, boundaries: tuple[int, ...], max_rows: int,
                split_above: int | None = None) -> list[tuple[int, int]]:
    """Cut [start, stop) at ``boundaries`` into pieces of about ``max_rows`` rows.

    Whole clusters are packed together up to max_rows. A single cluster is cut (evenly)
    only when it is larger than ``split_above`` (default max_rows): cutting inside a
    cluster makes each piece decompress the same baskets again.
    """
    max_rows = max(1, int(max_rows))
    split_above = max(max_rows, int(split_above or max_rows))
    edges = [start] + [b for b in boundaries if start < b < stop] + [stop]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    for prev, cut in zip(edges, edges[1:]):
        if cut - piece_start > max_rows and prev > piece_start:
            pieces.append((piece_start, prev))
            piece_start = prev
    pieces.append((piece_start, stop))
    out: list[tuple[int, int]] = []
    for a, b in pieces:
        if b <= a:
            continue
        if b - a <= split_above:
            out.append((a, b))
            continue
        k = -(-(b - a) // max_rows)
        step = -(-(b - a) // k)
        out.extend((i, min(b, i + step)) for i in range(a, b, step))
    return out


def bytes_per_entry(rec: DatasetRecord, columns: tuple[str, ...]) -> float:
    total = 0.0
    for name in columns:
        col = rec.column(name)
        if col is not None and col.uncompressed_bytes and rec.entries:
            total += col.uncompressed_bytes / rec.entries
        else:
            total += 8.0
    return max(total, 1.0)


def parts_in_range(rec: DatasetRecord, start: int, stop: int) -> list[tuple[PartRecord, int, int]]:
    """(part, global start, global stop) for every part overlapping [start, stop)."""
    out = []
    for part in rec.parts:
        a = max(start, part.entry_offset)
        b = min(stop, part.entry_offset + part.entries)
        if a < b:
            out.append((part, a, b))
    return out


def plan_read(spec: ReadSpec, rec: DatasetRecord, endpoint_bytes: int) -> Plan:
    """Columns, schema and endpoints for a request; raises NotFound/InvalidRequest."""
    if spec.slices and rec.format != "hdf5":
        raise InvalidRequest("slices: apply to HDF5 N-D datasets only; use entry_start/entry_stop for entries")
    schema = dataset_schema(rec)
    columns = resolve_columns(spec.columns, rec, schema)
    if not columns:
        raise InvalidRequest(f"columns: {rec.name!r} has no readable columns")
    fields = [_output_field(schema.field(c), spec.slices) for c in columns]
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
    per_entry = bytes_per_entry(rec, tuple(dict.fromkeys(columns + tuple(sorted(cut.columns if cut else ())))))
    rows = max(1, int(endpoint_bytes / per_entry))
    tasks = []
    for part, a, b in pieces:
        local = tuple(part.entry_offset + x for x in part.boundaries)
        tasks.extend(ReadTask(x, y) for x, y in split_range(a, b, local, rows, split_above=4 * rows))
    return Plan(rec, spec, columns, out_schema, start, stop, tuple(tasks), per_entry, schema, cut)


def read_chunks(plan: Plan, task: ReadTask, chunk_bytes: int) -> list[tuple[PartRecord, int, int]]:
    """(part, local start, local stop) reads that make up one task, cluster-aligned."""
    rows = max(1, int(chunk_bytes / plan.bytes_per_entry))
    out = []
    for part, a, b in parts_in_range(plan.dataset, task.entry_start, task.entry_stop):
        local = split_range(a - part.entry_offset, b - part.entry_offset, part.boundaries, rows, split_above=4 * rows)
        for x, y in local:
            out.append((part, x, y))
    return out


__all__ = ["Plan", "ReadTask", "plan_read", "read_chunks", "split_range", "resolve_columns",
           "dataset_schema", "NotFound", "ENTRY_COLUMN"]
