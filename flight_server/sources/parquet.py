"""Parquet files through pyarrow: one table per file, row groups as chunks.

Workspace uploads are stored as Parquet (see ``flight_server/workspace``), and Parquet
files in the served directory are served like any other format. A file holds one
dataset, named ``<path>:table``. Row groups are the boundaries: reads and endpoints are
cut there, so no row group is decompressed twice.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .base import ColumnInfo, DatasetInfo, Reader, Source, SourceError

OBJECT = "table"
KIND = "parquet.table"
MAGIC = b"PAR1"


def _column_sizes(meta: pq.FileMetaData) -> tuple[dict[str, int], dict[str, int]]:
    """Compressed and uncompressed bytes per top-level column, summed over row groups."""
    comp: dict[str, int] = {}
    unc: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            top = col.path_in_schema.split(".", 1)[0]
            comp[top] = comp.get(top, 0) + col.total_compressed_size
            unc[top] = unc.get(top, 0) + col.total_uncompressed_size
    return comp, unc


def wire_type(t: pa.DataType) -> pa.DataType:
    """The type clients get: 32-bit offsets (batches are capped at a few MiB)."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_large_list(t):
        return pa.list_(wire_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(wire_type(t.value_type))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(wire_type(t.value_type), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, wire_type(f.type), f.nullable, f.metadata) for f in t])
    return t


def scan_parquet(path: str) -> DatasetInfo:
    """The one dataset of a Parquet file (schema from the footer; no data is read)."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = pf.metadata
    schema = pf.schema_arrow
    comp, unc = _column_sizes(meta)
    columns = []
    for f in schema:
        if f.name == "":
            continue
        fmeta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()
                 if not k.startswith(b"arrowroot.source_type")}
        columns.append(ColumnInfo(f.name, wire_type(f.type), f"parquet {f.type}", (), comp.get(f.name),
                                  unc.get(f.name), True, "", fmeta))
    boundaries = [0]
    for g in range(meta.num_row_groups - 1):
        boundaries.append(boundaries[-1] + meta.row_group(g).num_rows)
    attrs = {"row_groups": meta.num_row_groups}
    return DatasetInfo(OBJECT, KIND, meta.num_rows, tuple(columns), attrs, tuple(boundaries))


class ParquetReader(Reader):
    """Reads row groups overlapping the entry range, then slices (row groups are the unit)."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._file = pq.ParquetFile(path, memory_map=False)
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"{path}: not a readable Parquet file ({exc})") from None
        meta = self._file.metadata
        self.entries = meta.num_rows
        self._starts = [0]
        for g in range(meta.num_row_groups):
            self._starts.append(self._starts[-1] + meta.row_group(g).num_rows)
        self._types = {f.name: wire_type(f.type) for f in self._file.schema_arrow}
        self._lock = threading.Lock()  # one ParquetFile is not safe for concurrent reads

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int,
             slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise SourceError(f"{self.path}: slices apply to HDF5 N-D datasets only")
        columns = list(columns)
        entry_stop = min(entry_stop, self.entries)
        if entry_stop <= entry_start:
            return pa.table({c: pa.array([], self._types[c]) for c in columns})
        first = max(0, bisect.bisect_right(self._starts, entry_start) - 1)
        last = bisect.bisect_left(self._starts, entry_stop)
        groups = list(range(first, min(last, len(self._starts) - 1)))
        try:
            with self._lock:
                table = self._file.read_row_groups(groups, columns=columns, use_threads=True)
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"{self.path}: cannot read {columns}: {exc}") from None
        base = self._starts[first]
        table = table.slice(entry_start - base, entry_stop - entry_start)
        arrays = []
        for c in columns:
            arr = table.column(c)
            want = self._types[c]
            if not arr.type.equals(want):
                arr = arr.cast(want)
            arrays.append(arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0))
        return pa.Table.from_arrays(arrays, names=columns)

    def close(self) -> None:
        self._file.close()


class ParquetSource(Source):
    format = "parquet"

    @staticmethod
    def recognises(head: bytes) -> bool:
        return head[:4] == MAGIC

    def scan(self, path: str) -> list[DatasetInfo]:
        return [scan_parquet(path)]

    def open(self, path: str, object_path: str, kind: str) -> Reader:
        return ParquetReader(path)
